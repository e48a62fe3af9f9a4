/* Flags from one table: file < environment < command line (see flags.h). */
#define _GNU_SOURCE
#include "common/flags.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h> /* inih: the config file */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* ---- one value --------------------------------------------------------------------------- */

static const char *source_name(em_flag_source s)
{
    static const char *const names[] = {"default", "file", "env", "command line"};
    return names[s];
}

static em_status parse_long(const char *text, long min, long max, long *out, char *why,
                            size_t whylen)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (text[0] == 0 || isspace((unsigned char)text[0]) || *end != 0 || errno == ERANGE) {
        snprintf(why, whylen, "'%s' is not an integer", text);
        return EM_EINVAL;
    }
    if (v < min || v > max) {
        snprintf(why, whylen, "%ld is outside [%ld, %ld]", v, min, max);
        return EM_EINVAL;
    }
    *out = v;
    return EM_OK;
}

static em_status parse_bool(const char *text, int *out, char *why, size_t whylen)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no",
                                                                                "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
            *out = strcasecmp(text, yes[i]) == 0;
            return EM_OK;
        }
    }
    snprintf(why, whylen, "'%s' is not a boolean (true/false, 1/0, yes/no, on/off)", text);
    return EM_EINVAL;
}

/* Keeps a copy of s for the life of f (config-file strings). NULL when out of memory. */
static const char *own(em_flags *f, const char *s)
{
    if (f->n_owned == f->cap_owned) {
        int cap = f->cap_owned ? f->cap_owned * 2 : 16;
        char **o = realloc(f->owned, sizeof *o * (size_t)cap);
        if (o == NULL) {
            return NULL;
        }
        f->owned = o;
        f->cap_owned = cap;
    }
    char *c = strdup(s);
    if (c) {
        f->owned[f->n_owned++] = c;
    }
    return c;
}

/* Sets fl from text given by src; where names the place for messages ("--max-seqs",
 * "EMSERVE_MAX_SEQS", "FILE:3 max-seqs"). */
static em_status set_value(em_flags *f, em_flag *fl, const char *text, em_flag_source src,
                           const char *where, char *err, size_t errlen)
{
    char why[256] = "";
    em_status st = EM_OK;
    long v = 0;
    if (src == EM_FLAG_SRC_FILE && (fl->type == EM_FLAG_STR || fl->type == EM_FLAG_LIST) &&
        (text = own(f, text)) == NULL) {
        return EM_ENOMEM;
    }
    switch (fl->type) {
    case EM_FLAG_STR:
        *(const char **)fl->value = text;
        break;
    case EM_FLAG_INT:
    case EM_FLAG_LONG:
        st = parse_long(text, fl->min, fl->max, &v, why, sizeof why);
        if (st == EM_OK && fl->type == EM_FLAG_INT) {
            *(int *)fl->value = (int)v;
        } else if (st == EM_OK) {
            *(long *)fl->value = v;
        }
        break;
    case EM_FLAG_BOOL:
        st = parse_bool(text, (int *)fl->value, why, sizeof why);
        break;
    case EM_FLAG_LIST: {
        em_flag_list *l = fl->value;
        if (fl->source != src) {
            l->n = 0; /* the first value from a stronger source replaces the list */
        }
        if (l->n >= l->max) {
            snprintf(why, sizeof why, "at most %d values", l->max);
            st = EM_EINVAL;
        } else {
            l->items[l->n++] = text;
        }
        break;
    }
    }
    if (st != EM_OK) {
        snprintf(err, errlen, "%s: %s", where, why);
        return st;
    }
    fl->source = src;
    return EM_OK;
}

static em_flag *find(em_flags *f, const char *name)
{
    for (int i = 0; i < f->n_flags; i++) {
        const char *a = f->flags[i].name, *b = name;
        while (*a && (*a == *b || (*a == '-' && *b == '_'))) { /* max_seqs = max-seqs */
            a++;
            b++;
        }
        if (*a == 0 && *b == 0) {
            return &f->flags[i];
        }
    }
    return NULL;
}

void em_flags_env_name(const em_flags *f, const em_flag *fl, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "%s%s", f->env_prefix, fl->name);
    for (size_t i = strlen(f->env_prefix); i < n && i < cap; i++) {
        out[i] = out[i] == '-' ? '_' : (char)toupper((unsigned char)out[i]);
    }
}

/* ---- sources ------------------------------------------------------------------------------ */

typedef struct file_ctx {
    em_flags *f;
    char msg[512]; /* the first error, "name: why" */
    em_status st;
} file_ctx;

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    file_ctx *c = user;
    if (section[0] && strcmp(section, c->f->prog) != 0) {
        return 1; /* another program's section */
    }
    if (c->st != EM_OK) {
        return 0;
    }
    em_flag *fl = find(c->f, name);
    if (fl == NULL) {
        snprintf(c->msg, sizeof c->msg, "%s: unknown flag", name);
        c->st = EM_EINVAL;
        return 0;
    }
    c->st = set_value(c->f, fl, value, EM_FLAG_SRC_FILE, name, c->msg, sizeof c->msg);
    return c->st == EM_OK;
}

static em_status from_file(em_flags *f, const char *path, char *err, size_t errlen)
{
    file_ctx c = {f, "", EM_OK};
    int rc = ini_parse(path, on_ini, &c);
    if (rc == -1) {
        snprintf(err, errlen, "cannot open config file %s", path);
        return EM_EINVAL;
    }
    if (rc == -2 || c.st == EM_ENOMEM) {
        return EM_ENOMEM;
    }
    if (rc > 0) {
        snprintf(err, errlen, "%s:%d: %s", path, rc,
                 c.st != EM_OK ? c.msg : "not a 'name = value' line");
        return EM_EINVAL;
    }
    return EM_OK;
}

static em_status from_env(em_flags *f, char *err, size_t errlen)
{
    for (int i = 0; i < f->n_flags; i++) {
        char name[128];
        em_flags_env_name(f, &f->flags[i], name, sizeof name);
        const char *v = getenv(name);
        if (v == NULL) {
            continue;
        }
        if (f->flags[i].type == EM_FLAG_LIST) { /* comma-separated */
            char *copy = (char *)own(f, v), *save = NULL;
            if (copy == NULL) {
                return EM_ENOMEM;
            }
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                em_status st = set_value(f, &f->flags[i], t, EM_FLAG_SRC_ENV, name, err, errlen);
                if (st != EM_OK) {
                    return st;
                }
            }
            continue;
        }
        em_status st = set_value(f, &f->flags[i], v, EM_FLAG_SRC_ENV, name, err, errlen);
        if (st != EM_OK) {
            return st;
        }
    }
    return EM_OK;
}

/* The command line, through getopt_long (flags of the table, --config, --help, --version). */
enum { OPT_HELP = 'h', OPT_VERSION = 1000, OPT_CONFIG, OPT_FLAG0 };

static struct option *long_options(const em_flags *f)
{
    struct option *o = calloc((size_t)f->n_flags + 4, sizeof *o);
    if (o == NULL) {
        return NULL;
    }
    for (int i = 0; i < f->n_flags; i++) {
        o[i].name = f->flags[i].name;
        o[i].has_arg = f->flags[i].type == EM_FLAG_BOOL ? optional_argument : required_argument;
        o[i].val = OPT_FLAG0 + i;
    }
    o[f->n_flags] = (struct option){"help", no_argument, NULL, OPT_HELP};
    o[f->n_flags + 1] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    o[f->n_flags + 2] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    return o;
}

/* getopt's short-option string: "+:h" and each flag's letter ("m:" takes a value). */
static void short_options(const em_flags *f, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "+:h");
    for (int i = 0; i < f->n_flags && n + 3 < cap; i++) {
        if (f->flags[i].short_name == 0) {
            continue;
        }
        out[n++] = f->flags[i].short_name;
        if (f->flags[i].type != EM_FLAG_BOOL) {
            out[n++] = ':';
        }
        out[n] = 0;
    }
}

/* The table index of a one-letter option c, or f->n_flags when c is none of them. */
static int short_index(const em_flags *f, int c)
{
    int i = 0;
    while (i < f->n_flags && (f->flags[i].short_name == 0 || f->flags[i].short_name != c)) {
        i++;
    }
    return i;
}

static em_status from_cli(em_flags *f, int argc, char **argv, char *err, size_t errlen)
{
    struct option *opts = long_options(f);
    if (opts == NULL) {
        return EM_ENOMEM;
    }
    char shorts[160];
    short_options(f, shorts, sizeof shorts);
    em_status st = EM_OK;
    int c;
    optind = 0; /* glibc: start afresh (em_flags_parse may be called more than once) */
    opterr = 0;
    while (st == EM_OK && (c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
        const char *arg = argv[optind - 1];
        if (c > 0 && c < 128 && c != 'h' && c != '?' && c != ':' &&
            short_index(f, c) < f->n_flags) {
            c = OPT_FLAG0 + short_index(f, c);
        }
        if (c == '?') {
            snprintf(err, errlen, "unknown flag %s", arg);
            st = EM_EINVAL;
        } else if (c == ':') {
            snprintf(err, errlen, "%s needs a value", arg);
            st = EM_EINVAL;
        } else if (c >= OPT_FLAG0) {
            em_flag *fl = &f->flags[c - OPT_FLAG0];
            char where[128];
            snprintf(where, sizeof where, "--%s", fl->name);
            st = set_value(f, fl, optarg ? optarg : "true", EM_FLAG_SRC_CLI, where, err, errlen);
        }
    }
    if (st == EM_OK && optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        st = EM_EINVAL;
    }
    free(opts);
    return st;
}

/* --help, --version and --config FILE are looked for before anything is applied, so that the
 * usage shows the defaults and the file can come first. */
static void prescan(int argc, char **argv, int *help, int *version, const char **config)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *a = argv[i];
        *help |= strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
        *version |= strcmp(a, "--version") == 0;
        if (strcmp(a, "--config") == 0 && i + 1 < argc) {
            *config = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            *config = a + 9;
        }
    }
}

em_status em_flags_parse(em_flags *f, int argc, char **argv, int *exit_now, char *err,
                         size_t errlen)
{
    int help = 0, version = 0;
    const char *config = NULL;
    *exit_now = 0;
    prescan(argc, argv, &help, &version, &config);
    if (help || version) {
        if (help) {
            em_flags_usage(f, stdout);
        } else {
            printf("%s %s\n", f->prog, f->version ? f->version : "");
        }
        *exit_now = 1;
        return EM_OK;
    }
    char env[128];
    snprintf(env, sizeof env, "%sCONFIG", f->env_prefix);
    if (config == NULL) {
        config = getenv(env);
    }
    em_status st = EM_OK;
    if (config && config[0]) {
        st = from_file(f, config, err, errlen);
    }
    if (st == EM_OK) {
        st = from_env(f, err, errlen);
    }
    if (st == EM_OK) {
        st = from_cli(f, argc, argv, err, errlen);
    }
    if (st == EM_ENOMEM) {
        snprintf(err, errlen, "out of memory reading the flags");
    }
    return st;
}

/* ---- usage and the effective configuration ------------------------------------------------ */

static void value_text(const em_flag *fl, char *out, size_t cap)
{
    out[0] = 0;
    switch (fl->type) {
    case EM_FLAG_STR: {
        const char *s = *(const char *const *)fl->value;
        snprintf(out, cap, "%s", s ? s : "");
        break;
    }
    case EM_FLAG_INT:
        snprintf(out, cap, "%d", *(const int *)fl->value);
        break;
    case EM_FLAG_LONG:
        snprintf(out, cap, "%ld", *(const long *)fl->value);
        break;
    case EM_FLAG_BOOL:
        snprintf(out, cap, "%s", *(const int *)fl->value ? "true" : "false");
        break;
    case EM_FLAG_LIST: {
        const em_flag_list *l = fl->value;
        size_t n = 0;
        for (int i = 0; i < l->n && n < cap; i++) {
            n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "", l->items[i]);
        }
        break;
    }
    }
}

void em_flags_usage(const em_flags *f, FILE *out)
{
    if (f->summary) {
        fprintf(out, "%s\n", f->summary);
    }
    fprintf(out, "flags (--flag VALUE or --flag=VALUE; environment twin in [...]; config file "
                 "lines 'flag = value'):\n");
    for (int i = 0; i < f->n_flags; i++) {
        const em_flag *fl = &f->flags[i];
        char head[96], def[256], env[128];
        char letter[8] = "";
        if (fl->short_name) {
            snprintf(letter, sizeof letter, "-%c, ", fl->short_name);
        }
        snprintf(head, sizeof head, "%s--%s%s%s", letter, fl->name, fl->arg ? " " : "",
                 fl->arg ? fl->arg : "");
        value_text(fl, def, sizeof def);
        em_flags_env_name(f, fl, env, sizeof env);
        fprintf(out, "  %-26s %s%s%s%s [%s]\n", head, fl->help, def[0] ? " (default " : "", def,
                def[0] ? ")" : "", env);
    }
    fprintf(out,
            "  %-26s INI file of flags (also $%sCONFIG); command line > environment > file\n"
            "  %-26s this text\n  %-26s print the version\n",
            "--config FILE", f->env_prefix, "--help", "--version");
}

void em_flags_log(const em_flags *f)
{
    for (int i = 0; i < f->n_flags; i++) {
        char v[512];
        value_text(&f->flags[i], v, sizeof v);
        EM_LOG_INFO("config: %s = %s (%s)", f->flags[i].name, v, source_name(f->flags[i].source));
    }
}

void em_flags_free(em_flags *f)
{
    for (int i = 0; i < f->n_owned; i++) {
        free(f->owned[i]);
    }
    free(f->owned);
    f->owned = NULL;
    f->n_owned = f->cap_owned = 0;
}
