"""A client written against the .proto alone (Python grpcio): stubs are generated from
proto/emserve/v1/emserve.proto at test time with grpc_tools.protoc. Streams a generation,
aborts one, gets INVALID_ARGUMENT for bad fields, keeps or cuts a matched stop string, tokenizes,
sends chat messages (refused: the test model has no chat template), reads model/server info
(name, uptime, build) and health.
Usage: client_test.py --addr HOST:PORT --proto-root DIR (DIR holds proto/...)."""
import argparse
import importlib
import os
import sys
import tempfile
import threading
import unittest

import grpc
from grpc_tools import protoc

GOLDEN = [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410,
          408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370,
          432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286,
          267, 414, 270, 333, 415, 426, 13, 438, 310]
PROMPT_IDS = [1, 403, 407, 261, 378]  # "Once upon a time" with BOS
ADDR = None
pb = pb_grpc = hpb = hpb_grpc = None


def generate_stubs(proto_root):
    out = tempfile.mkdtemp(prefix="emserve_py_")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    for f in ("proto/emserve/v1/emserve.proto", "proto/grpc/health/v1/health.proto"):
        rc = protoc.main(["protoc", "-I" + proto_root, "-I" + include, "--python_out=" + out,
                          "--grpc_python_out=" + out, f])
        if rc != 0:
            raise RuntimeError("protoc failed for " + f)
    sys.path.insert(0, out)
    global pb, pb_grpc, hpb, hpb_grpc
    pb = importlib.import_module("proto.emserve.v1.emserve_pb2")
    pb_grpc = importlib.import_module("proto.emserve.v1.emserve_pb2_grpc")
    hpb = importlib.import_module("proto.grpc.health.v1.health_pb2")
    hpb_grpc = importlib.import_module("proto.grpc.health.v1.health_pb2_grpc")


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.channel = grpc.insecure_channel(ADDR)
        cls.stub = pb_grpc.EmserveStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    def greedy(self, **kw):
        return pb.SamplingParams(temperature=0.0, **kw)

    def test_stream_golden(self):
        req = pb.GenerateRequest(request_id="py-1", text="Once upon a time",
                                 sampling=self.greedy(),
                                 stopping=pb.StoppingParams(max_tokens=60))
        self.assertTrue(req.sampling.HasField("temperature"))  # proto3 optional presence
        self.assertFalse(req.sampling.HasField("top_p"))
        ids, text, complete = [], "", None
        for resp in self.stub.Generate(req, timeout=60):
            self.assertEqual(resp.request_id, "py-1")
            if resp.HasField("chunk"):
                ids.extend(resp.chunk.token_ids)
                text += resp.chunk.text
            else:
                complete = resp.complete
        self.assertEqual(ids, GOLDEN)
        self.assertIsNotNone(complete)
        self.assertEqual(list(complete.output_ids), GOLDEN)
        self.assertEqual(complete.finish_reason, "length")
        self.assertEqual(complete.usage.prompt_tokens, 5)
        self.assertEqual(complete.usage.completion_tokens, 60)
        self.assertTrue(text.startswith(", there was a little girl named Lily."), text)
        self.assertEqual(complete.text, text)

    def test_tokens_and_kv_compression(self):
        req = pb.GenerateRequest(tokens=pb.TokenIds(ids=[1, 403, 407, 261, 378]),
                                 sampling=self.greedy(),
                                 stopping=pb.StoppingParams(max_tokens=60),
                                 kv=pb.KvConfig(method="ems", budget=16))
        last = list(self.stub.Generate(req, timeout=60))[-1]
        self.assertEqual(last.complete.usage.kv_entries_full, 1280)
        self.assertEqual(last.complete.usage.kv_entries_kept, 320)
        self.assertEqual(len(last.complete.output_ids), 60)

    def test_stop_token_and_logprobs(self):
        req = pb.GenerateRequest(text="Once upon a time", sampling=self.greedy(logprobs=3),
                                 stopping=pb.StoppingParams(max_tokens=60, stop_token_ids=[426]))
        resps = list(self.stub.Generate(req, timeout=60))
        chunks = [r.chunk for r in resps if r.HasField("chunk")]
        self.assertEqual(resps[-1].complete.finish_reason, "stop")
        self.assertEqual(resps[-1].complete.matched_stop_token, 426)
        self.assertEqual(list(resps[-1].complete.output_ids), GOLDEN[:GOLDEN.index(426) + 1])
        lp = chunks[0].logprobs[0]
        self.assertEqual(lp.token_id, 432)
        self.assertEqual(len(lp.top), 3)
        self.assertEqual(lp.top[0].token_id, 432)  # greedy = the most likely token
        self.assertLess(lp.logprob, 0.0)

    def test_include_stop_str_in_output(self):
        """A matched stop string is cut from the text by default and kept with
        include_stop_str_in_output (the ids are the same either way)."""
        texts = []
        for include in (False, True):
            req = pb.GenerateRequest(text="Once upon a time", sampling=self.greedy(),
                                     stopping=pb.StoppingParams(
                                         max_tokens=60, stop=["little girl"],
                                         include_stop_str_in_output=include))
            resps = list(self.stub.Generate(req, timeout=60))
            done = resps[-1].complete
            streamed = "".join(r.chunk.text for r in resps if r.HasField("chunk"))
            self.assertEqual(done.finish_reason, "stop")
            self.assertEqual(done.matched_stop, "little girl")
            self.assertEqual(streamed, done.text)
            texts.append(done.text)
        self.assertEqual(texts[0], ", there was a ")
        self.assertEqual(texts[1], ", there was a little girl")

    def test_abort(self):
        req = pb.GenerateRequest(request_id="py-abort", text="Once upon a time",
                                 sampling=self.greedy(),
                                 stopping=pb.StoppingParams(max_tokens=1500, ignore_eos=True))
        stream = self.stub.Generate(req, timeout=60)
        first = next(stream)
        self.assertTrue(first.HasField("chunk"))
        found = self.stub.Abort(pb.AbortRequest(request_id="py-abort"), timeout=10).found
        self.assertTrue(found)
        rest = list(stream)
        self.assertEqual(rest[-1].complete.finish_reason, "abort")
        self.assertLess(len(rest[-1].complete.output_ids), 1500)
        self.assertFalse(self.stub.Abort(pb.AbortRequest(request_id="nope"), timeout=10).found)

    def test_invalid_argument(self):
        cases = [
            (pb.GenerateRequest(), "input"),
            (pb.GenerateRequest(text="hi", sampling=pb.SamplingParams(temperature=-1)),
             "temperature"),
            (pb.GenerateRequest(text="hi", sampling=pb.SamplingParams(top_p=2)), "top_p"),
            (pb.GenerateRequest(text="hi", sampling=pb.SamplingParams(n=3)), "sampling.n"),
            (pb.GenerateRequest(text="hi", stopping=pb.StoppingParams(max_tokens=0)),
             "max_tokens"),
            (pb.GenerateRequest(tokens=pb.TokenIds(ids=[1, 100000])), "tokens.ids[1]"),
            (pb.GenerateRequest(text="hi", kv=pb.KvConfig(method="bogus")), "kv.method"),
            (pb.GenerateRequest(text="hi", kv=pb.KvConfig(
                method="ems", budget=16, params=[pb.KvParam(key="nope", value="1")])), "kv.nope"),
        ]
        for req, field in cases:
            with self.subTest(field=field):
                with self.assertRaises(grpc.RpcError) as cm:
                    list(self.stub.Generate(req, timeout=10))
                self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn(field, cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.Abort(pb.AbortRequest(), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_tokenize(self):
        r = self.stub.Tokenize(pb.TokenizeRequest(text="Once upon a time"), timeout=10)
        self.assertEqual(list(r.ids), PROMPT_IDS)
        self.assertEqual(r.prompt, "")
        r = self.stub.Tokenize(pb.TokenizeRequest(text="Once upon a time", add_special=False),
                               timeout=10)
        self.assertEqual(list(r.ids), PROMPT_IDS[1:])
        # Generate's prompt is Tokenize's
        req = pb.GenerateRequest(text="Once upon a time", sampling=self.greedy(),
                                 stopping=pb.StoppingParams(max_tokens=1))
        last = list(self.stub.Generate(req, timeout=60))[-1]
        self.assertEqual(last.complete.usage.prompt_tokens, len(PROMPT_IDS))
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.Tokenize(pb.TokenizeRequest(
                text="hi", messages=[pb.ChatMessage(role="user", content="hi")]), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("text and messages", cm.exception.details())

    def test_chat_messages_without_template(self):
        self.assertEqual(self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).chat_template,
                         "")
        chat = [pb.ChatMessage(role="system", content="Be brief."),
                pb.ChatMessage(role="user", content="Hello")]
        cases = [
            (pb.GenerateRequest(messages=chat, sampling=self.greedy()),
             "model has no supported chat template"),
            (pb.GenerateRequest(messages=[pb.ChatMessage(role="tool", content="x")]),
             "messages[0].role: unknown role 'tool'"),
            (pb.GenerateRequest(text="hi", messages=chat), "set only one of text, tokens"),
            (pb.GenerateRequest(text="hi", add_generation_prompt=True), "add_generation_prompt"),
        ]
        for req, want in cases:
            with self.subTest(want=want):
                with self.assertRaises(grpc.RpcError) as cm:
                    list(self.stub.Generate(req, timeout=10))
                self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn(want, cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.Tokenize(pb.TokenizeRequest(messages=chat), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("model has no supported chat template", cm.exception.details())

    def test_concurrent_streams(self):
        results = [None] * 8

        def run(i):
            req = pb.GenerateRequest(text="Once upon a time", sampling=self.greedy(),
                                     stopping=pb.StoppingParams(max_tokens=20 + i))
            results[i] = list(list(self.stub.Generate(req, timeout=60))[-1].complete.output_ids)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, r in enumerate(results):
            self.assertEqual(r, GOLDEN[:20 + i])

    def test_info_and_health(self):
        mi = self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        self.assertEqual((mi.n_vocab, mi.n_kv_head, mi.n_head, mi.n_layer), (512, 4, 8, 5))
        self.assertEqual(mi.name, "llama")  # stories260K's general.name
        si = self.stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
        self.assertGreater(si.uptime_seconds, 0.0)
        self.assertEqual(si.build.version, si.version)
        self.assertNotEqual(si.build.git_commit, "")
        self.assertEqual(si.worker_count, 2)
        self.assertEqual(si.heads_per_worker, 2)
        self.assertEqual([list(w.kv_heads) for w in si.workers], [[0, 1], [2, 3]])
        self.assertTrue(si.serving)
        self.assertIn("ems", si.kv_methods)
        health = hpb_grpc.HealthStub(self.channel)
        r = health.Check(hpb.HealthCheckRequest(service=""), timeout=10)
        self.assertEqual(r.status, hpb.HealthCheckResponse.SERVING)
        with self.assertRaises(grpc.RpcError) as cm:
            health.Check(hpb.HealthCheckRequest(service="no.such.Service"), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--proto-root", required=True)
    args, rest = ap.parse_known_args()
    ADDR = args.addr
    generate_stubs(args.proto_root)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
