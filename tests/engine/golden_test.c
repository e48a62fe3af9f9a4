/* End-to-end goldens on stories260K (model README): prompt ids, top-5 logits after the prompt
 * within 1e-3 and the first 60/40 greedy ids exactly, with the reference kernels and the fast
 * CPU kernels (1 and 2 threads), through the generation loop. Skips loudly without the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/generate.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/testutil/goldens.h"
#include "tests/testutil/testutil.h"

static int check_one(model *m, tokenizer *tok, const tu_golden *g, int threads)
{
    int fails = 0;
    int32_t ids[64];
    int n = 0;
    if (tok_encode(tok, g->prompt, strlen(g->prompt), 1, ids, 64, &n) != EM_OK ||
        n != g->n_prompt || memcmp(ids, g->prompt_ids, sizeof(int32_t) * (size_t)n) != 0) {
        printf("FAIL prompt ids for '%s' (got %d ids)\n", g->prompt, n);
        return 1;
    }
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {.n_threads = threads, .max_batch_tokens = 64};
    engine *e;
    if (engine_create(m, &sd, &eo, &e) != EM_OK) {
        printf("FAIL engine_create\n");
        return 1;
    }
    gen_params gp;
    gen_params_default(&gp);
    gp.sp.temperature = 0.0f;
    gp.stop.max_tokens = g->n_ids;
    gp.stop.ignore_eos = 1;
    gen_result r;
    if (gen_run(e, tok, ids, n, &gp, NULL, NULL, &r) != EM_OK) {
        printf("FAIL gen_run\n");
        engine_free(e);
        return 1;
    }
    for (int k = 0; k < 5; k++) {
        float got = r.prompt_logits[g->top5_id[k]];
        int32_t arg = sampler_argmax(r.prompt_logits, m->hp.n_vocab);
        if (k == 0 && arg != g->top5_id[0]) {
            printf("FAIL argmax %d != %d\n", arg, g->top5_id[0]);
            fails++;
        }
        if (fabsf(got - g->top5_logit[k]) > 1e-3f) {
            printf("FAIL logit[%d] = %.5f, golden %.5f (threads %d)\n", g->top5_id[k], got,
                   g->top5_logit[k], threads);
            fails++;
        }
    }
    if (r.n_ids != g->n_ids || memcmp(r.ids, g->ids, sizeof(int32_t) * (size_t)g->n_ids) != 0) {
        printf("FAIL greedy ids for '%s' (threads %d):", g->prompt, threads);
        for (int i = 0; i < r.n_ids; i++)
            printf(" %d", r.ids[i]);
        printf("\n");
        fails++;
    }
    printf("%s '%s' threads=%d\n", fails ? "FAIL" : "ok  ", g->prompt, threads);
    gen_result_free(&r);
    engine_free(e);
    return fails;
}

int main(void)
{
    const char *path = tu_model_path(0);
    char err[256];
    model *m;
    tokenizer *tok;
    if (model_load(path, &m, err, sizeof err) != EM_OK ||
        tok_create(m->gguf, &tok, err, sizeof err)) {
        printf("FAIL load: %s\n", err);
        return 1;
    }
    int fails = 0;
    int threads[] = {0, 1, 2};
    for (size_t g = 0; g < TU_N_GOLDENS; g++) {
        for (size_t t = 0; t < 3; t++)
            fails += check_one(m, tok, &tu_goldens[g], threads[t]);
    }
    tok_free(tok);
    model_free(m);
    printf("%d failures\n", fails);
    return fails ? 1 : 0;
}
