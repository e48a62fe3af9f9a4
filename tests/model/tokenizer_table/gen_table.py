#!/usr/bin/env python3
"""GENERATOR of tests/model/tokenizer_table.tsv: the ids llama.cpp's tokenizer gives for a list
of strings, for SmolLM2-135M-Instruct (byte-level BPE, pre-tokenizer "smollm") and for
stories260K (SentencePiece), checked row by row by //tests/model:tokenizer_gpt2_test.

It compiles llamacpp_oracle.c against the llama.cpp that bench/llamacpp/build.sh builds
(static libllama, vocabulary only), sends it every case and writes the table:

    python3 tests/model/tokenizer_table/gen_table.py \
        [--llamacpp /var/cache/emserve/llama.cpp] \
        [--smollm2 /var/cache/emserve/models/SmolLM2-135M-Instruct.Q4_1.gguf] \
        [--stories shared/models/stories260K.gguf (found upwards from the checkout)]

Table columns (tab separated, '#' lines are comments):
    model   smollm2 | stories260k
    add     1 = llama_tokenize add_special (BOS when the model asks for it), 0 = not
    special 1 = parse_special (control-token texts become their ids), 0 = not
    text    the input, escaped: \\\\ \\t \\n \\r \\xHH (other bytes as they are; UTF-8 stays UTF-8)
    ids     llama.cpp's ids, space separated
    detok   llama_detokenize(ids, remove_special=0, unparse_special=0), escaped like text
"""
import argparse
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
OUT = os.path.join(ROOT, "tests", "model", "tokenizer_table.tsv")

# ---------------------------------------------------------------- SmolLM2 cases (special on)
CHAT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
         "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.")
PY_CODE = ("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
           "    if n < 2:\n        return n\n    a, b = 0, 1\n    for _ in range(n - 1):\n"
           "        a, b = b, a + b\n    return b\n\n\nprint(fibonacci(10))\n")
C_CODE = ("#include <stdio.h>\n\nint main(void)\n{\n\tfor (int i = 0; i < 10; i++) {\n"
          "\t\tprintf(\"%d\\n\", i * i);\n\t}\n\treturn 0;\n}\n")

SMOLLM = [
    # ASCII words and punctuation
    "Hello world", "Hello, world!", "hello", "HELLO", "a", "I", "The quick brown fox jumps over "
    "the lazy dog.", "What's up?", "Wait... what?!", "foo-bar_baz", "e.g. i.e. etc.",
    "(parenthesised) [bracketed] {braced}", "semi;colon:colon", "quote \"double\" 'single'",
    "a+b=c", "100%", "#hashtag @mention", "~tilde `backtick` ^caret |pipe|", "$5.99 & more",
    "<html>", "emserve is a distributed LLM inference service.",
    # whitespace
    " ", "  ", "   ", " " * 10, "\t", "\t\t\t", "\n", "\n\n", "\n\n\n\n", "\r\n", "\r", "\r\r\n",
    "   leading spaces", "trailing spaces   ", "multiple   spaces   inside", " a", "a ",
    "tab\tseparated\tvalues", "\tindented", "line1\nline2", "line1\r\nline2\r\n",
    "end with newline\n", " \n ", "a \n b", "word \n", "mixed \t \n whitespace", "\n \n",
    "a" + " " * 8 + "b", " \t \t ", "\x0b\x0c", "a\u00a0b", "a\u00a0\u00a0b", "\u3000full width",
    "em\u2003space", "line\u2028sep", "next\u0085line", "    \n    \n", "x  \n\n  y",
    # contractions, mixed case
    "I'm", "you're", "we've", "they'll", "he'd", "it's", "don't", "I'M", "YOU'RE", "We'Ve",
    "THEY'LL", "It'S", "'s", "'", "''", "rock 'n' roll", "don\u2019t", "O'Neil's",
    "'tis", "y'all'd've", "' s", "''s'", "can't won't shouldn't",
    # numbers
    "123", "1234567890", "3.14159", "1,000,000", "2024-01-15", "0x1F", "-5", "+7", "1e10",
    "v1.2.3", "abc123def", " 42", "a1b2c3", "99999999999999999999999999999999",
    "1234567890" * 8, "\uff11\uff12\uff13", "\u0663\u0664\u0665", "\u00bd \u2153 \u216b",
    "x\u00b2 + y\u00b3", "Room 101, floor 3", "12:30pm", "$1,234.56",
    # Latin, other scripts
    "caf\u00e9", "na\u00efve r\u00e9sum\u00e9", "\u00dcn\u00efc\u00f6d\u00e9", "Stra\u00dfe",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac", "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442",
    "\u05e2\u05d1\u05e8\u05d9\u05ea", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "\u0939\u093f\u0928\u094d\u0926\u0940", "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",
    "Ti\u1ebfng Vi\u1ec7t", "\u01c5", "e\u0301", "a\u0308\u0304", "a\u200bb", "\u00adsoft",
    "\ufeffhello", "\ue000private", "\u2211\u222b\u221a\u221e\u2260\u2264",
    "\u2192\u2190\u2191\u2193", "\u250c\u2500\u2510", "\u20ac\u00a3\u00a5\u20b9$",
    "\u00a9\u00ae\u2122", "\u00c5ngstr\u00f6m", "\u0141\u00f3d\u017a", "\u0131\u0130",
    # CJK
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u4e2d\u6587\u6587\u672c\u6d4b\u8bd5",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u6771\u4eac\u30bf\u30ef\u30fc333m",
    "\u3053\u3093\u306b\u3061\u306f\u3001\u4e16\u754c\uff01", "\u4f60\u597d\uff0c\u4e16\u754c\u3002",
    "\U00020000\U0002a6d6", "\u3042 \u3044 \u3046",
    # emoji
    "\U0001F600", "Hello \U0001F600 world", "\U0001F44D\U0001F3FD",
    "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466",
    "\U0001F3F3\ufe0f\u200d\U0001F308", "\U0001F1FA\U0001F1F8\U0001F1EB\U0001F1F7",
    "\u2764\ufe0f", "1\ufe0f\u20e3", "\U0001F469\U0001F3FF\u200d\U0001F4BB",
    "\U0001F9D1\u200d\U0001F91D\u200d\U0001F9D1", "\U0001F600\U0001F600\U0001F600",
    "text\U0001F600text", "\U0001FAE8", "\U0001FABF", "\U0001F937\U0001F3FB\u200d\u2642\ufe0f",
    "\u263a", "I \u2764 NY",
    # code
    PY_CODE, C_CODE, "    return x", "\tif (x) {\n\t\ty++;\n\t}",
    "int main(void) { return 0; }", '{"key": "value", "n": [1, 2, 3], "ok": true}',
    '<div class="a">hi</div>', "^[a-z]+\\d*$", "https://example.com/path?q=1&r=2#frag",
    "user@example.com", "ls -la | grep foo > out.txt 2>&1", "# Title\n\n- item 1\n- item 2\n",
    "```python\nprint('hi')\n```", "x += 1; y -= 2;", "a->b", "std::vector<int>", "a !== b",
    "...", "\u2014", "snake_case_name", "camelCaseName", "CONSTANT_VALUE", "__init__",
    "@decorator", "        deeply indented", "SELECT * FROM t WHERE id = 42;",
    "if x:\n\tpass\n", "\\n is not a newline", "C:\\Users\\me", "a\\tb",
    # special tokens inline
    "<|im_start|>user\nhi<|im_end|>\n", CHAT, "<|endoftext|>", "text<|endoftext|>text",
    "<|im_start|><|im_end|>", "<|im_start|> spaced <|im_end|>", "<|im_start", "<|im_start|",
    "<|IM_START|>", "<repo_name>my/repo<file_sep>main.py", "<jupyter_code>print(1)<jupyter_output>1",
    "<<|im_end|>>", "<|im_end|><|im_end|>", " <|im_start|>", "<|im_start|>\n\n", "<|im_end|> ",
    "<reponame><repo_name>", "<gh_stars>100", "<empty_output>",
    # control characters, NUL, a byte without a piece (0x04)
    "a\x04b", "\x00", "nul\x00byte", "\x1b[31mred\x1b[0m", "\x7f", "bell\x07",
    # long
    "supercalifragilisticexpialidocious", " the" * 50, LOREM, "a" * 300, "ab " * 100,
    "\U0001F600" * 40, "-" * 80, "=" * 33 + "\n", "!!!???...",
]

# A few SmolLM2 strings with special parsing off, with add_special on (the model asks for no
# BOS), and invalid UTF-8 (bytes; llama.cpp reads each bad byte as U+FFFD).
SMOLLM_NO_SPECIAL = ["<|im_start|>user\nhi<|im_end|>\n", "<|endoftext|>", "a<jupyter_text>b"]
SMOLLM_ADD = ["Hello world", "<|im_start|>user\nhi<|im_end|>\n"]
SMOLLM_BYTES = [b"\xff", b"abc\xc3", b"\xe2\x82 x", b"\xed\xa0\x80", b"\xc0\x80", b"\xf8\x88\x80",
                b"ok\x80\x80ok"]

# stories260K (SentencePiece), the four flag combinations of //tools:tokenize
STORIES = ["Hello world", "<s>Once upon a time</s>", "Lily<unk>ok", "  two spaces", "a<s>b",
           "</s>", "x\ny", "Tom's dog", "h\u00e9llo \u2603"]


def escape(b: bytes) -> str:
    out = []
    s = b.decode("utf-8", errors="surrogateescape")
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7f:
            out.append("\\x%02x" % o)
        elif 0xdc80 <= o <= 0xdcff:
            out.append("\\x%02x" % (o - 0xdc00))
        else:
            out.append(ch)
    return "".join(out)


def build_oracle(llamacpp: str, tmp: str) -> str:
    src = os.path.join(HERE, "llamacpp_oracle.c")
    obj, exe = os.path.join(tmp, "oracle.o"), os.path.join(tmp, "llamacpp_oracle")
    inc = ["-I" + os.path.join(llamacpp, "src", "include"),
           "-I" + os.path.join(llamacpp, "src", "ggml", "include")]
    subprocess.check_call(["gcc", "-O1", "-c", src, "-o", obj] + inc)
    libs = [os.path.join(llamacpp, "build", p) for p in (
        "src/libllama.a", "ggml/src/libggml.a", "ggml/src/libggml-cpu.a", "ggml/src/libggml-base.a")]
    subprocess.check_call(["g++", obj] + libs + ["-fopenmp", "-lpthread", "-ldl", "-lm", "-o", exe])
    return exe


def run_oracle(exe: str, model: str, cases):
    """cases: (add, special, bytes) -> [(ids, detok bytes)]"""
    data = b"".join(struct.pack("<II", add | (special << 1), len(t)) + t for add, special, t in cases)
    out = subprocess.run([exe, model], input=data, stdout=subprocess.PIPE, check=True).stdout
    rows = []
    for line in out.decode().splitlines():
        ids, detok, _ = line.split("\t")
        rows.append((ids, bytes.fromhex(detok)))
    if len(rows) != len(cases):
        sys.exit("oracle answered %d of %d cases" % (len(rows), len(cases)))
    return rows


def find_stories():
    """shared/models/stories260K.gguf in the checkout or a folder above it."""
    d = ROOT
    while True:
        p = os.path.join(d, "shared", "models", "stories260K.gguf")
        if os.path.exists(p) or os.path.dirname(d) == d:
            return p
        d = os.path.dirname(d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamacpp", default="/var/cache/emserve/llama.cpp")
    ap.add_argument("--smollm2", default="/var/cache/emserve/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--stories", default=find_stories())
    a = ap.parse_args()
    smol = [(0, 1, s.encode()) for s in SMOLLM]
    smol += [(0, 0, s.encode()) for s in SMOLLM_NO_SPECIAL]
    smol += [(1, 1, s.encode()) for s in SMOLLM_ADD]
    smol += [(0, 1, b) for b in SMOLLM_BYTES]
    stories = [(add, sp, s.encode()) for s in STORIES for add in (1, 0) for sp in (1, 0)]
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_oracle(a.llamacpp, tmp)
        tables = [("smollm2", smol, run_oracle(exe, a.smollm2, smol)),
                  ("stories260k", stories, run_oracle(exe, a.stories, stories))]
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write("# GENERATED by tests/model/tokenizer_table/gen_table.py from llama.cpp's tokenizer\n"
                "# (llama_tokenize / llama_detokenize, vocabulary only): do not edit by hand.\n"
                "# model\tadd_special\tparse_special\ttext\tids\tdetok(special=false)\n")
        n = 0
        for name, cases, rows in tables:
            for (add, sp, text), (ids, detok) in zip(cases, rows):
                f.write("%s\t%d\t%d\t%s\t%s\t%s\n" % (name, add, sp, escape(text), ids, escape(detok)))
                n += 1
    print("wrote %d rows (%d smollm2, %d stories260k) to %s" % (n, len(smol), len(stories), OUT))


if __name__ == "__main__":
    main()
