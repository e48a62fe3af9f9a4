/* The eval streaming core on the real stories260K model (skipped, loudly, when the model is
 * absent): full-cache perplexity is sane; a budget larger than the text changes nothing (bit
 * for bit); compression gives KL > 0 and top-1 < 1; int8 is closer to full than int4; the
 * fidelity probe's independent forward agrees with the engine's logits (1e-3) and reports zero
 * error for an uncompressed cache; the full cache reproduces most retrieval names. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "eval/stream.h"
#include "tests/testutil/testutil.h"

static ev_stream_result run(engine *e, const char *method, int B, const char *kv,
                            const int32_t *ids, int n, const float *ref)
{
    ev_policy p;
    const char *extra[] = {kv, NULL};
    CHECK(ev_policy_make(&p, method, method, B, kv ? extra : NULL) == EM_OK, "policy %s", method);
    ev_stream_opts o = {0};
    o.ref_logits = ref;
    ev_stream_result r;
    CHECK(ev_stream(e, &p.cfg, ids, n, &o, &r) == EM_OK, "stream %s", method);
    return r;
}

int main(void)
{
    const char *mp = tu_model_path(0);
    char err[256], data[4200];
    model *m;
    tokenizer *tok;
    engine *e;
    CHECK(model_load(mp, &m, err, sizeof err) == EM_OK, "%s", err);
    CHECK(tok_create(m->gguf, &tok, err, sizeof err) == EM_OK, "%s", err);
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {.n_threads = 1, .max_batch_tokens = 512};
    CHECK(engine_create(m, &sd, &eo, &e) == EM_OK, "engine");
    /* ../shared/models/x.gguf -> ../shared/data/tinystories_sample.txt */
    snprintf(data, sizeof data, "%s", mp);
    char *sl = strrchr(data, '/');
    if (sl)
        *sl = 0;
    sl = strrchr(data, '/');
    snprintf(sl ? sl : data, sizeof data - (size_t)(sl ? sl - data : 0), "%s",
             "/data/tinystories_sample.txt");
    int32_t *ids;
    int n;
    CHECK(ev_load_text(tok, data, 1, 400, &ids, &n, err, sizeof err) == EM_OK, "%s", err);
    CHECK(n == 400 && ids[0] == m->hp.bos_id, "text: %d tokens", n);
    int V = m->hp.n_vocab;
    float *ref = malloc(sizeof(float) * (size_t)n * V);
    ev_policy full;
    CHECK(ev_policy_make(&full, "full", "full", 0, NULL) == EM_OK, "policy full");
    ev_stream_opts o = {0};
    o.logits_out = ref;
    ev_stream_result rf;
    CHECK(ev_stream(e, &full.cfg, ids, n, &o, &rf) == EM_OK, "full");
    double ppl = exp(rf.nll_sum / rf.n_scored);
    printf("full ppl %.4f over %d tokens\n", ppl, rf.n_scored);
    CHECK(ppl > 1.5 && ppl < 20, "full ppl %.3f", ppl);
    /* budget above the text length: nothing compressed, identical NLL */
    ev_stream_result rb = run(e, "ems", 512, NULL, ids, n, ref);
    CHECK(rb.nll_sum == rf.nll_sum && rb.kl_sum == 0 && rb.top1_agree == rb.n_scored,
          "ems B=512 differs from full: nll %.9f vs %.9f", rb.nll_sum, rf.nll_sum);
    ev_stream_result rc = run(e, "ems", 32, NULL, ids, n, ref);
    CHECK(rc.kl_sum > 0 && rc.top1_agree < rc.n_scored && rc.n_compress_steps > 0,
          "ems B=32: kl %.4f top1 %d/%d", rc.kl_sum, rc.top1_agree, rc.n_scored);
    CHECK(rc.kv_bytes_end < rf.kv_bytes_end / 4, "ems B=32 holds %llu of %llu bytes",
          (unsigned long long)rc.kv_bytes_end, (unsigned long long)rf.kv_bytes_end);
    ev_stream_result r8 = run(e, "full", 0, "quant=int8", ids, n, ref);
    ev_stream_result r4 = run(e, "full", 0, "quant=int4", ids, n, ref);
    printf("KL/token: int8 %.2e int4 %.2e ems B=32 %.2e\n", r8.kl_sum / n, r4.kl_sum / n,
           rc.kl_sum / n);
    CHECK(r8.kl_sum < r4.kl_sum && r4.kl_sum / n < 0.05, "int8 %.3e int4 %.3e", r8.kl_sum,
          r4.kl_sum);
    CHECK(r4.kv_bytes_end < r8.kv_bytes_end && r8.kv_bytes_end < rf.kv_bytes_end, "quant bytes");
    /* fidelity probe: independent forward == engine, zero error without compression */
    double errl[16], chk = 1;
    CHECK(ev_fidelity(e, m, &full.cfg, ids, 120, 10, 20, errl, &chk) == EM_OK, "fidelity");
    CHECK(chk < 1e-3, "probe forward vs engine logits: %.2e", chk);
    for (int l = 0; l < m->hp.n_layer; l++)
        CHECK(errl[l] == 0.0, "full layer %d err %g", l, errl[l]);
    ev_policy ems;
    CHECK(ev_policy_make(&ems, "ems", "ems", 16, NULL) == EM_OK, "policy ems");
    CHECK(ev_fidelity(e, m, &ems.cfg, ids, 120, 40, 20, errl, &chk) == EM_OK, "fidelity ems");
    CHECK(errl[0] > 0.0 && errl[0] < 2.0, "ems layer 0 err %g", errl[0]);
    /* retrieval: the full cache reproduces most names */
    static ev_rcase cases[32];
    int dist[] = {16, 48};
    int nc = 0, ok_n = 0;
    CHECK(ev_retrieval_cases(tok, dist, 2, cases, 32, &nc) == EM_OK, "retrieval cases");
    for (int i = 0; i < nc; i++) {
        int ok = 0;
        CHECK(ev_retrieval_run(e, &full.cfg, &cases[i], i % 2, &ok) == EM_OK, "retrieval");
        ok_n += ok;
    }
    printf("retrieval: full cache %d of %d\n", ok_n, nc);
    CHECK(nc >= 24 && ok_n >= nc / 2, "full retrieval %d/%d", ok_n, nc);
    free(ref), free(ids);
    engine_free(e);
    tok_free(tok);
    model_free(m);
    TEST_END();
}
