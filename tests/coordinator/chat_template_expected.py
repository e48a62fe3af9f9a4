"""Renders the conversations of chat_template_test.c through the real Jinja chat template of
SmolLM2-135M-Instruct (read from its GGUF) with jinja2, and prints each result as a C string, to
check the hand-derived expected strings of the test. Not run by the test (jinja2 is not a
dependency of the build); run by hand:
    python3 tests/coordinator/chat_template_expected.py [MODEL.gguf]"""
import json
import sys

import gguf
import jinja2

MODEL = sys.argv[1] if len(sys.argv) > 1 else \
    "/var/cache/emserve/models/SmolLM2-135M-Instruct.Q4_1.gguf"

CONVERSATIONS = {
    "A": [("system", "You are terse."), ("user", "Hi"), ("assistant", "  Hello!  "),
          ("user", "Name a color.")],
    "B": [("user", "What is 2+2?")],
    "C": [("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")],
    "D": [("assistant", "I start.")],
}


def c_string(s):
    return json.dumps(s)  # same escapes as C for this ASCII text


def main():
    r = gguf.GGUFReader(MODEL)
    f = r.fields["tokenizer.chat_template"]
    src = bytes(f.parts[f.data[0]]).decode()
    print("template:", c_string(src))
    tmpl = jinja2.Environment().from_string(src)
    for name, conv in CONVERSATIONS.items():
        msgs = [{"role": r, "content": c} for r, c in conv]
        for gen in (True, False):
            print(name, "gen" if gen else "nogen", c_string(
                tmpl.render(messages=msgs, add_generation_prompt=gen)))


if __name__ == "__main__":
    main()
