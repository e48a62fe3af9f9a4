/* ems_footprint_peak_entries with bounded prefill (prefill_keep), against values worked out by
 * hand from footprint.h's formulas (table below; 3 layers, P = 200 prompt tokens, 40 generated):
 *   per head while the prompt is fed: min(P, K + S + C) (+ 1 with compress_prefill=0), then
 *   max(that, B + N) over the sequence; EMS head-wise per layer:
 *   min(h P, H (K + S + 1 + C) - (H - h) (w + F)) with w = round(K / 4), F = round(0.2 (K - w)).
 * Also: chunk 0 (unknown) and prefill_keep 0 give the whole prompt; after the prompt
 * (prompt_ahead = 0) the setting changes nothing. */
#include <stdio.h>

#include "ems/config.h"
#include "ems/footprint.h"
#include "tests/testutil/testutil.h"

enum { L = 3, HD = 8, P = 200, GEN = 40 };

typedef struct row {
    const char *kv[5];
    int H, h, chunk;
    int64_t want; /* entries summed over layers and the h local heads */
} row;

static const row k_rows[] = {
    /* off, or chunk unknown: the prompt whole, P per head */
    {{"method=snapkv", "budget=16", NULL}, 4, 4, 30, 3 * 4 * 200},
    {{"method=snapkv", "budget=16", "prefill_keep=32", NULL}, 4, 4, 0, 3 * 4 * 200},
    /* K + S + C = 32 + 32 + 30 = 94 per head */
    {{"method=snapkv", "budget=16", "prefill_keep=32", NULL}, 4, 4, 30, 3 * 4 * 94},
    {{"method=snapkv", "budget=16", "prefill_keep=32", NULL}, 4, 1, 30, 3 * 1 * 94},
    /* explicit slack: 32 + 8 + 30 = 70 */
    {{"method=h2o", "budget=16", "prefill_keep=32", "prefill_slack=8", NULL}, 4, 2, 30, 3 * 2 * 70},
    /* compress_prefill=0: + 1 */
    {{"method=h2o", "budget=16", "prefill_keep=32", "prefill_slack=8", "compress_prefill=0"},
     4,
     4,
     30,
     3 * 4 * 71},
    /* bound above the prompt: min(P, 100 + 100 + 30) = P */
    {{"method=snapkv", "budget=16", "prefill_keep=100", NULL}, 4, 4, 30, 3 * 4 * 200},
    /* the decode-time size dominates a tiny keep: max(16 + 0 + 1, 16 + 16) = B + N = 32 */
    {{"method=h2o", "budget=16", "prefill_keep=16", "prefill_slack=0", NULL}, 4, 4, 1, 3 * 4 * 32},
    /* EMS head-wise, K = 32: w = 8, F = round(0.2 * 24) = 5; 4 (32 + 32 + 1 + 30) = 380 for all
     * 4 heads; one head: min(200, 380 - 3 * 13 = 341) = 200; two: min(400, 380 - 26) = 354 */
    {{"method=ems", "budget=16", "prefill_keep=32", NULL}, 4, 4, 30, 3 * 380},
    {{"method=ems", "budget=16", "prefill_keep=32", NULL}, 4, 1, 30, 3 * 200},
    {{"method=ems", "budget=16", "prefill_keep=32", NULL}, 4, 2, 30, 3 * 354},
    /* EMS per head: 94 */
    {{"method=ems", "budget=16", "prefill_keep=32", "ems.headwise=0", NULL}, 4, 3, 30, 3 * 3 * 94},
};

int main(void)
{
    char err[256];
    for (size_t i = 0; i < sizeof k_rows / sizeof k_rows[0]; i++) {
        const row *r = &k_rows[i];
        ems_config cfg;
        ems_config_default(&cfg);
        for (int k = 0; k < 5 && r->kv[k]; k++)
            REQUIRE(ems_config_set_kv(&cfg, r->kv[k], err, sizeof err) == EM_OK, "%s", err);
        REQUIRE(ems_config_validate(&cfg, err, sizeof err) == EM_OK, "row %zu: %s", i, err);
        ems_footprint_shape sh = {L, HD, r->H, r->h, r->chunk};
        int64_t got = ems_footprint_peak_entries(&cfg, &sh, P, P + GEN, 1);
        CHECK(got == r->want,
              "row %zu (%s %s %s, %d of %d heads, chunk %d): %lld entries, want "
              "%lld",
              i, r->kv[0], r->kv[1], r->kv[2] ? r->kv[2] : "", r->h, r->H, r->chunk, (long long)got,
              (long long)r->want);
        /* after the prompt the bound is the same as without the setting */
        ems_config off = cfg;
        off.prefill_keep = 0;
        CHECK(ems_footprint_peak_entries(&cfg, &sh, P, P + GEN, 0) ==
                  ems_footprint_peak_entries(&off, &sh, P, P + GEN, 0),
              "row %zu: prefill_keep changed the bound after the prompt", i);
        /* bytes follow entries (f32 config): peak bytes = entries x entry bytes */
        CHECK(ems_footprint_peak_bytes(&cfg, &sh, P, P + GEN, 1) ==
                  (uint64_t)got * ems_footprint_entry_bytes(&cfg, HD),
              "row %zu: bytes", i);
    }
    TEST_END();
}
