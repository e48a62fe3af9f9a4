/* A vocabulary piece longer than any fixed text buffer, through the service path: stories260K
 * with the piece of a token its greedy continuation produces replaced by a 300+ byte text
 * (weights unchanged, so the ids stay the golden ones). The streamed text must hold every
 * occurrence whole and equal the pieces decoded one by one, with 1 and 2 workers. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

#include "coordinator/client.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/gguf_piece.h"
#include "tests/testutil/testutil.h"

#define LONG_ID   432 /* 4 times in the first 48 golden ids of "Once upon a time" */
#define N_TOKENS  48
#define PIECE_CAP 1024

/* The expected text: each generated id's piece bytes, decoded independently of the stream. */
static char *expected_text(const char *path, const int32_t *ids, int n, int32_t prev)
{
    char err[256] = "";
    gguf_file *f = NULL;
    tokenizer *t = NULL;
    char *out = NULL;
    if (gguf_open(path, &f, err, sizeof err) != EM_OK ||
        tok_create(f, &t, err, sizeof err) != EM_OK) {
        CHECK(0, "tokenizer of %s: %s", path, err);
    } else if ((out = calloc((size_t)n, 4096)) != NULL) {
        size_t o = 0;
        for (int i = 0; i < n; i++) {
            o += tok_piece_bytes(t, prev, ids[i], out + o, 4096);
            prev = ids[i];
        }
        out[o] = 0;
    }
    tok_free(t);
    gguf_close(f);
    return out;
}

static int count_in(const char *hay, const char *needle)
{
    int n = 0;
    size_t nl = strlen(needle);
    for (const char *p = hay; (p = memmem(p, strlen(p), needle, nl)) != NULL; p += nl) {
        n++;
    }
    return n;
}

static void generate_with(const char *path, int n_workers, const char *piece, const char *want)
{
    static const char *extra[] = {"--model", NULL, NULL};
    extra[1] = path;
    svc s;
    if (svc_start(&s, n_workers, extra) != EM_OK) {
        CHECK(0, "service with %d worker(s) did not start", n_workers);
        return;
    }
    coord_client *cl = coord_client_create(s.addr);
    const tu_golden *g = &tu_goldens[0];
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.ids = g->prompt_ids;
    rq.n_ids = g->n_prompt;
    rq.max_tokens = N_TOKENS;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 30000;
    coord_client_result res;
    coord_client_generate(cl, &rq, &res);
    CHECK(res.status == GRPC_STATUS_OK, "%d worker(s): status %d (%s)", n_workers, res.status,
          res.message);
    CHECK(res.n_output == N_TOKENS &&
              memcmp(res.output_ids, g->ids, sizeof(int32_t) * N_TOKENS) == 0,
          "%d worker(s): golden ids (%d)", n_workers, res.n_output);
    int occ = 0;
    for (int i = 0; i < N_TOKENS; i++) {
        occ += g->ids[i] == LONG_ID;
    }
    int got = res.text ? count_in(res.text, piece) : 0;
    CHECK(got == occ, "%d worker(s): the %zu-byte piece appears whole %d times, want %d", n_workers,
          strlen(piece), got, occ);
    CHECK(res.text && want && strcmp(res.text, want) == 0,
          "%d worker(s): streamed text (%zu bytes) equals the decoded pieces (%zu bytes)",
          n_workers, res.text ? strlen(res.text) : 0, want ? strlen(want) : 0);
    printf("%d worker(s): %zu bytes of text, long piece %d times\n", n_workers,
           res.text ? strlen(res.text) : 0, got);
    coord_client_result_free(&res);
    coord_client_free(cl);
    svc_stop(&s);
}

int main(void)
{
    const char *model = svc_model();
    char path[1024], piece[PIECE_CAP];
    tu_tmp_path(path, sizeof path, "long_piece.gguf");
    if (tu_gguf_replace_piece(model, path, LONG_ID, 300, piece, sizeof piece) != EM_OK) {
        CHECK(0, "cannot write %s", path);
        TEST_END();
    }
    const tu_golden *g = &tu_goldens[0];
    char *want = expected_text(path, g->ids, N_TOKENS, g->prompt_ids[g->n_prompt - 1]);
    grpc_init();
    generate_with(path, 1, piece, want);
    generate_with(path, 2, piece, want);
    grpc_shutdown();
    free(want);
    TEST_END();
}
