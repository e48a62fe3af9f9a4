/* Byte accounting against the real allocations. The ems objects are linked with
 * -Wl,--wrap=malloc/calloc/realloc/free, so this file sees the size of every block they hold.
 * For the full cache, int8, int4, EMS and EMS + int4, a 2-layer, 2-head cache of head size 64 is
 * fed a 384-token prompt in chunks of 128, compressed at the prompt's end and decoded 160
 * tokens with a policy step after each. At every point between steps:
 *   - ems_cache_alloc_bytes equals the bytes of the blocks the cache's code has live (nothing
 *     is allocated that the accounting does not know of, e.g. an f32 copy of quantized K/V);
 *   - ems_cache_held_bytes (what the scheduler budgets) is at most that, and at least what is
 *     allocated less the capacity policy's slack (25 % + 128 entries per array);
 *   - a quantized head holds no f32 K/V arrays.
 * At the end, with 543 entries per head: int4 < int8 < full in held and in allocated bytes, and
 * EMS + int4 < EMS. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ems/policy.h"
#include "tests/ems/synth.h"
#include "tests/testutil/testutil.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

/* Live blocks: open addressing on the pointer, tombstones on removal. */
enum { TABLE = 1 << 16 };
static struct {
    void *p; /* NULL: empty; TOMB: removed */
    size_t n;
} g_blocks[TABLE];
static char g_tomb;
#define TOMB ((void *)&g_tomb)
static int64_t g_live; /* bytes of the live blocks */
static int g_overflow; /* the table filled up (the test then fails) */

static size_t slot_of(const void *p)
{
    return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 48) & (TABLE - 1);
}

static void track(void *p, size_t n)
{
    if (!p)
        return;
    for (size_t i = 0, s = slot_of(p); i < TABLE; i++, s = (s + 1) & (TABLE - 1)) {
        if (g_blocks[s].p == NULL || g_blocks[s].p == TOMB) {
            g_blocks[s].p = p;
            g_blocks[s].n = n;
            g_live += (int64_t)n;
            return;
        }
    }
    g_overflow = 1;
}

static void untrack(void *p)
{
    if (!p)
        return;
    for (size_t i = 0, s = slot_of(p); i < TABLE; i++, s = (s + 1) & (TABLE - 1)) {
        if (g_blocks[s].p == NULL)
            return; /* allocated outside the wrapped objects */
        if (g_blocks[s].p == p) {
            g_live -= (int64_t)g_blocks[s].n;
            g_blocks[s].p = TOMB;
            return;
        }
    }
}

void *__wrap_malloc(size_t n)
{
    void *p = __real_malloc(n);
    track(p, n);
    return p;
}
void *__wrap_calloc(size_t n, size_t size)
{
    void *p = __real_calloc(n, size);
    track(p, n * size);
    return p;
}
void *__wrap_realloc(void *p, size_t n)
{
    void *q = __real_realloc(p, n);
    if (q || n == 0)
        untrack(p);
    track(q, n);
    return q;
}
void __wrap_free(void *p)
{
    untrack(p);
    __real_free(p);
}

enum { L = 2, H = 2, HD = 64, P = 384, CHUNK = 128, GEN = 160 };

typedef struct result {
    uint64_t held, alloc;
} result;

/* Accounting vs the live blocks, and the quantized heads' storage, at one point. */
static void check_point(ems_cache *c, int64_t live0, const char *name, const char *when)
{
    int64_t live = g_live - live0;
    uint64_t alloc = ems_cache_alloc_bytes(c), held = ems_cache_held_bytes(c);
    CHECK(!g_overflow, "allocation table full");
    CHECK((int64_t)alloc == live, "%s %s: accounted %llu allocated, blocks hold %lld", name, when,
          (unsigned long long)alloc, (long long)live);
    CHECK(held <= alloc, "%s %s: held %llu > allocated %llu", name, when, (unsigned long long)held,
          (unsigned long long)alloc);
    uint64_t slack = 4096 + ems_policy_state_bytes(c);
    for (int i = 0; i < L * H; i++) {
        const ems_head *h = &c->heads[i];
        /* every array 25 % + 128 entries over (an f32 entry bounds a quantized one), the
         * window's rows, 25 % + 4 key groups and the store's struct */
        slack += ((uint64_t)h->len / 4 + 128) * 2 * ems_head_entry_bytes(HD, h->w_loc) +
                 ((uint64_t)h->len / 32 / 4 + 4) * HD * 4 + 256;
        if (h->qstate)
            CHECK(h->k == NULL && h->v == NULL, "%s %s: quantized head %d has f32 K/V", name, when,
                  i);
    }
    CHECK(alloc <= held + slack, "%s %s: allocated %llu, held %llu + slack %llu", name, when,
          (unsigned long long)alloc, (unsigned long long)held, (unsigned long long)slack);
}

static result run_case(const char *const *kv)
{
    char err[256];
    ems_config cfg;
    ems_config_default(&cfg);
    for (int j = 0; kv[j]; j++)
        CHECK(ems_config_set_kv(&cfg, kv[j], err, sizeof err) == EM_OK, "%s", err);
    REQUIRE(ems_config_validate(&cfg, err, sizeof err) == EM_OK, "%s", err);
    char name[128];
    ems_config_describe(&cfg, name, sizeof name);
    synth_spec sp = {.n_layer = L, .hd = HD, .G = 2, .seed = 11, .key_scale = 2.0f};
    int64_t live0 = g_live;
    ems_cache *c;
    REQUIRE(ems_cache_create(L, H, 0, HD, ems_config_w_loc(&cfg), ems_config_wants_stats(&cfg),
                             &c) == EM_OK,
            "create");
    check_point(c, live0, name, "empty");
    for (int t0 = 0; t0 < P; t0 += CHUNK) {
        synth_step(c, &sp, t0, CHUNK);
        check_point(c, live0, name, "prefill");
    }
    CHECK(ems_policy_step(c, &cfg, EMS_PHASE_PREFILL_END, NULL) == EM_OK, "%s prefill end", name);
    check_point(c, live0, name, "prefill end");
    for (int i = 0; i < GEN - 1; i++) {
        synth_step(c, &sp, P + i, 1);
        check_point(c, live0, name, "decode");
        CHECK(ems_policy_step(c, &cfg, EMS_PHASE_DECODE, NULL) == EM_OK, "%s decode", name);
        check_point(c, live0, name, "after policy");
    }
    result r = {ems_cache_held_bytes(c), ems_cache_alloc_bytes(c)};
    printf("%-40s %6d entries/head  held %9llu  allocated %9llu\n", name, c->heads[0].len,
           (unsigned long long)r.held, (unsigned long long)r.alloc);
    ems_cache_destroy(c);
    CHECK(g_live == live0, "%s: %lld bytes left after destroy", name, (long long)(g_live - live0));
    return r;
}

int main(void)
{
    static const char *const cases[][5] = {
        {"method=full", NULL},
        {"method=full", "quant=int8", NULL},
        {"method=full", "quant=int4", NULL},
        {"method=ems", "budget=128", NULL},
        {"method=ems", "budget=128", "quant=int4", NULL},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    result r[N];
    for (int i = 0; i < N; i++)
        r[i] = run_case(cases[i]);
    CHECK(r[2].held < r[1].held && r[1].held < r[0].held, "held: full %llu int8 %llu int4 %llu",
          (unsigned long long)r[0].held, (unsigned long long)r[1].held,
          (unsigned long long)r[2].held);
    CHECK(r[2].alloc < r[1].alloc && r[1].alloc < r[0].alloc,
          "allocated: full %llu int8 %llu int4 %llu", (unsigned long long)r[0].alloc,
          (unsigned long long)r[1].alloc, (unsigned long long)r[2].alloc);
    CHECK(r[4].held < r[3].held && r[4].alloc < r[3].alloc,
          "EMS + int4 %llu / %llu vs EMS %llu / %llu", (unsigned long long)r[4].held,
          (unsigned long long)r[4].alloc, (unsigned long long)r[3].held,
          (unsigned long long)r[3].alloc);
    TEST_END();
}
