// Scalar reference kernels: one generic dot for every format (decode a chunk
// through the traits table, multiply in int32), and the activation quantizer.
// The SIMD kernels must match these bit for bit.
#include <math.h>

#include "kernels/kern_impl.h"

// Integer dot of one chunk's stored fields with 32 activations.
static int32_t chunk_dot(tern_kkind kind, const uint8_t u[TERN_KCHUNK], const int8_t *q) {
    int32_t s = 0;
    if (kind == TERN_KKIND_Q8)
        for (int j = 0; j < TERN_KCHUNK; j++) s += (int32_t)(int8_t)u[j] * q[j];
    else
        for (int j = 0; j < TERN_KCHUNK; j++) s += (int32_t)u[j] * q[j];
    return s;
}

static float row_token(const tern_kmatrix *w, const uint8_t *row, const tern_qact *a, int t) {
    const tern_kformat *f = w->fmt;
    const uint8_t *sc = row + w->code_bytes;
    const int8_t *q = a->q + (size_t)t * a->stride;
    const int32_t *gs = a->gsum + (size_t)t * a->n_groups;
    const int cpg = tern_kact_cpg(a, w->n_chunks);
    float acc = 0.0f;
    int c = 0;
    for (int g = 0; g < w->n_groups; g++) {
        int k0, k1;
        tern_kact_range(w, a, g, &k0, &k1);
        for (int k = k0; k < k1; k++) { // activation groups
            int end = c + cpg < w->n_chunks ? c + cpg : w->n_chunks;
            int32_t raw = 0;
            for (; c < end; c++) {
                uint8_t u[TERN_KCHUNK];
                f->get_chunk(row, w->n_chunks, c, u);
                raw += chunk_dot(f->kind, u, q + (size_t)c * TERN_KCHUNK);
            }
            acc = tern_kstep(f->kind, w->has_shift, w->n_groups, sc, g, raw, gs[k], tern_kact_scale(a, t, k), acc);
        }
    }
    return acc;
}

TERN_KDECL(tern_kdot_scalar) {
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * w->row_bytes;
        for (int t = t0; t < t0 + nt; t++)
            out[(size_t)(t - t0) * ldo + (r - r0)] = tern_kfinish(row_token(w, row, a, t), bias, r);
    }
}

// Per group: s_x = max|x| / 127, q = round-half-even(x / s_x) clamped to
// [-127, 127] (an all-zero group gets s_x = 0, q = 0). The SIMD versions
// perform the same correctly rounded divisions, so all give identical q and s_x.
void tern_quantize_act_scalar(tern_qact *a, const float *x, int n) {
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * a->cols;
        int8_t *q = a->q + (size_t)t * a->stride;
        for (int g = 0; g < a->n_groups; g++) {
            int c0 = g * a->group, c1 = c0 + a->group < a->cols ? c0 + a->group : a->cols;
            float amax = 0.0f;
            for (int i = c0; i < c1; i++) amax = fmaxf(amax, fabsf(xt[i]));
            float s = amax / 127.0f;
            a->scale[(size_t)g * a->n_max + t] = s;
            int32_t s32 = 0;
            for (int i = c0; i < c1; i++) {
                float v = s > 0.0f ? nearbyintf(xt[i] / s) : 0.0f;
                v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
                q[i] = (int8_t)v;
                s32 += q[i];
            }
            a->gsum[(size_t)t * a->n_groups + g] = s32;
        }
        memset(q + a->cols, 0, a->stride - (size_t)a->cols);
        tern_kpermute_token(a, t);
    }
    a->n = n;
}
