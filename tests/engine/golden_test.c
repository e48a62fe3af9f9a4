/* End-to-end goldens on stories260K (model README): prompt ids, top-5 logits after the prompt
 * within 1e-3 and the first 60/40 greedy ids exactly, with the reference kernels and the fast
 * CPU kernels (1 and 2 threads), through the generation loop. Skips loudly without the model. */
#undef NDEBUG
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/generate.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/testutil/testutil.h"

typedef struct golden {
    const char *prompt;
    int32_t prompt_ids[20];
    int n_prompt;
    int32_t top5_id[5];
    float top5_logit[5];
    int32_t ids[60];
    int n_ids;
} golden;

static const golden GOLDENS[] = {
    {"Once upon a time",
     {1, 403, 407, 261, 378},
     5,
     {432, 383, 322, 353, 323},
     {17.79940f, 14.28126f, 9.70965f, 9.58729f, 9.13424f},
     {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292,
      411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426,
      338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13, 438, 310},
     60},
    {"Lily and Ben went to the park. They saw a",
     {1, 317, 269, 368, 302, 263, 377, 267, 265, 282, 295, 433, 426, 342, 394, 261},
     16,
     {370, 268, 262, 282, 284},
     {13.06526f, 10.72457f, 10.64369f, 10.17428f, 9.78296f},
     {370, 268, 414, 444, 335, 261, 370, 268, 414, 444, 426, 342, 391, 266, 267, 337, 335, 312, 426, 342,
      391, 266, 267, 337, 335, 265, 268, 414, 444, 426, 342, 391, 266, 267, 337, 335, 265, 268, 414, 444},
     40},
};

static int check_one(model *m, tokenizer *tok, const golden *g, int threads)
{
    int fails = 0;
    int32_t ids[64];
    int n = 0;
    if (tok_encode(tok, g->prompt, strlen(g->prompt), 1, ids, 64, &n) != EM_OK || n != g->n_prompt ||
        memcmp(ids, g->prompt_ids, sizeof(int32_t) * (size_t)n) != 0) {
        printf("FAIL prompt ids for '%s' (got %d ids)\n", g->prompt, n);
        return 1;
    }
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {threads, 64};
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
        for (int i = 0; i < r.n_ids; i++) printf(" %d", r.ids[i]);
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
    if (model_load(path, &m, err, sizeof err) != EM_OK || tok_create(m->gguf, &tok, err, sizeof err)) {
        printf("FAIL load: %s\n", err);
        return 1;
    }
    int fails = 0;
    int threads[] = {0, 1, 2};
    for (size_t g = 0; g < sizeof GOLDENS / sizeof GOLDENS[0]; g++) {
        for (size_t t = 0; t < 3; t++) fails += check_one(m, tok, &GOLDENS[g], threads[t]);
    }
    tok_free(tok);
    model_free(m);
    printf("%d failures\n", fails);
    return fails ? 1 : 0;
}
