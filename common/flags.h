/* Flags of the emserve binaries from one table: command line (getopt_long: --flag VALUE and
 * --flag=VALUE), an environment twin for every flag (--max-seqs: EMSERVE_MAX_SEQS) and an INI
 * config file (inih: "max-seqs = 64", # or ; comments, keys outside any section or in the
 * section named after the program), with the precedence command line > environment > file >
 * default. Numbers are parsed whole and range-checked ("3abc" is an error, not 3); booleans
 * take true/false/1/0/yes/no/on/off (--flag alone on the command line means true). The file
 * comes from --config FILE (or --config=FILE) or $<PREFIX>CONFIG. --help and --version are
 * built in. A flag may also have a one-letter form (-m VALUE; a boolean's takes no value). */
#pragma once
#include <stddef.h>
#include <stdio.h>

#include "common/status.h"

typedef enum {
    EM_FLAG_STR,  /* const char *; the string lives as long as the process */
    EM_FLAG_INT,  /* int, in [min, max] */
    EM_FLAG_LONG, /* long, in [min, max] */
    EM_FLAG_BOOL, /* int, 0 or 1 */
    EM_FLAG_LIST  /* em_flag_list: repeatable; a later source replaces an earlier one's list */
} em_flag_type;

typedef enum {
    EM_FLAG_SRC_DEFAULT = 0,
    EM_FLAG_SRC_FILE,
    EM_FLAG_SRC_ENV,
    EM_FLAG_SRC_CLI
} em_flag_source;

typedef struct em_flag_list {
    const char **items; /* [max], the caller's storage */
    int n, max;
} em_flag_list;

typedef struct em_flag {
    const char *name; /* "max-seqs" */
    em_flag_type type;
    void *value;           /* where the value goes (its initial content is the default) */
    long min, max;         /* numbers: accepted range */
    const char *arg;       /* "N", "PATH", "HOST:PORT" (usage); NULL for a boolean */
    const char *help;      /* one line */
    em_flag_source source; /* set by em_flags_parse */
    char short_name;       /* a one-letter form ('m' for -m VALUE), 0 for none (the default) */
} em_flag;

typedef struct em_flags {
    const char *prog;       /* "emserve": messages, usage, the config file's own section */
    const char *env_prefix; /* "EMSERVE_" */
    const char *version;    /* printed by --version */
    const char *summary;    /* usage's first lines (NULL: none) */
    em_flag *flags;
    int n_flags;
    /* private: strings copied from the config file (freed by em_flags_free) */
    char **owned;
    int n_owned, cap_owned;
} em_flags;

/* Fills every flag from the file, the environment and argv, in that order (each overrides the
 * one before). EM_EINVAL with a message naming the flag and where it came from in err (the
 * flags may then be partly set). *exit_now = 1 after --help or --version (printed on stdout):
 * the caller exits with status 0. */
em_status em_flags_parse(em_flags *f, int argc, char **argv, int *exit_now, char *err,
                         size_t errlen);

/* Usage: one line per flag with its argument, help, default and environment twin. */
void em_flags_usage(const em_flags *f, FILE *out);

/* One log line per flag: name = value (source). */
void em_flags_log(const em_flags *f);

/* The environment name of a flag: prefix + upper case, '-' -> '_' ("EMSERVE_MAX_SEQS"). */
void em_flags_env_name(const em_flags *f, const em_flag *fl, char *out, size_t cap);

/* Frees what em_flags_parse copied (config-file strings, lists). The string values of the flags
 * become invalid. */
void em_flags_free(em_flags *f);
