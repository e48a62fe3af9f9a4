/* emserve_client: one generation through the gRPC API, printing the text as it streams and then
 * the generated ids.
 *   emserve_client [--addr HOST:PORT] --prompt TEXT [-n N] [--temperature T] [--seed S]
 *                  [--kv-method M] [--kv-budget B] [--kv key=value ...] [--ids "1 2 3"]
 *                  [--ignore-eos]
 *   emserve_client [--addr HOST:PORT] --chat MESSAGE [--system TEXT] [same options]
 *   emserve_client [--addr HOST:PORT] --tokenize (--prompt TEXT | --chat MESSAGE [--system TEXT])
 *   emserve_client [--addr HOST:PORT] --health | --abort REQUEST_ID
 * and on a TLS port: --tls-ca FILE (the CA of the server's certificate) [--tls-cert FILE
 * --tls-key FILE] (a client certificate, for a port that requires one). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

#include "coordinator/client.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: emserve_client [--addr HOST:PORT] --prompt TEXT [-n N] [--temperature T]\n"
            "                      [--seed S] [--kv-method M] [--kv-budget B] [--kv key=value]\n"
            "                      [--ids \"1 2 3\"] [--id REQUEST_ID] [--timeout-ms N] "
            "[--ignore-eos]\n"
            "       emserve_client [--addr HOST:PORT] --chat MESSAGE [--system TEXT] [options]\n"
            "                      (a chat with the model's chat template)\n"
            "       emserve_client [--addr HOST:PORT] --tokenize (--prompt TEXT | --chat MESSAGE\n"
            "                      [--system TEXT])   (the prompt ids, no generation)\n"
            "       emserve_client [--addr HOST:PORT] --health | --abort REQUEST_ID\n"
            "TLS: --tls-ca FILE (CA of the server's certificate), --tls-cert FILE --tls-key FILE\n"
            "     (a client certificate, where the port requires one)\n");
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

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:50051", *abort_id = NULL, *ids_str = NULL;
    const char *chat = NULL, *system = NULL;
    rpc_tls_files tf = {NULL, NULL, NULL}; /* --tls-cert, --tls-key, --tls-ca */
    int health = 0, tokenize = 0;
    static const char *kv_keys[32], *kv_vals[32];
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.max_tokens = 40;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 120000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--health") == 0) {
            health = 1;
            continue;
        }
        if (strcmp(a, "--ignore-eos") == 0) {
            rq.ignore_eos = 1;
            continue;
        }
        if (strcmp(a, "--tokenize") == 0) {
            tokenize = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--addr") == 0) {
            addr = v;
        } else if (strcmp(a, "--prompt") == 0) {
            rq.text = v;
        } else if (strcmp(a, "--chat") == 0) {
            chat = v;
        } else if (strcmp(a, "--system") == 0) {
            system = v;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--max-tokens") == 0) {
            rq.max_tokens = atoi(v);
        } else if (strcmp(a, "--temperature") == 0) {
            rq.temperature = (float)atof(v);
        } else if (strcmp(a, "--seed") == 0) {
            rq.seed = strtoull(v, NULL, 10);
            rq.has_seed = 1;
        } else if (strcmp(a, "--kv-method") == 0) {
            rq.kv_method = v;
        } else if (strcmp(a, "--kv-budget") == 0) {
            rq.kv_budget = atoi(v);
        } else if (strcmp(a, "--kv") == 0 && rq.n_kv < 32) {
            char *eq = strchr(v, '=');
            if (eq == NULL) {
                fprintf(stderr, "emserve_client: --kv wants key=value\n");
                return 2;
            }
            *eq = 0;
            kv_keys[rq.n_kv] = v;
            kv_vals[rq.n_kv++] = eq + 1;
        } else if (strcmp(a, "--ids") == 0) {
            ids_str = v;
        } else if (strcmp(a, "--id") == 0) {
            rq.request_id = v;
        } else if (strcmp(a, "--timeout-ms") == 0) {
            rq.timeout_ms = atol(v);
        } else if (strcmp(a, "--abort") == 0) {
            abort_id = v;
        } else if (strcmp(a, "--tls-ca") == 0) {
            tf.ca = v;
        } else if (strcmp(a, "--tls-cert") == 0) {
            tf.cert = v;
        } else if (strcmp(a, "--tls-key") == 0) {
            tf.key = v;
        } else {
            fprintf(stderr, "emserve_client: unknown flag %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    rq.kv_keys = kv_keys;
    rq.kv_vals = kv_vals;
    int32_t ids[4096];
    if (ids_str) {
        char *s = (char *)ids_str, *end;
        while (rq.n_ids < 4096) {
            long v = strtol(s, &end, 10);
            if (end == s) {
                break;
            }
            ids[rq.n_ids++] = (int32_t)v;
            s = end;
        }
        rq.ids = ids;
        rq.text = NULL;
    }
    coord_chat_msg msgs[2];
    if (chat) {
        int n = 0;
        if (system) {
            msgs[n++] = (coord_chat_msg){"system", system};
        }
        msgs[n++] = (coord_chat_msg){"user", chat};
        rq.messages = msgs;
        rq.n_messages = n;
    }
    if ((!health && !abort_id && !rq.text && !ids_str && !chat) || (system && !chat) ||
        (chat && (rq.text || ids_str)) || (tokenize && !rq.text && !chat)) {
        usage(stderr);
        return 2;
    }
    rpc_tls tls;
    char err[512] = "";
    if (rpc_tls_load(&tf, 0, &tls, err, sizeof err) != EM_OK) {
        fprintf(stderr, "emserve_client: %s\n", err);
        return 2;
    }
    grpc_init();
    coord_client *c = coord_client_create_tls(addr, &tls);
    int rc = 0;
    if (health) {
        int h = coord_client_health(c, 5000);
        printf("%s\n", h == 1 ? "SERVING" : h == 0 ? "NOT_SERVING" : "UNREACHABLE");
        rc = h == 1 ? 0 : 1;
    } else if (abort_id) {
        int f = coord_client_abort(c, abort_id);
        printf("%s\n", f == 1 ? "aborted" : f == 0 ? "not found" : "error");
        rc = f < 0;
    } else if (tokenize) {
        rc = print_tokens(c, &rq);
    } else {
        coord_client_result res;
        rq.on_chunk = coord_client_chunk_to_stdout;
        if (rq.text) {
            printf("%s", rq.text);
        }
        coord_client_generate(c, &rq, &res);
        printf("\n");
        if (res.status != GRPC_STATUS_OK) {
            fprintf(stderr, "emserve_client: status %d: %s\n", res.status, res.message);
            rc = 1;
        } else {
            printf("ids:");
            for (int i = 0; i < res.n_output; i++) {
                printf(" %d", res.output_ids[i]);
            }
            printf("\nfinish_reason: %s, prompt %d, completion %d, kv entries %lld of %lld\n",
                   res.finish_reason, res.prompt_tokens, res.completion_tokens,
                   (long long)res.kv_entries_kept, (long long)res.kv_entries_full);
        }
        coord_client_result_free(&res);
    }
    coord_client_free(c);
    grpc_shutdown();
    rpc_tls_free(&tls);
    return rc;
}
