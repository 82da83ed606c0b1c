// AVX-512 VNNI kernels for the 2-bit formats (tern-t2, q2g).
//
// UNTESTED ON HARDWARE: written on a machine without AVX-512 (and without
// Intel SDE). test_kernels compares them bit for bit with the scalar
// reference whenever the CPU supports them; until that has run on a real
// AVX-512 VNNI CPU, auto dispatch does not pick them (TERN_KERNEL=avx512 does).
//
// vpdpbusd multiplies u8 fields by s8 activations and adds groups of 4
// products straight into int32 lanes, so no int16 stage and no overflow
// bound beyond the int32 one (docs/format.md). Two chunks (64 fields) per
// instruction; a group with an odd chunk count runs its last chunk with the
// second half of the fields zero, reading 32 activation bytes that the
// activation buffer's 64-byte stride guarantees exist.
#include "kernels/kern_impl.h"

#ifdef TERN_KHAVE_X86
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

// Two 8-byte 2-bit chunks (lo = chunk c, hi = chunk c+1) -> 64 fields.
INL __m512i expand2x2(__m128i v) {
    __m512i z = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 0, 0, 0, 1, 1, 1, 1), _mm512_castsi128_si512(v));
    z = _mm512_srlv_epi64(z, _mm512_setr_epi64(0, 2, 4, 6, 0, 2, 4, 6));
    return _mm512_and_si512(z, _mm512_set1_epi8(3));
}

INL void row_tokens(tern_kkind kind, int NT, const tern_kmatrix *w, int r, const tern_qact *a, int t0,
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
    int c = 0;
    for (int g = 0; g < w->n_groups; g++) {
        int end = c + w->cpg < nch ? c + w->cpg : nch;
        __m512i s32[4];
        for (int t = 0; t < NT; t++) s32[t] = _mm512_setzero_si512();
        while (c < end) {
            __m512i u;
            if (c + 2 <= end) u = expand2x2(_mm_loadu_si128((const __m128i *)(row + (size_t)c * 8)));
            else u = expand2x2(_mm_loadl_epi64((const __m128i *)(row + (size_t)c * 8)));
            for (int t = 0; t < NT; t++) {
                __m512i x = _mm512_loadu_si512((const void *)(q[t] + (size_t)c * TERN_KCHUNK));
                s32[t] = _mm512_dpbusd_epi32(s32[t], u, x);
            }
            c += 2;
        }
        c = end;
        for (int t = 0; t < NT; t++)
            acc[t] = tern_kstep(kind, w->has_shift, w->n_groups, sc, g, _mm512_reduce_add_epi32(s32[t]), gs[t][g],
                                acc[t]);
    }
    for (int t = 0; t < NT; t++) out[(size_t)t * ldo] = tern_kfinish(acc[t], a->scale[t0 + t], bias, r);
}

INL void rows(tern_kkind kind, const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t0, int nt,
              const float *bias, float *out, size_t ldo) {
    for (int r = r0; r < r1; r++) {
        float *o = out + (r - r0);
        int t = t0;
        for (; t + 4 <= t0 + nt; t += 4) row_tokens(kind, 4, w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo);
        for (; t < t0 + nt; t++) row_tokens(kind, 1, w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo);
    }
}

TGT TERN_KDECL(tern_kdot_t2_avx512) { rows(TERN_KKIND_TERNARY, w, r0, r1, a, t0, nt, bias, out, ldo); }
TGT TERN_KDECL(tern_kdot_q2_avx512) { rows(TERN_KKIND_RTN, w, r0, r1, a, t0, nt, bias, out, ldo); }

#endif
