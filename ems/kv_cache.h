/* Per-(layer, KV head) KV storage with independent lengths and per-entry original positions,
 * plus the attention statistics the compression policies read. One ems_cache per sequence
 * and per process (a worker holds only its own KV heads).
 *
 * Layout per head (cap grows by doubling):
 *   k, v   [cap][hd]  post-RoPE keys, values (f32). A quantized head (ems/quant.h) has none:
 *                     its store holds codes + scales + an f32 window, and k, v are NULL except
 *                     while a policy has it materialised (ems_quant_materialize)
 *   pos    [cap]      original RoPE position of each entry (never renumbered by default)
 *   s_glo  [cap]      accumulated attention over every query that saw the entry (H2O / global)
 *   s_sq   [cap]      accumulated squared attention (RoCo std)
 *   cnt    [cap]      number of queries that saw the entry (RoCo mean)
 *   mass   [cap]      merge mass: how many original tokens an entry stands for (1 if unmerged)
 *   kbias  [cap]      log(mass): the attention logit bias of proportional attention (used only
 *                     when the head's prop_attn is set)
 *   loc    [w_loc][cap] ring of the attention rows of the last w_loc queries (local score,
 *                     TOVA uses the newest row); loc_newest is the newest row's slot.
 * Attention probabilities are per KV head: reduced over the GQA group (mean by default). */
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "kernels/kern.h"

typedef struct ems_head {
    int len, cap, hd;
    float *k, *v;
    int32_t *pos;
    float *s_glo, *s_sq, *mass, *kbias;
    int32_t *cnt;
    float *loc;     /* [w_loc][cap] */
    int w_loc;      /* ring size (0 = no local rows kept) */
    int loc_newest; /* slot of the newest row, -1 when none yet */
    int loc_count;  /* number of valid rows (<= w_loc) */
    int prop_attn;  /* attention adds kbias = log(mass) to each logit (ems.prop_attn) */
    void *qstate;   /* quantized storage (ems/quant), NULL when not quantized */
} ems_head;

/* Scratch the caller owns for dequantised K/V (attention over a quantized head): one per thread,
 * reused across heads and sequences, grown as needed; zero-initialise, free with
 * ems_scratch_free. */
typedef struct ems_scratch {
    float *buf;
    size_t cap; /* floats */
} ems_scratch;
void ems_scratch_free(ems_scratch *s);

typedef struct ems_cache {
    int n_layer, n_head_kv, hd; /* n_head_kv = KV heads held by THIS process */
    int kv_head0;               /* global index of the first local KV head */
    int want_stats;             /* collect kern_attn_stats (0 for "full" without quantization) */
    int group_max;              /* GQA reduction of statistics: 0 mean, 1 max */
    int n_seen;                 /* tokens appended so far (the sequence length) */
    ems_head *heads;            /* [n_layer][n_head_kv] */
    void *policy;               /* policy state (ems/policy), owned */
} ems_cache;

/* Creates an empty cache. w_loc = local ring size (0 = none). */
em_status ems_cache_create(int n_layer, int n_head_kv, int kv_head0, int hd, int w_loc,
                           int want_stats, ems_cache **out);
void ems_cache_destroy(ems_cache *c); /* NULL ok */

/* Deep copy of src (entries, positions, statistics, policy state) whose local ring keeps the
 * newest min(w_loc, rows held) attention rows of src, so the copy holds what a cache created
 * with ring size w_loc would hold after the same queries. Bit-identical slot layout too (so
 * policies that sum ring rows round alike) when src's ring is a multiple of w_loc and every
 * forward call had 1 token or at least src's ring of them (a prefill in large chunks, then
 * decode steps); otherwise rows are stored oldest first. Used to fork one prompt's cache for
 * several policies. EM_EINVAL when w_loc < 0 or w_loc > the ring of src; EM_EUNSUPPORTED when
 * a head of src is quantized (fork before the first quantizing policy step); EM_ENOMEM. */
em_status ems_cache_clone(const ems_cache *src, int w_loc, ems_cache **out);

static inline ems_head *ems_cache_head(ems_cache *c, int layer, int h)
{
    return &c->heads[layer * c->n_head_kv + h];
}

/* Appends n entries: k/v rows at k + i*stride (hd floats each), positions pos[i].
 * Statistics of new entries start at zero (mass 1). */
em_status ems_head_append(ems_head *h, const float *k, const float *v, int stride,
                          const int32_t *pos, int n);

/* Prepares one attention call of n_q queries over this head: fills a->k, a->v, a->kpos, a->len
 * (dequantising into scr when the head is quantized; scr may be NULL for an unquantized head)
 * and, when stats is non-NULL, points it at the head's statistics; rowbuf must have room for
 * n_rows = min(n_q, w_loc) pointers. */
em_status ems_head_attn_begin(ems_head *h, int n_q, kern_attn_args *a, kern_attn_stats *stats,
                              float **rowbuf, int group_max, ems_scratch *scr);

/* Keeps entries keep[0..n) (strictly increasing indices below len: our policies make them,
 * and it is asserted) and drops the rest, moving every per-entry array including the local
 * rows. */
void ems_head_compact(ems_head *h, const int *keep, int n);

/* Bytes of KV data held (K and V payload only, quantized size when quantized): the size of the
 * compressed representation, what the quality tables report. */
uint64_t ems_cache_kv_bytes(const ems_cache *c);

/* Bytes of memory the cache's entries hold: for every entry of every head, its position, the
 * policies' statistics (s_glo, s_sq, cnt, mass, kbias) and its column of the local ring (w_loc
 * floats) -- ems_head_meta_bytes -- and its K and V: f32 on an unquantized head
 * (ems_head_entry_bytes = meta + K + V), on a quantized head the packed codes and scales of a
 * quantized entry or the f32 row of a window entry, plus the key-group scales
 * (ems_quant_held_bytes). This is what the service's KV memory budget counts. Capacity beyond
 * the entries is not counted: arrays grow by 25 % (rounded to 64 entries) and shrink after a
 * compaction, so each head allocates at most held + 25 % + 128 entries (ems_cache_grow_cap,
 * ems_cache_fit_cap); ems_cache_alloc_bytes gives the allocated size. */
uint64_t ems_cache_held_bytes(const ems_cache *c);
/* Bytes the cache has allocated: every per-entry array at its capacity, the quantized stores
 * (ems_quant_alloc_bytes), the head table, the policy state and the cache itself. */
uint64_t ems_cache_alloc_bytes(const ems_cache *c);
/* Bytes one entry of an unquantized head holds (see ems_cache_held_bytes). */
uint64_t ems_head_entry_bytes(int hd, int w_loc);
/* The same without K and V (what a quantized head's entries hold besides the store). */
uint64_t ems_head_meta_bytes(int w_loc);
/* Capacity policy: the capacity after growing from cap to hold need entries, and the capacity
 * a head holding len entries is trimmed to after a compaction (cap when already tight). */
int ems_cache_grow_cap(int cap, int need);
int ems_cache_fit_cap(int cap, int len);
/* The part of ems_cache_held_bytes that the quantized stores hold (ems_quant_held_bytes of every
 * quantized head; 0 when none is quantized): held - this = the f32 entries and statistics. */
uint64_t ems_cache_quant_held_bytes(const ems_cache *c);
/* Entries quantized so far over all heads (a running total, ems_quant_coded). */
uint64_t ems_cache_quantized_total(const ems_cache *c);
/* Total entries held over all layers and heads. */
uint64_t ems_cache_entries(const ems_cache *c);
