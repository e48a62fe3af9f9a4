/* Sampling chain (see sampler.h). The RNG is xorshift64*, seeded per request. */
#define _GNU_SOURCE /* qsort_r */
#include "engine/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sampler_params_default(sampler_params *p)
{
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repetition_penalty = 1.0f;
    p->repetition_last_n = 64;
    p->seed = 0x5eed;
}

em_status sampler_params_validate(const sampler_params *p, char *err, size_t errlen)
{
    const char *bad = NULL;
    if (!isfinite(p->temperature) || p->temperature < 0.0f || p->temperature > 100.0f) {
        bad = "temperature must be in [0, 100]";
    } else if (p->top_k < 0) {
        bad = "top_k must be >= 0 (0 disables it)";
    } else if (!isfinite(p->top_p) || p->top_p <= 0.0f || p->top_p > 1.0f) {
        bad = "top_p must be in (0, 1]";
    } else if (!isfinite(p->min_p) || p->min_p < 0.0f || p->min_p >= 1.0f) {
        bad = "min_p must be in [0, 1)";
    } else if (!isfinite(p->repetition_penalty) || p->repetition_penalty <= 0.0f ||
               p->repetition_penalty > 10.0f) {
        bad = "repetition_penalty must be in (0, 10]";
    } else if (p->repetition_last_n < 0) {
        bad = "repetition_last_n must be >= 0";
    }
    if (bad) {
        snprintf(err, errlen, "%s", bad);
        return EM_EINVAL;
    }
    return EM_OK;
}

em_status sampler_init(sampler *s, const sampler_params *p, int n_vocab)
{
    memset(s, 0, sizeof *s);
    s->p = *p;
    s->n_vocab = n_vocab;
    s->rng = p->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!s->rng)
        s->rng = 1;
    s->idx = malloc(sizeof(int) * (size_t)n_vocab);
    s->prob = calloc((size_t)n_vocab, sizeof(float));
    if (!s->idx || !s->prob) {
        sampler_free(s);
        return EM_ENOMEM;
    }
    return EM_OK;
}

void sampler_free(sampler *s)
{
    free(s->idx);
    free(s->prob);
    s->idx = NULL;
    s->prob = NULL;
}

int32_t sampler_argmax(const float *logits, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (logits[i] > logits[best])
            best = i;
    }
    return best;
}

static double rng_uniform(sampler *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (double)((s->rng * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

static int cmp_desc(const void *a, const void *b, void *ctx)
{
    const float *lg = ctx;
    float x = lg[*(const int *)a], y = lg[*(const int *)b];
    if (x != y)
        return x < y ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, int n_hist)
{
    const sampler_params *p = &s->p;
    int n = s->n_vocab;
    if (p->repetition_penalty != 1.0f && history) {
        int from = n_hist - p->repetition_last_n;
        for (int i = from < 0 ? 0 : from; i < n_hist; i++) {
            int id = history[i];
            if (id < 0 || id >= n)
                continue;
            /* Applied once per distinct id: mark by flipping into a scratch flag. */
            if (s->prob[id] == -1.0f)
                continue;
            s->prob[id] = -1.0f;
            logits[id] = logits[id] > 0 ? logits[id] / p->repetition_penalty
                                        : logits[id] * p->repetition_penalty;
        }
        for (int i = from < 0 ? 0 : from; i < n_hist; i++) {
            if (history[i] >= 0 && history[i] < n)
                s->prob[history[i]] = 0.0f;
        }
    }
    if (p->temperature == 0.0f)
        return sampler_argmax(logits, n);
    for (int i = 0; i < n; i++) {
        logits[i] /= p->temperature;
        s->idx[i] = i;
    }
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    /* Sort only when a truncation needs an order (top-k/top-p/min-p). */
    int need_sort = k < n || p->top_p < 1.0f || p->min_p > 0.0f;
    if (need_sort) {
        qsort_r(s->idx, (size_t)n, sizeof(int), cmp_desc, logits);
    }
    float mx = -INFINITY;
    for (int i = 0; i < k; i++)
        mx = fmaxf(mx, logits[s->idx[i]]);
    double sum = 0.0;
    for (int i = 0; i < k; i++) {
        s->prob[i] = expf(logits[s->idx[i]] - mx);
        sum += s->prob[i];
    }
    int m = k;
    if (p->top_p < 1.0f) {
        double c = 0.0;
        for (int i = 0; i < k; i++) {
            c += s->prob[i] / sum;
            if (c >= p->top_p) {
                m = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f) {
        float thr = p->min_p * s->prob[0]; /* prob[0] is the max when sorted */
        int mm = 1;
        while (mm < m && s->prob[mm] >= thr)
            mm++;
        m = mm;
    }
    double tot = 0.0;
    for (int i = 0; i < m; i++)
        tot += s->prob[i];
    double r = rng_uniform(s) * tot, c = 0.0;
    int pick = s->idx[m - 1];
    for (int i = 0; i < m; i++) {
        c += s->prob[i];
        if (r < c) {
            pick = s->idx[i];
            break;
        }
    }
    for (int i = 0; i < n; i++)
        s->prob[i] = 0.0f;
    return pick;
}
