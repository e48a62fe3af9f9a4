/* //tools:tokenize — prints the token ids of a file's exact bytes as "ids: 1 2 3".
 * Special-token texts (e.g. <|im_start|>) become their ids unless --no-special; BOS as the
 * model asks (tokenizer.ggml.add_bos_token: stories260K yes, SmolLM2 no) unless --bos or
 * --no-bos. Loads only the GGUF metadata, not the weights. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: tokenize --model PATH --text-file FILE [--no-special] [--bos | --no-bos]\n"
               "  --no-special   special-token texts stay text\n"
               "  --bos          prepend BOS even if the model does not ask for it\n"
               "  --no-bos       no BOS even if the model asks for it\n");
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *text_path = NULL;
    int special = 1, bos = -1; /* -1: the model's default */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-special")) {
            special = 0;
        } else if (!strcmp(a, "--bos")) {
            bos = 1;
        } else if (!strcmp(a, "--no-bos")) {
            bos = 0;
        } else if ((!strcmp(a, "--model") || !strcmp(a, "-m")) && i + 1 < argc) {
            model_path = argv[++i];
        } else if ((!strcmp(a, "--text-file") || !strcmp(a, "-f")) && i + 1 < argc) {
            text_path = argv[++i];
        } else {
            fprintf(stderr, "error: unknown or incomplete option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path)
        model_path = model_find_default();
    if (!model_path || !text_path) {
        usage(stderr);
        return 2;
    }
    char *text = NULL, err[512] = "";
    size_t len = 0;
    em_status st = em_read_file(text_path, &text, &len);
    if (st != EM_OK) {
        fprintf(stderr, "error: cannot read %s: %s\n", text_path,
                st == EM_EIO ? strerror(errno) : em_status_str(st));
        return 1;
    }
    gguf_file *f = NULL;
    tokenizer *t = NULL;
    int32_t *ids = NULL;
    int rc = 1, n = 0;
    if (gguf_open(model_path, &f, err, sizeof err) != EM_OK ||
        tok_create(f, &t, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    unsigned flags = (special ? TOK_PARSE_SPECIAL : 0) |
                     ((bos < 0 ? tok_add_bos_default(t) : bos) ? TOK_ADD_BOS : 0);
    int cap = len < (size_t)1 << 29 ? (int)len + 16 : 1 << 29; /* one id per byte at most, + BOS */
    for (int tries = 0; tries < 2; tries++) {
        free(ids);
        ids = malloc((size_t)cap * sizeof *ids);
        st = ids ? tok_encode_ex(t, text, len, flags, ids, cap, &n) : EM_ENOMEM;
        if (st != EM_ENOSPC)
            break;
        cap = n;
    }
    if (st != EM_OK) {
        fprintf(stderr, "error: cannot tokenize %s: %s\n", text_path, em_status_str(st));
        goto out;
    }
    printf("ids:");
    for (int i = 0; i < n; i++)
        printf(" %d", ids[i]);
    printf("\n");
    rc = 0;
out:
    free(ids);
    tok_free(t);
    gguf_close(f);
    free(text);
    return rc;
}
