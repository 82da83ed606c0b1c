// Private to src/kernels: the float epilogue every implementation shares, and
// the kernel entry points the traits table points at.
//
// Why the epilogue is bit-identical everywhere: the integer part of a group
// (raw = sum of stored code * q over the group's chunks) is exact in every
// kernel, and the float part is this one inline sequence, written with
// explicit fmaf so that -ffp-contract can neither fuse nor split anything
// differently in the scalar and the SIMD builds (fmaf is correctly rounded
// in hardware and in libm alike).
#ifndef TERN_KERNELS_KERN_IMPL_H
#define TERN_KERNELS_KERN_IMPL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/half.h"
#include "kernels/kernels.h"

static inline float tern_kload_f16(const uint8_t *p, int i) {
    uint16_t h;
    memcpy(&h, p + 2 * (size_t)i, 2);
    return tern_f16_to_f32(h);
}

// Group contribution added to acc. raw: sum over the group of stored field * q;
// gsum: sum of q over the group; sx: the group's activation scale; alpha: the
// group's weight scale; gamma: the group's shift (any format, used only with
// has_shift: w = alpha * T + gamma for ternary, alpha * c + gamma for RTN and
// q8); zero: the RTN zero point (0 with shifts: such a matrix stores none). The scales
// multiply first (one rounding), then one fmaf per term. Callers may decode
// the fp16 scales any exact way (software or F16C): the values are the same.
static inline float tern_kstep_v(tern_kkind kind, int has_shift, float alpha, float gamma, int32_t zero,
                                 int32_t raw, int32_t gsum, float sx, float acc) {
    switch (kind) {
    // Stored field is T+1, so sum T*q = raw - sum q (exact in int32).
    case TERN_KKIND_TERNARY: acc = fmaf(alpha * sx, (float)(raw - gsum), acc); break;
    case TERN_KKIND_RTN: acc = fmaf(alpha * sx, (float)(raw - zero * gsum), acc); break;
    case TERN_KKIND_Q8:
    default: acc = fmaf(alpha * sx, (float)raw, acc); break;
    }
    return has_shift ? fmaf(gamma * sx, (float)gsum, acc) : acc;
}

// Same, reading group g's parameters from the row's scale area sc.
static inline float tern_kstep(tern_kkind kind, int has_shift, int n_groups, const uint8_t *sc, int g,
                               int32_t raw, int32_t gsum, float sx, float acc) {
    float gamma = has_shift ? tern_kload_f16(sc, n_groups + g) : 0.0f;
    int32_t zero = kind == TERN_KKIND_RTN && !has_shift ? sc[2 * (size_t)n_groups + g] : 0;
    return tern_kstep_v(kind, has_shift, tern_kload_f16(sc, g), gamma, zero, raw, gsum, sx, acc);
}

// Fills token t's bundle-ordered copy a->qp (see tern_qact in kernels.h).
static inline void tern_kpermute_token(const tern_qact *a, int t) {
    const int8_t *q = a->q + (size_t)t * a->stride;
    int8_t *qp = a->qp + (size_t)t * a->stride;
    const int n_bundles = (a->cols + TERN_KCHUNK - 1) / TERN_KCHUNK / 4;
    for (int b = 0; b < n_bundles; b++)
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 4; j++)
                memcpy(qp + 128 * (size_t)b + 32 * k + 8 * j, q + 32 * (size_t)(4 * b + j) + 8 * k, 8);
}

// Activation groups [*k0, *k1) of weight group g: the activations' groups
// split the weights' evenly (tern_kact_group) and each is one float step of
// the epilogue; group k covers chunks [k * cpg, min((k + 1) * cpg, n_chunks))
// with cpg = tern_kact_cpg.
static inline void tern_kact_range(const tern_kmatrix *w, const tern_qact *a, int g, int *k0, int *k1) {
    if (a->group == w->group) {
        *k0 = g, *k1 = g + 1;
    } else if (w->n_groups == 1) {
        *k0 = 0, *k1 = a->n_groups;
    } else {
        int per = w->group / a->group;
        *k0 = g * per, *k1 = *k0 + per < a->n_groups ? *k0 + per : a->n_groups;
    }
}
static inline int tern_kact_cpg(const tern_qact *a, int n_chunks) {
    return a->n_groups == 1 ? n_chunks : a->group / TERN_KCHUNK;
}

// Token t's activation scale for group g (tern_qact.scale is group-major).
static inline float tern_kact_scale(const tern_qact *a, int t, int g) { return a->scale[(size_t)g * a->n_max + t]; }

// Batches of at least this many tokens run the AVX-512 panel GEMM, whatever
// the format (kern_avx512.c): its 16-row decode is then amortized. It runs
// TERN_KTILE tokens at a time (tern_qact.qi).
#define TERN_KPANEL_MIN 8
#define TERN_KTILE 12

static inline float tern_kfinish(float acc, const float *bias, int r) { return bias ? acc + bias[r] : acc; }

// int16 partial sums in the maddubs kernels: a maddubs lane is u0*q0 + u1*q1
// with |q| <= 128 (the quantizer emits <= 127; 128 covers hand-made input), so
// it is at most 2*umax*128 and this many can be added before widening without
// leaving int16. umax is the largest value a stored field can hold, valid or not
// (a corrupt 2-bit field can be 3), so a bad buffer cannot make SIMD and scalar
// differ. One exception relies on validation instead: the AVX2 tern-t2 GEMV at
// G = 128 sums whole groups in int16, exact for fields <= 2 only; the .tern
// reader rejects a ternary field 3 (io/gguf.c).
#define TERN_KI16_LIMIT(umax) (32767 / (2 * (umax) * 128))

// Entry points (kern_scalar.c, kern_avx2.c, kern_avx512.c, kern_neon.c).
#define TERN_KDECL(name)                                                                                   \
    void name(const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t0, int nt, const float *bias, \
              float *out, size_t ldo)
TERN_KDECL(tern_kdot_scalar);
#if defined(__x86_64__) || defined(__i386__)
#define TERN_KHAVE_X86 1
TERN_KDECL(tern_kdot_t2_avx2);
TERN_KDECL(tern_kdot_t16_avx2);
TERN_KDECL(tern_kdot_q8_avx2);
TERN_KDECL(tern_kdot_q4_avx2);
TERN_KDECL(tern_kdot_q3_avx2);
TERN_KDECL(tern_kdot_q2_avx2);
TERN_KDECL(tern_kdot_t2_avx512);
TERN_KDECL(tern_kdot_q8_avx512);
TERN_KDECL(tern_kdot_t16_avx512);
TERN_KDECL(tern_kdot_q4_avx512);
TERN_KDECL(tern_kgemm_panel_avx512); // any format, batches of >= TERN_KPANEL_MIN tokens from t0 = 0
void tern_kinterleave_avx512(tern_qact *a, int n); // fills a->qi
// Whether the AVX-512 kernels read w->ilv for rows [r0, r1) with activations a
// (whole 16-row blocks, the activation groups w's kernels expect: the weights'
// own for the ternary formats, q4g's may split them).
static inline int tern_kilv_direct(tern_kimpl impl, const tern_kmatrix *w, const tern_qact *a, int r0, int r1) {
    return impl == TERN_KIMPL_AVX512 && w->ilv && a->group == tern_kact_group(w) && r0 % TERN_KILV_ROWS == 0 &&
           r1 % TERN_KILV_ROWS == 0;
}
void tern_quantize_act_avx2(tern_qact *a, const float *x, int n);
void tern_kdecode_row_avx2(const tern_kmatrix *w, int r, uint8_t *u); // row r's fields, 32 bytes per chunk
#else
static inline int tern_kilv_direct(tern_kimpl impl, const tern_kmatrix *w, const tern_qact *a, int r0, int r1) {
    (void)impl, (void)w, (void)a, (void)r0, (void)r1;
    return 0;
}
#endif
#if defined(__aarch64__)
#define TERN_KHAVE_NEON 1
TERN_KDECL(tern_kdot_t2_neon);
TERN_KDECL(tern_kdot_t16_neon);
TERN_KDECL(tern_kdot_q8_neon);
TERN_KDECL(tern_kdot_q4_neon);
TERN_KDECL(tern_kdot_q3_neon);
TERN_KDECL(tern_kdot_q2_neon);
void tern_quantize_act_neon(tern_qact *a, const float *x, int n);
#endif
void tern_quantize_act_scalar(tern_qact *a, const float *x, int n);

#endif
