/* //tools:generate — command-line text generation on one process.
 * Prints the generated ids on a line starting with "ids:" and then the text; statistics go to
 * stderr. Errors go to stderr with a non-zero exit. */
#include "engine/generate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/version.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tools/kv_flags.h"

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

/* The command line (common/flags.h: EMSERVE_GENERATE_* twins, --config, llama.cpp's letters
 * -m -p -f -n -t). */
typedef struct gen_flags {
    const char *model, *prompt, *prompt_file, *act_quant, *temp, *top_p, *min_p, *repeat_penalty,
        *seed;
    int max_tokens, threads, top_k, ignore_eos, bos, no_bos, prefill_chunk;
    const char *stop_items[STOP_MAX_STRINGS], *stop_id_items[STOP_MAX_IDS];
    em_flag_list stop, stop_id;
    kv_flags kv;
} gen_flags;

#define N_OWN   18 /* then the KV_FLAGS_N KV flags */
#define N_FLAGS (N_OWN + KV_FLAGS_N)

static void flag_table(gen_flags *o, em_flag *t)
{
    const em_flag table[N_OWN] = {
        {"model", EM_FLAG_STR, &o->model, 0, 0, "PATH", "GGUF model (default: the installed one)",
         0, 'm'},
        {"prompt", EM_FLAG_STR, &o->prompt, 0, 0, "TEXT",
         "taken byte for byte; special-token texts (<|im_start|>) become their ids", 0, 'p'},
        {"prompt-file", EM_FLAG_STR, &o->prompt_file, 0, 0, "FILE", "the prompt from a file", 0,
         'f'},
        {"max-tokens", EM_FLAG_INT, &o->max_tokens, 1, 1 << 20, "N", "tokens to generate", 0, 'n'},
        {"prefill-chunk", EM_FLAG_INT, &o->prefill_chunk, 1, 1 << 20, "N",
         "prompt tokens per forward (the service's --prefill-chunk; matters with prefill_keep)", 0,
         0},
        {"threads", EM_FLAG_INT, &o->threads, 0, 256, "N", "CPU threads (0 = scalar reference)", 0,
         't'},
        {"act-quant", EM_FLAG_STR, &o->act_quant, 0, 0, "f32|q8",
         "quantized weights: f32 activations or int8 (llama.cpp's numerics)", 0, 0},
        {"ignore-eos", EM_FLAG_BOOL, &o->ignore_eos, 0, 1, NULL, "keep generating after EOS", 0, 0},
        {"temp", EM_FLAG_STR, &o->temp, 0, 0, "T", "temperature (0 = greedy)", 0, 0},
        {"top-k", EM_FLAG_INT, &o->top_k, 0, 1 << 30, "K", "0 = off", 0, 0},
        {"top-p", EM_FLAG_STR, &o->top_p, 0, 0, "P", "1 = off", 0, 0},
        {"min-p", EM_FLAG_STR, &o->min_p, 0, 0, "P", "0 = off", 0, 0},
        {"repeat-penalty", EM_FLAG_STR, &o->repeat_penalty, 0, 0, "R", "1 = off", 0, 0},
        {"seed", EM_FLAG_STR, &o->seed, 0, 0, "S", "sampling seed (unsigned 64-bit)", 0, 0},
        {"stop", EM_FLAG_LIST, &o->stop, 0, 0, "TEXT", "stop string (repeatable)", 0, 0},
        {"stop-id", EM_FLAG_LIST, &o->stop_id, 0, 0, "ID", "stop token id (repeatable)", 0, 0},
        {"bos", EM_FLAG_BOOL, &o->bos, 0, 1, NULL, "prepend BOS (default: as the model asks)", 0,
         0},
        {"no-bos", EM_FLAG_BOOL, &o->no_bos, 0, 1, NULL, "no BOS (default: as the model asks)", 0,
         0},
    };
    memcpy(t, table, sizeof table);
    kv_flags_table(&o->kv, t + N_OWN);
}

/* A whole number (float or unsigned) from a flag's text; EM_EINVAL with a message otherwise. */
static em_status number_flag(const char *name, const char *s, float *f, uint64_t *u)
{
    char *end;
    errno = 0;
    if (f)
        *f = strtof(s, &end);
    else
        *u = strtoull(s, &end, 10);
    if (errno || end == s || *end || (u && s[0] == '-')) {
        fprintf(stderr, "error: --%s: '%s' is not a%s number\n", name, s,
                u ? "n unsigned whole" : "");
        return EM_EINVAL;
    }
    return EM_OK;
}

/* Applies the flags to gp and the KV config (stop ids into ids/n_ids: they need the model). */
static em_status apply_flags(const gen_flags *o, gen_params *gp, kern_act_mode *act, int32_t *ids,
                             int *n_ids, char *err, size_t errlen)
{
    gp->stop.max_tokens = o->max_tokens;
    gp->prefill_chunk = o->prefill_chunk;
    gp->stop.ignore_eos = o->ignore_eos;
    gp->sp.top_k = o->top_k;
    if (!kern_act_mode_parse(o->act_quant, act)) {
        snprintf(err, errlen, "--act-quant: '%s' is not f32 or q8", o->act_quant);
        return EM_EINVAL;
    }
    if (number_flag("temp", o->temp, &gp->sp.temperature, NULL) != EM_OK ||
        number_flag("top-p", o->top_p, &gp->sp.top_p, NULL) != EM_OK ||
        number_flag("min-p", o->min_p, &gp->sp.min_p, NULL) != EM_OK ||
        number_flag("repeat-penalty", o->repeat_penalty, &gp->sp.repetition_penalty, NULL) !=
            EM_OK ||
        number_flag("seed", o->seed, NULL, &gp->sp.seed) != EM_OK)
        return EM_EINVAL;
    for (int i = 0; i < o->stop.n; i++)
        if (stop_params_add_string(&gp->stop, o->stop.items[i], strlen(o->stop.items[i]), err,
                                   errlen) != EM_OK)
            return EM_EINVAL;
    for (int i = 0; i < o->stop_id.n; i++) {
        char *end;
        long v = strtol(o->stop_id.items[i], &end, 10);
        if (end == o->stop_id.items[i] || *end || v < 0 || v > (1 << 30)) {
            snprintf(err, errlen, "--stop-id: '%s' is not a token id", o->stop_id.items[i]);
            return EM_EINVAL;
        }
        ids[(*n_ids)++] = (int32_t)v;
    }
    return kv_flags_apply(&o->kv, &gp->kv, err, errlen);
}

int main(int argc, char **argv)
{
    static gen_flags o = {.act_quant = "f32",
                          .temp = "0.8",
                          .top_p = "0.95",
                          .min_p = "0.05",
                          .repeat_penalty = "1.0",
                          .seed = "42",
                          .max_tokens = 128,
                          .prefill_chunk = 512,
                          .threads = 1,
                          .top_k = 40};
    o.stop = (em_flag_list){o.stop_items, 0, STOP_MAX_STRINGS};
    o.stop_id = (em_flag_list){o.stop_id_items, 0, STOP_MAX_IDS};
    static em_flag table[N_FLAGS];
    flag_table(&o, table);
    static em_flags fl = {"generate",
                          "EMSERVE_GENERATE_",
                          EMSERVE_VERSION,
                          "generate: text generation on one process; prints \"ids: ...\" then the "
                          "text (statistics on stderr)",
                          table,
                          N_FLAGS,
                          NULL,
                          0,
                          0};
    char err[512] = "";
    int exit_now = 0;
    if (em_flags_parse(&fl, argc, argv, &exit_now, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    if (exit_now) {
        kv_flags_help_if_asked(argc, argv);
        return 0;
    }
    kern_act_mode act = KERN_ACT_F32;
    gen_params gp;
    gen_params_default(&gp);
    int n_stop_ids = 0;
    int32_t stop_ids[STOP_MAX_IDS];
    if (apply_flags(&o, &gp, &act, stop_ids, &n_stop_ids, err, sizeof err) != EM_OK) {
        if (err[0])
            fprintf(stderr, "error: %s\n", err);
        return 2;
    }
    if (o.bos && o.no_bos) {
        fprintf(stderr, "error: --bos and --no-bos together\n");
        return 2;
    }
    const char *model_path = o.model, *prompt = o.prompt, *prompt_file = o.prompt_file;
    int threads = o.threads, add_bos = o.bos ? 1 : o.no_bos ? 0 : -1; /* -1: the model's */
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
