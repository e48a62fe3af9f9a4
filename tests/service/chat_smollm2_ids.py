"""Prompt ids of chat_smollm2_test.c, computed independently of emserve: the rendered SmolLM2
chat prompt split at its special tokens, the rest through GPT-2 byte-level BPE with the merges
of the GGUF (SmolLM2's pre-tokenizer: digits one by one, then the GPT-2 regex; ASCII-only input
is assumed, where \\p{L} and \\p{N} are [A-Za-z] and [0-9]). Run by hand:
    python3 tests/service/chat_smollm2_ids.py [MODEL.gguf]"""
import re
import sys

import gguf

MODEL = sys.argv[1] if len(sys.argv) > 1 else \
    "/var/cache/emserve/models/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
          "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
          "<|im_start|>assistant\n")
SPECIALS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
GPT2_ASCII = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+"
                        r"|\s+(?!\S)|\s+")


def strings(r, key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def byte_chars():
    """GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256+n."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + \
        list(range(0xAE, 0x100))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def bpe(word, ranks):
    parts = list(word)
    while len(parts) > 1:
        pairs = [(ranks.get((parts[i], parts[i + 1]), 1 << 30), i) for i in range(len(parts) - 1)]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def main():
    r = gguf.GGUFReader(MODEL)
    vocab = {t: i for i, t in enumerate(strings(r, "tokenizer.ggml.tokens"))}
    ranks = {tuple(m.split(" ")): i for i, m in enumerate(strings(r, "tokenizer.ggml.merges"))}
    bc = byte_chars()
    ids = []
    for piece in re.split("(" + "|".join(re.escape(s) for s in SPECIALS) + ")", PROMPT):
        if piece in SPECIALS:
            ids.append(vocab[piece])
            continue
        for digit_split in re.split(r"([0-9])", piece):
            for word in GPT2_ASCII.findall(digit_split):
                ids.extend(vocab[p] for p in bpe("".join(bc[b] for b in word.encode()), ranks))
    print(len(ids), "ids:", ", ".join(map(str, ids)))


if __name__ == "__main__":
    main()
