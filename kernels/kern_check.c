/* Argument checks of the op contracts (kernels/kern.h): what a caller could get wrong, checked
 * once here so that the reference, the CPU and the CUDA backend reject the same calls with
 * EM_EINVAL instead of reading or writing out of bounds. */
#include "kernels/kern.h"
#include "kernels/quant.h"

em_status kern_check_matmul(const kern_weight *w, const float *x, int x_stride, int n,
                            const float *y, int y_stride)
{
    if (!w || n < 0 || w->rows < 0 || w->cols < 0 || !kern_dtype_valid((int)w->dtype))
        return EM_EINVAL;
    if (w->cols > 0 && kern_row_bytes(w->dtype, w->cols) == 0)
        return EM_EINVAL; /* part block */
    if (n == 0 || w->rows == 0)
        return EM_OK;
    if (!y || (w->cols > 0 && (!x || !w->data)))
        return EM_EINVAL;
    if (n > 1 && (x_stride < w->cols || y_stride < w->rows))
        return EM_EINVAL;
    return EM_OK;
}

em_status kern_check_rows(const float *a, const float *b, int n, int dim, const float *out)
{
    if (n < 0 || dim < 0)
        return EM_EINVAL;
    if (n == 0 || dim == 0)
        return EM_OK;
    return a && b && out ? EM_OK : EM_EINVAL;
}

em_status kern_check_rope(const float *x, int n_tok, int n_heads, int hd, int stride,
                          const int32_t *pos, int rope_dim)
{
    if (n_tok < 0 || n_heads < 0 || hd < 0 || rope_dim < 0 || rope_dim % 2 || rope_dim > hd)
        return EM_EINVAL;
    if (n_tok == 0 || n_heads == 0 || rope_dim == 0)
        return EM_OK;
    if (!x || !pos)
        return EM_EINVAL;
    if (n_tok > 1 && (long long)stride < (long long)n_heads * hd)
        return EM_EINVAL;
    return EM_OK;
}

em_status kern_check_attn(const kern_attn_args *a)
{
    if (!a || a->n_q < 0 || a->len < 0)
        return EM_EINVAL;
    if (a->n_q == 0)
        return EM_OK;
    if (a->G < 1 || a->hd < 1 || !a->q || !a->q_pos || !a->out)
        return EM_EINVAL;
    long long row = (long long)a->G * a->hd;
    if (a->n_q > 1 && (a->q_stride < row || a->o_stride < row))
        return EM_EINVAL;
    if (a->len > 0 && (!a->k || !a->v || !a->kpos))
        return EM_EINVAL;
    const kern_attn_stats *st = a->stats;
    if (st && st->row_ptrs && (st->n_rows < 0 || st->n_rows > a->n_q))
        return EM_EINVAL;
    return EM_OK;
}
