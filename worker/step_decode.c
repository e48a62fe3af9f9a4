/* StepRequest -> worker_step_in (see step_decode.h). */
#include "worker/step_decode.h"

#include <stdio.h>
#include <stdlib.h>

em_status worker_step_decode(const Emserve__Internal__V1__StepRequest *rq, worker_step_in *in,
                             worker_open **opens, worker_policy **pols, char *err, size_t errlen)
{
    size_t nt = rq->n_tokens;
    if (rq->n_pos != nt || rq->n_seq != nt ||
        (rq->want_logits.len != 0 && rq->want_logits.len != nt)) {
        snprintf(err, errlen, "tokens/pos/seq/want_logits lengths differ");
        return EM_EINVAL;
    }
    *opens = calloc(rq->n_open + 1, sizeof **opens);
    *pols = calloc(rq->n_policy + 1, sizeof **pols);
    if (!*opens || !*pols) {
        return EM_ENOMEM;
    }
    for (size_t i = 0; i < rq->n_open; i++) {
        const Emserve__Internal__V1__SeqOpen *o = rq->open[i];
        (*opens)[i].slot = o->slot;
        ems_config_default(&(*opens)[i].cfg);
        for (size_t k = 0; k < o->n_kv; k++) {
            if (ems_config_set(&(*opens)[i].cfg, o->kv[k]->key, o->kv[k]->value, err, errlen) !=
                EM_OK) {
                return EM_EINVAL;
            }
        }
        if (ems_config_validate(&(*opens)[i].cfg, err, errlen) != EM_OK) {
            return EM_EINVAL;
        }
    }
    for (size_t i = 0; i < rq->n_policy; i++) {
        (*pols)[i].slot = rq->policy[i]->slot;
        (*pols)[i].phase = rq->policy[i]->phase;
    }
    in->generation = rq->generation;
    in->drop = rq->drop;
    in->n_drop = (int)rq->n_drop;
    in->open = *opens;
    in->n_open = (int)rq->n_open;
    in->n_tokens = (int)nt;
    in->tokens = rq->tokens;
    in->pos = rq->pos;
    in->seq = rq->seq;
    in->want_logits = rq->want_logits.len ? rq->want_logits.data : NULL;
    in->policy = *pols;
    in->n_policy = (int)rq->n_policy;
    in->return_logits = rq->return_logits;
    return EM_OK;
}
