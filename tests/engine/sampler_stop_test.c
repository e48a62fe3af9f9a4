/* Sampler and stop-condition unit tests (table-driven where it helps). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/sampler.h"
#include "engine/stop.h"
#include "tests/testutil/testutil.h"

static int32_t sample_once(sampler_params p, const float *lg0, int n, const int32_t *hist, int nh)
{
    sampler s;
    float lg[16];
    memcpy(lg, lg0, sizeof(float) * (size_t)n);
    sampler_init(&s, &p, n);
    int32_t id = sampler_sample(&s, lg, hist, nh);
    sampler_free(&s);
    return id;
}

static void test_sampler(void)
{
    const float lg[8] = {1.0f, 3.0f, 2.9f, -1.0f, 0.5f, 2.0f, 0.0f, -3.0f};
    sampler_params p;
    sampler_params_default(&p);
    p.temperature = 0.0f;
    CHECK(sample_once(p, lg, 8, NULL, 0) == 1, "greedy picks the max");
    /* repetition penalty on token 1 makes 2 the max under greedy */
    int32_t hist[] = {1};
    p.repetition_penalty = 1.5f;
    CHECK(sample_once(p, lg, 8, hist, 1) == 2, "repetition penalty demotes a seen token");
    sampler_params_default(&p);
    p.top_k = 1;
    for (int s = 0; s < 20; s++) {
        p.seed = (uint64_t)s;
        CHECK(sample_once(p, lg, 8, NULL, 0) == 1, "top_k=1 is greedy (seed %d)", s);
    }
    sampler_params_default(&p);
    p.top_p = 0.01f;
    CHECK(sample_once(p, lg, 8, NULL, 0) == 1, "tiny top_p is greedy");
    sampler_params_default(&p);
    p.min_p = 0.99f;
    CHECK(sample_once(p, lg, 8, NULL, 0) == 1, "min_p near 1 keeps only the max");
    /* top_k = 2 only ever yields ids 1 or 2; same seed -> same draws; frequencies follow probs */
    sampler_params_default(&p);
    p.top_k = 2;
    int count[8] = {0};
    sampler s;
    sampler_init(&s, &p, 8);
    for (int i = 0; i < 4000; i++) {
        float l[8];
        memcpy(l, lg, sizeof l);
        count[sampler_sample(&s, l, NULL, 0)]++;
    }
    sampler_free(&s);
    CHECK(count[1] + count[2] == 4000, "top_k=2 stays in the top 2");
    double expect1 = 1.0 / (1.0 + exp(2.9 - 3.0));
    CHECK(fabs(count[1] / 4000.0 - expect1) < 0.04, "frequency %.3f vs %.3f", count[1] / 4000.0,
          expect1);
    p.seed = 7;
    int32_t a = sample_once(p, lg, 8, NULL, 0), b = sample_once(p, lg, 8, NULL, 0);
    CHECK(a == b, "same seed, same draw");

    struct {
        const char *field;
        sampler_params p;
    } bad[] = {
        {"temperature", {.temperature = -1, .top_p = 1, .repetition_penalty = 1}},
        {"temperature", {.temperature = NAN, .top_p = 1, .repetition_penalty = 1}},
        {"top_k", {.temperature = 1, .top_k = -2, .top_p = 1, .repetition_penalty = 1}},
        {"top_p", {.temperature = 1, .top_p = 0, .repetition_penalty = 1}},
        {"top_p", {.temperature = 1, .top_p = 1.5f, .repetition_penalty = 1}},
        {"min_p", {.temperature = 1, .top_p = 1, .min_p = 1.0f, .repetition_penalty = 1}},
        {"repetition_penalty", {.temperature = 1, .top_p = 1, .repetition_penalty = 0}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[128] = "";
        CHECK(sampler_params_validate(&bad[i].p, err, sizeof err) == EM_EINVAL, "rejects bad %s",
              bad[i].field);
        CHECK(strstr(err, bad[i].field) != NULL, "message names %s: '%s'", bad[i].field, err);
    }
    sampler_params_default(&p);
    char err[128];
    CHECK(sampler_params_validate(&p, err, sizeof err) == EM_OK, "defaults are valid");
}

/* The request's seed drives the draws: the same seed repeats a sequence, different seeds give
 * different sequences (8 nearly equal logits, 64 draws: equal sequences by chance ~1e-57). */
static void draw_seq(uint64_t seed, int32_t *out, int n)
{
    const float lg[8] = {0.1f, 0.0f, 0.2f, 0.05f, 0.15f, 0.0f, 0.1f, 0.12f};
    sampler_params p;
    sampler_params_default(&p);
    p.seed = seed;
    sampler s;
    CHECK(sampler_init(&s, &p, 8) == EM_OK, "sampler_init");
    for (int i = 0; i < n; i++) {
        float l[8];
        memcpy(l, lg, sizeof l);
        out[i] = sampler_sample(&s, l, NULL, 0);
    }
    sampler_free(&s);
}

static void test_seed(void)
{
    enum { N_SEEDS = 6, N_DRAWS = 64 };
    const uint64_t seeds[N_SEEDS] = {0, 1, 2, 7, 0x5eed, 1ull << 40};
    int32_t seq[N_SEEDS][N_DRAWS], again[N_DRAWS];
    for (int i = 0; i < N_SEEDS; i++) {
        draw_seq(seeds[i], seq[i], N_DRAWS);
        draw_seq(seeds[i], again, N_DRAWS);
        CHECK(memcmp(seq[i], again, sizeof again) == 0, "seed %llu repeats its draws",
              (unsigned long long)seeds[i]);
    }
    for (int i = 0; i < N_SEEDS; i++) {
        for (int j = i + 1; j < N_SEEDS; j++) {
            CHECK(memcmp(seq[i], seq[j], sizeof seq[i]) != 0, "seeds %llu and %llu draw alike",
                  (unsigned long long)seeds[i], (unsigned long long)seeds[j]);
        }
    }
}

static void test_stop(void)
{
    stop_params p;
    stop_params_default(&p);
    char err[128];
    p.max_tokens = 100;
    stop_params_add_string(&p, "END", 3, err, sizeof err);
    stop_params_add_id(&p, 7, 10, err, sizeof err);
    CHECK(stop_params_add_id(&p, 12, 10, err, sizeof err) == EM_EINVAL,
          "id outside vocab rejected");
    CHECK(stop_params_add_string(&p, "", 0, err, sizeof err) == EM_EINVAL,
          "empty stop string rejected");
    stop_state s;
    stop_state_init(&s, &p, 2);
    const char *out;
    size_t n;
    CHECK(stop_state_feed(&s, 10, "hello E", 7) == STOP_NONE, "no stop yet");
    stop_state_take(&s, 0, &out, &n);
    CHECK(n == 6 && !memcmp(out, "hello ", 6), "holds back a possible stop prefix (got %zu)", n);
    CHECK(stop_state_feed(&s, 11, "NDing", 5) == STOP_STRING, "stop string across pieces");
    stop_state_take(&s, 1, &out, &n);
    CHECK(n == 0, "nothing after the stop string is released (got %zu)", n);
    CHECK(strcmp(s.text, "hello ") == 0, "text cut before the stop string: '%s'", s.text);
    stop_state_free(&s);

    p.include_stop = 1; /* the same, keeping the stop string (what follows it is dropped) */
    stop_state_init(&s, &p, 2);
    CHECK(stop_state_feed(&s, 10, "hello E", 7) == STOP_NONE, "no stop yet (include_stop)");
    stop_state_take(&s, 0, &out, &n);
    CHECK(n == 6 && !memcmp(out, "hello ", 6), "holds back a possible stop (got %zu)", n);
    CHECK(stop_state_feed(&s, 11, "NDing", 5) == STOP_STRING, "stop string (include_stop)");
    stop_state_take(&s, 1, &out, &n);
    CHECK(n == 3 && !memcmp(out, "END", 3), "the stop string is released (got %zu)", n);
    CHECK(strcmp(s.text, "hello END") == 0, "text ends with the stop string: '%s'", s.text);
    stop_state_free(&s);
    p.include_stop = 0;

    stop_state_init(&s, &p, 2);
    CHECK(stop_state_feed(&s, 7, "x", 1) == STOP_TOKEN, "stop id");
    stop_state_free(&s);
    stop_state_init(&s, &p, 2);
    CHECK(stop_state_feed(&s, 2, "", 0) == STOP_EOS, "eos");
    stop_state_free(&s);
    p.ignore_eos = 1;
    p.max_tokens = 2;
    stop_state_init(&s, &p, 2);
    CHECK(stop_state_feed(&s, 2, "", 0) == STOP_NONE, "eos ignored");
    CHECK(stop_state_feed(&s, 3, "a", 1) == STOP_LENGTH, "max tokens");
    stop_state_free(&s);
    CHECK(!strcmp(stop_reason_str(STOP_LENGTH), "length") &&
              !strcmp(stop_reason_str(STOP_EOS), "stop"),
          "reason names");
}

int main(void)
{
    test_sampler();
    test_seed();
    test_stop();
    TEST_END();
}
