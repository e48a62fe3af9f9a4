/* Allocation failures inside a policy step come out as EM_ENOMEM: never a crash, never a
 * silent skip (a top-k or a RoCo pass that runs out of memory used to be taken as "nothing
 * selected" or skipped). The ems objects are linked with -Wl,--wrap=malloc/calloc/realloc, so
 * this file decides which of their allocations fails. Table-driven over the policies: a
 * synthetic cache is prefilled, one step counts the allocations of a prefill-end step, then
 * for every k the k-th allocation of that step fails. Checked each time: the step returns
 * EM_ENOMEM, the cache still satisfies the invariants (positions increasing, entry masses plus
 * evicted mass = tokens appended), and the same step retried without failures returns EM_OK
 * and compresses to the budget. */
#include <stdlib.h>
#include <string.h>

#include "ems/policy.h"
#include "tests/ems/synth.h"
#include "tests/testutil/testutil.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);

static long g_calls;   /* allocations seen while counting or armed */
static long g_fail_at; /* 1-based allocation that fails; 0: none */
static int g_armed, g_failed;

/* 1 when this allocation is the one to fail. */
static int fail_now(void)
{
    if (!g_armed)
        return 0;
    if (++g_calls != g_fail_at)
        return 0;
    g_failed = 1;
    return 1;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

static void arm(long fail_at)
{
    g_calls = 0;
    g_fail_at = fail_at;
    g_failed = 0;
    g_armed = 1;
}

#define N_LAYER 2
#define N_HEAD  4
#define N_TOK   72

static const char *const k_cases[][5] = {
    {"method=h2o", "budget=16"},
    {"method=snapkv", "budget=24"},
    {"method=pyramidkv", "budget=24"},
    {"method=tova", "budget=16"},
    {"method=tova", "budget=16", "tova.scope=head"},
    {"method=roco", "budget=24"},
    {"method=streamingllm", "budget=16"},
    {"method=simlayerkv", "budget=24", "simlayerkv.delta=0"},
    {"method=simlayerkv", "budget=24", "simlayerkv.delta=0", "simlayerkv.test=importance"},
    {"method=simlayerkv", "budget=24", "simlayerkv.delta=1", "simlayerkv.inner=ems"},
    {"method=roco", "budget=24", "roco.score=acc", "roco.std_top=4"},
    {"method=ems", "budget=16"},
    {"method=ems", "budget=24", "ems.headwise=0"},
    {"method=ems", "budget=24", "ems.strategy=merge"},
    {"method=h2o", "budget=16", "quant=int4", "quant.group=8", "quant.residual=4"},
    {"method=h2o", "budget=16", "quant=int2", "quant.group=8", "quant.residual=4"},
};

static ems_cache *prefilled(const ems_config *cfg, const synth_spec *sp)
{
    ems_cache *c = NULL;
    REQUIRE(ems_cache_create(sp->n_layer, N_HEAD, 0, sp->hd, ems_config_w_loc(cfg),
                             ems_config_wants_stats(cfg), &c) == EM_OK,
            "ems_cache_create");
    synth_step(c, sp, 0, N_TOK);
    return c;
}

/* Positions increasing, masses + evicted mass = tokens appended; the largest head length. */
static int check_cache(const char *what, ems_cache *c)
{
    ems_policy_stats st;
    ems_policy_get_stats(c, &st);
    double mass = 0.0;
    int longest = 0;
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++) {
        const ems_head *h = &c->heads[i];
        longest = h->len > longest ? h->len : longest;
        for (int j = 0; j < h->len; j++) {
            mass += h->mass[j];
            CHECK(j == 0 || h->pos[j] > h->pos[j - 1], "%s: positions not increasing", what);
        }
    }
    double want = (double)c->n_layer * c->n_head_kv * N_TOK - st.mass_evicted;
    CHECK(mass > want - 1e-3 && mass < want + 1e-3, "%s: mass %.3f, want %.3f", what, mass, want);
    return longest;
}

static void run_case(const char *const *kv, const synth_spec *sp)
{
    char err[256], name[160] = "";
    ems_config cfg;
    ems_config_default(&cfg);
    for (int j = 0; j < 5 && kv[j]; j++) {
        REQUIRE(ems_config_set_kv(&cfg, kv[j], err, sizeof err) == EM_OK, "%s", err);
        strcat(name, kv[j]);
        strcat(name, " ");
    }
    REQUIRE(ems_config_validate(&cfg, err, sizeof err) == EM_OK, "%s: %s", name, err);
    ems_cache *c = prefilled(&cfg, sp);
    arm(0); /* count only */
    em_status st = ems_policy_step(c, &cfg, EMS_PHASE_PREFILL_END, NULL);
    g_armed = 0;
    long n_alloc = g_calls;
    int clean_len = check_cache(name, c);
    CHECK(st == EM_OK && n_alloc > 0, "%s: clean step %s with %ld allocations", name,
          em_status_str(st), n_alloc);
    ems_cache_destroy(c);
    int bad = tu_failures;
    for (long k = 1; k <= n_alloc; k++) {
        char what[200];
        snprintf(what, sizeof what, "%s(allocation %ld of %ld fails)", name, k, n_alloc);
        c = prefilled(&cfg, sp);
        arm(k);
        st = ems_policy_step(c, &cfg, EMS_PHASE_PREFILL_END, NULL);
        g_armed = 0;
        CHECK(g_failed, "%s: the allocation was not made", what);
        CHECK(st == EM_ENOMEM, "%s: step returned %s", what, em_status_str(st));
        check_cache(what, c);
        st = ems_policy_step(c, &cfg, EMS_PHASE_PREFILL_END, NULL);
        CHECK(st == EM_OK, "%s: retried step returned %s", what, em_status_str(st));
        int len = check_cache(what, c);
        CHECK(len == clean_len, "%s: retried step leaves %d entries in a head, clean %d", what, len,
              clean_len);
        ems_cache_destroy(c);
    }
    printf("%s %s: each of %ld allocations failing gives EM_ENOMEM\n",
           tu_failures == bad ? "ok  " : "FAIL", name, n_alloc);
}

int main(void)
{
    synth_spec sp = {.n_layer = N_LAYER,
                     .hd = 8,
                     .G = 2,
                     .seed = 11,
                     .dup_frac = 0.3f,
                     .dup_noise = 0.1f,
                     .key_scale = 2.5f};
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++)
        run_case(k_cases[i], &sp);
    TEST_END();
}
