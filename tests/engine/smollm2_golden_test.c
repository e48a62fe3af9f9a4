/* SmolLM2-135M-Instruct (Q4_1 GGUF) in the single-process engine against the goldens of the
 * independent NumPy reference (tests/testutil/smollm2_goldens.txt, tools/ref/):
 *   - f32 activation mode (the default) against the f32 goldens: top-5 ids after the prompt in
 *     order and their logits within 1e-3 (emserve and NumPy differ only in float summation
 *     order: the reference's own perturbation moves them by <= 1e-4), greedy ids exactly over
 *     the steps the goldens mark stable (agree_steps, all 32 or up to <|im_end|> on most);
 *   - q8 activation mode (llama.cpp's numerics) against the q8 goldens: logits within the
 *     reference's own wobble (prompt_dlogit + 0.25), greedy ids over agree_steps;
 *   - 1 and 2 kernel threads give bit-identical logits.
 * Prints SKIPPED when SmolLM2 is not installed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "model/model.h"
#include "tests/testutil/smollm2_goldens.h"
#include "tests/testutil/testutil.h"

#define N_STEPS 32

typedef struct run {
    float prompt_logits[49152];
    int32_t ids[N_STEPS];
    int n;
} run;

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) {
        if (x[i] > x[b])
            b = i;
    }
    return b;
}

static void greedy(engine *e, const sg_record *r, int steps, run *out)
{
    const model_hparams *hp = engine_hparams(e);
    ems_cache *c = NULL;
    float *logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    REQUIRE(logits && engine_cache_create(e, 0, 0, 0, &c) == EM_OK, "cache");
    em_status st = engine_forward_seq(e, c, r->prompt_ids, r->n_prompt, 0, 256, logits);
    REQUIRE(st == EM_OK, "%s: prefill: %s", r->name, em_status_str(st));
    memcpy(out->prompt_logits, logits, sizeof(float) * (size_t)hp->n_vocab);
    out->n = 0;
    for (int s = 0; s < steps; s++) {
        int32_t id = argmax(logits, hp->n_vocab);
        out->ids[out->n++] = id;
        if (id == hp->eos_id)
            break;
        st = engine_forward_seq(e, c, &id, 1, r->n_prompt + s, 1, logits);
        REQUIRE(st == EM_OK, "%s: decode: %s", r->name, em_status_str(st));
    }
    ems_cache_destroy(c);
    free(logits);
}

static void check_record(engine *e, const sg_record *r, float tol)
{
    static run a;
    greedy(e, r, r->n_greedy, &a);
    float worst = 0;
    for (int i = 0; i < 5; i++) {
        float d = fabsf(a.prompt_logits[r->top5_id[i]] - r->top5_logit[i]);
        worst = d > worst ? d : worst;
        CHECK(d <= tol, "%s %s: logit of %d is %.5f, golden %.5f", r->name, r->mode, r->top5_id[i],
              a.prompt_logits[r->top5_id[i]], r->top5_logit[i]);
    }
    if (r->top5_logit[0] - r->top5_logit[1] > 2 * tol) {
        CHECK(argmax(a.prompt_logits, 49152) == r->top5_id[0], "%s %s: top-1", r->name, r->mode);
    }
    int same = 0;
    while (same < a.n && same < r->n_greedy && a.ids[same] == r->greedy[same])
        same++;
    CHECK(same >= r->agree_steps,
          "%s %s: %d leading greedy ids equal, %d are stable in the "
          "reference",
          r->name, r->mode, same, r->agree_steps);
    printf("%-14s %-3s: top-5 max |dlogit| %.5f (tol %.3f), greedy ids equal for %d of %d "
           "(stable in the reference: %d)\n",
           r->name, r->mode, worst, tol, same, r->n_greedy, r->agree_steps);
}

int main(int argc, char **argv)
{
    const char *path = model_find_default();
    if (!path) {
        printf("SKIPPED: SmolLM2 not installed (scripts/install-deps.sh, or set EMSERVE_MODEL)\n");
        return 0;
    }
    static sg_goldens g;
    REQUIRE(argc > 1 && sg_load(argv[1], &g) == 0, "goldens");
    char err[512];
    model *m = NULL;
    REQUIRE(model_load(path, &m, err, sizeof err) == EM_OK, "model_load: %s", err);
    shard_desc sd = shard_single(m->hp.n_kv_head);
    static const kern_act_mode modes[2] = {KERN_ACT_F32, KERN_ACT_Q8};
    for (int mi = 0; mi < 2; mi++) {
        engine_opts eo = {.n_threads = 2, .max_batch_tokens = 256, .act = modes[mi]};
        engine *e = NULL;
        REQUIRE(engine_create(m, &sd, &eo, &e) == EM_OK, "engine_create");
        const char *mode = mi == 0 ? "f32" : "q8";
        for (int i = 0; i < g.n; i++) {
            if (strcmp(g.rec[i].mode, mode) != 0)
                continue;
            check_record(e, &g.rec[i], mi == 0 ? 1e-3f : g.rec[i].prompt_dlogit + 0.25f);
        }
        if (mi == 0) { /* thread count must not change a bit */
            static run one, two;
            greedy(e, &g.rec[0], 8, &two);
            engine_opts e1 = eo;
            e1.n_threads = 1;
            engine *e1p = NULL;
            REQUIRE(engine_create(m, &sd, &e1, &e1p) == EM_OK, "engine_create 1 thread");
            greedy(e1p, &g.rec[0], 8, &one);
            CHECK(memcmp(one.prompt_logits, two.prompt_logits, sizeof one.prompt_logits) == 0 &&
                      one.n == two.n &&
                      memcmp(one.ids, two.ids, sizeof(int32_t) * (size_t)one.n) == 0,
                  "1 and 2 threads differ");
            engine_free(e1p);
        }
        engine_free(e);
    }
    model_free(m);
    TEST_END();
}
