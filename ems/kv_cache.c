/* KV storage per (layer, KV head): growth, append, attention views, compaction. */
#include "ems/kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "ems/policy.h"
#include "ems/quant.h"

em_status ems_cache_create(int n_layer, int n_head_kv, int kv_head0, int hd, int w_loc,
                           int want_stats, ems_cache **out)
{
    *out = NULL;
    if (n_layer <= 0 || n_head_kv <= 0 || hd <= 0 || w_loc < 0)
        return EM_EINVAL;
    ems_cache *c = calloc(1, sizeof *c);
    if (!c)
        return EM_ENOMEM;
    c->n_layer = n_layer;
    c->n_head_kv = n_head_kv;
    c->kv_head0 = kv_head0;
    c->hd = hd;
    c->want_stats = want_stats;
    c->heads = calloc((size_t)n_layer * n_head_kv, sizeof *c->heads);
    if (!c->heads) {
        free(c);
        return EM_ENOMEM;
    }
    for (int i = 0; i < n_layer * n_head_kv; i++) {
        c->heads[i].hd = hd;
        c->heads[i].w_loc = w_loc;
        c->heads[i].loc_newest = -1;
    }
    *out = c;
    return EM_OK;
}

void ems_scratch_free(ems_scratch *s)
{
    if (!s)
        return;
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
}

static void head_free(ems_head *h)
{
    if (!h->qstate) {
        free(h->k);
        free(h->v);
    }
    free(h->pos);
    free(h->s_glo);
    free(h->s_sq);
    free(h->mass);
    free(h->kbias);
    free(h->cnt);
    free(h->loc);
    ems_quant_free(h->qstate); /* a quantized head's k, v belong to its store (or are NULL) */
    memset(h, 0, sizeof *h);
}

void ems_cache_destroy(ems_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++)
        head_free(&c->heads[i]);
    free(c->heads);
    if (c->policy)
        free(c->policy);
    free(c);
}

static em_status head_reserve(ems_head *h, int need);

/* Copies entries, statistics and the newest w_loc ring rows of s into the empty head d. */
static em_status head_copy(ems_head *d, const ems_head *s, int w_loc)
{
    d->w_loc = w_loc;
    d->prop_attn = s->prop_attn;
    em_status st = head_reserve(d, s->len > 0 ? s->len : 1);
    if (st != EM_OK)
        return st;
    int n = s->len;
    memcpy(d->k, s->k, sizeof(float) * (size_t)n * s->hd);
    memcpy(d->v, s->v, sizeof(float) * (size_t)n * s->hd);
    memcpy(d->pos, s->pos, sizeof(int32_t) * (size_t)n);
    memcpy(d->s_glo, s->s_glo, sizeof(float) * (size_t)n);
    memcpy(d->s_sq, s->s_sq, sizeof(float) * (size_t)n);
    memcpy(d->mass, s->mass, sizeof(float) * (size_t)n);
    memcpy(d->kbias, s->kbias, sizeof(float) * (size_t)n);
    memcpy(d->cnt, s->cnt, sizeof(int32_t) * (size_t)n);
    d->len = n;
    int rows = s->loc_count < w_loc ? s->loc_count : w_loc;
    /* A row keeps its slot modulo w_loc when the source ring is a multiple of w_loc (the newest
     * w_loc rows then have distinct slots mod w_loc, and a ring of w_loc fed the same queries in
     * calls of 1 or >= the source's ring would have put them there); else oldest first. */
    int keep_slots = rows > 0 && s->w_loc % w_loc == 0;
    for (int a = 0; a < rows; a++) { /* a = age, 0 = newest */
        int from = ((s->loc_newest - a) % s->w_loc + s->w_loc) % s->w_loc;
        int to = keep_slots ? from % w_loc : rows - 1 - a;
        memcpy(d->loc + (size_t)to * d->cap, s->loc + (size_t)from * s->cap, sizeof(float) * n);
    }
    d->loc_count = rows;
    d->loc_newest = rows == 0 ? -1 : keep_slots ? s->loc_newest % w_loc : rows - 1;
    return EM_OK;
}

em_status ems_cache_clone(const ems_cache *src, int w_loc, ems_cache **out)
{
    *out = NULL;
    if (!src || w_loc < 0 || w_loc > src->heads[0].w_loc)
        return EM_EINVAL;
    for (int i = 0; i < src->n_layer * src->n_head_kv; i++) {
        if (src->heads[i].qstate)
            return EM_EUNSUPPORTED;
    }
    ems_cache *c = NULL;
    em_status st = ems_cache_create(src->n_layer, src->n_head_kv, src->kv_head0, src->hd, w_loc,
                                    src->want_stats, &c);
    if (st != EM_OK)
        return st;
    c->group_max = src->group_max;
    c->n_seen = src->n_seen;
    for (int i = 0; i < src->n_layer * src->n_head_kv && st == EM_OK; i++)
        st = head_copy(&c->heads[i], &src->heads[i], w_loc);
    if (st == EM_OK)
        st = ems_policy_copy_state(src, c);
    if (st != EM_OK) {
        ems_cache_destroy(c);
        return st;
    }
    *out = c;
    return EM_OK;
}

/* Reallocates *p from old_cap to new_cap elements, zeroing the new tail. A failed shrink keeps
 * the (larger, still valid) block and succeeds; a failed growth leaves *p unchanged. */
static em_status resize(void **p, size_t elem, int old_cap, int new_cap)
{
    void *q = realloc(*p, elem * (size_t)new_cap);
    if (!q)
        return new_cap < old_cap ? EM_OK : EM_ENOMEM;
    if (new_cap > old_cap)
        memset((char *)q + elem * (size_t)old_cap, 0, elem * (size_t)(new_cap - old_cap));
    *p = q;
    return EM_OK;
}

int ems_cache_grow_cap(int cap, int need)
{
    if (need <= cap)
        return cap;
    int64_t nc = (int64_t)cap + cap / 4;
    if (nc < need)
        nc = need;
    nc = (nc + 63) / 64 * 64;
    return nc > INT32_MAX ? INT32_MAX : (int)nc;
}

int ems_cache_fit_cap(int cap, int len)
{
    if (cap <= (int64_t)len + len / 4 + 128)
        return cap;
    int64_t nc = ((int64_t)len + len / 8 + 64 + 63) / 64 * 64;
    return nc < cap ? (int)nc : cap;
}

/* Sets the capacity of every per-entry array (grow or shrink; nc >= len). On failure the head
 * is unchanged in meaning (arrays that grew keep their old contents, cap stays). */
static em_status head_resize(ems_head *h, int nc)
{
    float *nl = NULL;
    if (h->w_loc > 0) { /* the ring's rows are strided by cap: rebuild it first */
        nl = calloc((size_t)h->w_loc * nc, sizeof(float));
        if (!nl)
            return EM_ENOMEM;
    }
    size_t row = sizeof(float) * (size_t)h->hd;
    int own_kv = !h->qstate; /* a quantized head's K/V live in its store */
    if ((own_kv && resize((void **)&h->k, row, h->cap, nc)) ||
        (own_kv && resize((void **)&h->v, row, h->cap, nc)) ||
        resize((void **)&h->pos, sizeof(int32_t), h->cap, nc) ||
        resize((void **)&h->s_glo, sizeof(float), h->cap, nc) ||
        resize((void **)&h->s_sq, sizeof(float), h->cap, nc) ||
        resize((void **)&h->mass, sizeof(float), h->cap, nc) ||
        resize((void **)&h->kbias, sizeof(float), h->cap, nc) ||
        resize((void **)&h->cnt, sizeof(int32_t), h->cap, nc)) {
        free(nl);
        return EM_ENOMEM;
    }
    if (nl) {
        int keep = h->len < nc ? h->len : nc;
        for (int r = 0; r < h->w_loc && h->loc; r++)
            memcpy(nl + (size_t)r * nc, h->loc + (size_t)r * h->cap, sizeof(float) * keep);
        free(h->loc);
        h->loc = nl;
    }
    h->cap = nc;
    return EM_OK;
}

static em_status head_reserve(ems_head *h, int need)
{
    if (need <= h->cap)
        return EM_OK;
    return head_resize(h, ems_cache_grow_cap(h->cap, need));
}

em_status ems_head_append(ems_head *h, const float *k, const float *v, int stride,
                          const int32_t *pos, int n)
{
    if (n < 0)
        return EM_EINVAL;
    em_status st = head_reserve(h, h->len + n);
    if (st == EM_OK && h->qstate)
        st = ems_quant_append(h, k, v, stride, n);
    if (st != EM_OK)
        return st;
    for (int i = 0; i < n; i++) {
        int j = h->len + i;
        if (!h->qstate) {
            memcpy(h->k + (size_t)j * h->hd, k + (size_t)i * stride, sizeof(float) * h->hd);
            memcpy(h->v + (size_t)j * h->hd, v + (size_t)i * stride, sizeof(float) * h->hd);
        }
        h->pos[j] = pos[i];
        h->s_glo[j] = 0.0f;
        h->s_sq[j] = 0.0f;
        h->cnt[j] = 0;
        h->mass[j] = 1.0f;
        h->kbias[j] = 0.0f;
        for (int r = 0; r < h->w_loc; r++)
            h->loc[(size_t)r * h->cap + j] = 0.0f;
    }
    h->len += n;
    if (h->qstate)
        return ems_quant_on_append(h);
    return EM_OK;
}

em_status ems_head_attn_begin(ems_head *h, int n_q, kern_attn_args *a, kern_attn_stats *stats,
                              float **rowbuf, int group_max, ems_scratch *scr)
{
    a->len = h->len;
    a->kpos = h->pos;
    a->kbias = h->prop_attn ? h->kbias : NULL;
    if (h->qstate) {
        EM_ASSERT(scr); /* our callers pass one */
        em_status st = ems_quant_view(h, scr, &a->k, &a->v);
        if (st != EM_OK)
            return st;
    } else {
        a->k = h->k;
        a->v = h->v;
    }
    if (!stats) {
        a->stats = NULL;
        return EM_OK;
    }
    memset(stats, 0, sizeof *stats);
    stats->col_sum = h->s_glo;
    stats->col_sqsum = h->s_sq;
    stats->col_cnt = h->cnt;
    stats->group_max = group_max;
    int nr = n_q < h->w_loc ? n_q : h->w_loc;
    EM_ASSERT(nr <= 0 || rowbuf); /* the caller's room for the ring rows */
    if (nr > 0) {
        /* The last nr queries go to the next nr ring slots, oldest first. */
        for (int r = 0; r < nr; r++) {
            int slot = (h->loc_newest + 1 + r) % h->w_loc;
            rowbuf[r] = h->loc + (size_t)slot * h->cap;
        }
        h->loc_newest = (h->loc_newest + nr) % h->w_loc;
        h->loc_count = h->loc_count + nr > h->w_loc ? h->w_loc : h->loc_count + nr;
        stats->row_ptrs = rowbuf;
        stats->n_rows = nr;
    }
    a->stats = stats;
    return EM_OK;
}

void ems_head_compact(ems_head *h, const int *keep, int n)
{
    size_t row = sizeof(float) * (size_t)h->hd;
    EM_ASSERT(n >= 0 && n <= h->len); /* keep lists come from our policies */
    for (int i = 0; i < n; i++) {
        int j = keep[i];
        EM_ASSERT(j >= i && j < h->len && (i == 0 || j > keep[i - 1])); /* increasing */
        if (j == i)
            continue;
        if (h->k) { /* NULL on a settled quantized head (its store moves its own rows) */
            memmove(h->k + (size_t)i * h->hd, h->k + (size_t)j * h->hd, row);
            memmove(h->v + (size_t)i * h->hd, h->v + (size_t)j * h->hd, row);
        }
        h->pos[i] = h->pos[j];
        h->s_glo[i] = h->s_glo[j];
        h->s_sq[i] = h->s_sq[j];
        h->cnt[i] = h->cnt[j];
        h->mass[i] = h->mass[j];
        h->kbias[i] = h->kbias[j];
        for (int r = 0; r < h->w_loc; r++) {
            float *lr = h->loc + (size_t)r * h->cap;
            lr[i] = lr[j];
        }
    }
    h->len = n;
    if (h->qstate)
        ems_quant_on_compact(h, keep, n);
    int nc = ems_cache_fit_cap(h->cap, n);
    if (nc < h->cap)
        (void)head_resize(h, nc); /* shrinking: a failed realloc keeps the larger arrays */
}

uint64_t ems_cache_kv_bytes(const ems_cache *c)
{
    uint64_t b = 0;
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++) {
        const ems_head *h = &c->heads[i];
        b += h->qstate ? ems_quant_bytes(h) : 2ull * sizeof(float) * h->hd * (uint64_t)h->len;
    }
    return b;
}

uint64_t ems_head_meta_bytes(int w_loc)
{
    /* pos, cnt; s_glo, s_sq, mass, kbias; the local ring */
    return 2 * sizeof(int32_t) + 4 * sizeof(float) + sizeof(float) * (uint64_t)w_loc;
}

uint64_t ems_head_entry_bytes(int hd, int w_loc)
{
    return 2ull * sizeof(float) * (uint64_t)hd + ems_head_meta_bytes(w_loc); /* + k, v */
}

uint64_t ems_cache_held_bytes(const ems_cache *c)
{
    uint64_t b = 0;
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++) {
        const ems_head *h = &c->heads[i];
        if (h->qstate)
            b += (uint64_t)h->len * ems_head_meta_bytes(h->w_loc) + ems_quant_held_bytes(h);
        else
            b += (uint64_t)h->len * ems_head_entry_bytes(h->hd, h->w_loc);
    }
    return b;
}

uint64_t ems_cache_alloc_bytes(const ems_cache *c)
{
    uint64_t b = sizeof *c + sizeof(ems_head) * (uint64_t)c->n_layer * c->n_head_kv +
                 ems_policy_state_bytes(c);
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++) {
        const ems_head *h = &c->heads[i];
        /* a ring of w_loc = 0 allocates nothing; the others are cap elements each */
        uint64_t per =
            h->qstate ? ems_head_meta_bytes(h->w_loc) : ems_head_entry_bytes(h->hd, h->w_loc);
        b += (uint64_t)h->cap * per + ems_quant_alloc_bytes(h);
    }
    return b;
}

uint64_t ems_cache_quant_held_bytes(const ems_cache *c)
{
    uint64_t b = 0;
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++)
        b += c->heads[i].qstate ? ems_quant_held_bytes(&c->heads[i]) : 0;
    return b;
}

uint64_t ems_cache_quantized_total(const ems_cache *c)
{
    uint64_t n = 0;
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++)
        n += (uint64_t)ems_quant_coded(&c->heads[i]);
    return n;
}

uint64_t ems_cache_entries(const ems_cache *c)
{
    uint64_t n = 0;
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++)
        n += (uint64_t)c->heads[i].len;
    return n;
}
