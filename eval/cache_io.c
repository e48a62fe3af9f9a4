/* Prompt KV cache to a file and back (see cache_io.h). */
#include "eval/cache_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char k_magic[6] = {'E', 'M', 'S', 'K', 'V', '1'};

static int put(FILE *f, const void *p, size_t size, size_t n)
{
    return n == 0 || fwrite(p, size, n, f) == n;
}

static int get(FILE *f, void *p, size_t size, size_t n)
{
    return n == 0 || fread(p, size, n, f) == n;
}

em_status lc_cache_write(const ems_cache *c, const char *path)
{
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++) {
        if (c->heads[i].qstate)
            return EM_EUNSUPPORTED;
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return EM_EIO;
    int32_t hdr[6] = {c->n_layer, c->n_head_kv, c->hd, c->heads[0].w_loc, c->n_seen, c->group_max};
    int ok = put(f, k_magic, 1, sizeof k_magic) && put(f, hdr, sizeof hdr[0], 6);
    for (int i = 0; ok && i < c->n_layer * c->n_head_kv; i++) {
        const ems_head *h = &c->heads[i];
        size_t n = (size_t)h->len;
        int32_t hh[3] = {h->len, h->loc_count, h->loc_newest};
        ok = put(f, hh, sizeof hh[0], 3) && put(f, h->k, sizeof(float), n * h->hd) &&
             put(f, h->v, sizeof(float), n * h->hd) && put(f, h->pos, sizeof(int32_t), n) &&
             put(f, h->s_glo, sizeof(float), n) && put(f, h->s_sq, sizeof(float), n) &&
             put(f, h->cnt, sizeof(int32_t), n) && put(f, h->mass, sizeof(float), n);
        for (int r = 0; ok && r < h->w_loc; r++)
            ok = put(f, h->loc + (size_t)r * h->cap, sizeof(float), n);
    }
    return fclose(f) == 0 && ok ? EM_OK : EM_EIO;
}

static em_status read_head(FILE *f, ems_head *h, int hd)
{
    int32_t hh[3];
    if (!get(f, hh, sizeof hh[0], 3) || hh[0] < 0 || hh[0] > (1 << 24) || hh[1] < 0 ||
        hh[1] > h->w_loc || hh[2] < -1 || hh[2] >= (h->w_loc > 0 ? h->w_loc : 1))
        return EM_EINVAL;
    size_t n = (size_t)hh[0];
    float *k = malloc(sizeof(float) * (n * hd + 1)), *v = malloc(sizeof(float) * (n * hd + 1));
    int32_t *pos = malloc(sizeof(int32_t) * (n + 1));
    em_status st = k && v && pos ? EM_OK : EM_ENOMEM;
    if (st == EM_OK && (!get(f, k, sizeof(float), n * hd) || !get(f, v, sizeof(float), n * hd) ||
                        !get(f, pos, sizeof(int32_t), n)))
        st = EM_EINVAL;
    if (st == EM_OK)
        st = ems_head_append(h, k, v, hd, pos, (int)n);
    free(k), free(v), free(pos);
    if (st == EM_OK && (!get(f, h->s_glo, sizeof(float), n) || !get(f, h->s_sq, sizeof(float), n) ||
                        !get(f, h->cnt, sizeof(int32_t), n) || !get(f, h->mass, sizeof(float), n)))
        st = EM_EINVAL;
    for (int r = 0; st == EM_OK && r < h->w_loc; r++) {
        if (!get(f, h->loc + (size_t)r * h->cap, sizeof(float), n))
            st = EM_EINVAL;
    }
    h->loc_count = hh[1];
    h->loc_newest = hh[2];
    return st;
}

em_status lc_cache_read(const char *path, ems_cache **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return EM_EIO;
    char magic[6];
    int32_t hdr[6];
    em_status st = EM_EINVAL;
    if (get(f, magic, 1, 6) && !memcmp(magic, k_magic, 6) && get(f, hdr, sizeof hdr[0], 6) &&
        hdr[0] > 0 && hdr[0] <= 1024 && hdr[1] > 0 && hdr[1] <= 1024 && hdr[2] > 0 &&
        hdr[2] <= 1024 && hdr[3] >= 0 && hdr[3] <= 4096)
        st = ems_cache_create(hdr[0], hdr[1], 0, hdr[2], hdr[3], 1, out);
    for (int i = 0; st == EM_OK && i < hdr[0] * hdr[1]; i++)
        st = read_head(f, &(*out)->heads[i], hdr[2]);
    if (st == EM_OK) {
        (*out)->n_seen = hdr[4];
        (*out)->group_max = hdr[5];
    } else {
        ems_cache_destroy(*out);
        *out = NULL;
    }
    fclose(f);
    return st;
}
