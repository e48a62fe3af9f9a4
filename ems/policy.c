/* ems_policy_step: policy state on the cache, quantization attachment, budget resolution and
 * dispatch to the per-method layer functions (evict.c, ems_merge.c). */
#include "ems/policy.h"

#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "ems/policy_impl.h"
#include "ems/quant.h"

static ems__pstate *pstate_get(ems_cache *c)
{
    ems__pstate *ps = c->policy;
    if (ps)
        return ps;
    ps = calloc(1, sizeof *ps + sizeof(ems__layer_state) * (size_t)c->n_layer);
    if (!ps)
        return NULL;
    ps->n_layer = c->n_layer;
    ps->st.n_lazy_layers = -1;
    for (int l = 0; l < c->n_layer; l++)
        ps->layer[l].lazy = -1;
    c->policy = ps;
    return ps;
}

void ems_policy_get_stats(const ems_cache *c, ems_policy_stats *out)
{
    memset(out, 0, sizeof *out);
    out->n_lazy_layers = -1;
    const ems__pstate *ps = c->policy;
    if (ps)
        *out = ps->st;
}

uint64_t ems_policy_state_bytes(const ems_cache *c)
{
    const ems__pstate *ps = c->policy;
    return ps ? sizeof *ps + sizeof(ems__layer_state) * (uint64_t)ps->n_layer : 0;
}

em_status ems_policy_copy_state(const ems_cache *src, ems_cache *dst)
{
    if (!src || !dst || dst->policy || src->n_layer != dst->n_layer)
        return EM_EINVAL;
    const ems__pstate *ps = src->policy;
    if (!ps)
        return EM_OK;
    size_t bytes = sizeof *ps + sizeof(ems__layer_state) * (size_t)ps->n_layer;
    dst->policy = malloc(bytes);
    if (!dst->policy)
        return EM_ENOMEM;
    memcpy(dst->policy, ps, bytes);
    return EM_OK;
}

static em_status attach_quant(ems_cache *c, const ems_config *cfg)
{
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++) {
        em_status st =
            ems_quant_attach(&c->heads[i], (int)cfg->quant, cfg->quant_group, cfg->quant_residual);
        if (st != EM_OK)
            return st;
    }
    return EM_OK;
}

/* Sequence length: newest position + 1 of the first local head (all heads see every token). */
static int context_len(const ems_cache *c)
{
    const ems_head *h = &c->heads[0];
    int n = h->len > 0 ? h->pos[h->len - 1] + 1 : 0;
    return n > c->n_seen ? n : c->n_seen;
}

typedef em_status (*layer_fn)(ems__ctx *x, int l);

static layer_fn method_fn(ems_method m)
{
    switch (m) {
    case EMS_METHOD_STREAMINGLLM:
        return ems__streaming_layer;
    case EMS_METHOD_H2O:
        return ems__h2o_layer;
    case EMS_METHOD_SNAPKV:
        return ems__snapkv_layer;
    case EMS_METHOD_PYRAMIDKV:
        return ems__pyramid_layer;
    case EMS_METHOD_TOVA:
        return ems__tova_layer;
    case EMS_METHOD_SIMLAYERKV:
        return ems__simlayer_layer;
    case EMS_METHOD_ROCO:
        return ems__roco_layer;
    case EMS_METHOD_EMS:
        return ems__ems_layer;
    default:
        return NULL;
    }
}

em_status ems_policy_step(ems_cache *c, const ems_config *cfg, int phase, const ems_reduce *red)
{
    if (!c || !cfg ||
        (phase != EMS_PHASE_PREFILL_END && phase != EMS_PHASE_DECODE &&
         phase != EMS_PHASE_PREFILL_CHUNK)) {
        return EM_EINVAL;
    }
    char err[16];
    if (ems_config_validate(cfg, err, sizeof err) != EM_OK)
        return EM_EINVAL;
    if (phase == EMS_PHASE_PREFILL_CHUNK && cfg->prefill_keep <= 0)
        return EM_OK; /* the prompt is held whole until its end */
    ems__pstate *ps = pstate_get(c);
    if (!ps)
        return EM_ENOMEM;
    double t0 = em_now_s();
    em_status st = EM_OK;
    if (cfg->quant != EMS_QUANT_NONE && !ps->quant_attached) {
        st = attach_quant(c, cfg);
        if (st != EM_OK)
            return st;
        ps->quant_attached = 1;
    }
    if (cfg->method == EMS_METHOD_EMS && cfg->ems_prop_attn) {
        for (int i = 0; i < c->n_layer * c->n_head_kv; i++)
            c->heads[i].prop_attn = 1; /* kbias = log(mass), kept by merges */
    }
    if (phase == EMS_PHASE_PREFILL_END)
        ps->prefill_seen = 1;
    layer_fn fn = method_fn(cfg->method);
    if (!fn || c->heads[0].len == 0)
        return EM_OK;

    ems__ctx x = {0};
    x.c = c;
    x.cfg = cfg;
    x.ps = ps;
    x.phase = phase;
    x.red = red;
    x.H = red && red->n_head_kv_global > 0 ? red->n_head_kv_global : c->n_head_kv;
    x.B = ems_config_budget(cfg, context_len(c));
    x.N = ems_config_every(cfg);
    if (phase == EMS_PHASE_PREFILL_CHUNK) { /* due once len >= keep + slack + 1 */
        x.B = cfg->prefill_keep;
        x.N = ems_config_prefill_slack(cfg) + 1;
    }
    if (x.H < c->kv_head0 + c->n_head_kv)
        return EM_EINVAL;

    int64_t ev0 = ps->st.n_events;
    for (int l = 0; l < c->n_layer && st == EM_OK; l++)
        st = fn(&x, l);
    if (ps->st.n_events != ev0)
        ps->st.n_steps++;
    ps->st.seconds += em_now_s() - t0;
    return st;
}
