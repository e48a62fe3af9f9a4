/* The long-context harness core (eval/longctx.h) on SmolLM2:
 *  - the passkey prompt: about the requested size, ChatML, the key's digits inside;
 *  - fork protocol: with the full cache, the first answer logits from a fork of the n-1 token
 *    prompt cache plus the last token are bit-identical to one forward of the whole prompt, and
 *    the greedy answer equals plain decoding; compressed forks hold at most the budget and fewer
 *    bytes; forking leaves the prompt cache unchanged;
 *  - decode-time stream with the full cache: KL 0 and top-1 agreement 1 against the prefill
 *    logits of every position; a compressed stream has KL > 0;
 *  - bootstrap: a constant gives a zero-width interval, a 0/1 sample an interval around its
 *    mean inside [0, 1], nothing for an empty sample.
 * Prints SKIPPED when SmolLM2 is not installed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/longctx.h"
#include "model/model.h"
#include "tests/testutil/testutil.h"

static ems_config cfg_of(const char *method, const char *budget)
{
    ems_config c;
    char err[128];
    ems_config_default(&c);
    ems_config_set(&c, "method", method, err, sizeof err);
    if (budget)
        ems_config_set(&c, "budget", budget, err, sizeof err);
    return c;
}

static void test_boot(void)
{
    double x[40], lo, hi;
    for (int i = 0; i < 40; i++)
        x[i] = 0.25;
    lc_boot_ci(x, 40, 1, 500, 1, &lo, &hi);
    CHECK(lo == 0.25 && hi == 0.25, "constant: [%g, %g]", lo, hi);
    for (int i = 0; i < 40; i++)
        x[i] = i % 2;
    lc_boot_ci(x, 40, 1, 500, 1, &lo, &hi);
    CHECK(lo >= 0 && lo < 0.5 && hi > 0.5 && hi <= 1, "0/1: [%g, %g]", lo, hi);
    lc_boot_ci(x, 0, 1, 500, 1, &lo, &hi);
    CHECK(isnan(lo) && isnan(hi), "empty sample gave an interval");
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        b = x[i] > x[b] ? i : b;
    return b;
}

int main(void)
{
    test_boot();
    const char *path = model_find_default();
    if (!path) {
        printf("SKIPPED: SmolLM2 not installed (scripts/install-deps.sh, or set EMSERVE_MODEL)\n");
        return 0;
    }
    char err[512];
    model *m = NULL;
    tokenizer *tok = NULL;
    engine *e = NULL;
    REQUIRE(model_load(path, &m, err, sizeof err) == EM_OK, "%s", err);
    REQUIRE(tok_create(m->gguf, &tok, err, sizeof err) == EM_OK, "%s", err);
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {.n_threads = 1, .max_batch_tokens = 512};
    REQUIRE(engine_create(m, &sd, &eo, &e) == EM_OK, "engine");
    int V = m->hp.n_vocab;

    int32_t *ids = NULL;
    int n = 0;
    REQUIRE(lc_passkey_prompt(tok, 54321, 300, 0.5, &ids, &n) == EM_OK, "prompt");
    CHECK(n > 270 && n <= 300, "prompt of %d tokens for 300", n);
    CHECK(ids[0] == 1 && ids[n - 1] == 198 && ids[n - 4] == 1 && ids[n - 6] == 2,
          "not ChatML: %d ... %d %d %d %d", ids[0], ids[n - 4], ids[n - 3], ids[n - 2], ids[n - 1]);
    int32_t *tmp = NULL;
    int nt = 0;
    CHECK(lc_passkey_prompt(tok, 123, 300, 0.5, &tmp, &nt) == EM_EINVAL && !tmp, "4-digit key");
    CHECK(lc_passkey_prompt(tok, 12345, 300, 1.5, &tmp, &nt) == EM_EINVAL, "depth 1.5");

    /* reference: the whole prompt in one forward, then greedy */
    float *ref = malloc(sizeof(float) * V), *first = malloc(sizeof(float) * V);
    ems_cache *whole = NULL;
    REQUIRE(engine_cache_create(e, 0, 0, 0, &whole) == EM_OK, "cache");
    REQUIRE(engine_forward_seq(e, whole, ids, n, 0, 512, ref) == EM_OK, "forward");
    ems_cache_destroy(whole);

    ems_cache *base = NULL;
    /* ring: the largest w_loc of the methods forked below (SnapKV scores with 32 queries) */
    REQUIRE(lc_prompt_cache(e, ids, n - 1, 32, 512, &base) == EM_OK, "prompt cache");
    uint64_t base_entries = ems_cache_entries(base), base_bytes = ems_cache_kv_bytes(base);
    ems_config full = cfg_of("full", NULL);
    lc_answer a;
    REQUIRE(lc_answer_fork(e, base, &full, ids[n - 1], n - 1, 12, 2, &a, first) == EM_OK, "fork");
    CHECK(!memcmp(first, ref, sizeof(float) * V), "fork's first logits differ from one forward");
    CHECK(a.n >= 1 && a.ids[0] == argmax(ref, V), "first answer token");
    CHECK(a.bytes_prompt == base_bytes, "full fork holds %llu bytes, prompt %llu",
          (unsigned long long)a.bytes_prompt, (unsigned long long)base_bytes);

    const char *methods[] = {"snapkv", "ems", "streamingllm"};
    for (int i = 0; i < 3; i++) {
        ems_config c = cfg_of(methods[i], "32");
        lc_answer b;
        CHECK(lc_answer_fork(e, base, &c, ids[n - 1], n - 1, 4, 2, &b, first) == EM_OK, "fork");
        uint64_t cap = 32ull * m->hp.n_layer * m->hp.n_kv_head;
        CHECK(b.entries_prompt <= cap && b.entries_prompt > cap / 2,
              "%s: %llu entries after prefill-end, budget %llu", methods[i],
              (unsigned long long)b.entries_prompt, (unsigned long long)cap);
        CHECK(b.bytes_mean < a.bytes_mean / 4 && b.bytes_peak >= (uint64_t)b.bytes_mean,
              "%s: bytes mean %.0f peak %llu (full %.0f)", methods[i], b.bytes_mean,
              (unsigned long long)b.bytes_peak, a.bytes_mean);
        CHECK(memcmp(first, ref, sizeof(float) * V) != 0,
              "%s: first logits equal the uncompressed ones", methods[i]);
    }
    CHECK(ems_cache_entries(base) == base_entries && ems_cache_kv_bytes(base) == base_bytes,
          "forks changed the prompt cache");
    ems_cache_destroy(base);

    /* decode-time stream over 96 tokens of the prompt */
    int W = 96, pre = 32;
    float *all = malloc(sizeof(float) * (size_t)W * V);
    double kl[96];
    uint8_t t1[96];
    lc_stream r;
    REQUIRE(lc_full_logits(e, ids, W, 40, all) == EM_OK, "full logits");
    REQUIRE(lc_stream_kl(e, &full, ids, W, pre, all, kl, t1, &r) == EM_OK, "stream full");
    double worst = 0;
    int agree = 0;
    for (int i = 0; i < W - 1 - pre; i++)
        worst = kl[i] > worst ? kl[i] : worst, agree += t1[i];
    CHECK(worst < 1e-9 && agree == W - 1 - pre, "full stream: KL %g, top-1 %d of %d", worst, agree,
          W - 1 - pre);
    ems_config c = cfg_of("streamingllm", "16");
    REQUIRE(lc_stream_kl(e, &c, ids, W, 16, all, kl, t1, &r) == EM_OK, "stream");
    double sum = 0;
    for (int i = 0; i < W - 17; i++)
        sum += kl[i];
    CHECK(sum > 0 && r.bytes_mean < 32.0 * 2 * 4 * 64 * m->hp.n_layer * m->hp.n_kv_head,
          "streamingllm B=16 (compresses at 16 + 16): KL sum %g, bytes %.0f", sum, r.bytes_mean);
    CHECK(lc_stream_kl(e, &c, ids, W, 0, all, kl, t1, &r) == EM_EINVAL, "n_pre 0 accepted");

    free(all), free(ref), free(first), free(ids);
    engine_free(e);
    tok_free(tok);
    model_free(m);
    TEST_END();
}
