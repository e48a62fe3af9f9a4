#!/usr/bin/env python3
"""Passkey retrieval with the NumPy reference (tools/ref/numpy_llama.py), full KV cache: a
5-digit key hidden at a few depths in ~1K tokens of filler, asked for in one ChatML user turn.
Prints the greedy answer per depth and mode; a figure for comparison with emserve's KV-cache
compression methods, not a test.

usage: tools/ref/passkey.py [--model M] [--llama DIR] [--key 68203] [--filler N] [--modes f32,q8]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_llama  # noqa: E402
import make_goldens as mg  # noqa: E402

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "


def prompt_text(key, n_filler, depth):
    at = int(n_filler * depth)
    needle = f"The pass key is {key}. Remember it. {key} is the pass key. "
    body = FILLER * at + needle + FILLER * (n_filler - at)
    user = ("There is an important piece of information hidden inside a lot of irrelevant text. "
            "Find it and memorize it.\n\n" + body
            + "\n\nWhat is the pass key? Answer with the number only.")
    return mg.chatml(user)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=mg.MODEL)
    ap.add_argument("--llama", default=mg.LLAMA)
    ap.add_argument("--key", default="68203")
    ap.add_argument("--filler", type=int, default=48, help="filler sentences groups (~21 tokens)")
    ap.add_argument("--depths", default="0.1,0.5,0.9")
    ap.add_argument("--modes", default="f32,q8")
    a = ap.parse_args()
    model = numpy_llama.Model(a.model, log=mg.log)
    import gguf
    detok = mg.Detok(gguf.GGUFReader(a.model))
    for depth in map(float, a.depths.split(",")):
        ids = mg.tokenize(a.llama, a.model, prompt_text(a.key, a.filler, depth))
        for mode in a.modes.split(","):
            t0 = time.time()
            _, out, margins = numpy_llama.greedy(model, ids, 12, mode, stop_id=mg.EOS)
            text = detok(out)
            ok = a.key in text
            print(f"depth {depth:.1f} mode {mode}: {len(ids)} prompt tokens, answer {text!r}, "
                  f"{'RETRIEVED' if ok else 'missed'}, first-step margin {margins[0]:.3f}, "
                  f"{time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
