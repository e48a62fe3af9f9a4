#!/usr/bin/env python3
"""A passkey prompt (SmolLM2's ChatML with its default system message) whose token count is
close to --tokens: filler sentences around one needle at --depth (0..1), measured with
emserve's own //tools:tokenize (pass its path) so the size is exact for the model."""
import argparse
import subprocess
import tempfile

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def build(key, n_filler, depth):
    at = int(n_filler * depth)
    needle = f"The pass key is {key}. Remember it. {key} is the pass key. "
    body = FILLER * at + needle + FILLER * (n_filler - at)
    user = ("There is an important piece of information hidden inside a lot of irrelevant text. "
            "Find it and memorize it.\n\n" + body +
            "\n\nWhat is the pass key? Answer with the number only.")
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


def count(tokenize, text):
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write(text)
        f.flush()
        out = subprocess.run([tokenize, "--text-file", f.name], capture_output=True, text=True,
                             check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("ids:"))
    return len(line.split()) - 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--depth", type=float, required=True)
    ap.add_argument("--tokenize", required=True)
    a = ap.parse_args()
    per = count(a.tokenize, build(a.key, 10, a.depth)) - count(a.tokenize, build(a.key, 0, a.depth))
    base = count(a.tokenize, build(a.key, 0, a.depth))
    n = max(1, (a.tokens - base) // max(1, per // 10))
    print(build(a.key, n, a.depth), end="")


if __name__ == "__main__":
    main()
