/* //tools:perplexity - streams a text through the model one token at a time, compressing the
 * KV cache whenever the policy says so (--kv-method/--kv-budget/--kv-quant/--kv-param, as in
 * //tools:generate), and prints the perplexity; the last line is "ppl: <value>". Stories in the
 * file separated by <|endoftext|> are each encoded with BOS. Progress goes to stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/stream.h"
#include "model/model.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: perplexity --model PATH --text-file PATH [options]\n"
               "  --threads N          CPU threads (default 1; 0 = scalar reference kernels)\n"
               "  --act-quant f32|q8   quantized weights: f32 activations (default) or int8\n"
               "  --max-tokens N       score at most N tokens (default: the model's context)\n"
               "  --no-bos             do not prepend BOS to each story\n"
               "  --quiet              no progress on stderr\n");
    ems_config_cli_usage(f);
    fputc('\n', f);
    ems_config_help(f);
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *text_path = NULL;
    int threads = 1, max_tokens = 0, add_bos = 1, quiet = 0;
    kern_act_mode act = KERN_ACT_F32;
    ems_config cfg;
    ems_config_default(&cfg);
    char err[256] = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-bos")) {
            add_bos = 0;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "error: %s needs a value (see --help)\n", a);
            return 2;
        }
        int bad = 0;
        em_status kst = EM_OK;
        char *end = NULL;
        if (!strcmp(a, "--model") || !strcmp(a, "-m")) {
            model_path = v;
        } else if (!strcmp(a, "--text-file") || !strcmp(a, "-f")) {
            text_path = v;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            threads = (int)strtol(v, &end, 10);
            bad = *end || threads < 0 || threads > 256;
        } else if (!strcmp(a, "--act-quant")) {
            bad = !kern_act_mode_parse(v, &act);
        } else if (!strcmp(a, "--max-tokens")) {
            max_tokens = (int)strtol(v, &end, 10);
            bad = *end || max_tokens < 2;
        } else if (ems_config_cli(&cfg, a, v, &kst, err, sizeof err)) {
            bad = kst != EM_OK;
        } else {
            fprintf(stderr, "error: unknown option %s (see --help)\n", a);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "error: bad value for %s: '%s'%s%s\n", a, v, err[0] ? ": " : "", err);
            return 2;
        }
        i++;
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
