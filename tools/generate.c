/* //tools:generate — command-line text generation on one process.
 * Prints the generated ids on a line starting with "ids:" and then the text; statistics go to
 * stderr. Errors go to stderr with a non-zero exit. */
#include "engine/generate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/log.h"
#include "model/model.h"
#include "model/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: generate --model PATH (--prompt TEXT | --prompt-file PATH) [options]\n"
        "  -n N                 tokens to generate (default 128)\n"
        "  --threads N          CPU threads (default 1; 0 = scalar reference kernels)\n"
        "  --act-quant f32|q8   quantized weights: f32 activations (default) or int8 (llama.cpp)\n"
        "  --ignore-eos         keep generating after EOS\n"
        "  --temp T             temperature (0 = greedy; default 0.8)\n"
        "  --top-k K            (default 40; 0 = off)\n"
        "  --top-p P            (default 0.95; 1 = off)\n"
        "  --min-p P            (default 0.05; 0 = off)\n"
        "  --repeat-penalty R   (default 1.0 = off)\n"
        "  --seed S             (default 42)\n"
        "  --stop TEXT          stop string (repeatable)\n"
        "  --stop-id ID         stop token id (repeatable)\n"
        "  --bos / --no-bos     prepend BOS or not (default: as the model asks)\n"
        "  The prompt is taken byte for byte; special-token texts (<|im_start|>) become their "
        "ids.\n");
    ems_config_cli_usage(f);
    fputc('\n', f);
    ems_config_help(f);
}

/* Appends the token's text to the NUL-terminated string *user. */
static em_status on_token(void *user, int32_t id, const char *text, size_t len)
{
    char **acc = user;
    size_t old = *acc ? strlen(*acc) : 0;
    char *n = realloc(*acc, old + len + 1);
    if (!n)
        return EM_ENOMEM;
    memcpy(n + old, text, len);
    n[old + len] = 0;
    *acc = n;
    return EM_OK;
}

/* A decimal integer in [lo, hi]; EM_EINVAL for anything else. */
static em_status parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return EM_EINVAL;
    *out = (int)v;
    return EM_OK;
}

/* A float (range checks are the sampler's); EM_EINVAL when s is not one. */
static em_status parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end)
        return EM_EINVAL;
    *out = v;
    return EM_OK;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL;
    kern_act_mode act = KERN_ACT_F32;
    int threads = 1, add_bos = -1; /* -1: tokenizer.ggml.add_bos_token */
    char err[512] = "";
    gen_params gp;
    gen_params_default(&gp);
    gp.sp.temperature = 0.8f;
    gp.sp.top_k = 40;
    gp.sp.top_p = 0.95f;
    gp.sp.min_p = 0.05f;
    gp.sp.seed = 42;
    gp.stop.max_tokens = 128;
    int n_stop_ids = 0;
    int32_t stop_ids[STOP_MAX_IDS];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, used = 1;
        em_status kst = EM_OK;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--ignore-eos")) {
            gp.stop.ignore_eos = 1;
            used = 0;
        } else if (!strcmp(a, "--no-bos") || !strcmp(a, "--bos")) {
            add_bos = !strcmp(a, "--bos");
            used = 0;
        } else if (!v) {
            fprintf(stderr, "error: %s needs a value (see --help)\n", a);
            return 2;
        } else if (!strcmp(a, "--model") || !strcmp(a, "-m")) {
            model_path = v;
        } else if (!strcmp(a, "--prompt") || !strcmp(a, "-p")) {
            prompt = v;
        } else if (!strcmp(a, "--prompt-file") || !strcmp(a, "-f")) {
            prompt_file = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            bad = parse_int(v, 1, 1 << 20, &gp.stop.max_tokens) != EM_OK;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            bad = parse_int(v, 0, 256, &threads) != EM_OK;
        } else if (!strcmp(a, "--act-quant")) {
            bad = !kern_act_mode_parse(v, &act);
        } else if (!strcmp(a, "--temp")) {
            bad = parse_float(v, &gp.sp.temperature) != EM_OK;
        } else if (!strcmp(a, "--top-k")) {
            bad = parse_int(v, 0, 1 << 30, &gp.sp.top_k) != EM_OK;
        } else if (!strcmp(a, "--top-p")) {
            bad = parse_float(v, &gp.sp.top_p) != EM_OK;
        } else if (!strcmp(a, "--min-p")) {
            bad = parse_float(v, &gp.sp.min_p) != EM_OK;
        } else if (!strcmp(a, "--repeat-penalty")) {
            bad = parse_float(v, &gp.sp.repetition_penalty) != EM_OK;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            gp.sp.seed = strtoull(v, &end, 10);
            bad = *end != 0;
        } else if (!strcmp(a, "--stop")) {
            bad = stop_params_add_string(&gp.stop, v, strlen(v), err, sizeof err) != EM_OK;
        } else if (!strcmp(a, "--stop-id")) {
            bad = n_stop_ids >= STOP_MAX_IDS ||
                  parse_int(v, 0, 1 << 30, &stop_ids[n_stop_ids++]) != EM_OK;
        } else if (ems_config_cli(&gp.kv, a, v, &kst, err, sizeof err)) {
            bad = kst != EM_OK;
        } else {
            fprintf(stderr, "error: unknown option %s (see --help)\n", a);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "error: bad value for %s: '%s'%s%s\n", a, v, err[0] ? ": " : "", err);
            return 2;
        }
        i += used;
    }
    if (!model_path)
        model_path = model_find_default();
    if (!model_path) {
        fprintf(stderr, "error: --model PATH is required (or set EMSERVE_MODEL)\n");
        return 2;
    }
    if (prompt && prompt_file) {
        fprintf(stderr, "error: give --prompt or --prompt-file, not both\n");
        return 2;
    }
    if (sampler_params_validate(&gp.sp, err, sizeof err) != EM_OK ||
        ems_config_validate(&gp.kv, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    size_t plen = 0;
    char *ptext = NULL;
    if (prompt_file) {
        em_status rst = em_read_file(prompt_file, &ptext, &plen);
        if (rst != EM_OK) {
            fprintf(stderr, "error: cannot read %s: %s\n", prompt_file,
                    rst == EM_EIO ? strerror(errno) : em_status_str(rst));
            return 1;
        }
    } else {
        ptext = strdup(prompt ? prompt : "Once upon a time");
        plen = strlen(ptext);
    }
    model *m = NULL;
    tokenizer *tok = NULL;
    engine *e = NULL;
    int rc = 1;
    if (model_load(model_path, &m, err, sizeof err) != EM_OK ||
        tok_create(m->gguf, &tok, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    for (int i = 0; i < n_stop_ids; i++) {
        if (stop_params_add_id(&gp.stop, stop_ids[i], m->hp.n_vocab, err, sizeof err) != EM_OK) {
            fprintf(stderr, "error: %s\n", err);
            goto out;
        }
    }
    int cap = (int)plen + 8, n_prompt = 0;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    if (add_bos < 0)
        add_bos = tok_add_bos_default(tok);
    unsigned tflags = TOK_PARSE_SPECIAL | (add_bos ? TOK_ADD_BOS : 0);
    if (!ids || tok_encode_ex(tok, ptext, plen, tflags, ids, cap, &n_prompt) != EM_OK) {
        fprintf(stderr, "error: cannot tokenize the prompt\n");
        free(ids);
        goto out;
    }
    if (n_prompt == 0 || n_prompt >= m->hp.n_ctx) {
        fprintf(stderr, "error: the prompt has %d tokens; the model's context is %d\n", n_prompt,
                m->hp.n_ctx);
        free(ids);
        goto out;
    }
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {.n_threads = threads, .max_batch_tokens = 512, .act = act};
    em_status st = engine_create(m, &sd, &eo, &e);
    if (st != EM_OK) {
        fprintf(stderr, "error: engine: %s\n", em_status_str(st));
        free(ids);
        goto out;
    }
    char *text = NULL;
    gen_result res;
    st = gen_run(e, tok, ids, n_prompt, &gp, on_token, &text, &res);
    if (st != EM_OK) {
        fprintf(stderr, "error: generation failed: %s\n", em_status_str(st));
        free(ids);
        free(text);
        goto out;
    }
    printf("ids:");
    for (int i = 0; i < res.n_ids; i++)
        printf(" %d", res.ids[i]);
    printf("\n%.*s%s\n", (int)plen, ptext, text ? text : "");
    fprintf(stderr,
            "prompt %d tokens in %.3f s (%.1f tok/s), generated %d tokens in %.3f s (%.1f tok/s), "
            "finish %s, kv entries %llu of %llu (%.1f KiB)\n",
            n_prompt, res.prefill_s, n_prompt / (res.prefill_s > 0 ? res.prefill_s : 1e-9),
            res.n_ids, res.decode_s, res.n_ids / (res.decode_s > 0 ? res.decode_s : 1e-9),
            stop_reason_str(res.reason)[0] ? stop_reason_str(res.reason) : "abort",
            (unsigned long long)res.kv_entries, (unsigned long long)res.kv_entries_full,
            res.kv_bytes / 1024.0);
    gen_result_free(&res);
    free(text);
    free(ids);
    rc = 0;
out:
    engine_free(e);
    tok_free(tok);
    model_free(m);
    free(ptext);
    return rc;
}
