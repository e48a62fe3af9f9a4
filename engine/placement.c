/* Head placement (see placement.h). */
#include "engine/placement.h"

em_status shard_for_rank(int n_kv_head, int rank, int world, shard_desc *out)
{
    if (world <= 0 || rank < 0 || rank >= world || n_kv_head <= 0 || world > n_kv_head) {
        return EM_EINVAL;
    }
    int per = n_kv_head / world, extra = n_kv_head % world;
    int unit0 = rank * per + (rank < extra ? rank : extra);
    shard_desc s = {n_kv_head, unit0, per + (rank < extra), NULL, NULL};
    *out = s;
    return EM_OK;
}
