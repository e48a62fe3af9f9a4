/* The tools' KV-compression flags (see kv_flags.h). */
#include "tools/kv_flags.h"

#include <stdio.h>
#include <string.h>

void kv_flags_table(kv_flags *k, em_flag *out)
{
    memset(k, 0, sizeof *k);
    k->param = (em_flag_list){k->param_items, 0, KV_FLAGS_MAX_PARAM};
    const em_flag t[KV_FLAGS_N] = {
        {"kv-method", EM_FLAG_STR, &k->method, 0, 0, "NAME", "KV compression method", 0, 0},
        {"kv-budget", EM_FLAG_STR, &k->budget, 0, 0, "N", "entries kept per (layer, KV head)", 0,
         0},
        {"kv-quant", EM_FLAG_STR, &k->quant, 0, 0, "int8|int4|int2", "quantize K/V", 0, 0},
        {"kv-param", EM_FLAG_LIST, &k->param, 0, 0, "KEY=VALUE",
         "KV method parameter (repeatable; see the list below)", 0, 0},
    };
    memcpy(out, t, sizeof t);
}

em_status kv_flags_apply(const kv_flags *k, ems_config *cfg, char *err, size_t errlen)
{
    const char *kv[][2] = {
        {"--kv-method", k->method}, {"--kv-budget", k->budget}, {"--kv-quant", k->quant}};
    em_status st = EM_OK;
    for (size_t i = 0; i < sizeof kv / sizeof kv[0] && st == EM_OK; i++)
        if (kv[i][1])
            ems_config_cli(cfg, kv[i][0], kv[i][1], &st, err, errlen);
    for (int i = 0; i < k->param.n && st == EM_OK; i++)
        ems_config_cli(cfg, "--kv-param", k->param.items[i], &st, err, errlen);
    return st;
}

void kv_flags_help_if_asked(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputc('\n', stdout);
            ems_config_help(stdout); /* the methods and their parameters */
            return;
        }
    }
}
