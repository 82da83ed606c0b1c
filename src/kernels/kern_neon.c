// AArch64 NEON kernels and the NEON activation quantizer (compiled only for
// __aarch64__; elsewhere this file is empty).
//
// Same structure and contract as kern_avx2.c: per chunk of 32 codes the
// weights are expanded once to 32 fields (two 16-byte registers), then
// multiplied with up to 4 tokens' int8 activations; per group the exact int32
// raw = sum u*q goes through the shared float epilogue (kern_impl.h), so the
// results equal the scalar reference bit for bit.
//
// Two integer paths, chosen at run time per call:
//  - dotprod (sdot, Armv8.2+ optional / Armv8.4 mandatory): vdotq_s32 adds
//    four s8*s8 products straight into each int32 lane, used only when the
//    kernel reports HWCAP_ASIMDDP;
//  - plain Armv8.0 NEON: vmull_s8/vmlal_s8 products into int16 lanes, widened
//    with vpadalq_s16 before they can overflow (NEON_I16_LIMIT below).
// Every field, including q8's int8 codes, is multiplied as signed int8: the
// unsigned fields are <= 15, so s8 x s8 is exact for all of them.
//
// The row kernels are written once and compiled twice, by including this file
// into itself: pass 1 with the build's default target, pass 2 under
// `#pragma GCC target("arch=armv8.2-a+dotprod")`. A single always_inline body
// cannot do both: GCC refuses to inline vdotq_s32 into any function compiled
// without dotprod, even on a branch that constant folding would remove.
#ifndef TERN_KNEON_PASS

#include "kernels/kern_impl.h"

#ifdef TERN_KHAVE_NEON
#include <arm_neon.h>
#include <sys/auxv.h>

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif

// The dotprod pass needs vdotq_s32 in a function compiled for dotprod. GCC
// gets it from the pragma; clang < 16 declares the intrinsic only when the
// whole build targets dotprod, so there the pass exists only in that case.
#if defined(__ARM_FEATURE_DOTPROD)
#define NEON_HAVE_DP 1
#define NEON_DP_PRAGMA 0
#elif defined(__GNUC__) && !defined(__clang__)
#define NEON_HAVE_DP 1
#define NEON_DP_PRAGMA 1
#else
#define NEON_HAVE_DP 0
#define NEON_DP_PRAGMA 0
#endif

#define INL static inline __attribute__((always_inline))

enum { F_T2, F_T16, F_Q8, F_Q4, F_Q3, F_Q2 };

// Plain path: a chunk adds 4 products per int16 lane (vmull/vmlal on the low
// and high halves of both 16-byte registers), each at most umax * 128 in
// magnitude (|q| <= 128 covers hand-made input; umax is the largest value a
// stored field can hold, a corrupt 2-bit field's 3 included, also for t1.6's
// 2-bit tail chunks), so this many chunks fit in int16 before widening.
#define NEON_I16_LIMIT(umax) (32767 / (4 * (umax) * 128))

#define TERN_KNEON_PASS 1
#include "kernels/kern_neon.c"
#undef TERN_KNEON_PASS

#if NEON_HAVE_DP
#if NEON_DP_PRAGMA
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
#define TERN_KNEON_PASS 2
#include "kernels/kern_neon.c"
#undef TERN_KNEON_PASS
#if NEON_DP_PRAGMA
#pragma GCC pop_options
#endif
#endif

#if NEON_HAVE_DP
// HWCAP_ASIMDDP: the kernel says the CPU (and OS) support sdot/udot.
static int use_dotprod(void) { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }

#define ENTRY(name, fn)                                                   \
    TERN_KDECL(name) {                                                    \
        if (use_dotprod()) fn##_dp(w, r0, r1, a, t0, nt, bias, out, ldo); \
        else fn##_plain(w, r0, r1, a, t0, nt, bias, out, ldo);            \
    }
#else
#define ENTRY(name, fn) \
    TERN_KDECL(name) { fn##_plain(w, r0, r1, a, t0, nt, bias, out, ldo); }
#endif
ENTRY(tern_kdot_t2_neon, dot_t2)
ENTRY(tern_kdot_t16_neon, dot_t16)
ENTRY(tern_kdot_q8_neon, dot_q8)
ENTRY(tern_kdot_q4_neon, dot_q4)
ENTRY(tern_kdot_q3_neon, dot_q3)
ENTRY(tern_kdot_q2_neon, dot_q2)

// ---- activation quantizer: same formula and operations as the scalar one ----
//
// amax: vmaxnm is IEEE maxNum like fmaxf (glibc's fmaxf is the same fmaxnm
// instruction on AArch64). q: a true division (fdiv, correctly rounded),
// round to nearest even (frintn, = nearbyintf in the default rounding mode),
// clamp with fmax/fmin, convert (the values are already integral).
INL int8x16_t quant16(const float *x, float32x4_t vs) {
    const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
    int32x4_t v[4];
    for (int k = 0; k < 4; k++) {
        float32x4_t f = vrndnq_f32(vdivq_f32(vld1q_f32(x + 4 * k), vs));
        v[k] = vcvtq_s32_f32(vminq_f32(vmaxq_f32(f, lo), hi));
    }
    int16x8_t a = vcombine_s16(vmovn_s32(v[0]), vmovn_s32(v[1]));
    int16x8_t b = vcombine_s16(vmovn_s32(v[2]), vmovn_s32(v[3]));
    return vcombine_s8(vmovn_s16(a), vmovn_s16(b));
}

// Quantizes x[c0, c1) with its own absmax scale (returned).
static float quantize_group(const float *x, int c0, int c1, int8_t *q) {
    float32x4_t vmax = vdupq_n_f32(0.0f);
    int i = c0;
    for (; i + 4 <= c1; i += 4) vmax = vmaxnmq_f32(vmax, vabsq_f32(vld1q_f32(x + i)));
    float amax = vmaxnmvq_f32(vmax);
    for (; i < c1; i++) amax = fmaxf(amax, fabsf(x[i]));
    float s = amax / 127.0f;
    i = c0;
    if (s > 0.0f) {
        const float32x4_t vs = vdupq_n_f32(s);
        for (; i + 16 <= c1; i += 16) vst1q_s8(q + i, quant16(x + i, vs));
    }
    for (; i < c1; i++) {
        float v = s > 0.0f ? nearbyintf(x[i] / s) : 0.0f;
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        q[i] = (int8_t)v;
    }
    return s;
}

static void quantize_token(const tern_qact *a, const float *x, int8_t *q, float *scale, int32_t *gs) {
    const int cols = a->cols;
    for (int g = 0; g < a->n_groups; g++) {
        int c0 = g * a->group, c1 = c0 + a->group < cols ? c0 + a->group : cols;
        scale[(size_t)g * a->n_max] = quantize_group(x, c0, c1, q); // group-major (kernels.h)
    }
    memset(q + cols, 0, a->stride - (size_t)cols); // the padding
    // Group sums over whole chunks: padding slots are zero, and a group is
    // either chunk-aligned or the whole row.
    const int nch = (cols + TERN_KCHUNK - 1) / TERN_KCHUNK;
    const int cpg = tern_kact_cpg(a, nch);
    for (int g = 0, c = 0; g < a->n_groups; g++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int end = c + cpg < nch ? c + cpg : nch; c < end; c++) {
            const int8_t *p = q + (size_t)c * TERN_KCHUNK;
            acc = vpadalq_s16(acc, vaddq_s16(vpaddlq_s8(vld1q_s8(p)), vpaddlq_s8(vld1q_s8(p + 16))));
        }
        gs[g] = vaddvq_s32(acc);
    }
}

void tern_quantize_act_neon(tern_qact *a, const float *x, int n) {
    for (int t = 0; t < n; t++)
        quantize_token(a, x + (size_t)t * a->cols, a->q + (size_t)t * a->stride, a->scale + t,
                       a->gsum + (size_t)t * a->n_groups);
    a->n = n;
}

#endif // TERN_KHAVE_NEON

#else // ---- one pass of the row kernels: TERN_KNEON_PASS 1 = plain NEON, 2 = dotprod ----

#if TERN_KNEON_PASS == 1
#define SFX(n) n##_plain
#define DP 0
#else
#define SFX(n) n##_dp
#define DP 1
#endif

// Everything the dotprod pass inlines is defined inside the pass: GCC will not
// inline a function compiled for the default target into one compiled for
// armv8.2-a+dotprod when the default has extensions that armv8.2-a lacks
// (e.g. -march=armv8-a+crypto).
INL tern_kkind SFX(kind_of)(int fmt) {
    return fmt == F_T2 || fmt == F_T16 ? TERN_KKIND_TERNARY : fmt == F_Q8 ? TERN_KKIND_Q8 : TERN_KKIND_RTN;
}

// 8 bytes of 2-bit fields -> slots 0..15 and 16..31 (layout in formats.c:
// byte j holds slots j, j+8, j+16, j+24 in bits 0-1, 2-3, 4-5, 6-7).
INL int8x16x2_t SFX(expand2)(const uint8_t *p) {
    const uint8x8_t b = vld1_u8(p), m = vdup_n_u8(3);
    int8x16x2_t r;
    r.val[0] = vreinterpretq_s8_u8(vcombine_u8(vand_u8(b, m), vand_u8(vshr_n_u8(b, 2), m)));
    r.val[1] = vreinterpretq_s8_u8(vcombine_u8(vand_u8(vshr_n_u8(b, 4), m), vshr_n_u8(b, 6)));
    return r;
}

// 16 bytes of nibbles: low nibbles are slots 0..15, high nibbles 16..31.
INL int8x16x2_t SFX(expand4)(const uint8_t *p) {
    const uint8x16_t x = vld1q_u8(p);
    int8x16x2_t r;
    r.val[0] = vreinterpretq_s8_u8(vandq_u8(x, vdupq_n_u8(15)));
    r.val[1] = vreinterpretq_s8_u8(vshrq_n_u8(x, 4));
    return r;
}

// 2-bit low part plus a 32-bit word of third bits (bit i -> slot i).
INL int8x16x2_t SFX(expand3)(const uint8_t *p) {
    static const uint8_t idx_b[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                      2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t bit_b[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint32_t hb;
    memcpy(&hb, p + 8, 4);
    const uint8x16_t w = vreinterpretq_u8_u32(vdupq_n_u32(hb)), bit = vld1q_u8(bit_b), four = vdupq_n_u8(4);
    int8x16x2_t r = SFX(expand2)(p);
    for (int h = 0; h < 2; h++) {
        uint8x16_t b = vqtbl1q_u8(w, vld1q_u8(idx_b + 16 * h)); // byte i = byte i/8 of the word
        uint8x16_t third = vandq_u8(vtstq_u8(b, bit), four);    // 4 where bit i%8 is set
        r.val[h] = vreinterpretq_s8_u8(vorrq_u8(vreinterpretq_u8_s8(r.val[h]), third));
    }
    return r;
}

// Leading trit of bytes already multiplied by 3^k (mod 256): (x*3) >> 8,
// i.e. [x >= 86] + [x >= 171]; each compare gives 0 or -1.
INL int8x16_t SFX(trit)(uint8x16_t x) {
    uint8x16_t s = vaddq_u8(vcgeq_u8(x, vdupq_n_u8(86)), vcgeq_u8(x, vdupq_n_u8(171)));
    return vnegq_s8(vreinterpretq_s8_u8(s));
}

// Chunk c's 32 fields. Chunks are visited in order from 0, which lets the
// t1.6 decoder keep the current bundle in *m and step it by x3 (mod 256).
INL int8x16x2_t SFX(decode)(int fmt, const uint8_t *row, int n_chunks, int c, uint8x16x2_t *m) {
    switch (fmt) {
    case F_T2:
    case F_Q2: return SFX(expand2)(row + (size_t)c * 8);
    case F_Q4: return SFX(expand4)(row + (size_t)c * 16);
    case F_Q3: return SFX(expand3)(row + (size_t)c * 12);
    case F_Q8: {
        const int8_t *p = (const int8_t *)row + (size_t)c * 32;
        int8x16x2_t r;
        r.val[0] = vld1q_s8(p), r.val[1] = vld1q_s8(p + 16);
        return r;
    }
    default: { // F_T16
        int full = n_chunks / 5;
        if (c >= 5 * full) return SFX(expand2)(row + (size_t)full * 32 + (size_t)(c - 5 * full) * 8);
        if (c % 5 == 0) {
            const uint8_t *p = row + (size_t)(c / 5) * 32;
            m->val[0] = vld1q_u8(p), m->val[1] = vld1q_u8(p + 16);
        } else {
            const uint8x16_t three = vdupq_n_u8(3);
            m->val[0] = vmulq_u8(m->val[0], three), m->val[1] = vmulq_u8(m->val[1], three);
        }
        int8x16x2_t r;
        r.val[0] = SFX(trit)(m->val[0]), r.val[1] = SFX(trit)(m->val[1]);
        return r;
    }
    }
}

#if !DP
INL int SFX(i16_limit)(int fmt) {
    switch (fmt) {
    case F_Q4: return NEON_I16_LIMIT(15); // 4
    case F_Q3: return NEON_I16_LIMIT(7);  // 9
    default: return NEON_I16_LIMIT(3);    // 21: 2-bit fields and t1.6 (trits <= 2, tails <= 3)
    }
}

// int16 lanes += the 32 products of one chunk (4 per lane).
INL int16x8_t SFX(mla32)(int16x8_t s, int8x16x2_t u, int8x16_t x0, int8x16_t x1) {
    s = vmlal_s8(s, vget_low_s8(u.val[0]), vget_low_s8(x0));
    s = vmlal_high_s8(s, u.val[0], x0);
    s = vmlal_s8(s, vget_low_s8(u.val[1]), vget_low_s8(x1));
    return vmlal_high_s8(s, u.val[1], x1);
}

// int32 lanes += the 32 products of one chunk, each product widened on its
// own (q8: |w*q| reaches 128*128, two of them would not fit in int16).
INL int32x4_t SFX(mla32_wide)(int32x4_t s, int8x16x2_t u, int8x16_t x0, int8x16_t x1) {
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(u.val[0]), vget_low_s8(x0)));
    s = vpadalq_s16(s, vmull_high_s8(u.val[0], x0));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(u.val[1]), vget_low_s8(x1)));
    return vpadalq_s16(s, vmull_high_s8(u.val[1], x1));
}
#endif

// One row x NT tokens (NT <= 4, constant after inlining).
INL void SFX(row_tokens)(int fmt, int NT, const tern_kmatrix *w, int r, const tern_qact *a, int t0,
                         const float *bias, float *out, size_t ldo) {
    const uint8_t *row = w->data + (size_t)r * w->row_bytes, *sc = row + w->code_bytes;
    const int nch = w->n_chunks;
    const int8_t *q[4];
    const int32_t *gs[4];
    float acc[4] = {0, 0, 0, 0};
    for (int t = 0; t < NT; t++) {
        q[t] = a->q + (size_t)(t0 + t) * a->stride;
        gs[t] = a->gsum + (size_t)(t0 + t) * a->n_groups;
    }
    uint8x16x2_t m;
    m.val[0] = m.val[1] = vdupq_n_u8(0);
    const int cpg = tern_kact_cpg(a, nch);
    int c = 0;
    for (int g = 0; g < w->n_groups; g++) {
        int k0, k1;
        tern_kact_range(w, a, g, &k0, &k1);
        for (int k = k0; k < k1; k++) { // activation groups
            const int end = c + cpg < nch ? c + cpg : nch;
            int32x4_t s32[4];
            for (int t = 0; t < NT; t++) s32[t] = vdupq_n_s32(0);
#if DP
            for (; c < end; c++) {
                int8x16x2_t u = SFX(decode)(fmt, row, nch, c, &m);
                for (int t = 0; t < NT; t++) {
                    const int8_t *x = q[t] + (size_t)c * TERN_KCHUNK;
                    s32[t] = vdotq_s32(vdotq_s32(s32[t], u.val[0], vld1q_s8(x)), u.val[1], vld1q_s8(x + 16));
                }
            }
#else
            if (fmt == F_Q8) {
                for (; c < end; c++) {
                    int8x16x2_t u = SFX(decode)(fmt, row, nch, c, &m);
                    for (int t = 0; t < NT; t++) {
                        const int8_t *x = q[t] + (size_t)c * TERN_KCHUNK;
                        s32[t] = SFX(mla32_wide)(s32[t], u, vld1q_s8(x), vld1q_s8(x + 16));
                    }
                }
            } else {
                const int limit = SFX(i16_limit)(fmt);
                while (c < end) {
                    int stop = c + limit < end ? c + limit : end;
                    int16x8_t s16[4];
                    for (int t = 0; t < NT; t++) s16[t] = vdupq_n_s16(0);
                    for (; c < stop; c++) {
                        int8x16x2_t u = SFX(decode)(fmt, row, nch, c, &m);
                        for (int t = 0; t < NT; t++) {
                            const int8_t *x = q[t] + (size_t)c * TERN_KCHUNK;
                            s16[t] = SFX(mla32)(s16[t], u, vld1q_s8(x), vld1q_s8(x + 16));
                        }
                    }
                    for (int t = 0; t < NT; t++) s32[t] = vpadalq_s16(s32[t], s16[t]);
                }
            }
#endif
            const tern_kkind kind = SFX(kind_of)(fmt);
            float alpha = tern_kload_f16(sc, g);
            float gamma = w->has_shift ? tern_kload_f16(sc, w->n_groups + g) : 0.0f;
            int32_t zero = tern_kmatrix_zeros(w) ? sc[2 * (size_t)w->n_groups + g] : 0;
            for (int t = 0; t < NT; t++)
                acc[t] = tern_kstep_v(kind, w->has_shift, alpha, gamma, zero, vaddvq_s32(s32[t]), gs[t][k],
                                      tern_kact_scale(a, t0 + t, k), acc[t]);
    }
    }
    for (int t = 0; t < NT; t++) out[(size_t)t * ldo] = tern_kfinish(acc[t], bias, r);
}

INL void SFX(rows)(int fmt, const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t0, int nt,
                   const float *bias, float *out, size_t ldo) {
    for (int r = r0; r < r1; r++) {
        float *o = out + (r - r0);
        int t = t0;
        for (; t + 4 <= t0 + nt; t += 4) SFX(row_tokens)(fmt, 4, w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo);
        switch (t0 + nt - t) {
        case 3: SFX(row_tokens)(fmt, 3, w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo); break;
        case 2: SFX(row_tokens)(fmt, 2, w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo); break;
        case 1: SFX(row_tokens)(fmt, 1, w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo); break;
        default: break;
        }
    }
}

#define PASS_ENTRY(fn, fmt) \
    static TERN_KDECL(SFX(fn)) { SFX(rows)(fmt, w, r0, r1, a, t0, nt, bias, out, ldo); }
PASS_ENTRY(dot_t2, F_T2)
PASS_ENTRY(dot_t16, F_T16)
PASS_ENTRY(dot_q8, F_Q8)
PASS_ENTRY(dot_q4, F_Q4)
PASS_ENTRY(dot_q3, F_Q3)
PASS_ENTRY(dot_q2, F_Q2)
#undef PASS_ENTRY

#undef SFX
#undef DP

#endif // TERN_KNEON_PASS
