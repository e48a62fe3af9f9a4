/* Fuzz target: the byte-level BPE tokenizer ("gpt2", smollm pre-tokenizer) of
 * SmolLM2-135M-Instruct on arbitrary bytes (tok_check.h says what is checked). */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz/fuzz.h"
#include "fuzz/tok_check.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/tok_utf8.h"

static gguf_file *g_file;
static tokenizer *g_tok;
static uint8_t g_bytes_ok[256]; /* the byte has a piece in the vocabulary */

/* GPT-2's byte-to-character map: printable Latin-1 bytes stand for themselves, the other 68
 * bytes for U+0100 onwards in byte order. */
static uint32_t byte_char(int b)
{
    int shift = 0;
    for (int c = 0; c < b; c++) {
        shift += !((c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff));
    }
    int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    return printable ? (uint32_t)b : 0x100u + (uint32_t)shift;
}

static void find_byte_pieces(void)
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        char piece[8] = "";
        int32_t id;
        piece[tok_utf8_put(byte_char(b), piece)] = 0;
        g_bytes_ok[b] = tok_token_id(g_tok, piece, &id) == EM_OK;
        n += g_bytes_ok[b];
    }
    fuzz_note("%d of 256 bytes have a piece", n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *path = fuzz_model_or_skip(model_find_default(), "SmolLM2 model");
    char err[512];
    if (gguf_open(path, &g_file, err, sizeof err) != EM_OK ||
        tok_create(g_file, &g_tok, err, sizeof err) != EM_OK) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(1);
    }
    find_byte_pieces();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tok_check(g_tok, 0, g_bytes_ok, data, size);
    return 0;
}
