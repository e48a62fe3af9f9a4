/* common/flags: the command line (--flag VALUE, --flag=VALUE, booleans, lists), environment
 * twins, the INI config file, the precedence command line > environment > file > default, and
 * every kind of bad input as a clear error naming the flag and its source. Table-driven: each
 * case sets up argv, the environment and a config file, then checks values or the message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/flags.h"
#include "tests/testutil/testutil.h"

typedef struct conf {
    const char *model;
    int max_seqs, verbose;
    long timeout_ms;
    const char *addr_items[3];
    em_flag_list addrs;
} conf;

static em_flag g_table[5];
static conf g_c;

/* Fresh defaults and table (em_flags_parse writes into both). */
static em_flags make_flags(void)
{
    g_c = (conf){.model = "default.gguf", .max_seqs = 64, .timeout_ms = 1000};
    g_c.addrs = (em_flag_list){g_c.addr_items, 0, 3};
    em_flag t[5] = {
        {"model", EM_FLAG_STR, &g_c.model, 0, 0, "PATH", "the model", 0, 'm'},
        {"max-seqs", EM_FLAG_INT, &g_c.max_seqs, 1, 4096, "N", "sequences", 0, 0},
        {"timeout-ms", EM_FLAG_LONG, &g_c.timeout_ms, -1, 3600000, "N", "timeout", 0, 0},
        {"verbose", EM_FLAG_BOOL, &g_c.verbose, 0, 1, NULL, "debug logs", 0, 'v'},
        {"worker-addr", EM_FLAG_LIST, &g_c.addrs, 0, 0, "HOST:PORT", "a worker", 0, 0},
    };
    memcpy(g_table, t, sizeof t);
    return (em_flags){"emtest", "EMTEST_", "1.2.3", NULL, g_table, 5, NULL, 0, 0};
}

static const char *write_file(const char *text)
{
    static char path[512];
    tu_tmp_path(path, sizeof path, "flags_test.ini");
    FILE *fp = fopen(path, "w");
    REQUIRE(fp != NULL, "cannot write %s", path);
    fputs(text, fp);
    fclose(fp);
    return path;
}

static void clear_env(void)
{
    static const char *const names[] = {"EMTEST_MODEL",   "EMTEST_MAX_SEQS",    "EMTEST_TIMEOUT_MS",
                                        "EMTEST_VERBOSE", "EMTEST_WORKER_ADDR", "EMTEST_CONFIG"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        unsetenv(names[i]);
    }
}

/* Parses argv (NULL-terminated, after the program name) with the environment pairs env
 * ("NAME=VALUE", NULL-terminated) and the config file text file (NULL: none; passed as
 * --config unless via_env). */
static em_status run(const char *const *args, const char *const *env, const char *file, int via_env,
                     em_flags *f, char *err, size_t errlen)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "emtest";
    clear_env();
    for (int i = 0; env && env[i]; i++) {
        char name[64];
        const char *eq = strchr(env[i], '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq - env[i]), env[i]);
        setenv(name, eq + 1, 1);
    }
    if (file) {
        const char *path = write_file(file);
        if (via_env) {
            setenv("EMTEST_CONFIG", path, 1);
        } else {
            argv[argc++] = "--config";
            argv[argc++] = (char *)path;
        }
    }
    for (int i = 0; args && args[i]; i++) {
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    *f = make_flags();
    int exit_now = 0;
    err[0] = 0;
    return em_flags_parse(f, argc, argv, &exit_now, err, errlen);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_values_and_precedence(void)
{
    static const char file[] = "# comment\n"
                               "model = /models/a b.gguf\n"
                               "max_seqs = 9 ; inline comment\n"
                               "timeout-ms=5\n"
                               "verbose = yes\n"
                               "worker-addr = f1:1\n"
                               "worker-addr = f2:2\n"
                               "[emserve_worker]\n"
                               "threads = 99\n";
    struct {
        const char *what;
        const char *const *args, *const *env;
        const char *file;
        int via_env;
        const char *model;
        int max_seqs, verbose;
        long timeout_ms;
        const char *addrs; /* joined with ' ' */
        em_flag_source src_seqs;
    } cases[] = {
        {"defaults", NULL, NULL, NULL, 0, "default.gguf", 64, 0, 1000, "", EM_FLAG_SRC_DEFAULT},
        {"cli",
         ARGS("--model", "m.gguf", "--max-seqs=3", "--verbose", "--worker-addr", "a:1",
              "--worker-addr=b:2"),
         NULL, NULL, 0, "m.gguf", 3, 1, 1000, "a:1 b:2", EM_FLAG_SRC_CLI},
        {"one-letter forms", ARGS("-m", "s.gguf", "-v"), NULL, NULL, 0, "s.gguf", 64, 1, 1000, "",
         EM_FLAG_SRC_DEFAULT},
        {"bool =false", ARGS("--verbose=false"), NULL, NULL, 0, "default.gguf", 64, 0, 1000, "",
         EM_FLAG_SRC_DEFAULT},
        {"env", NULL,
         ARGS("EMTEST_MAX_SEQS=5", "EMTEST_VERBOSE=on", "EMTEST_WORKER_ADDR=e1:1,e2:2"), NULL, 0,
         "default.gguf", 5, 1, 1000, "e1:1 e2:2", EM_FLAG_SRC_ENV},
        {"file", NULL, NULL, file, 0, "/models/a b.gguf", 9, 1, 5, "f1:1 f2:2", EM_FLAG_SRC_FILE},
        {"file through $EMTEST_CONFIG", NULL, NULL, file, 1, "/models/a b.gguf", 9, 1, 5,
         "f1:1 f2:2", EM_FLAG_SRC_FILE},
        {"env > file", NULL, ARGS("EMTEST_MAX_SEQS=5", "EMTEST_WORKER_ADDR=e1:1"), file, 0,
         "/models/a b.gguf", 5, 1, 5, "e1:1", EM_FLAG_SRC_ENV},
        {"cli > env > file", ARGS("--max-seqs", "7", "--worker-addr", "c:1"),
         ARGS("EMTEST_MAX_SEQS=5", "EMTEST_TIMEOUT_MS=6"), file, 0, "/models/a b.gguf", 7, 1, 6,
         "c:1", EM_FLAG_SRC_CLI},
        {"cli after a file given last", ARGS("--max-seqs", "7", "--config", write_file(file)), NULL,
         NULL, 0, "/models/a b.gguf", 7, 1, 5, "f1:1 f2:2", EM_FLAG_SRC_CLI},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        em_flags f;
        char err[512];
        em_status st =
            run(cases[i].args, cases[i].env, cases[i].file, cases[i].via_env, &f, err, sizeof err);
        CHECK(st == EM_OK, "%s: %s", cases[i].what, err);
        CHECK(strcmp(g_c.model, cases[i].model) == 0, "%s: model %s", cases[i].what, g_c.model);
        CHECK(g_c.max_seqs == cases[i].max_seqs, "%s: max-seqs %d", cases[i].what, g_c.max_seqs);
        CHECK(g_c.verbose == cases[i].verbose, "%s: verbose %d", cases[i].what, g_c.verbose);
        CHECK(g_c.timeout_ms == cases[i].timeout_ms, "%s: timeout %ld", cases[i].what,
              g_c.timeout_ms);
        char joined[256] = "";
        for (int k = 0; k < g_c.addrs.n; k++) {
            strcat(joined, k ? " " : "");
            strcat(joined, g_c.addrs.items[k]);
        }
        CHECK(strcmp(joined, cases[i].addrs) == 0, "%s: addrs '%s'", cases[i].what, joined);
        CHECK(g_table[1].source == cases[i].src_seqs, "%s: max-seqs source %d", cases[i].what,
              (int)g_table[1].source);
        em_flags_free(&f);
    }
}

static void test_errors(void)
{
    struct {
        const char *const *args, *const *env;
        const char *file;
        const char *want; /* substring of the message */
    } cases[] = {
        {ARGS("--max-seqs", "3abc"), NULL, NULL, "--max-seqs: '3abc' is not an integer"},
        {ARGS("--max-seqs="), NULL, NULL, "--max-seqs: '' is not an integer"},
        {ARGS("--max-seqs", "0"), NULL, NULL, "--max-seqs: 0 is outside [1, 4096]"},
        {ARGS("--max-seqs", "99999999999999999999"), NULL, NULL, "is not an integer"},
        {ARGS("--max-seqs", " 3"), NULL, NULL, "is not an integer"},
        {ARGS("--timeout-ms", "-2"), NULL, NULL, "--timeout-ms: -2 is outside [-1, 3600000]"},
        {ARGS("--verbose=maybe"), NULL, NULL, "--verbose: 'maybe' is not a boolean"},
        {ARGS("--nope", "1"), NULL, NULL, "unknown flag --nope"},
        {ARGS("--model"), NULL, NULL, "--model needs a value"},
        {ARGS("-m"), NULL, NULL, "-m needs a value"},
        {ARGS("-x"), NULL, NULL, "unknown flag -x"},
        {ARGS("-v", "false"), NULL, NULL, "unexpected argument 'false'"},
        {ARGS("stray"), NULL, NULL, "unexpected argument 'stray'"},
        {ARGS("--verbose", "false"), NULL, NULL, "unexpected argument 'false'"},
        {ARGS("--worker-addr", "a", "--worker-addr", "b", "--worker-addr", "c", "--worker-addr",
              "d"),
         NULL, NULL, "--worker-addr: at most 3 values"},
        {NULL, ARGS("EMTEST_MAX_SEQS=abc"), NULL, "EMTEST_MAX_SEQS: 'abc' is not an integer"},
        {NULL, ARGS("EMTEST_VERBOSE=2"), NULL, "EMTEST_VERBOSE: '2' is not a boolean"},
        {NULL, NULL, "model = x\nnope = 1\n", ":2: nope: unknown flag"},
        {NULL, NULL, "max-seqs = 12x\n", ":1: max-seqs: '12x' is not an integer"},
        {NULL, NULL, "model x\n", ":1: not a 'name = value' line"},
        {ARGS("--config", "/no/such/file.ini"), NULL, NULL, "cannot open config file /no/such"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        em_flags f;
        char err[512];
        em_status st = run(cases[i].args, cases[i].env, cases[i].file, 0, &f, err, sizeof err);
        CHECK(st == EM_EINVAL, "case %zu (%s): accepted", i, cases[i].want);
        CHECK(strstr(err, cases[i].want) != NULL, "case %zu: '%s', want '%s'", i, err,
              cases[i].want);
        em_flags_free(&f);
    }
}

static void test_help_version_and_env_names(void)
{
    em_flags f = make_flags();
    int exit_now = 0;
    char err[256];
    char *argv[] = {"emtest", "--max-seqs", "abc", "--version", NULL};
    CHECK(em_flags_parse(&f, 4, argv, &exit_now, err, sizeof err) == EM_OK && exit_now == 1,
          "--version: exit_now %d", exit_now);
    char name[64];
    em_flags_env_name(&f, &g_table[1], name, sizeof name);
    CHECK(strcmp(name, "EMTEST_MAX_SEQS") == 0, "env name %s", name);
    char buf[4096] = "";
    FILE *mem = fmemopen(buf, sizeof buf, "w");
    REQUIRE(mem != NULL, "fmemopen");
    em_flags_usage(&f, mem);
    fclose(mem);
    CHECK(strstr(buf, "--max-seqs N") && strstr(buf, "(default 64) [EMTEST_MAX_SEQS]") &&
              strstr(buf, "-m, --model PATH"),
          "usage:\n%s", buf);
    em_flags_free(&f);
    clear_env();
}

int main(void)
{
    test_values_and_precedence();
    test_errors();
    test_help_version_and_env_names();
    TEST_END();
}
