/* KIVI-style int8/int4/int2 K/V store (see quant.h): packed codes, per-group scales, the f32
 * residual window, materialisation for the policies, the dequantising attention view, byte
 * accounting. Scales and zeros are f16 (as KIVI). Keys: one group of `group` tokens shares a
 * per-channel (zero, scale); entries keep a group id so compaction and merging never re-group. */
#include "ems/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "kernels/kern.h" /* kern_f32_to_f16, kern_f16_to_f32 */

typedef struct qstate {
    int bits, group, residual, hd, vgroup, n_vg, row_bytes;
    int nq;                   /* entries [0, nq) are quantized */
    int64_t n_coded;          /* entries quantized so far (never decreases) */
    int cap;                  /* per-entry capacity of the quantized arrays */
    uint8_t *kcode, *vcode;   /* [cap][row_bytes] packed */
    int32_t *kgrp;            /* [cap] key group of each entry */
    uint16_t *vzero, *vscale; /* [cap][n_vg] f16 */
    int ngrp, gcap;
    uint16_t *kzero, *kscale; /* [gcap][hd] f16 */
    int rcap;                 /* rows of the residual window's arrays */
    float *rk, *rv;           /* [rcap][hd]: f32 rows of entries [nq, len) */
    float *mat;               /* K then V of every entry while materialised (else NULL) */
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
    } else if (bits == 2) { /* four codes per byte, channel d at bits 2 (d & 3) */
        uint8_t *b = &row[d >> 2];
        int sh = (d & 3) * 2;
        *b = (uint8_t)((*b & ~(3 << sh)) | ((q & 3) << sh));
    } else {
        uint8_t *b = &row[d >> 1];
        *b = (d & 1) ? (uint8_t)((*b & 0x0f) | (q << 4)) : (uint8_t)((*b & 0xf0) | (q & 0x0f));
    }
}

static inline int get(const uint8_t *row, int d, int bits)
{
    if (bits == 2)
        return (row[d >> 2] >> ((d & 3) * 2)) & 3;
    return bits == 8 ? row[d] : (d & 1) ? row[d >> 1] >> 4 : row[d >> 1] & 0x0f;
}

/* Sets the per-entry capacity of the quantized arrays (grow or shrink, nc >= nq). A failed
 * shrink keeps the larger blocks (still valid) and succeeds; a failed growth returns EM_ENOMEM
 * with q->cap unchanged (the blocks grown so far are kept). */
static em_status set_cap(qstate *q, int nc)
{
    if (nc == 0) {
        free(q->kcode), free(q->vcode), free(q->kgrp), free(q->vzero), free(q->vscale);
        q->kcode = q->vcode = NULL, q->kgrp = NULL, q->vzero = q->vscale = NULL;
        q->cap = 0;
        return EM_OK;
    }
    size_t n = (size_t)nc;
    void *a = realloc(q->kcode, n * q->row_bytes);
    if (a)
        q->kcode = a;
    void *b = realloc(q->vcode, n * q->row_bytes);
    if (b)
        q->vcode = b;
    void *c = realloc(q->kgrp, sizeof(int32_t) * n);
    if (c)
        q->kgrp = c;
    void *d = realloc(q->vzero, sizeof(uint16_t) * n * q->n_vg);
    if (d)
        q->vzero = d;
    void *e = realloc(q->vscale, sizeof(uint16_t) * n * q->n_vg);
    if (e)
        q->vscale = e;
    if (!(a && b && c && d && e) && nc > q->cap)
        return EM_ENOMEM;
    q->cap = nc;
    return EM_OK;
}

/* Sets the row capacity of the residual window (same failure rules as set_cap). */
static em_status set_rcap(qstate *q, int nc)
{
    if (nc == 0) {
        free(q->rk), free(q->rv);
        q->rk = q->rv = NULL;
        q->rcap = 0;
        return EM_OK;
    }
    size_t n = (size_t)nc * q->hd;
    float *a = realloc(q->rk, sizeof(float) * n);
    if (a)
        q->rk = a;
    float *b = realloc(q->rv, sizeof(float) * n);
    if (b)
        q->rv = b;
    if (!(a && b) && nc > q->rcap)
        return EM_ENOMEM;
    q->rcap = nc;
    return EM_OK;
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

/* Encodes value row v as entry j: per token, groups of vgroup channels. */
static void encode_value(qstate *q, const float *v, int j)
{
    uint8_t *row = q->vcode + (size_t)j * q->row_bytes;
    memset(row, 0, q->row_bytes);
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
}

/* Encodes key row k as entry j with the scales of its group q->kgrp[j]. */
static void encode_key(qstate *q, const float *k, int j)
{
    uint8_t *row = q->kcode + (size_t)j * q->row_bytes;
    const uint16_t *z = q->kzero + (size_t)q->kgrp[j] * q->hd,
                   *s = q->kscale + (size_t)q->kgrp[j] * q->hd;
    memset(row, 0, q->row_bytes);
    for (int d = 0; d < q->hd; d++)
        put(row, d, q->bits, ems_quant_code(k[d], h2f(z[d]), h2f(s[d]), q->bits));
}

/* Room for one more key group's scales. */
static em_status reserve_group(qstate *q)
{
    if (q->ngrp < q->gcap)
        return EM_OK;
    int nc = q->gcap ? q->gcap + (q->gcap + 3) / 4 : 4;
    uint16_t *a = realloc(q->kzero, sizeof(uint16_t) * nc * q->hd);
    if (a)
        q->kzero = a;
    uint16_t *b = realloc(q->kscale, sizeof(uint16_t) * nc * q->hd);
    if (b)
        q->kscale = b;
    if (!a || !b)
        return EM_ENOMEM;
    q->gcap = nc;
    return EM_OK;
}

/* Quantizes `group` rows k/v (f32, hd each, consecutive) as entries [nq, nq + group): one new
 * key group. */
static em_status quant_block(qstate *q, const float *k, const float *v)
{
    em_status st = q->nq + q->group <= q->cap
                       ? EM_OK
                       : set_cap(q, ems_cache_grow_cap(q->cap, q->nq + q->group));
    if (st == EM_OK)
        st = reserve_group(q);
    if (st != EM_OK)
        return st;
    int g = q->ngrp++, j0 = q->nq;
    for (int d = 0; d < q->hd; d++) {
        float z, sc;
        ems_quant_minmax(k + d, q->group, q->hd, q->bits, &z, &sc);
        q->kzero[(size_t)g * q->hd + d] = kern_f32_to_f16(z);
        q->kscale[(size_t)g * q->hd + d] = kern_f32_to_f16(sc);
    }
    for (int i = 0; i < q->group; i++) {
        q->kgrp[j0 + i] = g;
        encode_key(q, k + (size_t)i * q->hd, j0 + i);
        encode_value(q, v + (size_t)i * q->hd, j0 + i);
    }
    q->nq += q->group;
    q->n_coded += q->group;
    return EM_OK;
}

/* Quantizes whole groups of the residual window while it holds residual + group rows or more,
 * then moves the rows left over to its start (one move per call). */
static em_status drain_window(qstate *q, int len)
{
    int n = len - q->nq, done = 0;
    em_status st = EM_OK;
    while (n - done >= q->residual + q->group && st == EM_OK) {
        st = quant_block(q, q->rk + (size_t)done * q->hd, q->rv + (size_t)done * q->hd);
        if (st == EM_OK)
            done += q->group;
    }
    if (done > 0) {
        size_t rest = (size_t)(n - done) * q->hd;
        memmove(q->rk, q->rk + (size_t)done * q->hd, sizeof(float) * rest);
        memmove(q->rv, q->rv + (size_t)done * q->hd, sizeof(float) * rest);
        int nc = ems_cache_fit_cap(q->rcap, n - done);
        if (nc < q->rcap)
            (void)set_rcap(q, nc);
    }
    return st;
}

em_status ems_quant_append(ems_head *h, const float *k, const float *v, int stride, int n)
{
    qstate *q = h->qstate;
    EM_ASSERT(q && !q->mat); /* kv_cache.c appends to settled heads only */
    int have = h->len - q->nq;
    if (have + n > q->rcap) {
        em_status st = set_rcap(q, ems_cache_grow_cap(q->rcap, have + n));
        if (st != EM_OK)
            return st;
    }
    for (int i = 0; i < n; i++) {
        memcpy(q->rk + (size_t)(have + i) * q->hd, k + (size_t)i * stride, sizeof(float) * q->hd);
        memcpy(q->rv + (size_t)(have + i) * q->hd, v + (size_t)i * stride, sizeof(float) * q->hd);
    }
    return EM_OK;
}

em_status ems_quant_on_append(ems_head *h)
{
    return drain_window(h->qstate, h->len);
}

em_status ems_quant_attach(ems_head *h, int bits, int group, int residual)
{
    if (h->qstate)
        return EM_OK;
    if ((bits != 8 && bits != 4 && bits != 2) || group < 1 || residual < 0)
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
    /* the head's f32 rows: whole groups older than the window become codes, the rest moves to
     * the window; then the f32 arrays are freed (a quantized head holds no f32 copy) */
    em_status st = EM_OK;
    int n_blocks = h->len >= residual + group ? (h->len - residual) / group : 0;
    for (int b = 0; b < n_blocks && st == EM_OK; b++) {
        size_t o = (size_t)b * group * h->hd;
        st = quant_block(q, h->k + o, h->v + o);
    }
    int rest = h->len - q->nq;
    if (st == EM_OK)
        st = set_rcap(q, rest);
    if (st != EM_OK) {
        ems_quant_free(q); /* the head stays unquantized, unchanged */
        return st;
    }
    if (rest > 0) {
        memcpy(q->rk, h->k + (size_t)q->nq * h->hd, sizeof(float) * (size_t)rest * h->hd);
        memcpy(q->rv, h->v + (size_t)q->nq * h->hd, sizeof(float) * (size_t)rest * h->hd);
    }
    free(h->k), free(h->v);
    h->k = h->v = NULL;
    h->qstate = q;
    return EM_OK;
}

void ems_quant_free(void *qstate_)
{
    qstate *q = qstate_;
    if (!q)
        return;
    free(q->kcode), free(q->vcode), free(q->kgrp), free(q->vzero), free(q->vscale);
    free(q->kzero), free(q->kscale), free(q->rk), free(q->rv), free(q->mat);
    free(q);
}

void ems_quant_on_compact(ems_head *h, const int *keep, int n)
{
    qstate *q = h->qstate;
    int nq = 0, nr = 0;
    for (int i = 0; i < n; i++) {
        int j = keep[i];
        if (j >= q->nq) { /* a row of the window: j - old nq -> nr */
            int from = j - q->nq;
            if (from != nr) {
                memmove(q->rk + (size_t)nr * q->hd, q->rk + (size_t)from * q->hd,
                        sizeof(float) * q->hd);
                memmove(q->rv + (size_t)nr * q->hd, q->rv + (size_t)from * q->hd,
                        sizeof(float) * q->hd);
            }
            nr++;
            continue;
        }
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
    nc = ems_cache_fit_cap(q->rcap, nr);
    if (nc < q->rcap)
        (void)set_rcap(q, nc);
}

em_status ems_quant_on_update(ems_head *h, const int *idx, int n)
{
    qstate *q = h->qstate;
    EM_ASSERT(q->mat); /* merges rewrite materialised rows */
    for (int i = 0; i < n; i++) {
        int j = idx[i];
        if (j >= q->nq)
            continue; /* a window row: settled back as f32 */
        float *k = h->k + (size_t)j * q->hd, *v = h->v + (size_t)j * q->hd;
        encode_key(q, k, j); /* clamped to the group's range */
        encode_value(q, v, j);
        dequant_key(q, j, k); /* the policy goes on with what attention will see */
        dequant_value(q, j, v);
    }
    return EM_OK;
}

void ems_quant_decode_ref(const ems_head *h, int j, float *k, float *v)
{
    const qstate *q = h->qstate;
    if (j < q->nq) {
        dequant_key(q, j, k);
        dequant_value(q, j, v);
        return;
    }
    memcpy(k, q->rk + (size_t)(j - q->nq) * q->hd, sizeof(float) * q->hd);
    memcpy(v, q->rv + (size_t)(j - q->nq) * q->hd, sizeof(float) * q->hd);
}

enum { DQ_BLOCK = 64 }; /* channels whose key-group scales are converted at once */

/* out[d] = code(d0 + d) * s[d] + z[d] for d < nd: the arithmetic of dequant_key/value, with the
 * scales already in f32 (d0 even for int4). */
static inline void decode_row(const uint8_t *row, int bits, int d0, int nd, const float *s,
                              const float *z, float *out)
{
    if (bits == 8) {
        for (int d = 0; d < nd; d++)
            out[d] = (float)row[d0 + d] * s[d] + z[d];
        return;
    }
    if (bits == 2) {
        for (int d = 0; d < nd; d++)
            out[d] = (float)get(row, d0 + d, 2) * s[d] + z[d];
        return;
    }
    const uint8_t *b = row + (d0 >> 1);
    int d = 0;
    for (; d + 1 < nd; d += 2) {
        out[d] = (float)(b[d >> 1] & 0x0f) * s[d] + z[d];
        out[d + 1] = (float)(b[d >> 1] >> 4) * s[d + 1] + z[d + 1];
    }
    if (d < nd) /* odd head size: the last half byte */
        out[d] = (float)(b[d >> 1] & 0x0f) * s[d] + z[d];
}

/* Keys of the quantized entries into k: a run of entries of one key group converts that
 * group's f16 scales once per block of channels (dequant_key converts them per value). */
static void decode_keys(const qstate *q, float *k)
{
    float zf[DQ_BLOCK], sf[DQ_BLOCK];
    for (int d0 = 0; d0 < q->hd; d0 += DQ_BLOCK) {
        int nd = q->hd - d0 < DQ_BLOCK ? q->hd - d0 : DQ_BLOCK, g_prev = -1;
        for (int j = 0; j < q->nq; j++) {
            int g = q->kgrp[j];
            if (g != g_prev) {
                const uint16_t *z = q->kzero + (size_t)g * q->hd + d0,
                               *s = q->kscale + (size_t)g * q->hd + d0;
                for (int d = 0; d < nd; d++) {
                    zf[d] = h2f(z[d]);
                    sf[d] = h2f(s[d]);
                }
                g_prev = g;
            }
            decode_row(q->kcode + (size_t)j * q->row_bytes, q->bits, d0, nd, sf, zf,
                       k + (size_t)j * q->hd + d0);
        }
    }
}

/* Values of the quantized entries into v: per entry and channel group, one scale and zero. */
static void decode_values(const qstate *q, float *v)
{
    float zf[DQ_BLOCK], sf[DQ_BLOCK];
    for (int j = 0; j < q->nq; j++) {
        const uint8_t *row = q->vcode + (size_t)j * q->row_bytes;
        for (int g = 0; g < q->n_vg; g++) {
            size_t o = (size_t)j * q->n_vg + g;
            float z = h2f(q->vzero[o]), s = h2f(q->vscale[o]);
            int d1 = g * q->vgroup + q->vgroup < q->hd ? g * q->vgroup + q->vgroup : q->hd;
            for (int d0 = g * q->vgroup; d0 < d1; d0 += DQ_BLOCK) {
                int nd = d1 - d0 < DQ_BLOCK ? d1 - d0 : DQ_BLOCK;
                for (int d = 0; d < nd; d++)
                    zf[d] = z, sf[d] = s;
                if (q->bits == 4 && (d0 & 1)) { /* a group starting mid-byte: scalar */
                    for (int d = 0; d < nd; d++)
                        v[(size_t)j * q->hd + d0 + d] =
                            (float)get(row, d0 + d, q->bits) * sf[d] + zf[d];
                    continue;
                }
                decode_row(row, q->bits, d0, nd, sf, zf, v + (size_t)j * q->hd + d0);
            }
        }
    }
}

/* K and V of every entry into k, v (len rows each): codes dequantised, the window copied.
 * Bit-identical to ems_quant_decode_ref row by row (tests/ems/quant_test). */
static void decode_all(const ems_head *h, float *k, float *v)
{
    const qstate *q = h->qstate;
    decode_keys(q, k);
    decode_values(q, v);
    size_t off = (size_t)q->nq * q->hd, cnt = (size_t)(h->len - q->nq) * q->hd;
    memcpy(k + off, q->rk, sizeof(float) * cnt);
    memcpy(v + off, q->rv, sizeof(float) * cnt);
}

em_status ems_quant_materialize(ems_head *h)
{
    qstate *q = h->qstate;
    if (!q || q->mat)
        return EM_OK;
    size_t n = (size_t)(h->len > 0 ? h->len : 1) * q->hd;
    q->mat = malloc(2 * sizeof(float) * n);
    if (!q->mat)
        return EM_ENOMEM;
    h->k = q->mat;
    h->v = q->mat + n;
    decode_all(h, h->k, h->v);
    return EM_OK;
}

void ems_quant_settle(ems_head *h)
{
    qstate *q = h->qstate;
    if (!q || !q->mat)
        return;
    /* compactions kept the window in step; merged window rows changed in the f32 rows only */
    size_t off = (size_t)q->nq * q->hd, cnt = (size_t)(h->len - q->nq) * q->hd;
    memcpy(q->rk, h->k + off, sizeof(float) * cnt);
    memcpy(q->rv, h->v + off, sizeof(float) * cnt);
    free(q->mat);
    q->mat = NULL;
    h->k = h->v = NULL;
}

em_status ems_quant_view(const ems_head *h, ems_scratch *s, const float **k, const float **v)
{
    size_t n = (size_t)(h->len > 0 ? h->len : 1) * h->hd;
    if (s->cap < 2 * n) {
        float *b = realloc(s->buf, 2 * sizeof(float) * n);
        if (!b)
            return EM_ENOMEM;
        s->buf = b;
        s->cap = 2 * n;
    }
    decode_all(h, s->buf, s->buf + n);
    *k = s->buf;
    *v = s->buf + n;
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
    /* K and V codes, key group id, value zero + scale (f16) */
    return 2 * row_bytes + sizeof(int32_t) + 2 * sizeof(uint16_t) * (uint64_t)n_vg;
}

uint64_t ems_quant_held_bytes(const ems_head *h)
{
    const qstate *q = h->qstate;
    if (!q)
        return 0;
    return (uint64_t)q->nq * ems_quant_entry_bytes(q->bits, q->group, q->hd) +
           (uint64_t)q->ngrp * q->hd * 2 * sizeof(uint16_t) +
           (uint64_t)(h->len - q->nq) * 2 * sizeof(float) * q->hd;
}

uint64_t ems_quant_alloc_bytes(const ems_head *h)
{
    const qstate *q = h->qstate;
    if (!q)
        return 0;
    uint64_t b = sizeof *q;
    b += (uint64_t)q->cap * ems_quant_entry_bytes(q->bits, q->group, q->hd);
    b += (uint64_t)q->gcap * q->hd * 2 * sizeof(uint16_t);
    b += (uint64_t)q->rcap * 2 * sizeof(float) * q->hd;
    if (q->mat)
        b += 2ull * sizeof(float) * (uint64_t)(h->len > 0 ? h->len : 1) * q->hd;
    return b;
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
