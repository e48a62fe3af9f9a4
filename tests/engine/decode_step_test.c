/* The per-token decode step shared by gen_run and the service's scheduler (engine/decode_step.h),
 * driven by one-hot logits over a small hand-made vocabulary: pieces of 1,000 and 4,096 bytes
 * (the tokenizer's limit) come out whole, a stop string inside a long piece cuts the text, a
 * character split over two byte pieces is held and then released, EOS flushes a held byte as
 * U+FFFD, max_tokens and the context end the generation, and bad prompts are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/decode_step.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/tokenizer.h"
#include "tests/testutil/testutil.h"

enum {
    ID_EOS = 2,
    ID_HELLO = 3,
    ID_WORLD = 4,
    ID_LONG = 5,
    ID_MAX = 6,
    ID_C3 = 7,
    ID_A9 = 8,
    N_VOCAB = 9
};
#define LONG_LEN 1000
#define MAX_LEN  4096

static char g_long[LONG_LEN + 1], g_max[MAX_LEN + 1];

/* Distinct text for each 16-byte block, with two-byte characters, so a dropped or repeated
 * block would show. */
static void fill(char *p, size_t len, char tag)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (char)('a' + (i / 16) % 26);
    }
    for (size_t i = 0; i + 2 <= len; i += 64) {
        memcpy(p + i, "\xc3\xa9", 2);
    }
    p[len - 1] = tag;
    p[len] = 0;
}

static tokenizer *make_tokenizer(void)
{
    fill(g_long, LONG_LEN, 'L');
    fill(g_max, MAX_LEN, 'M');
    const char *pieces[N_VOCAB] = {"<unk>", "<s>", "</s>",   "hello", "\xe2\x96\x81world",
                                   g_long,  g_max, "<0xC3>", "<0xA9>"};
    int32_t types[N_VOCAB] = {2, 3, 3, 1, 1, 1, 1, 6, 6};
    gguf_writer *w = NULL;
    void *buf = NULL;
    size_t size = 0;
    char err[256] = "";
    gguf_file *f = NULL;
    tokenizer *t = NULL;
    int ok = gguf_writer_create(32, &w) == EM_OK &&
             gguf_writer_set_str(w, "tokenizer.ggml.model", "llama") == EM_OK &&
             gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", pieces, N_VOCAB) == EM_OK &&
             gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, N_VOCAB) == EM_OK &&
             gguf_writer_write_mem(w, NULL, NULL, &buf, &size, err, sizeof err) == EM_OK &&
             gguf_open_buffer(buf, size, &f, err, sizeof err) == EM_OK &&
             tok_create(f, &t, err, sizeof err) == EM_OK;
    CHECK(ok, "test vocabulary: %s", err);
    gguf_close(f);
    gguf_writer_free(w);
    free(buf);
    return t;
}

typedef struct run {
    decode_seq d;
    char text[3 * MAX_LEN];
    size_t len;
    stop_reason reason;
    const char *matched;
    int steps;
} run;

/* Steps once per id (one-hot logits, greedy) until a stop; concatenates the released text. */
static void drive(run *r, const int32_t *ids, int n)
{
    float logits[N_VOCAB];
    r->reason = STOP_NONE;
    for (int i = 0; i < n && r->reason == STOP_NONE; i++) {
        for (int v = 0; v < N_VOCAB; v++) {
            logits[v] = v == ids[i] ? 10.0f : 0.0f;
        }
        decode_token tk;
        decode_seq_step(&r->d, logits, &tk);
        CHECK(tk.id == ids[i], "step %d sampled %d, want %d", i, tk.id, ids[i]);
        CHECK(r->len + tk.text_len < sizeof r->text, "text fits the test buffer");
        if (r->len + tk.text_len < sizeof r->text) {
            memcpy(r->text + r->len, tk.text, tk.text_len);
            r->len += tk.text_len;
        }
        r->reason = tk.reason;
        r->matched = tk.matched_stop;
        r->steps++;
    }
    r->text[r->len] = 0;
}

static int start(run *r, const tokenizer *t, const stop_params *sp, int n_ctx)
{
    memset(r, 0, sizeof *r);
    model_hparams hp = {.n_vocab = N_VOCAB, .n_ctx = n_ctx, .eos_id = ID_EOS};
    sampler_params smp;
    sampler_params_default(&smp);
    smp.temperature = 0.0f;
    const int32_t prompt[] = {1, ID_HELLO};
    em_status st = decode_seq_init(&r->d, &hp, t, &smp, sp, prompt, 2);
    CHECK(st == EM_OK, "decode_seq_init: %s", em_status_str(st));
    return st == EM_OK;
}

static void test_long_pieces(const tokenizer *t)
{
    stop_params sp;
    stop_params_default(&sp);
    sp.max_tokens = 4;
    run r;
    if (!start(&r, t, &sp, 64)) {
        return;
    }
    const int32_t ids[] = {ID_LONG, ID_WORLD, ID_MAX, ID_LONG};
    drive(&r, ids, 4);
    char want[3 * MAX_LEN];
    snprintf(want, sizeof want, "%s world%s%s", g_long, g_max, g_long);
    CHECK(r.reason == STOP_LENGTH && r.steps == 4, "max_tokens ends it (reason %d after %d)",
          r.reason, r.steps);
    CHECK(r.len == strlen(want) && memcmp(r.text, want, r.len) == 0,
          "pieces of %d and %d bytes released whole: got %zu bytes, want %zu", LONG_LEN, MAX_LEN,
          r.len, strlen(want));
    CHECK(decode_seq_n_ids(&r.d) == 4 && decode_seq_ids(&r.d)[2] == ID_MAX, "generated ids kept");
    decode_seq_free(&r.d);
}

static void test_stop_inside_long_piece(const tokenizer *t)
{
    stop_params sp;
    stop_params_default(&sp);
    sp.max_tokens = 10;
    char err[128];
    /* 20 bytes from the middle of the 1,000-byte piece */
    CHECK(stop_params_add_string(&sp, g_long + 500, 20, err, sizeof err) == EM_OK, "%s", err);
    run r;
    if (!start(&r, t, &sp, 64)) {
        return;
    }
    const int32_t ids[] = {ID_WORLD, ID_LONG, ID_WORLD};
    drive(&r, ids, 3);
    CHECK(r.reason == STOP_STRING && r.steps == 2, "stop string (reason %d after %d steps)",
          r.reason, r.steps);
    CHECK(r.matched && strcmp(r.matched, sp.stop[0]) == 0, "matched stop string reported");
    CHECK(r.len == 6 + 500 && memcmp(r.text, " world", 6) == 0 &&
              memcmp(r.text + 6, g_long, 500) == 0,
          "text cut right before the stop string: %zu bytes", r.len);
    decode_seq_free(&r.d);
}

static void test_bytes_and_eos(const tokenizer *t)
{
    stop_params sp;
    stop_params_default(&sp);
    run r;
    if (!start(&r, t, &sp, 64)) {
        return;
    }
    const int32_t ids[] = {ID_C3, ID_A9, ID_C3, ID_EOS};
    drive(&r, ids, 4);
    CHECK(r.reason == STOP_EOS && r.steps == 4, "eos (reason %d)", r.reason);
    CHECK(strcmp(r.text, "\xc3\xa9\xef\xbf\xbd") == 0,
          "split character joined, held byte flushed as U+FFFD at the end: '%s'", r.text);
    decode_seq_free(&r.d);
}

static void test_limits(const tokenizer *t)
{
    stop_params sp;
    stop_params_default(&sp);
    sp.max_tokens = 100;
    run r;
    if (start(&r, t, &sp, 5)) { /* 2 prompt tokens in a context of 5: 3 new ones */
        const int32_t ids[] = {ID_WORLD, ID_WORLD, ID_WORLD, ID_WORLD};
        drive(&r, ids, 4);
        CHECK(r.reason == STOP_LENGTH && r.steps == 3, "context end (reason %d after %d)", r.reason,
              r.steps);
        decode_seq_free(&r.d);
    }
    model_hparams hp = {.n_vocab = N_VOCAB, .n_ctx = 2, .eos_id = ID_EOS};
    sampler_params smp;
    sampler_params_default(&smp);
    const int32_t prompt[] = {1, ID_HELLO};
    decode_seq d;
    CHECK(decode_seq_init(&d, &hp, t, &smp, &sp, prompt, 2) == EM_EINVAL, "prompt fills n_ctx");
    CHECK(decode_seq_init(&d, &hp, t, &smp, &sp, prompt, 0) == EM_EINVAL, "empty prompt");
    decode_seq_free(&d); /* a failed init leaves d freeable */
    hp.n_ctx = 64;
    smp.temperature = 0.0f;
    CHECK(decode_seq_init(&d, &hp, NULL, &smp, &sp, prompt, 2) == EM_OK, "no tokenizer");
    float logits[N_VOCAB] = {0};
    logits[ID_LONG] = 5.0f;
    decode_token tk;
    decode_seq_step(&d, logits, &tk);
    CHECK(tk.text_len == 0 && tk.reason == STOP_NONE, "no tokenizer: no text");
    decode_seq_free(&d);
}

int main(void)
{
    tokenizer *t = make_tokenizer();
    if (t) {
        CHECK(tok_max_piece_bytes(t) >= MAX_LEN, "longest piece %zu", tok_max_piece_bytes(t));
        test_long_pieces(t);
        test_stop_inside_long_piece(t);
        test_bytes_and_eos(t);
        test_limits(t);
        tok_free(t);
    }
    TEST_END();
}
