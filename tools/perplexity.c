/* //tools:perplexity - streams a text through the model one token at a time, compressing the
 * KV cache whenever the policy says so (--kv-method/--kv-budget/--kv-quant/--kv-param, as in
 * //tools:generate), and prints the perplexity; the last line is "ppl: <value>". Stories in the
 * file separated by <|endoftext|> are each encoded with BOS. Progress goes to stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/flags.h"
#include "common/version.h"
#include "eval/stream.h"
#include "model/model.h"
#include "tools/kv_flags.h"

typedef struct ppl_flags {
    const char *model, *text_file, *act_quant;
    int threads, max_tokens, no_bos, quiet;
    kv_flags kv;
} ppl_flags;

#define N_OWN   7 /* then the KV_FLAGS_N KV flags */
#define N_FLAGS (N_OWN + KV_FLAGS_N)

static void flag_table(ppl_flags *o, em_flag *t)
{
    const em_flag table[N_OWN] = {
        {"model", EM_FLAG_STR, &o->model, 0, 0, "PATH", "GGUF model (default: the installed one)",
         0, 'm'},
        {"text-file", EM_FLAG_STR, &o->text_file, 0, 0, "PATH", "the text to score", 0, 'f'},
        {"threads", EM_FLAG_INT, &o->threads, 0, 256, "N", "CPU threads (0 = scalar reference)", 0,
         't'},
        {"act-quant", EM_FLAG_STR, &o->act_quant, 0, 0, "f32|q8",
         "quantized weights: f32 activations or int8", 0, 0},
        {"max-tokens", EM_FLAG_INT, &o->max_tokens, 0, 1 << 30, "N",
         "score at most N tokens (0: the model's context; else at least 2)", 0, 0},
        {"no-bos", EM_FLAG_BOOL, &o->no_bos, 0, 1, NULL, "do not prepend BOS to each story", 0, 0},
        {"quiet", EM_FLAG_BOOL, &o->quiet, 0, 1, NULL, "no progress on stderr", 0, 0},
    };
    memcpy(t, table, sizeof table);
    kv_flags_table(&o->kv, t + N_OWN);
}

int main(int argc, char **argv)
{
    static ppl_flags f = {.act_quant = "f32", .threads = 1};
    static em_flag table[N_FLAGS];
    flag_table(&f, table);
    static em_flags flags = {"perplexity",
                             "EMSERVE_PERPLEXITY_",
                             EMSERVE_VERSION,
                             "perplexity: streams a text through the model token by token, "
                             "compressing the KV cache as the policy says; last line \"ppl: X\"",
                             table,
                             N_FLAGS,
                             NULL,
                             0,
                             0};
    char err[256] = "";
    int exit_now = 0;
    if (em_flags_parse(&flags, argc, argv, &exit_now, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    if (exit_now) {
        kv_flags_help_if_asked(argc, argv);
        return 0;
    }
    const char *model_path = f.model, *text_path = f.text_file;
    int threads = f.threads, max_tokens = f.max_tokens, add_bos = !f.no_bos, quiet = f.quiet;
    kern_act_mode act = KERN_ACT_F32;
    ems_config cfg;
    ems_config_default(&cfg);
    if (!kern_act_mode_parse(f.act_quant, &act) || max_tokens == 1) {
        fprintf(stderr, "error: --act-quant f32|q8, --max-tokens 0 or at least 2\n");
        return 2;
    }
    if (kv_flags_apply(&f.kv, &cfg, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    if (!model_path)
        model_path = model_find_default();
    if (!model_path || !text_path) {
        fprintf(stderr, "error: --model PATH and --text-file PATH are required\n");
        return 2;
    }
    if (ems_config_validate(&cfg, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    model *m = NULL;
    tokenizer *tok = NULL;
    engine *e = NULL;
    int32_t *ids = NULL;
    int n = 0, rc = 1;
    if (model_load(model_path, &m, err, sizeof err) != EM_OK ||
        tok_create(m->gguf, &tok, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    int cap = m->hp.n_ctx;
    if (max_tokens > 0 && max_tokens + 1 < cap)
        cap = max_tokens + 1;
    if (ev_load_text(tok, text_path, add_bos, cap, &ids, &n, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {.n_threads = threads, .max_batch_tokens = 512, .act = act};
    em_status st = engine_create(m, &sd, &eo, &e);
    if (st != EM_OK) {
        fprintf(stderr, "error: engine: %s\n", em_status_str(st));
        goto out;
    }
    char desc[512];
    ems_config_describe(&cfg, desc, sizeof desc);
    fprintf(stderr, "%s: %d tokens (model context %d), kv: %s budget %d\n", text_path, n,
            m->hp.n_ctx, desc, cfg.budget);
    ev_stream_opts o = {0};
    o.progress = quiet ? 0 : 100;
    ev_stream_result r;
    st = ev_stream(e, &cfg, ids, n, &o, &r);
    if (st != EM_OK) {
        fprintf(stderr, "error: %s\n", em_status_str(st));
        goto out;
    }
    printf("tokens scored: %d\n", r.n_scored);
    printf("nll: %.6f\n", r.nll_sum / r.n_scored);
    printf("kv bytes at end: %llu (entries %llu), mean over the stream %.0f\n",
           (unsigned long long)r.kv_bytes_end, (unsigned long long)r.kv_entries_end,
           r.kv_bytes_mean);
    printf("compression: %.3f ms per token (%lld compressing steps)\n",
           1e3 * r.compress_s / (double)(r.n_policy_calls ? r.n_policy_calls : 1),
           (long long)r.n_compress_steps);
    printf("ppl: %.6f\n", exp(r.nll_sum / r.n_scored));
    rc = 0;
out:
    free(ids);
    engine_free(e);
    tok_free(tok);
    model_free(m);
    return rc;
}
