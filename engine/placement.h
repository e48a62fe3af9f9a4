/* Head placement: which units (KV heads with their query heads and FFN chunk) a shard owns.
 * Pure arithmetic on the hyper-parameters; the coordinator links it without the engine.
 *
 * A shard: which part of every layer this process owns.
 *
 * The model is cut into n_units "reduction units": unit u = KV head u with its G query heads,
 * plus the u-th contiguous chunk of the feed-forward rows. A process owns units
 * [unit0, unit0 + n_units_local). The single-process engine is the shard 1-of-1 (all units).
 *
 * Exactness: after the attention output projection and after the FFN down projection each
 * process writes the partial sum of each of ITS units into a zeroed buffer of all units
 * ([n_units][n_tok][dim]), the reduce hook sums that buffer over processes (a plain all-reduce:
 * every element is non-zero on at most one process, so x + 0 = x exactly), and every process
 * adds the units up in unit order. Hence any worker count up to the number of KV heads gives
 * bit-identical results to one process (units are dealt out as evenly as possible: 3 KV heads
 * over 2 workers are 2 + 1, with the FFN rows following their units). */
#pragma once
#include <stddef.h>

#include "common/status.h"
#include "model/model.h"

/* All-reduce (sum) of n floats in place over the shard group; EM_OK on success. NULL = one
 * process. */
typedef em_status (*shard_reduce_fn)(void *user, float *buf, size_t n);

typedef struct shard_desc {
    int n_units;       /* total units = n_kv_head */
    int unit0;         /* first owned unit */
    int n_units_local; /* owned units */
    shard_reduce_fn reduce;
    void *reduce_user;
} shard_desc;

/* FFN rows of unit u: [lo, hi). The rows are cut in whole multiples of hp->ffn_align (the
 * block size of ffn_down, whose columns each unit slices); chunks differ by at most one
 * multiple. */
static inline void shard_ffn_range(const model_hparams *hp, int n_units, int u, int *lo, int *hi)
{
    long a = hp->ffn_align > 0 ? hp->ffn_align : 1, blocks = hp->ffn_dim / a;
    *lo = (int)(a * (blocks * u / n_units));
    *hi = u + 1 == n_units ? hp->ffn_dim : (int)(a * (blocks * (u + 1) / n_units));
}

/* 1-of-1 shard for n_kv_head units. */
static inline shard_desc shard_single(int n_kv_head)
{
    shard_desc s = {n_kv_head, 0, n_kv_head, NULL, NULL};
    return s;
}

/* Shard rank of world: units [unit0, unit0 + n) with the first n_kv_head % world ranks taking
 * one unit more. EM_EINVAL unless 1 <= world <= n_kv_head and 0 <= rank < world. */
em_status shard_for_rank(int n_kv_head, int rank, int world, shard_desc *out);
