/* emserve_client: one generation through the gRPC API, printing the text as it streams and then
 * the generated ids.
 *   emserve_client [--addr HOST:PORT] --prompt TEXT [--max-tokens N] [--temperature T] [--seed S]
 *                  [--kv-method M] [--kv-budget B] [--kv key=value ...] [--ids "1 2 3"]
 *                  [--ignore-eos]
 *   emserve_client [--addr HOST:PORT] --chat MESSAGE [--system TEXT] [same options]
 *   emserve_client [--addr HOST:PORT] --tokenize (--prompt TEXT | --chat MESSAGE [--system TEXT])
 *   emserve_client [--addr HOST:PORT] --health | --abort REQUEST_ID
 * On a TLS port: --tls-ca FILE (the CA of the server's certificate) [--tls-cert FILE
 * --tls-key FILE] (a client certificate, for a port that requires one).
 * Flags through common/flags.h like every emserve binary: --flag=value, an EMSERVE_CLIENT_*
 * environment twin for each, --config FILE, --help, --version. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

#include "common/flags.h"
#include "common/version.h"
#include "coordinator/client.h"
#include "rpc/rpc_tls.h"

#define MAX_KV  32
#define MAX_IDS 4096

typedef struct client_flags {
    const char *addr, *prompt, *chat, *system, *ids, *id, *abort_id;
    const char *temperature, *seed, *kv_method;
    rpc_tls_files tls; /* --tls-cert, --tls-key, --tls-ca */
    int max_tokens, kv_budget, health, tokenize, ignore_eos;
    long timeout_ms;
    em_flag_list kv;
    const char *kv_items[MAX_KV];
} client_flags;

#define N_FLAGS 20

static void flag_table(client_flags *f, em_flag *t)
{
    const em_flag table[N_FLAGS] = {
        {"addr", EM_FLAG_STR, &f->addr, 0, 0, "HOST:PORT", "the server's public gRPC address", 0,
         0},
        {"prompt", EM_FLAG_STR, &f->prompt, 0, 0, "TEXT", "plain-text prompt", 0, 0},
        {"chat", EM_FLAG_STR, &f->chat, 0, 0, "MESSAGE",
         "a user message through the model's chat template", 0, 0},
        {"system", EM_FLAG_STR, &f->system, 0, 0, "TEXT", "system message of --chat", 0, 0},
        {"ids", EM_FLAG_STR, &f->ids, 0, 0, "\"1 2 3\"", "prompt token ids instead of text", 0, 0},
        {"max-tokens", EM_FLAG_INT, &f->max_tokens, 0, 1 << 30, "N",
         "tokens to generate (the server checks the range)", 0, 'n'},
        {"temperature", EM_FLAG_STR, &f->temperature, 0, 0, "T", "0 = greedy", 0, 0},
        {"seed", EM_FLAG_STR, &f->seed, 0, 0, "S", "sampling seed (unsigned 64-bit)", 0, 0},
        {"kv-method", EM_FLAG_STR, &f->kv_method, 0, 0, "M", "KV compression method", 0, 0},
        {"kv-budget", EM_FLAG_INT, &f->kv_budget, 0, 1 << 30, "B", "KV entries per head", 0, 0},
        {"kv", EM_FLAG_LIST, &f->kv, 0, 0, "KEY=VALUE", "a KV method parameter (repeatable)", 0, 0},
        {"id", EM_FLAG_STR, &f->id, 0, 0, "REQUEST_ID", "request id (for --abort elsewhere)", 0, 0},
        {"timeout-ms", EM_FLAG_LONG, &f->timeout_ms, 1, 86400000L, "N", "call deadline", 0, 0},
        {"ignore-eos", EM_FLAG_BOOL, &f->ignore_eos, 0, 1, NULL, "generate past end of text", 0, 0},
        {"tokenize", EM_FLAG_BOOL, &f->tokenize, 0, 1, NULL,
         "print the prompt's ids instead of generating", 0, 0},
        {"health", EM_FLAG_BOOL, &f->health, 0, 1, NULL, "print the server's health", 0, 0},
        {"abort", EM_FLAG_STR, &f->abort_id, 0, 0, "REQUEST_ID", "abort a running request", 0, 0},
        {"tls-ca", EM_FLAG_STR, &f->tls.ca, 0, 0, "FILE",
         "TLS: the CA of the server's certificate (plaintext when none of the tls flags)", 0, 0},
        {"tls-cert", EM_FLAG_STR, &f->tls.cert, 0, 0, "FILE",
         "TLS: a client certificate (a port that requires one)", 0, 0},
        {"tls-key", EM_FLAG_STR, &f->tls.key, 0, 0, "FILE", "TLS: the client certificate's key", 0,
         0},
    };
    memcpy(t, table, sizeof table);
}

/* --temperature: a whole finite number. */
static em_status parse_float(const char *name, const char *s, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v)) {
        fprintf(stderr, "emserve_client: --%s: '%s' is not a number\n", name, s);
        return EM_EINVAL;
    }
    *out = (float)v;
    return EM_OK;
}

/* --seed: a whole unsigned 64-bit integer. */
static em_status parse_u64(const char *name, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || s[0] == '-') {
        fprintf(stderr, "emserve_client: --%s: '%s' is not an unsigned integer\n", name, s);
        return EM_EINVAL;
    }
    *out = v;
    return EM_OK;
}

/* --ids "1 2 3": whitespace-separated integers, all of them. */
static em_status parse_ids(const char *s, int32_t *ids, int *n)
{
    char *end;
    *n = 0;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        if (!*s)
            return EM_OK;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < INT32_MIN || v > INT32_MAX || *n == MAX_IDS) {
            fprintf(stderr, "emserve_client: --ids: bad or too many ids at '%.20s'\n", s);
            return EM_EINVAL;
        }
        ids[(*n)++] = (int32_t)v;
        s = end;
    }
}

/* --kv KEY=VALUE items into the request's parallel arrays (the strings are split in place). */
static em_status split_kv(client_flags *f, const char **keys, const char **vals)
{
    for (int i = 0; i < f->kv.n; i++) {
        char *eq = strchr(f->kv.items[i], '=');
        if (eq == NULL) {
            fprintf(stderr, "emserve_client: --kv wants KEY=VALUE, got '%s'\n", f->kv.items[i]);
            return EM_EINVAL;
        }
        *eq = 0;
        keys[i] = f->kv.items[i];
        vals[i] = eq + 1;
    }
    return EM_OK;
}

/* The request from the flags; EM_EINVAL (message printed) for bad values or combinations. */
static em_status build_request(client_flags *f, coord_client_req *rq, int32_t *ids,
                               coord_chat_msg *msgs, const char **keys, const char **vals)
{
    rq->max_tokens = f->max_tokens;
    rq->top_k = -1;
    rq->timeout_ms = f->timeout_ms;
    rq->ignore_eos = f->ignore_eos;
    rq->kv_method = f->kv_method;
    rq->kv_budget = f->kv_budget;
    rq->request_id = f->id;
    rq->text = f->prompt;
    if (f->temperature && parse_float("temperature", f->temperature, &rq->temperature) != EM_OK)
        return EM_EINVAL;
    if (f->seed) {
        if (parse_u64("seed", f->seed, &rq->seed) != EM_OK)
            return EM_EINVAL;
        rq->has_seed = 1;
    }
    if (split_kv(f, keys, vals) != EM_OK)
        return EM_EINVAL;
    rq->kv_keys = keys;
    rq->kv_vals = vals;
    rq->n_kv = f->kv.n;
    if (f->ids) {
        if (parse_ids(f->ids, ids, &rq->n_ids) != EM_OK)
            return EM_EINVAL;
        rq->ids = ids;
    }
    if (f->chat) {
        int n = 0;
        if (f->system)
            msgs[n++] = (coord_chat_msg){"system", f->system};
        msgs[n++] = (coord_chat_msg){"user", f->chat};
        rq->messages = msgs;
        rq->n_messages = n;
    }
    int inputs = !!f->prompt + !!f->ids + !!f->chat;
    int modes = f->health + !!f->abort_id + f->tokenize;
    if (modes > 1 || (f->system && !f->chat) || inputs > 1 ||
        (inputs == 0 && !f->health && !f->abort_id) || (f->tokenize && !f->prompt && !f->chat)) {
        fprintf(stderr, "emserve_client: give one of --prompt, --ids, --chat (or --health, "
                        "--abort ID); --system goes with --chat; see --help\n");
        return EM_EINVAL;
    }
    return EM_OK;
}

/* --tokenize: the ids (and the rendered chat prompt) of the prompt rq would send. */
static int print_tokens(coord_client *c, const coord_client_req *rq)
{
    coord_client_tokenize_req tr = {rq->text, rq->messages, rq->n_messages, -1, -1};
    coord_client_tokens tk;
    if (coord_client_tokenize(c, &tr, &tk) != GRPC_STATUS_OK) {
        fprintf(stderr, "emserve_client: status %d: %s\n", tk.status, tk.message);
        return 1;
    }
    if (tk.prompt[0]) {
        printf("prompt: %s\n", tk.prompt);
    }
    printf("ids:");
    for (int i = 0; i < tk.n_ids; i++) {
        printf(" %d", tk.ids[i]);
    }
    printf("\n");
    coord_client_tokens_free(&tk);
    return 0;
}

/* Streams one generation to stdout, then its ids and statistics; the exit status. */
static int generate(coord_client *c, coord_client_req *rq)
{
    coord_client_result res;
    rq->on_chunk = coord_client_chunk_to_stdout;
    if (rq->text)
        printf("%s", rq->text);
    coord_client_generate(c, rq, &res);
    printf("\n");
    int rc = 0;
    if (res.status != GRPC_STATUS_OK) {
        fprintf(stderr, "emserve_client: status %d: %s\n", res.status, res.message);
        rc = 1;
    } else {
        printf("ids:");
        for (int i = 0; i < res.n_output; i++)
            printf(" %d", res.output_ids[i]);
        printf("\nfinish_reason: %s, prompt %d, completion %d, kv entries %lld of %lld\n",
               res.finish_reason, res.prompt_tokens, res.completion_tokens,
               (long long)res.kv_entries_kept, (long long)res.kv_entries_full);
    }
    coord_client_result_free(&res);
    return rc;
}

int main(int argc, char **argv)
{
    static client_flags f = {.addr = "127.0.0.1:50051", .max_tokens = 40, .timeout_ms = 120000};
    static em_flag table[N_FLAGS];
    f.kv = (em_flag_list){f.kv_items, 0, MAX_KV};
    flag_table(&f, table);
    em_flags fl = {"emserve_client",
                   "EMSERVE_CLIENT_",
                   EMSERVE_VERSION,
                   "one generation through the gRPC API (text streams as it arrives)",
                   table,
                   N_FLAGS,
                   NULL,
                   0,
                   0};
    int exit_now = 0;
    char err[256];
    if (em_flags_parse(&fl, argc, argv, &exit_now, err, sizeof err) != EM_OK) {
        fprintf(stderr, "emserve_client: %s\n", err);
        return 2;
    }
    if (exit_now)
        return 0;
    static int32_t ids[MAX_IDS];
    static const char *kv_keys[MAX_KV], *kv_vals[MAX_KV];
    coord_chat_msg msgs[2];
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    if (build_request(&f, &rq, ids, msgs, kv_keys, kv_vals) != EM_OK)
        return 2;
    rpc_tls tls;
    if (rpc_tls_load(&f.tls, 0, &tls, err, sizeof err) != EM_OK) {
        fprintf(stderr, "emserve_client: %s\n", err);
        return 2;
    }
    grpc_init();
    coord_client *c = coord_client_create_tls(f.addr, &tls);
    int rc;
    if (f.health) {
        int serving;
        em_status st = coord_client_health(c, 5000, &serving);
        printf("%s\n", st != EM_OK ? "UNREACHABLE" : serving ? "SERVING" : "NOT_SERVING");
        rc = st == EM_OK && serving ? 0 : 1;
    } else if (f.abort_id) {
        int found;
        em_status st = coord_client_abort(c, f.abort_id, &found);
        printf("%s\n", st != EM_OK ? "error" : found ? "aborted" : "not found");
        rc = st != EM_OK || !found;
    } else if (f.tokenize) {
        rc = print_tokens(c, &rq);
    } else {
        rc = generate(c, &rq);
    }
    coord_client_free(c);
    grpc_shutdown();
    rpc_tls_free(&tls);
    em_flags_free(&fl);
    return rc;
}
