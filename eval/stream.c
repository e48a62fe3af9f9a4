/* Streaming evaluation core (see stream.h). */
#include "eval/stream.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "ems/policy.h"

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) {
        if (x[i] > x[b])
            b = i;
    }
    return b;
}

static void log_softmax(const float *x, int n, double *out)
{
    double mx = x[0], s = 0.0;
    for (int i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++)
        s += exp((double)x[i] - mx);
    double lse = mx + log(s);
    for (int i = 0; i < n; i++)
        out[i] = (double)x[i] - lse;
}

em_status ev_stream(engine *e, const ems_config *cfg, const int32_t *ids, int n,
                    const ev_stream_opts *o, ev_stream_result *r)
{
    memset(r, 0, sizeof *r);
    const model_hparams *hp = engine_hparams(e);
    int V = hp->n_vocab;
    if (n < 2 || n > hp->n_ctx)
        return EM_EINVAL;
    ems_cache *c = NULL;
    em_status st = engine_cache_create(e, ems_config_w_loc(cfg), ems_config_wants_stats(cfg),
                                       cfg->group_max, &c);
    float *logits = malloc(sizeof(float) * V);
    double *lp = malloc(sizeof(double) * V), *lq = malloc(sizeof(double) * V);
    if (st != EM_OK || !logits || !lp || !lq) {
        st = st != EM_OK ? st : EM_ENOMEM;
        goto out;
    }
    double bytes_acc = 0.0;
    for (int i = 0; i < n - 1 && st == EM_OK; i++) {
        int32_t pos = i, seq = 0;
        engine_batch b = {1, ids + i, &pos, &seq, NULL};
        double t0 = em_now_s();
        st = engine_forward(e, &b, &c, logits);
        double t1 = em_now_s();
        r->forward_s += t1 - t0;
        if (st != EM_OK)
            break;
        st = ems_policy_step(c, cfg, EMS_PHASE_DECODE, NULL);
        r->compress_s += em_now_s() - t1;
        r->n_policy_calls++;
        bytes_acc += (double)ems_cache_kv_bytes(c);
        if (o && o->logits_out)
            memcpy(o->logits_out + (size_t)i * V, logits, sizeof(float) * V);
        if (!o || i >= o->skip) {
            log_softmax(logits, V, lq);
            r->nll_sum -= lq[ids[i + 1]];
            r->n_scored++;
            if (o && o->ref_logits) {
                const float *ref = o->ref_logits + (size_t)i * V;
                log_softmax(ref, V, lp);
                double kl = 0.0;
                for (int v = 0; v < V; v++)
                    kl += exp(lp[v]) * (lp[v] - lq[v]);
                r->kl_sum += kl > 0 ? kl : 0;
                r->top1_agree += argmax(ref, V) == argmax(logits, V);
            }
        }
        if (o && o->progress && (i + 1) % o->progress == 0) {
            fprintf(stderr, "\r%d/%d tokens, ppl so far %.4f", i + 1, n - 1,
                    r->n_scored ? exp(r->nll_sum / r->n_scored) : 0.0);
            if (i + 2 >= n)
                fprintf(stderr, "\n");
        }
    }
    if (o && o->progress && n - 1 >= o->progress)
        fprintf(stderr, "\n");
    if (st == EM_OK) {
        ems_policy_stats ps;
        ems_policy_get_stats(c, &ps);
        r->n_compress_steps = ps.n_steps;
        r->n_lazy_layers = ps.n_lazy_layers;
        r->kv_bytes_end = ems_cache_kv_bytes(c);
        r->kv_entries_end = ems_cache_entries(c);
        r->kv_bytes_mean = bytes_acc / (n - 1);
    }
out:
    ems_cache_destroy(c);
    free(logits), free(lp), free(lq);
    return st;
}

em_status ev_load_text(const tokenizer *tok, const char *path, int add_bos, int cap, int32_t **out,
                       int *n_out, char *err, size_t errlen)
{
    *out = NULL;
    *n_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return EM_EIO;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(cap > 0 ? cap : 1));
    int32_t *tmp = malloc(sizeof(int32_t) * ((size_t)len + 8));
    if (!text || !ids || !tmp || fread(text, 1, (size_t)len, f) != (size_t)len) {
        fclose(f);
        free(text), free(ids), free(tmp);
        snprintf(err, errlen, "cannot read %s", path);
        return EM_EIO;
    }
    fclose(f);
    text[len] = 0;
    const char *sep = "<|endoftext|>";
    int n = 0;
    char *p = text;
    while (*p && n < cap) {
        char *q = strstr(p, sep);
        size_t seg = q ? (size_t)(q - p) : strlen(p);
        while (seg > 0 && (*p == '\n' || *p == ' '))
            p++, seg--; /* trim leading blank */
        while (seg > 0 && (p[seg - 1] == '\n' || p[seg - 1] == ' '))
            seg--;
        if (seg > 0) {
            int m = 0;
            if (tok_encode(tok, p, seg, add_bos, tmp, (int)len + 8, &m) != EM_OK) {
                free(text), free(ids), free(tmp);
                snprintf(err, errlen, "cannot tokenize %s", path);
                return EM_EINVAL;
            }
            for (int i = 0; i < m && n < cap; i++)
                ids[n++] = tmp[i];
        }
        if (!q)
            break;
        p = q + strlen(sep);
    }
    free(text), free(tmp);
    if (n < 2) {
        free(ids);
        snprintf(err, errlen, "%s: fewer than 2 tokens", path);
        return EM_EINVAL;
    }
    *out = ids;
    *n_out = n;
    return EM_OK;
}
