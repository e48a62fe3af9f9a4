/* The weights a shard owns (placement in engine/placement.h). A shard: which part of every
 * layer this process owns.
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
#include "engine/placement.h"
#include "model/model.h"

/* The weights a shard needs, per layer and per owned unit, as contiguous copies or views into
 * the model: wq/wk/wv rows of the unit's heads, wo columns, w1/w3 rows and w2 columns of the
 * unit's FFN chunk. Norms, embeddings and the output head are shared views. Rows are views in
 * the weight's own type; column slices are copies in the same type when they cut whole blocks
 * (always for f32/f16 and 32-element blocks on llama shapes), else f32 dequantised copies. */
typedef struct shard_unit_weights {
    kern_weight wq, wk, wv; /* (G*hd, dim), (hd, dim), (hd, dim) */
    kern_weight wo;         /* (dim, G*hd) */
    kern_weight w1, w3;     /* (f, dim) */
    kern_weight w2;         /* (dim, f) */
    int ffn_rows;
} shard_unit_weights;

typedef struct shard_weights {
    const model *m;
    shard_desc sd;
    shard_unit_weights *units; /* [n_layer][n_units_local] */
    void **owned;
    int n_owned, cap_owned;
} shard_weights;

em_status shard_weights_create(const model *m, const shard_desc *sd, shard_weights **out);
void shard_weights_free(shard_weights *w);
/* Bytes of layer weights held by this shard (copies + views of owned slices, in their types). */
size_t shard_weights_bytes(const shard_weights *w);
