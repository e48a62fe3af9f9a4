/* //tools:tokenize — prints the token ids of a file's exact bytes as "ids: 1 2 3".
 * Special-token texts (e.g. <|im_start|>) become their ids unless --no-special; BOS as the
 * model asks (tokenizer.ggml.add_bos_token: stories260K yes, SmolLM2 no) unless --bos or
 * --no-bos. Loads only the GGUF metadata, not the weights. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/flags.h"
#include "common/version.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/tokenizer.h"

typedef struct tok_flags {
    const char *model, *text_file;
    int no_special, bos, no_bos;
} tok_flags;

#define N_FLAGS 5

/* Flags through common/flags.h (EMSERVE_TOKENIZE_* twins, --config, -m/-f letters); EM_EINVAL
 * (message printed) for bad ones. *exit_now after --help or --version. */
static em_status parse_flags(int argc, char **argv, tok_flags *o, int *exit_now)
{
    static em_flag table[N_FLAGS];
    const em_flag t[N_FLAGS] = {
        {"model", EM_FLAG_STR, &o->model, 0, 0, "PATH", "GGUF model (default: the installed one)",
         0, 'm'},
        {"text-file", EM_FLAG_STR, &o->text_file, 0, 0, "FILE", "the text, byte for byte", 0, 'f'},
        {"no-special", EM_FLAG_BOOL, &o->no_special, 0, 1, NULL,
         "special-token texts (<|im_start|>) stay text", 0, 0},
        {"bos", EM_FLAG_BOOL, &o->bos, 0, 1, NULL, "prepend BOS even if the model does not ask", 0,
         0},
        {"no-bos", EM_FLAG_BOOL, &o->no_bos, 0, 1, NULL, "no BOS even if the model asks", 0, 0},
    };
    memcpy(table, t, sizeof t);
    static em_flags fl = {
        "tokenize",
        "EMSERVE_TOKENIZE_",
        EMSERVE_VERSION,
        "tokenize: prints the token ids of a file's exact bytes as \"ids: 1 2 3\"",
        table,
        N_FLAGS,
        NULL,
        0,
        0};
    char err[256];
    if (em_flags_parse(&fl, argc, argv, exit_now, err, sizeof err) != EM_OK) {
        fprintf(stderr, "tokenize: %s\n", err);
        return EM_EINVAL;
    }
    if (*exit_now)
        return EM_OK;
    if (o->bos && o->no_bos) {
        fprintf(stderr, "tokenize: --bos and --no-bos together\n");
        return EM_EINVAL;
    }
    if (o->text_file == NULL) {
        fprintf(stderr, "tokenize: --text-file FILE is required (see --help)\n");
        return EM_EINVAL;
    }
    return EM_OK;
}

int main(int argc, char **argv)
{
    tok_flags o = {0};
    int exit_now = 0;
    if (parse_flags(argc, argv, &o, &exit_now) != EM_OK)
        return 2;
    if (exit_now)
        return 0;
    const char *model_path = o.model ? o.model : model_find_default(), *text_path = o.text_file;
    int special = !o.no_special, bos = o.bos ? 1 : o.no_bos ? 0 : -1; /* -1: the model's */
    if (!model_path) {
        fprintf(stderr, "tokenize: --model PATH is required (no installed model found)\n");
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
