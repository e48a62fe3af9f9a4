/* Fuzz target: the SentencePiece tokenizer ("llama", byte fallback) of the stories260K test
 * model on arbitrary bytes (tok_check.h says what is checked). */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz/fuzz.h"
#include "fuzz/tok_check.h"
#include "model/gguf.h"
#include "model/model.h"

static gguf_file *g_file;
static tokenizer *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *path = fuzz_model_or_skip(model_find_test_small(), "stories260K test model");
    char err[512];
    if (gguf_open(path, &g_file, err, sizeof err) != EM_OK ||
        tok_create(g_file, &g_tok, err, sizeof err) != EM_OK) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tok_check(g_tok, 1, NULL, data, size);
    return 0;
}
