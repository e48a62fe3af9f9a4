/* The KV-compression flags of the command-line tools (generate, perplexity) as common/flags
 * entries: --kv-method NAME, --kv-budget N, --kv-quant int8|int4|int2, --kv-param KEY=VALUE
 * (repeatable), applied to an ems_config through ems_config_cli. */
#pragma once
#include <stddef.h>

#include "common/flags.h"
#include "ems/config.h"

#define KV_FLAGS_N         4  /* table entries kv_flags_table writes */
#define KV_FLAGS_MAX_PARAM 32 /* --kv-param values at most */

typedef struct kv_flags {
    const char *method, *budget, *quant;
    const char *param_items[KV_FLAGS_MAX_PARAM];
    em_flag_list param;
} kv_flags;

/* Clears k and writes its KV_FLAGS_N entries to out. */
void kv_flags_table(kv_flags *k, em_flag *out);

/* Applies the flags that were given to cfg; EM_EINVAL with a message in err. */
em_status kv_flags_apply(const kv_flags *k, ems_config *cfg, char *err, size_t errlen);

/* After em_flags_parse's exit_now: when argv asked for --help (or -h), also lists every KV
 * method and parameter with its default (ems_config_help) on stdout. */
void kv_flags_help_if_asked(int argc, char **argv);
