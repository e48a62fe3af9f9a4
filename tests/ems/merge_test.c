/* On caches with planted redundant entries (noisy copies of earlier entries), EMS
 * (evict-then-merge) must give a smaller attention-output error than eviction at the same
 * budget: against EMS with strategy=evict (same scores, same kept centres: isolates merging) and
 * against H2O. Error = ||o - o_full|| / ||o_full|| of fresh probe queries, averaged over all
 * heads, layers and seeds. Also: zero-class batching == per-head sequential passes, bit for
 * bit, on the same caches. */
#include "ems/policy.h"
#include "tests/ems/synth.h"
#include "tests/testutil/testutil.h"

#include <stdlib.h>
#include <string.h>
#ifndef NOISE
#define NOISE  0.03f
#define VNOISE 0.4f
#define KS     2.0f
#define QB     1.0f
#endif

static double run_err(const synth_spec *sp, const char *const *kv, int n_tok, ems_cache **out)
{
    char err[128];
    ems_config cfg;
    ems_config_default(&cfg);
    for (int i = 0; kv[i]; i++)
        ems_config_set_kv(&cfg, kv[i], err, sizeof err);
    ems_cache *c, *full;
    ems_cache_create(sp->n_layer, 4, 0, sp->hd, ems_config_w_loc(&cfg), 1, &c);
    ems_cache_create(sp->n_layer, 4, 0, sp->hd, 0, 0, &full);
    synth_step(c, sp, 0, n_tok);
    synth_step(full, sp, 0, n_tok);
    CHECK(ems_policy_step(c, &cfg, EMS_PHASE_PREFILL_END, NULL) == EM_OK, "step");
    double e = 0.0;
    for (int l = 0; l < sp->n_layer; l++) {
        for (int h = 0; h < 4; h++)
            e += synth_attn_err(sp, c, full, l, h, 16, 1);
    }
    ems_cache_destroy(full);
    if (out)
        *out = c;
    else
        ems_cache_destroy(c);
    return e / (sp->n_layer * 4);
}

int main(void)
{
    const char *ems_kv[] = {"method=ems", "budget=24", "ems.headwise=0", NULL};
    const char *ems_seq[] = {"method=ems", "budget=24", "ems.headwise=0", "ems.zero_class=0", NULL};
    const char *evict_kv[] = {"method=ems", "budget=24", "ems.headwise=0", "ems.strategy=evict",
                              NULL};
    const char *h2o_kv[] = {"method=h2o", "budget=24", "window=6", NULL};
    double e_ems = 0, e_ev = 0, e_h2o = 0;
    for (int s = 0; s < 4; s++) {
        synth_spec sp = {.n_layer = 2,
                         .hd = 8,
                         .G = 2,
                         .seed = 1000 + s,
                         .dup_frac = 0.7f,
                         .dup_noise = NOISE,
                         .dup_vnoise = VNOISE,
                         .key_scale = KS,
                         .q_bias = QB};
        ems_cache *a, *b;
        double e1 = run_err(&sp, ems_kv, 200, &a);
        run_err(&sp, ems_seq, 200, &b);
        double e2 = run_err(&sp, evict_kv, 200, NULL);
        double e3 = run_err(&sp, h2o_kv, 200, NULL);
        printf("seed %d: attention error ems %.4f  ems-evict %.4f  h2o %.4f\n", s, e1, e2, e3);
        e_ems += e1, e_ev += e2, e_h2o += e3;
        for (int i = 0; i < a->n_layer * a->n_head_kv; i++) {
            ems_head *x = &a->heads[i], *y = &b->heads[i];
            CHECK(x->len == y->len && memcmp(x->pos, y->pos, 4 * x->len) == 0 &&
                      memcmp(x->k, y->k, 4 * x->len * x->hd) == 0 &&
                      memcmp(x->v, y->v, 4 * x->len * x->hd) == 0 &&
                      memcmp(x->mass, y->mass, 4 * x->len) == 0,
                  "seed %d head %d: zero-class batched != sequential", s, i);
        }
        ems_policy_stats st;
        ems_policy_get_stats(a, &st);
        CHECK(st.n_merged > 0, "nothing merged");
        ems_cache_destroy(a);
        ems_cache_destroy(b);
    }
    printf("mean: ems %.4f ems-evict %.4f h2o %.4f\n", e_ems / 4, e_ev / 4, e_h2o / 4);
    CHECK(e_ems < e_ev, "merging did not reduce the error: %.4f vs %.4f", e_ems, e_ev);
    CHECK(e_ems < e_h2o, "EMS not better than H2O: %.4f vs %.4f", e_ems, e_h2o);
    TEST_END();
}
