/* CPU reference of the GPU K/V quantization (format in kvquant.h). Each arithmetic step is a
 * separate statement so that no FMA contraction changes a code: the GPU kernel performs the
 * same correctly rounded operations and produces identical bytes. */
#include <math.h>
#include <string.h>

#include "kernels/cuda/kvquant.h"

em_status kern_kv_check(kern_kv_fmt f, int hd)
{
    if (hd <= 0 || hd > 256)
        return EM_EUNSUPPORTED;
    if (f == KERN_KV_F32)
        return EM_OK;
    if (f != KERN_KV_Q8 && f != KERN_KV_Q4)
        return EM_EINVAL;
    if (hd % kern_kv_group(hd) != 0)
        return EM_EUNSUPPORTED;
    if (f == KERN_KV_Q4 && (hd & 1))
        return EM_EUNSUPPORTED;
    return EM_OK;
}

void kern_kv_quantize_ref(kern_kv_fmt f, const float *x, int n, int hd, int x_stride,
                          uint8_t *codes, float *sm)
{
    int qg = kern_kv_group(hd), ng = hd / qg, qmax = f == KERN_KV_Q8 ? 255 : 15;
    size_t rb = kern_kv_row_bytes(f, hd);
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * x_stride;
        uint8_t *cr = codes + (size_t)i * rb;
        if (f == KERN_KV_Q4)
            memset(cr, 0, rb);
        for (int gi = 0; gi < ng; gi++) {
            const float *xg = xr + gi * qg;
            float mn = xg[0], mx = xg[0];
            for (int d = 1; d < qg; d++) {
                mn = xg[d] < mn ? xg[d] : mn;
                mx = xg[d] > mx ? xg[d] : mx;
            }
            float range = mx - mn;
            float scale = range / (float)qmax;
            float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
            sm[((size_t)i * ng + gi) * 2] = scale;
            sm[((size_t)i * ng + gi) * 2 + 1] = mn;
            for (int d = 0; d < qg; d++) {
                float t = xg[d] - mn;
                float u = t * inv;
                int q = (int)rintf(u);
                q = q < 0 ? 0 : q > qmax ? qmax : q;
                int ch = gi * qg + d;
                if (f == KERN_KV_Q8) {
                    cr[ch] = (uint8_t)q;
                } else {
                    cr[ch >> 1] |= (uint8_t)((ch & 1) ? q << 4 : q);
                }
            }
        }
    }
}

void kern_kv_dequantize_ref(kern_kv_fmt f, const uint8_t *codes, const float *sm, int n, int hd,
                            float *out)
{
    int qg = kern_kv_group(hd), ng = hd / qg;
    size_t rb = kern_kv_row_bytes(f, hd);
    for (int i = 0; i < n; i++) {
        const uint8_t *cr = codes + (size_t)i * rb;
        for (int d = 0; d < hd; d++) {
            int q = f == KERN_KV_Q8 ? cr[d] : (d & 1) ? cr[d >> 1] >> 4 : cr[d >> 1] & 15;
            const float *g = sm + ((size_t)i * ng + d / qg) * 2;
            out[(size_t)i * hd + d] = (float)q * g[0] + g[1];
        }
    }
}
