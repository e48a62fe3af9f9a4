/* KIVI-style int8/int4 K/V store (see quant.h): packed codes, per-group scales, f32 residual,
 * dequantising view, byte accounting. Scales and zeros are f16 (as KIVI). Keys: one group of
 * `group` tokens shares a per-channel (zero, scale); entries keep a group id so compaction and
 * merging never re-group. */
#include "ems/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern.h" /* kern_f32_to_f16, kern_f16_to_f32 */

typedef struct qstate {
    int bits, group, residual, hd, vgroup, n_vg, row_bytes;
    int nq;                   /* entries [0, nq) are quantized */
    int64_t n_coded;          /* entries quantized so far (never decreases) */
    int cap;                  /* per-entry capacity */
    uint8_t *kcode, *vcode;   /* [cap][row_bytes] packed */
    int32_t *kgrp;            /* [cap] key group of each entry */
    uint16_t *vzero, *vscale; /* [cap][n_vg] f16 */
    int ngrp, gcap;
    uint16_t *kzero, *kscale; /* [gcap][hd] f16 */
} qstate;

void ems_quant_minmax(const float *x, int n, int stride, int bits, float *zero, float *scale)
{
    float mn = INFINITY, mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        float v = x[(size_t)i * stride];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    if (n == 0)
        mn = mx = 0.0f;
    /* stored as f16 (as KIVI): return the values the store will hold, saturated to f16 range */
    mn = mn < -65504.0f ? -65504.0f : mn > 65504.0f ? 65504.0f : mn;
    float sc = (mx - mn) / (float)((1 << bits) - 1);
    sc = sc > 65504.0f ? 65504.0f : sc;
    *zero = kern_f16_to_f32(kern_f32_to_f16(mn));
    *scale = kern_f16_to_f32(kern_f32_to_f16(sc));
}

static inline float h2f(uint16_t h)
{
    return kern_f16_to_f32(h);
}

uint8_t ems_quant_code(float x, float zero, float scale, int bits)
{
    if (!(scale > 0.0f))
        return 0;
    float q = rintf((x - zero) / scale);
    float top = (float)((1 << bits) - 1);
    return (uint8_t)(q < 0.0f ? 0.0f : q > top ? top : q);
}

static inline void put(uint8_t *row, int d, int bits, uint8_t q)
{
    if (bits == 8) {
        row[d] = q;
    } else {
        uint8_t *b = &row[d >> 1];
        *b = (d & 1) ? (uint8_t)((*b & 0x0f) | (q << 4)) : (uint8_t)((*b & 0xf0) | (q & 0x0f));
    }
}

static inline int get(const uint8_t *row, int d, int bits)
{
    return bits == 8 ? row[d] : (d & 1) ? row[d >> 1] >> 4 : row[d >> 1] & 0x0f;
}

/* Sets the per-entry capacity (grow or shrink, nc >= nq). A failed shrink keeps the larger
 * blocks (still valid) and succeeds; a failed growth returns EM_ENOMEM with q->cap unchanged
 * (the blocks grown so far are kept). */
static em_status set_cap(qstate *q, int nc)
{
    void *a = realloc(q->kcode, (size_t)nc * q->row_bytes);
    if (a)
        q->kcode = a;
    void *b = realloc(q->vcode, (size_t)nc * q->row_bytes);
    if (b)
        q->vcode = b;
    void *c = realloc(q->kgrp, sizeof(int32_t) * nc);
    if (c)
        q->kgrp = c;
    void *d = realloc(q->vzero, sizeof(uint16_t) * nc * q->n_vg);
    if (d)
        q->vzero = d;
    void *e = realloc(q->vscale, sizeof(uint16_t) * nc * q->n_vg);
    if (e)
        q->vscale = e;
    if (!(a && b && c && d && e) && nc > q->cap)
        return EM_ENOMEM;
    q->cap = nc;
    return EM_OK;
}

/* Room for need entries (EM_ENOMEM, cap unchanged, on failure). */
static em_status reserve(qstate *q, int need)
{
    if (need <= q->cap)
        return EM_OK;
    return set_cap(q, ems_cache_grow_cap(q->cap, need));
}

static void dequant_key(const qstate *q, int j, float *out)
{
    const uint8_t *row = q->kcode + (size_t)j * q->row_bytes;
    const uint16_t *z = q->kzero + (size_t)q->kgrp[j] * q->hd,
                   *s = q->kscale + (size_t)q->kgrp[j] * q->hd;
    for (int d = 0; d < q->hd; d++)
        out[d] = (float)get(row, d, q->bits) * h2f(s[d]) + h2f(z[d]);
}

static void dequant_value(const qstate *q, int j, float *out)
{
    const uint8_t *row = q->vcode + (size_t)j * q->row_bytes;
    for (int d = 0; d < q->hd; d++) {
        int g = d / q->vgroup;
        size_t o = (size_t)j * q->n_vg + g;
        out[d] = (float)get(row, d, q->bits) * h2f(q->vscale[o]) + h2f(q->vzero[o]);
    }
}

/* Value of entry j: per token, groups of vgroup channels; writes back the dequantised row. */
static void encode_value(qstate *q, ems_head *h, int j)
{
    float *v = h->v + (size_t)j * q->hd;
    uint8_t *row = q->vcode + (size_t)j * q->row_bytes;
    for (int g = 0; g < q->n_vg; g++) {
        int d0 = g * q->vgroup, n = q->hd - d0 < q->vgroup ? q->hd - d0 : q->vgroup;
        size_t o = (size_t)j * q->n_vg + g;
        float z, sc;
        ems_quant_minmax(v + d0, n, 1, q->bits, &z, &sc);
        q->vzero[o] = kern_f32_to_f16(z);
        q->vscale[o] = kern_f32_to_f16(sc);
        for (int d = d0; d < d0 + n; d++)
            put(row, d, q->bits, ems_quant_code(v[d], z, sc, q->bits));
    }
    dequant_value(q, j, v);
}

static void encode_key(qstate *q, ems_head *h, int j)
{
    float *k = h->k + (size_t)j * q->hd;
    uint8_t *row = q->kcode + (size_t)j * q->row_bytes;
    const uint16_t *z = q->kzero + (size_t)q->kgrp[j] * q->hd,
                   *s = q->kscale + (size_t)q->kgrp[j] * q->hd;
    for (int d = 0; d < q->hd; d++)
        put(row, d, q->bits, ems_quant_code(k[d], h2f(z[d]), h2f(s[d]), q->bits));
    dequant_key(q, j, k);
}

/* Quantizes the block [nq, nq + group) as one new key group. */
static em_status quant_block(qstate *q, ems_head *h)
{
    em_status st = reserve(q, q->nq + q->group);
    if (st != EM_OK)
        return st;
    if (q->ngrp == q->gcap) {
        int nc = q->gcap ? 2 * q->gcap : 16;
        uint16_t *a = realloc(q->kzero, sizeof(uint16_t) * nc * q->hd);
        if (a)
            q->kzero = a;
        uint16_t *b = realloc(q->kscale, sizeof(uint16_t) * nc * q->hd);
        if (b)
            q->kscale = b;
        if (!a || !b)
            return EM_ENOMEM;
        q->gcap = nc;
    }
    int g = q->ngrp++, j0 = q->nq;
    for (int d = 0; d < q->hd; d++) {
        float z, sc;
        ems_quant_minmax(h->k + (size_t)j0 * q->hd + d, q->group, q->hd, q->bits, &z, &sc);
        q->kzero[(size_t)g * q->hd + d] = kern_f32_to_f16(z);
        q->kscale[(size_t)g * q->hd + d] = kern_f32_to_f16(sc);
    }
    for (int j = j0; j < j0 + q->group; j++) {
        q->kgrp[j] = g;
        memset(q->kcode + (size_t)j * q->row_bytes, 0, q->row_bytes);
        memset(q->vcode + (size_t)j * q->row_bytes, 0, q->row_bytes);
        encode_key(q, h, j);
        encode_value(q, h, j);
    }
    q->nq += q->group;
    q->n_coded += q->group;
    return EM_OK;
}

em_status ems_quant_on_append(ems_head *h)
{
    qstate *q = h->qstate;
    while (h->len - q->nq >= q->residual + q->group) {
        em_status st = quant_block(q, h);
        if (st != EM_OK)
            return st;
    }
    return EM_OK;
}

em_status ems_quant_attach(ems_head *h, int bits, int group, int residual)
{
    if (h->qstate)
        return EM_OK;
    if ((bits != 8 && bits != 4) || group < 1 || residual < 0)
        return EM_EINVAL;
    qstate *q = calloc(1, sizeof *q);
    if (!q)
        return EM_ENOMEM;
    q->bits = bits;
    q->group = group;
    q->residual = residual;
    q->hd = h->hd;
    q->vgroup = group < h->hd ? group : h->hd;
    q->n_vg = (h->hd + q->vgroup - 1) / q->vgroup;
    q->row_bytes = (h->hd * bits + 7) / 8;
    h->qstate = q;
    return ems_quant_on_append(h);
}

void ems_quant_free(void *qstate_)
{
    qstate *q = qstate_;
    if (!q)
        return;
    free(q->kcode), free(q->vcode), free(q->kgrp), free(q->vzero), free(q->vscale);
    free(q->kzero), free(q->kscale);
    free(q);
}

void ems_quant_on_compact(ems_head *h, const int *keep, int n)
{
    qstate *q = h->qstate;
    int nq = 0;
    for (int i = 0; i < n && keep[i] < q->nq; i++) {
        int j = keep[i];
        nq = i + 1;
        if (j == i)
            continue;
        memmove(q->kcode + (size_t)i * q->row_bytes, q->kcode + (size_t)j * q->row_bytes,
                q->row_bytes);
        memmove(q->vcode + (size_t)i * q->row_bytes, q->vcode + (size_t)j * q->row_bytes,
                q->row_bytes);
        q->kgrp[i] = q->kgrp[j];
        memmove(q->vzero + (size_t)i * q->n_vg, q->vzero + (size_t)j * q->n_vg,
                sizeof(uint16_t) * q->n_vg);
        memmove(q->vscale + (size_t)i * q->n_vg, q->vscale + (size_t)j * q->n_vg,
                sizeof(uint16_t) * q->n_vg);
    }
    q->nq = nq;
    int nc = ems_cache_fit_cap(q->cap, nq);
    if (nc < q->cap)
        (void)set_cap(q, nc);
}

em_status ems_quant_on_update(ems_head *h, const int *idx, int n)
{
    qstate *q = h->qstate;
    for (int i = 0; i < n; i++) {
        if (idx[i] >= q->nq)
            continue;
        encode_key(q, h, idx[i]); /* clamped to the group's range */
        encode_value(q, h, idx[i]);
    }
    return EM_OK;
}

em_status ems_quant_view(ems_head *h, const float **k, const float **v)
{
    qstate *q = h->qstate;
    if (h->view_cap < h->len || h->view_cap > h->cap) { /* follows the head's capacity */
        int nc = h->cap > h->len ? h->cap : h->len;
        float *a = realloc(h->kview, sizeof(float) * (size_t)nc * h->hd);
        if (a)
            h->kview = a;
        float *b = realloc(h->vview, sizeof(float) * (size_t)nc * h->hd);
        if (b)
            h->vview = b;
        if (!a || !b)
            return EM_ENOMEM;
        h->view_cap = nc;
    }
    for (int j = 0; j < q->nq; j++) {
        dequant_key(q, j, h->kview + (size_t)j * h->hd);
        dequant_value(q, j, h->vview + (size_t)j * h->hd);
    }
    size_t off = (size_t)q->nq * h->hd, cnt = (size_t)(h->len - q->nq) * h->hd;
    memcpy(h->kview + off, h->k + off, sizeof(float) * cnt);
    memcpy(h->vview + off, h->v + off, sizeof(float) * cnt);
    *k = h->kview;
    *v = h->vview;
    return EM_OK;
}

uint64_t ems_quant_bytes(const ems_head *h)
{
    const qstate *q = h->qstate;
    if (!q)
        return 2ull * sizeof(float) * h->hd * (uint64_t)h->len;
    /* key groups still referenced by a quantized entry */
    uint64_t groups = 0;
    char *seen = calloc((size_t)(q->ngrp > 0 ? q->ngrp : 1), 1);
    for (int j = 0; seen && j < q->nq; j++) {
        if (!seen[q->kgrp[j]]) {
            seen[q->kgrp[j]] = 1;
            groups++;
        }
    }
    free(seen);
    uint64_t b = 2ull * q->row_bytes * (uint64_t)q->nq;             /* K and V codes */
    b += groups * (uint64_t)q->hd * 2 * sizeof(uint16_t);           /* key zero + scale (f16) */
    b += (uint64_t)q->nq * q->n_vg * 2 * sizeof(uint16_t);          /* value zero + scale (f16) */
    b += 2ull * sizeof(float) * h->hd * (uint64_t)(h->len - q->nq); /* f32 residual */
    return b;
}

uint64_t ems_quant_entry_bytes(int bits, int group, int hd)
{
    int vgroup = group < hd ? group : hd, n_vg = (hd + vgroup - 1) / vgroup;
    uint64_t row_bytes = ((uint64_t)hd * (uint64_t)bits + 7) / 8;
    /* K and V codes, key group id, value zero + scale (f16), dequantised K and V view (f32) */
    return 2 * row_bytes + sizeof(int32_t) + 2 * sizeof(uint16_t) * (uint64_t)n_vg +
           2 * sizeof(float) * (uint64_t)hd;
}

uint64_t ems_quant_held_bytes(const ems_head *h)
{
    const qstate *q = h->qstate;
    if (!q)
        return 0;
    uint64_t codes =
        2ull * q->row_bytes + sizeof(int32_t) + 2 * sizeof(uint16_t) * (uint64_t)q->n_vg;
    return (uint64_t)q->nq * codes + (uint64_t)q->ngrp * q->hd * 2 * sizeof(uint16_t) +
           (uint64_t)h->len * 2 * sizeof(float) * q->hd;
}

int ems_quant_count(const ems_head *h)
{
    const qstate *q = h->qstate;
    return q ? q->nq : 0;
}

int64_t ems_quant_coded(const ems_head *h)
{
    const qstate *q = h->qstate;
    return q ? q->n_coded : 0;
}
