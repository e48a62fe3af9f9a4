"""SmolLM2-135M-Instruct through the Python grpcio client (stubs from the .proto alone) against
the independent NumPy reference's goldens (tests/testutil/smollm2_goldens.txt, f32 records):
the prompt ids sent as tokens give the golden greedy ids over the steps the reference marks
stable; Tokenize of each golden prompt text gives llama.cpp's prompt ids; a chat message gets
the golden answer. Usage: smollm2_test.py --addr HOST:PORT --proto-root DIR --goldens FILE."""
import argparse
import sys
import unittest

import grpc

import client_test as ct

GOLDENS = None


def unescape(s):
    """The goldens file's escapes (\\n \\t \\\\ \\xHH) over UTF-8 bytes."""
    b, out, i = s.encode("utf-8"), bytearray(), 0
    while i < len(b):
        if b[i] == 0x5C and i + 1 < len(b):
            c = chr(b[i + 1])
            if c == "x":
                out.append(int(b[i + 2:i + 4], 16))
                i += 4
                continue
            out.extend({"n": b"\n", "t": b"\t"}.get(c, c.encode()))
            i += 2
        else:
            out.append(b[i])
            i += 1
    return out.decode("utf-8")


def load_goldens(path):
    recs, cur = [], None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        key, _, val = line.partition(" ")
        if key == "golden":
            cur = {"name": val.split()[0], "mode": val.split()[1]}
            recs.append(cur)
        elif key in ("prompt_ids", "greedy"):
            cur[key] = [int(x) for x in val.split()[1:]]
        elif key in ("agree_steps", "stopped"):
            cur[key] = int(val)
        elif key == "prompt_text":
            cur[key] = unescape(val)
    return [r for r in recs if r["mode"] == "f32"]


class SmolLM2Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.channel = grpc.insecure_channel(ct.ADDR)
        cls.stub = ct.pb_grpc.EmserveStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    def generate(self, **kw):
        req = ct.pb.GenerateRequest(sampling=ct.pb.SamplingParams(temperature=0.0), **kw)
        complete, text = None, ""
        for resp in self.stub.Generate(req, timeout=300):
            if resp.HasField("chunk"):
                text += resp.chunk.text
            else:
                complete = resp.complete
        return complete, text

    def test_goldens(self):
        for r in GOLDENS:
            with self.subTest(r["name"]):
                c, _ = self.generate(tokens=ct.pb.TokenIds(ids=r["prompt_ids"]),
                                     stopping=ct.pb.StoppingParams(max_tokens=len(r["greedy"])))
                got = list(c.output_ids)
                k = r["agree_steps"]
                self.assertEqual(got[:k], r["greedy"][:k])
                print(f"{r['name']}: {len(got)} ids, first {k} equal the golden", flush=True)

    def test_tokenize_matches_llamacpp(self):
        for r in GOLDENS:
            with self.subTest(r["name"]):
                t = self.stub.Tokenize(ct.pb.TokenizeRequest(text=r["prompt_text"],
                                                             parse_special=True), timeout=30)
                self.assertEqual(list(t.ids), r["prompt_ids"])

    def test_chat(self):
        c, text = self.generate(messages=[ct.pb.ChatMessage(role="user", content="What is 2+2?")],
                                stopping=ct.pb.StoppingParams(max_tokens=32))
        self.assertEqual(text, "The answer to this classic math problem is 4.")
        self.assertEqual(c.finish_reason, "stop")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--proto-root", required=True)
    ap.add_argument("--goldens", required=True)
    args, rest = ap.parse_known_args()
    ct.ADDR = args.addr
    GOLDENS = load_goldens(args.goldens)
    ct.generate_stubs(args.proto_root)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
