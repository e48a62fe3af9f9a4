/* ems_config: defaults validate, every key parses, bad input is rejected with a message naming
 * the field, invalid combinations are rejected, help lists every method and parameter. */
#include <stdlib.h>
#include <string.h>

#include "ems/config.h"
#include "tests/testutil/testutil.h"

typedef struct bad_case {
    const char *key, *value, *must_name;
} bad_case;

static const bad_case k_bad[] = {
    {"method", "foo", "method"},
    {"budget", "abc", "budget"},
    {"budget", "-3", "budget"},
    {"ems.tau", "2", "ems.tau"},
    {"ems.align", "median", "ems.align"},
    {"quant", "int3", "quant"},
    {"no.such", "1", "no.such"},
    {"snapkv.kernel", "7x", "snapkv.kernel"},
    {"ems.pool", "0", "ems.pool"},
    {"group_reduce", "sum", "group_reduce"},
    {"budget_frac", "nan", "budget_frac"},
    {"prefill_keep", "-1", "prefill_keep"},
    {"prefill_keep", "12x", "prefill_keep"},
    {"prefill_slack", "-2", "prefill_slack"},
};

typedef struct combo_case {
    const char *kv[4];
    const char *must_name; /* NULL = must validate */
} combo_case;

static const combo_case k_combo[] = {
    {{"method=h2o", NULL}, "budget"},
    {{"method=h2o", "budget=32", NULL}, NULL},
    {{"method=h2o", "budget=32", "window=32", NULL}, "window"},
    {{"method=ems", "budget=32", "budget_frac=0.5", NULL}, "budget_frac"},
    {{"method=snapkv", "budget=32", "snapkv.kernel=4", NULL}, "snapkv.kernel"},
    {{"method=ems", "budget=32", "ems.pool=4", NULL}, "ems.pool"},
    {{"method=simlayerkv", "budget=16", "simlayerkv.recent=20", NULL}, "simlayerkv.recent"},
    {{"method=ems", "budget=16", "w_loc=0", NULL}, "w_loc"},
    {{"method=ems", "budget=16", "w_loc=0", "ems.score=global"}, NULL},
    {{"method=streamingllm", "budget=4", NULL}, "sinks"},
    {{"method=h2o", "budget=32", "sinks=2", NULL}, "sinks"},
    {{"method=full", "quant=int4", NULL}, NULL},
    {{"method=roco", "budget=8", NULL}, "roco.protect"},
    {{"method=ems", "budget_frac=0.25", "quant=int8", NULL}, NULL},
    {{"method=snapkv", "budget=1000", "window=300", NULL}, "w_loc"},
    {{"method=simlayerkv", "budget=64", "simlayerkv.decide=prefill", "simlayerkv.n_last=300"},
     "w_loc"},
    {{"method=ems", "budget=256", "prefill_keep=512", NULL}, NULL},
    {{"method=ems", "budget=256", "prefill_keep=256", "prefill_slack=0"}, NULL},
    {{"method=ems", "budget=256", "prefill_keep=128", NULL}, "prefill_keep"},
    {{"method=full", "prefill_keep=512", NULL}, "prefill_keep"},
    {{"method=simlayerkv", "budget=64", "prefill_keep=128", NULL}, "prefill_keep"},
    {{"method=snapkv", "budget_frac=0.1", "prefill_keep=128", NULL}, "prefill_keep"},
};

int main(void)
{
    ems_config c;
    char err[256];
    ems_config_default(&c);
    CHECK(c.method == EMS_METHOD_FULL && c.quant == EMS_QUANT_NONE, "defaults");
    CHECK(ems_config_validate(&c, err, sizeof err) == EM_OK, "default invalid: %s", err);
    /* documented EMS defaults (methods.md 1.14) */
    CHECK(c.ems_align == EMS_ALIGN_MAX && c.ems_tau == 0.8f && c.ems_window_div == 4 &&
              c.ems_headwise == 1 && c.ems_floor == 0.2f && c.ems_gw == 1.0f &&
              c.ems_split == EMS_SPLIT_THRESHOLD && c.ems_zero_class == 1,
          "EMS defaults");
    CHECK(c.snapkv_kernel == 7 && c.pyramid_beta == 20 && c.slk_initial == 4 &&
              c.roco_protect == 10 && c.quant_group == 32,
          "baseline defaults");
    for (int m = 0; m < EMS_METHOD_COUNT; m++) {
        ems_config d;
        ems_config_default(&d);
        CHECK(ems_config_set(&d, "method", ems_method_name((ems_method)m), err, sizeof err) ==
                  EM_OK,
              "method %d: %s", m, err);
        CHECK(ems_config_set(&d, "budget", "32", err, sizeof err) == EM_OK, "%s", err);
        CHECK(ems_config_validate(&d, err, sizeof err) == EM_OK, "%s: %s",
              ems_method_name((ems_method)m), err);
    }
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        ems_config d = c;
        em_status st = ems_config_set(&d, k_bad[i].key, k_bad[i].value, err, sizeof err);
        CHECK(st == EM_EINVAL, "%s=%s accepted", k_bad[i].key, k_bad[i].value);
        CHECK(strstr(err, k_bad[i].must_name) != NULL, "message '%s' does not name %s", err,
              k_bad[i].must_name);
        CHECK(memcmp(&d, &c, sizeof c) == 0, "%s: cfg changed on error", k_bad[i].key);
    }
    for (size_t i = 0; i < sizeof k_combo / sizeof k_combo[0]; i++) {
        ems_config d;
        ems_config_default(&d);
        for (int j = 0; j < 4 && k_combo[i].kv[j]; j++) {
            CHECK(ems_config_set_kv(&d, k_combo[i].kv[j], err, sizeof err) == EM_OK, "%s: %s",
                  k_combo[i].kv[j], err);
        }
        em_status st = ems_config_validate(&d, err, sizeof err);
        if (k_combo[i].must_name) {
            CHECK(st == EM_EINVAL && strstr(err, k_combo[i].must_name), "combo %zu: st %d '%s'", i,
                  st, err);
        } else {
            CHECK(st == EM_OK, "combo %zu rejected: %s", i, err);
        }
    }
    CHECK(ems_config_set_kv(&c, "ems.tau", err, sizeof err) == EM_EINVAL, "no '='");
    /* resolved values */
    ems_config e;
    ems_config_default(&e);
    ems_config_set(&e, "method", "ems", err, sizeof err);
    CHECK(ems_config_window(&e, 16) == 4 && ems_config_window(&e, 32) == 8 &&
              ems_config_window(&e, 256) == 64 && ems_config_window(&e, 2) == 1,
          "EMS window = clamp(round(B/4), 1, B-1)");
    CHECK(ems_config_w_loc(&e) == 16 && ems_config_wants_stats(&e), "EMS w_loc 16");
    /* the baselines' default windows are their papers' (ems/README.md) */
    static const struct {
        const char *method;
        int B, w;
    } k_windows[] = {
        {"h2o", 128, 64},     {"h2o", 16, 8},          {"h2o", 3, 1},    {"snapkv", 128, 32},
        {"snapkv", 1024, 32}, {"snapkv", 64, 16},      {"snapkv", 2, 1}, {"pyramidkv", 256, 32},
        {"pyramidkv", 16, 4}, {"streamingllm", 64, 0}, {"tova", 64, 0},  {"roco", 64, 0},
    };
    for (size_t i = 0; i < sizeof k_windows / sizeof k_windows[0]; i++) {
        ems_config m;
        ems_config_default(&m);
        ems_config_set(&m, "method", k_windows[i].method, err, sizeof err);
        int w = ems_config_window(&m, k_windows[i].B);
        CHECK(w == k_windows[i].w, "%s B=%d: default window %d, want %d", k_windows[i].method,
              k_windows[i].B, w, k_windows[i].w);
    }
    /* SnapKV's observation window (the queries scored): its LongBench configs' 32, or the set
     * window */
    ems_config_set(&e, "method", "snapkv", err, sizeof err);
    CHECK(ems_config_w_loc(&e) == 32, "snapkv observation window %d", ems_config_w_loc(&e));
    ems_config_set(&e, "window", "8", err, sizeof err);
    CHECK(ems_config_w_loc(&e) == 8, "snapkv window=8: observation window %d",
          ems_config_w_loc(&e));
    ems_config_set(&e, "window", "-1", err, sizeof err);
    ems_config_set(&e, "method", "tova", err, sizeof err);
    CHECK(ems_config_w_loc(&e) == 1 && ems_config_every(&e) == 1, "tova ring 1, every step");
    ems_config_set(&e, "method", "full", err, sizeof err);
    CHECK(!ems_config_wants_stats(&e) && ems_config_budget(&e, 100) == 0, "full");
    ems_config_set(&e, "method", "h2o", err, sizeof err);
    ems_config_set(&e, "budget_frac", "0.25", err, sizeof err);
    CHECK(ems_config_budget(&e, 400) == 100, "budget_frac");
    /* help lists every method and every key */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ems_config_help(f);
    fclose(f);
    for (int m = 0; m < EMS_METHOD_COUNT; m++) {
        CHECK(strstr(buf, ems_method_name((ems_method)m)), "help lacks %s",
              ems_method_name((ems_method)m));
    }
    const char *keys[] = {"budget",        "quant.group", "ems.tau",        "ems.zero_class",
                          "ems.headwise",  "ems.score",   "ems.strategy",   "simlayerkv.delta",
                          "roco.stride",   "tova.scope",  "pyramidkv.beta", "snapkv.pool",
                          "compress_every"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        CHECK(strstr(buf, keys[i]), "help lacks %s", keys[i]);
    }
    CHECK(strstr(buf, "(default 0.8)"), "help shows defaults");
    free(buf);
    char desc[256];
    ems_config_default(&e);
    ems_config_set_kv(&e, "method=ems", err, sizeof err);
    ems_config_set_kv(&e, "ems.tau=0.5", err, sizeof err);
    ems_config_describe(&e, desc, sizeof desc);
    CHECK(strcmp(desc, "ems ems.tau=0.5") == 0, "describe '%s'", desc);
    TEST_END();
}
