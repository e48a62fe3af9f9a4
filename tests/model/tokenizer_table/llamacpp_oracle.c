/* ORACLE, NOT PART OF THE BUILD: runs llama.cpp's own tokenizer (libllama, vocabulary only) on
 * the cases gen_table.py sends, to make tests/model/tokenizer_table.tsv. Built and run by
 * gen_table.py against the llama.cpp of bench/llamacpp/build.sh.
 *
 * stdin: records of u32 flags (1 = add_special, i.e. BOS as the model asks; 2 = parse_special),
 * u32 length, that many bytes of text (all little-endian). stdout: one line per record,
 * "<ids, space separated>\t<hex of llama_detokenize(ids, remove_special = false,
 * unparse_special = false)>\t<hex of the same with unparse_special = true>". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user)
{
    (void)level;
    (void)text;
    (void)user;
}

static void put_hex(const char *s, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        printf("%02x", (unsigned char)s[i]);
}

static void detok_hex(const struct llama_vocab *v, const llama_token *ids, int32_t n, int special)
{
    int32_t cap = 1024;
    char *buf = malloc((size_t)cap);
    int32_t r = llama_detokenize(v, ids, n, buf, cap, 0, special);
    if (r < 0) {
        cap = -r;
        buf = realloc(buf, (size_t)cap);
        r = llama_detokenize(v, ids, n, buf, cap, 0, special);
    }
    put_hex(buf, r);
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: llamacpp_oracle MODEL.gguf < records\n");
        return 2;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = 1;
    struct llama_model *m = llama_model_load_from_file(argv[1], mp);
    if (!m) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const struct llama_vocab *v = llama_model_get_vocab(m);
    uint32_t hdr[2];
    while (fread(hdr, 4, 2, stdin) == 2) {
        char *text = malloc(hdr[1] + 1);
        if (fread(text, 1, hdr[1], stdin) != hdr[1])
            return 1;
        int32_t cap = (int32_t)hdr[1] + 16;
        llama_token *ids = malloc(sizeof *ids * (size_t)cap);
        int32_t n =
            llama_tokenize(v, text, (int32_t)hdr[1], ids, cap, hdr[0] & 1, (hdr[0] & 2) != 0);
        if (n < 0)
            return 1;
        for (int32_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", ids[i]);
        putchar('\t');
        detok_hex(v, ids, n, 0);
        putchar('\t');
        detok_hex(v, ids, n, 1);
        putchar('\n');
        free(ids);
        free(text);
    }
    llama_model_free(m);
    return 0;
}
