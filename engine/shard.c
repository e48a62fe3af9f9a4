/* Shard placement and the weight slices a shard owns (see shard.h for the unit model). */
#include "engine/shard.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/kern.h"
#include "kernels/quant.h"

static void *own(shard_weights *w, size_t bytes)
{
    if (w->n_owned == w->cap_owned) {
        int nc = w->cap_owned ? w->cap_owned * 2 : 64;
        void **no = realloc(w->owned, sizeof(void *) * (size_t)nc);
        if (!no)
            return NULL;
        w->owned = no;
        w->cap_owned = nc;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p)
        w->owned[w->n_owned++] = p;
    return p;
}

/* Rows [r0, r0+n) of a weight: a view, rows are contiguous. */
static kern_weight rows_view(const kern_weight *src, int r0, int n)
{
    kern_weight v = *src;
    v.data = (const char *)src->data + (size_t)r0 * kern_row_bytes(src->dtype, src->cols);
    v.rows = n;
    return v;
}

/* Columns [c0, c0+n) of a weight: a contiguous copy (rows, n), in the weight's type when the
 * cut falls on block boundaries, else dequantised to f32. */
static em_status cols_copy(shard_weights *w, const kern_weight *src, int c0, int n,
                           kern_weight *out)
{
    int be = kern_dtype_block_elems(src->dtype);
    size_t in_row = kern_row_bytes(src->dtype, src->cols);
    *out = *src;
    out->cols = n;
    if (c0 % be == 0 && n % be == 0) {
        size_t out_row = kern_row_bytes(src->dtype, n),
               off = (size_t)c0 / be * kern_dtype_block_bytes(src->dtype);
        char *dst = own(w, (size_t)src->rows * out_row);
        if (!dst)
            return EM_ENOMEM;
        for (int r = 0; r < src->rows; r++) {
            memcpy(dst + (size_t)r * out_row, (const char *)src->data + (size_t)r * in_row + off,
                   out_row);
        }
        out->data = dst;
        return EM_OK;
    }
    float *dst = own(w, (size_t)src->rows * n * sizeof(float));
    float *row = malloc((size_t)src->cols * sizeof(float));
    if (!dst || !row) {
        free(row);
        return EM_ENOMEM;
    }
    for (int r = 0; r < src->rows; r++) {
        kern_dequant_row(src->dtype, (const char *)src->data + (size_t)r * in_row, row, src->cols);
        memcpy(dst + (size_t)r * n, row + c0, (size_t)n * sizeof(float));
    }
    free(row);
    out->data = dst;
    out->dtype = KERN_F32;
    return EM_OK;
}

em_status shard_weights_create(const model *m, const shard_desc *sd, shard_weights **out)
{
    *out = NULL;
    const model_hparams *hp = &m->hp;
    if (sd->n_units != hp->n_kv_head || sd->unit0 < 0 || sd->n_units_local <= 0 ||
        sd->unit0 + sd->n_units_local > sd->n_units) {
        return EM_EINVAL;
    }
    shard_weights *w = calloc(1, sizeof *w);
    if (!w)
        return EM_ENOMEM;
    w->m = m;
    w->sd = *sd;
    w->units = calloc((size_t)hp->n_layer * sd->n_units_local, sizeof *w->units);
    if (!w->units) {
        free(w);
        return EM_ENOMEM;
    }
    int hd = hp->head_dim, G = hp->n_head / hp->n_kv_head;
    em_status st = EM_OK;
    for (int l = 0; l < hp->n_layer && st == EM_OK; l++) {
        const model_layer *L = &m->layers[l];
        for (int i = 0; i < sd->n_units_local && st == EM_OK; i++) {
            int u = sd->unit0 + i, lo, hi;
            shard_unit_weights *uw = &w->units[l * sd->n_units_local + i];
            shard_ffn_range(hp, sd->n_units, u, &lo, &hi);
            uw->ffn_rows = hi - lo;
            uw->wq = rows_view(&L->wq, u * G * hd, G * hd);
            uw->wk = rows_view(&L->wk, u * hd, hd);
            uw->wv = rows_view(&L->wv, u * hd, hd);
            uw->w1 = rows_view(&L->w1, lo, hi - lo);
            uw->w3 = rows_view(&L->w3, lo, hi - lo);
            st = cols_copy(w, &L->wo, u * G * hd, G * hd, &uw->wo);
            if (st == EM_OK)
                st = cols_copy(w, &L->w2, lo, hi - lo, &uw->w2);
        }
    }
    if (st != EM_OK) {
        shard_weights_free(w);
        return st;
    }
    *out = w;
    return EM_OK;
}

void shard_weights_free(shard_weights *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_owned; i++)
        free(w->owned[i]);
    free(w->owned);
    free(w->units);
    free(w);
}

size_t shard_weights_bytes(const shard_weights *w)
{
    size_t b = 0;
    int n = w->m->hp.n_layer * w->sd.n_units_local;
    for (int i = 0; i < n; i++) {
        const shard_unit_weights *u = &w->units[i];
        const kern_weight *ws[] = {&u->wq, &u->wk, &u->wv, &u->wo, &u->w1, &u->w3, &u->w2};
        for (int j = 0; j < 7; j++)
            b += (size_t)ws[j]->rows * kern_row_bytes(ws[j]->dtype, ws[j]->cols);
    }
    return b;
}
