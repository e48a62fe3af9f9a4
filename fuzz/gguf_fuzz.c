/* Fuzz target: the GGUF reader and everything that reads a GGUF at load time. The input is a
 * whole file: gguf_open_buffer must refuse it with a message or give a gguf_file whose every
 * key, array and tensor lies inside the input (all read here, so ASan sees any overrun); then
 * the tokenizer is built from it and the llama loader (hyper-parameter sanity, shapes, NaN/Inf
 * scan) runs on the same bytes through a memfd. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz/fuzz.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/tokenizer.h"

static unsigned g_sink; /* keeps the reads from being optimised away */

static void touch(const void *p, size_t n)
{
    const volatile uint8_t *b = p;
    if (n > 0) {
        g_sink += b[0] + b[n - 1];
    }
}

static void walk_kvs(const gguf_file *f)
{
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        touch(kv->key.data, kv->key.len);
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 100 ? kv->key.len : 100),
                 kv->key.data);
        uint32_t u;
        float x;
        g_sink += gguf_get_u32(f, key, &u) == EM_OK ? u : 0;
        g_sink += gguf_get_f32(f, key, &x) == EM_OK;
        gguf_str s;
        if (gguf_get_arr_str(f, kv, 0, &s) == EM_OK) {
            touch(s.data, s.len);
        }
        if (kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_STRING) {
            gguf_str *all = malloc(sizeof *all * (kv->arr_len ? kv->arr_len : 1));
            if (all && gguf_get_arr_strs(kv, all) == EM_OK) {
                for (uint64_t k = 0; k < kv->arr_len; k++) {
                    touch(all[k].data, all[k].len);
                }
            }
            free(all);
        }
        if (gguf_find_kv(f, key) == NULL && kv->key.len < 100 &&
            memchr(kv->key.data, 0, kv->key.len) == NULL) {
            fuzz_fail("key '%s' is listed but not found", key);
        }
    }
}

static void walk_tensors(const gguf_file *f)
{
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor_info *t = &f->tensors[i];
        touch(t->name.data, t->name.len);
        touch(t->data, t->nbytes);
    }
}

/* model_load takes a path: the bytes go to a memfd, loaded as /proc/self/fd/N. */
static void load_model(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.gguf", 0);
    if (fd < 0) {
        return;
    }
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64], err[512];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        model *m = NULL;
        if (model_load(path, &m, err, sizeof err) == EM_OK) {
            fuzz_note("model loaded: vocab %d, dim %d", m->hp.n_vocab, m->hp.dim);
            g_sink += (unsigned)m->hp.n_vocab;
            model_free(m);
        } else if (err[0] == 0) {
            fuzz_fail("model_load failed without a message");
        } else {
            fuzz_note("model_load: %s", err);
        }
    }
    close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    char err[512] = "";
    if (gguf_open_buffer(data, size, &f, err, sizeof err) != EM_OK) {
        if (err[0] == 0) {
            fuzz_fail("gguf_open_buffer refused the input without a message");
        }
        fuzz_note("gguf_open_buffer: %s", err);
        return 0;
    }
    walk_kvs(f);
    walk_tensors(f);
    tokenizer *t = NULL;
    err[0] = 0;
    if (tok_create(f, &t, err, sizeof err) == EM_OK) {
        int32_t ids[64];
        int n = 0;
        tok_encode_ex(t, "Hello world <|im_start|> \xff", 24, TOK_ADD_BOS | TOK_PARSE_SPECIAL, ids,
                      64, &n);
        for (int i = 0; i < n && i < 64; i++) {
            if (ids[i] < 0 || ids[i] >= tok_n_vocab(t)) {
                fuzz_fail("id %d outside the vocabulary of %d", ids[i], tok_n_vocab(t));
            }
            char piece[64];
            touch(piece, tok_piece_bytes(t, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece));
        }
        tok_free(t);
    }
    gguf_close(f);
    load_model(data, size);
    return 0;
}
