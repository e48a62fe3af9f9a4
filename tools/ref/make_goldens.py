#!/usr/bin/env python3
"""Writes tests/testutil/smollm2_goldens.txt: golden outputs of SmolLM2-135M-Instruct (Q4_1)
from the independent NumPy reference (tools/ref/numpy_llama.py), in its two activation modes
(f32, and q8 = llama.cpp-style quantised activations), and cross-checks them with llama.cpp.

Prompts: four ChatML chats built from the GGUF's own tokenizer.chat_template (rendered here by
hand, and checked against a Jinja rendering of the template when jinja2 is importable) and one
plain-text prompt. Prompt ids come from llama.cpp's llama-tokenize (special tokens parsed, no
BOS), so they do not depend on emserve's tokenizer. Per prompt and mode: the prompt ids, the top-5
logits after the prompt, up to 32 greedy ids (stopping early only if <|im_end|> is produced),
every step's top1-top2 logit margin, the decoded text, and how many leading ids survive a
perturbation of the float arithmetic (agree_steps; see the file header).

The llama.cpp cross-check compiles tools/ref/llamacpp_greedy.cpp against the static libllama
built by bench/llamacpp/build.sh (into /tmp, nothing of it is committed) and runs llama.cpp's
own forward on the same prompt ids: on an F32 copy of the model (made by llama-quantize, the
same arithmetic as the f32 mode; logits agree to ~3e-5) and on the Q4_1 file itself (f16 and
f32 KV cache). The report goes to stdout, progress to stderr.

usage: tools/ref/make_goldens.py [--model M] [--llama DIR] [--out FILE] [--no-llamacpp]
"""
import argparse
import hashlib
import os
import re
import subprocess
import sys
import time

import numpy as np
import gguf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_llama  # noqa: E402

MODEL = "/var/cache/emserve/models/SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA = "/var/cache/emserve/llama.cpp"
OUT = "tests/testutil/smollm2_goldens.txt"
STEPS = 32
EOS = 2  # <|im_end|>; checked against tokenizer.ggml.eos_token_id
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CHATS = [("chat_2plus2", "What is 2+2?"),
         ("chat_capital", "What is the capital of France?"),
         ("chat_haiku", "Write a haiku about the sea."),
         ("chat_colors", "List three colors.")]
PLAIN = [("plain_capital", "The capital of France is")]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def chatml(user):
    """SmolLM2's template with one user turn and add_generation_prompt."""
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


def check_template(reader):
    tmpl = numpy_llama._field(reader, "tokenizer.chat_template")
    if SYSTEM not in tmpl:
        raise ValueError("chat template lacks the default system message")
    try:
        import jinja2
    except ImportError:
        log("jinja2 missing: chat template checked by its system message only")
        return
    for _, user in CHATS:
        got = jinja2.Template(tmpl).render(messages=[{"role": "user", "content": user}],
                                           add_generation_prompt=True)
        if got != chatml(user):
            raise ValueError(f"template rendering differs: {got!r}")
    log("chat template: hand rendering equals the Jinja rendering of tokenizer.chat_template")


def bytes_to_unicode():
    """GPT-2 byte-level BPE's byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) \
        + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Detok:
    def __init__(self, reader):
        f = reader.fields["tokenizer.ggml.tokens"]
        self.pieces = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        t = reader.fields["tokenizer.ggml.token_type"]
        self.types = [int(t.parts[i][0]) for i in t.data]
        self.byte_of = {c: b for b, c in bytes_to_unicode().items()}

    def __call__(self, ids):
        out = bytearray()
        for i in ids:
            p = self.pieces[i]
            if self.types[i] == 3:  # control tokens print as their text
                out += p.encode("utf-8")
            else:
                out += bytes(self.byte_of[c] for c in p)
        return out.decode("utf-8", errors="replace")


def tokenize(llama_dir, model, text):
    exe = os.path.join(llama_dir, "build/bin/llama-tokenize")
    r = subprocess.run([exe, "-m", model, "-p", text, "--ids", "--no-bos", "--no-escape",
                        "--log-disable"],
                       capture_output=True, text=True, check=True)
    line = [s for s in r.stdout.splitlines() if s.startswith("[")][-1]
    return [int(x) for x in re.findall(r"-?\d+", line)]


def escape(s):
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def top5(logits):
    idx = np.argsort(-logits, kind="stable")[:5]
    return [(int(i), float(logits[i])) for i in idx]


def prefix_len(a, b):
    n = min(len(a), len(b))
    return next((k for k in range(n) if a[k] != b[k]), n)


def run_variant(model, ids, mode, acc64):
    model.acc64 = acc64
    try:
        return numpy_llama.greedy(model, ids, STEPS, mode, stop_id=EOS)
    finally:
        model.acc64 = False


def run_reference(model, detok, prompts):
    """Both golden modes per prompt, plus perturbed variants that measure how many leading ids
    survive a change of float summation order (f64 accumulation; for q8 also q8_ggml)."""
    results = []
    for name, text, ids in prompts:
        for mode in ("f32", "q8"):
            t0 = time.time()
            first, greedy, margins = numpy_llama.greedy(
                model, ids, STEPS, mode, stop_id=EOS,
                log=lambda s, i, m: log(f"  .. {name} {mode} step {s:2d} id {i:5d} margin {m:.3f}")
                if s % 8 == 7 else None)
            dt = time.time() - t0
            k = int(np.argmin(margins))
            variants = [(mode + "/acc64", mode, True)]
            if mode == "q8":
                variants.append(("q8_ggml", "q8_ggml", False))
            agree, dlogit = {}, {}
            for vname, vmode, acc64 in variants:
                vfirst, vids, _ = run_variant(model, ids, vmode, acc64)
                agree[vname] = prefix_len(greedy, vids)
                dlogit[vname] = float(np.abs(vfirst - first).max())
            r = dict(name=name, mode=mode, text_in=text, ids=ids, top5=top5(first), greedy=greedy,
                     margins=margins, min_margin=(margins[k], k), stopped=greedy[-1] == EOS,
                     text=detok(greedy), secs=dt, agree=agree, dlogit=dlogit)
            log(f"{name} {mode}: {len(ids)} prompt + {len(greedy)} steps in {dt:.1f} s; "
                f"min margin {margins[k]:.3f} at step {k}; {r['text']!r}")
            log("    perturbed: " + ", ".join(
                f"{v}: {agree[v]} ids agree, max|dlogit| {dlogit[v]:.2e}" for v in agree))
            results.append(r)
    return results


def write_goldens(path, model_path, results):
    sha = hashlib.sha256(open(model_path, "rb").read()).hexdigest()
    with open(path, "w") as f:
        f.write(f"""\
# Golden outputs of SmolLM2-135M-Instruct.Q4_1.gguf (sha256 {sha})
# from the independent NumPy reference tools/ref/numpy_llama.py, written by
# tools/ref/make_goldens.py (do not edit by hand; rerun the script).
# Modes: f32 = dequantised weights, f32 activations; q8 = activations quantised per 32-element
# block to int8 (d = amax/127 in f32, round half to even) before every quantized-weight matmul,
# as emserve does (llama.cpp does the same but stores d, and Q8_1's d*sum(q), in f16).
# Prompt ids are llama.cpp's (llama-tokenize, specials parsed,
# no BOS). Chat prompts use the model's ChatML template with its default system message and
# end with "<|im_start|>assistant\\n".
#
# Format: lines of space-separated fields; '#' lines and blank lines are comments.
# One record per (prompt, mode), in this order:
#   golden NAME MODE          MODE is f32 or q8
#   prompt_text TEXT          TEXT = the rest of the line after the single space following the
#                             key (it may begin with a space); escapes \\n \\t \\\\ \\xHH,
#                             otherwise UTF-8
#   prompt_ids N ID...
#   top5 ID:LOGIT x5          logits after the last prompt token, best first (%.5f)
#   greedy N ID...            N = 32, or fewer when id 2 <|im_end|> was produced (it is included)
#   stopped 0|1               1 when the last greedy id is 2
#   min_margin M STEP         smallest top1-top2 logit gap over the greedy steps, and its step
#   margins N M...            every step's top1-top2 gap (%.4f)
#   text TEXT                 the greedy ids decoded (escaped as prompt_text)
#   agree_steps K             leading greedy ids unchanged under perturbed float arithmetic
#                             (the same mode with f64 matmul accumulation; for q8 also ggml's
#                             f16 storage of the activation scales): an upper bound on the ids
#                             that are safe to compare exactly against another implementation. q8 logits move by up to ~1 under such changes
#                             (massive activations, |x| ~ 3000 in blk 11/28 ffn_down inputs, make
#                             the int8 rounding chaotic); f32 logits by ~1e-4.
#   prompt_dlogit D           max |logit difference| over the vocabulary after the prompt between
#                             the mode and its perturbed variants (the tolerance to expect)
#   end
""")
        for r in results:
            f.write(f"\ngolden {r['name']} {r['mode']}\n")
            f.write(f"prompt_text {escape(r['text_in'])}\n")
            f.write(f"prompt_ids {len(r['ids'])} {' '.join(map(str, r['ids']))}\n")
            f.write("top5 " + " ".join(f"{i}:{v:.5f}" for i, v in r["top5"]) + "\n")
            f.write(f"greedy {len(r['greedy'])} {' '.join(map(str, r['greedy']))}\n")
            f.write(f"stopped {int(r['stopped'])}\n")
            f.write(f"min_margin {r['min_margin'][0]:.4f} {r['min_margin'][1]}\n")
            f.write(f"margins {len(r['margins'])} "
                    + " ".join(f"{m:.4f}" for m in r["margins"]) + "\n")
            f.write(f"text {escape(r['text'])}\n")
            f.write(f"agree_steps {min(r['agree'].values())}\n")
            f.write(f"prompt_dlogit {max(r['dlogit'].values()):.5f}\n")
            f.write("end\n")
    log(f"wrote {path}")


def build_driver(llama_dir):
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llamacpp_greedy.cpp")
    exe = "/tmp/emserve_llamacpp_greedy"
    if os.path.exists(exe) and os.path.getmtime(exe) > os.path.getmtime(src):
        return exe
    b, s = os.path.join(llama_dir, "build"), os.path.join(llama_dir, "src")
    libs = [f"{b}/src/libllama.a", f"{b}/ggml/src/libggml.a", f"{b}/ggml/src/libggml-cpu.a",
            f"{b}/ggml/src/libggml-base.a"]
    cmd = ["g++", "-O2", "-std=c++17", src, "-o", exe, f"-I{s}/include", f"-I{s}/ggml/include",
           "-Wl,--start-group", *libs, "-Wl,--end-group", "-fopenmp", "-lpthread", "-ldl", "-lm"]
    log("building llama.cpp driver: " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    return exe


def llamacpp_greedy(exe, model, ids, kv, flash):
    r = subprocess.run([exe, model, str(STEPS), kv, str(flash), *map(str, ids)],
                       capture_output=True, text=True, check=True)
    out = {}
    for line in r.stdout.splitlines():
        key, *vals = line.split()
        out[key] = vals
    return ([(int(a), float(b)) for a, b in (v.split(":") for v in out["top5"])],
            [int(v) for v in out["greedy"]], [float(v) for v in out["margins"]])


def f32_gguf(llama_dir, model):
    """llama.cpp's own F32 copy of the model (llama-quantize --allow-requantize ... F32)."""
    out = "/tmp/emserve_smollm2_f32.gguf"
    if not os.path.exists(out):
        exe = os.path.join(llama_dir, "build/bin/llama-quantize")
        subprocess.run([exe, "--allow-requantize", model, out, "F32"], check=True,
                       capture_output=True)
    return out


def compare(label, r, got):
    t5, ids, margins = got
    n = len(r["greedy"])
    diff = next((k for k in range(n) if ids[k] != r["greedy"][k]), None)
    dtop = max(abs(a[1] - b[1]) for a, b in zip(t5, r["top5"]))
    same_top5 = [a[0] for a in t5] == [b[0] for b in r["top5"]]
    if diff is None:
        msg = f"all {n} ids match"
    else:
        msg = (f"differ at step {diff} (ref {r['greedy'][diff]}, llama.cpp {ids[diff]}; "
               f"margins {r['margins'][diff]:.3f} / {margins[diff]:.3f})")
    line = (f"{r['name']:14s} ref {r['mode']:3s} vs {label}: {msg}; top5 ids "
            f"{'same' if same_top5 else 'DIFFER'}, max |dlogit| top5 {dtop:.5f}")
    print(line, flush=True)


def cross_check(exe, model, model_f32, results):
    """llama.cpp on the F32 copy (f32 KV) against the f32 mode: the same arithmetic, so logits
    should agree to ~1e-4. llama.cpp on the Q4_1 file (f16 and f32 KV) against both modes:
    its quantised path rounds differently, so ids may part after a near-tie."""
    print("llama.cpp cross-check (first differing step; margins there: ref / llama.cpp)")
    memo = {}
    for r in results:
        runs = [("llama.cpp F32-weights kv f32", model_f32, "f32")] if r["mode"] == "f32" else []
        runs += [("llama.cpp Q4_1 kv f16", model, "f16"), ("llama.cpp Q4_1 kv f32", model, "f32")]
        for label, path, kv in runs:
            key = (r["name"], path, kv)
            if key not in memo:
                memo[key] = llamacpp_greedy(exe, path, r["ids"], kv, 0)
            compare(label, r, memo[key])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--llama", default=LLAMA)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--no-llamacpp", action="store_true", help="skip the llama.cpp cross-check")
    a = ap.parse_args()

    t0 = time.time()
    model = numpy_llama.Model(a.model, log=log)
    log(f"model loaded and dequantised in {time.time() - t0:.1f} s")
    reader = gguf.GGUFReader(a.model)
    if int(numpy_llama._field(reader, "tokenizer.ggml.eos_token_id")) != EOS:
        raise ValueError("eos id is not 2")
    if numpy_llama._field(reader, "tokenizer.ggml.add_bos_token"):
        raise ValueError("model asks for BOS; goldens assume none")
    check_template(reader)
    detok = Detok(reader)

    prompts = []
    for name, user in CHATS:
        prompts.append((name, chatml(user), None))
    prompts += [(name, text, None) for name, text in PLAIN]
    prompts = [(n, t, tokenize(a.llama, a.model, t)) for n, t, _ in prompts]
    for n, t, ids in prompts:
        if detok(ids) != t:
            raise ValueError(f"{n}: llama.cpp ids do not decode back to the prompt")
        log(f"{n}: {len(ids)} ids: {ids}")

    results = run_reference(model, detok, prompts)
    write_goldens(a.out, a.model, results)
    if not a.no_llamacpp:
        exe = build_driver(a.llama)
        cross_check(exe, a.model, f32_gguf(a.llama, a.model), results)


if __name__ == "__main__":
    main()
