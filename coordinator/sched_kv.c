/* The scheduler's KV memory budget: step growth and charges (see sched_kv.h). */
#include "coordinator/sched_kv.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int64_t coord_kv_step_growth(const coord_kv_budget *b, const coord_kv_seq *q, int r)
{
    const ems_footprint_shape *sh = &b->shape[r];
    /* new entries arrive in f32 (the residual window, or a prompt not yet quantized); the
     * store's attachment and the quantization of window rows only shrink what is held, except
     * for the key-group scales a block adds */
    int64_t per_entry = (int64_t)ems_footprint_append_bytes(q->cfg, sh->hd);
    int64_t heads = (int64_t)sh->n_layer * sh->n_head_local;
    int64_t g = per_entry * q->next_tokens;
    if (q->cfg->quant != EMS_QUANT_NONE) {
        int grp = q->cfg->quant_group > 0 ? q->cfg->quant_group : 1;
        g += (int64_t)(q->next_tokens / grp + 1) * sh->hd * 2 * 2;
    }
    return g * heads;
}

int64_t coord_kv_charge(const coord_kv_budget *b, const coord_kv_seq *q, int r, int reserve_all)
{
    double rho = reserve_all ? 1.0 : b->reserve;
    int64_t left = q->n_end > q->n_fed ? q->n_end - q->n_fed : 0;
    int64_t end = q->n_fed + (int64_t)ceil(rho * (double)left);
    if (q->prompt_ahead && end < q->n_prompt) {
        end = q->n_prompt; /* the prompt is fed whole, whatever the reserve */
    }
    if (end > q->n_end) {
        end = q->n_end;
    }
    int64_t peak = (int64_t)ems_footprint_peak_bytes(q->cfg, &b->shape[r], q->n_prompt, (int)end,
                                                     q->prompt_ahead);
    int64_t now = (q->held ? q->held[r] : 0) + coord_kv_step_growth(b, q, r);
    return now > peak ? now : peak;
}

em_status coord_kv_memory_parse(const char *text, int64_t *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    double v = text ? strtod(text, &end) : 0;
    if (text == NULL || end == text || errno || !(v >= 0) || isspace((unsigned char)text[0])) {
        snprintf(err, errlen, "kv memory '%s': want BYTES or N{K,M,G} (e.g. 1G, 512M)",
                 text ? text : "");
        return EM_EINVAL;
    }
    double mult = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        mult = 1024.0;
        end++;
        break;
    case 'M':
        mult = 1024.0 * 1024;
        end++;
        break;
    case 'G':
        mult = 1024.0 * 1024 * 1024;
        end++;
        break;
    case 'T':
        mult = 1024.0 * 1024 * 1024 * 1024;
        end++;
        break;
    default:
        break;
    }
    if (mult > 1 && (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0)) {
        end += strlen(end);
    } else if (mult == 1 && strcasecmp(end, "B") == 0) {
        end++;
    }
    double bytes = v * mult;
    if (*end != 0 || bytes > 9.0e18) {
        snprintf(err, errlen, "kv memory '%s': want BYTES or N{K,M,G} (e.g. 1G, 512M)", text);
        return EM_EINVAL;
    }
    *out = (int64_t)bytes;
    return EM_OK;
}

int64_t coord_kv_memory_default(int n_workers)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) {
        return (int64_t)1 << 30; /* unknown: 1 GiB */
    }
    int64_t ram = (int64_t)pages * (int64_t)page;
    return ram / 2 / (n_workers > 0 ? n_workers : 1);
}
