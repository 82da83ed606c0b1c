// AVX-512 VNNI kernels: vpdpbusd multiplies u8 fields by s8 activations and
// adds groups of 4 products straight into int32 lanes, so there is no int16
// stage and no overflow bound beyond the int32 one (docs/format.md).
//
//   tern-t2 at G = 128 (one 4-chunk bundle per group, the default): an 8-row
//                   GEMV and a 1-row x 4-token GEMM on the bundle layout (one
//                   32-byte load gives 128 fields, kern_avx2.c's idea), with
//                   vpdpbusd in place of maddubs + int16 adds.
//   q8-row:         signed weights offset to w + 128 (u8) times q (s8), 64
//                   fields per instruction, minus 128 * sum(q) per group; a
//                   4-row GEMV and a 1-row x 4-token GEMM.
// Shapes these do not cover (other group sizes, remainder rows and tokens)
// and the other formats run the AVX2 kernels: on Zen 4 a generic VNNI kernel
// (64 fields per instruction, one horizontal sum per group) was slower than
// them (docs/PERFORMANCE.md).
// Every kernel's integer part is exact and its float epilogue is the shared
// sequence of kern_impl.h, so results equal the scalar reference bit for bit
// (tests/test_kernels.c).
#include "kernels/kern_x86.h"

#ifdef TERN_KHAVE_X86

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

// 4 rows' int32 accumulators (16 lanes each) -> lane i = row i's total.
INL __m128i reduce4x512(const __m512i *s) {
    __m256i h[4];
    for (int i = 0; i < 4; i++) h[i] = _mm256_add_epi32(_mm512_castsi512_si256(s[i]), _mm512_extracti64x4_epi64(s[i], 1));
    return reduce4(h[0], h[1], h[2], h[3]);
}

// 4 rows' results (plus bias) into out[0..3].
INL void finish4(__m128 acc, const float *bias, int r, float *out) {
    _mm_storeu_ps(out, bias ? _mm_add_ps(acc, _mm_loadu_ps(bias + r)) : acc);
}

// 4 tokens' results (plus bias) into out[t * ldo].
INL void finish4_tokens(__m128 acc, const float *bias, int r, float *out, size_t ldo) {
    float y[4];
    _mm_storeu_ps(y, bias ? _mm_add_ps(acc, _mm_set1_ps(bias[r])) : acc);
    for (int t = 0; t < 4; t++) out[(size_t)t * ldo] = y[t];
}

// Group g's 4 bundle decodes of one row (chunks 4g..4g+3).
INL void t2_decode_bundle(const uint8_t *p, __m256i *u) {
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    u[0] = _mm256_and_si256(v, m3), u[1] = _mm256_and_si256(_mm256_srli_epi16(v, 2), m3);
    u[2] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m3), u[3] = _mm256_and_si256(_mm256_srli_epi16(v, 6), m3);
}

// 8 lanes of int32 sums, one per row (rows 4..7 zero when RB == 4).
INL __m256i reduce_rows(const __m256i *s, int RB) {
    __m128i hi = RB == 8 ? reduce4(s[4], s[5], s[6], s[7]) : _mm_setzero_si128();
    return _mm256_set_m128i(hi, reduce4(s[0], s[1], s[2], s[3]));
}

// RB (4 or 8) rows' results (plus bias) into out[0..RB).
INL void finish_rows(__m256 acc, const float *bias, int r, float *out, int RB) {
    if (RB == 8) _mm256_storeu_ps(out, bias ? _mm256_add_ps(acc, _mm256_loadu_ps(bias + r)) : acc);
    else finish4(_mm256_castps256_ps128(acc), bias, r, out);
}

// tern-t2 GEMV, RB = 4 or 8 rows (a compile-time constant after inlining),
// groups of exactly one bundle (G = 128): per row and group one 32-byte load,
// 4 shift/mask decodes and 4 vpdpbusd against the bundle-ordered activations
// (tern_qact.qp), in int32; the 4 activation vectors are loaded once for the
// RB rows and the group epilogue runs in RB float lanes (8 rows: +10-14% on
// SmolLM2's shapes over 4, docs/PERFORMANCE.md).
INL void gemv_t2_bundles(const tern_kmatrix *w, int r, const tern_qact *a, int t, const float *bias, float *out,
                         const int RB) {
    const uint8_t *row[8], *sc[8];
    for (int i = 0; i < RB; i++) row[i] = w->data + (size_t)(r + i) * w->row_bytes, sc[i] = row[i] + w->code_bytes;
    const int ng = w->n_groups, nch = w->n_chunks;
    // 32 rows ahead for either RB (64 and 128 measured slower in whole-model generation).
    const size_t pf = (size_t)PF_BLOCKS * 4 * w->row_bytes;
    const int8_t *q = a->q + (size_t)t * a->stride, *qp = a->qp + (size_t)t * a->stride;
    const int32_t *gs = a->gsum + (size_t)t * a->n_groups;
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < ng; g++) {
        int c = g * 4, end = c + 4 < nch ? c + 4 : nch;
        __m256i s[8];
        for (int i = 0; i < RB; i++) s[i] = _mm256_setzero_si256();
        if (end - c == 4) {
            const __m256i *xp = (const __m256i *)(qp + (size_t)c * TERN_KCHUNK);
            __m256i x0 = _mm256_loadu_si256(xp), x1 = _mm256_loadu_si256(xp + 1);
            __m256i x2 = _mm256_loadu_si256(xp + 2), x3 = _mm256_loadu_si256(xp + 3);
            for (int i = 0; i < RB; i++) {
                _mm_prefetch((const char *)(row[i] + (size_t)c * 8 + pf), PF_HINT);
                __m256i u[4];
                t2_decode_bundle(row[i] + (size_t)c * 8, u);
                s[i] = _mm256_dpbusd_epi32(s[i], u[0], x0);
                s[i] = _mm256_dpbusd_epi32(s[i], u[1], x1);
                s[i] = _mm256_dpbusd_epi32(s[i], u[2], x2);
                s[i] = _mm256_dpbusd_epi32(s[i], u[3], x3);
            }
        } else { // a short last group, chunk by chunk
            for (; c < end; c++) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(q + (size_t)c * TERN_KCHUNK));
                for (int i = 0; i < RB; i++) s[i] = _mm256_dpbusd_epi32(s[i], expand2(row[i] + (size_t)c * 8), x);
            }
        }
        __m256i raw = _mm256_sub_epi32(reduce_rows(s, RB), _mm256_set1_epi32(gs[g]));
        const __m256 vsx = _mm256_set1_ps(tern_kact_scale(a, t, g));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtph_ps(gather_u16(sc, RB, (size_t)g)), vsx), _mm256_cvtepi32_ps(raw), acc);
        if (w->has_shift)
            acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtph_ps(gather_u16(sc, RB, (size_t)ng + g)), vsx),
                                  _mm256_set1_ps((float)gs[g]), acc);
    }
    finish_rows(acc, bias, r, out, RB);
}

// tern-t2 GEMM, 1 row x 4 tokens, G = 128: a bundle is decoded once for the 4 tokens.
INL void gemm_t2_bundles(const tern_kmatrix *w, int r, const tern_qact *a, int t0, const float *bias, float *out,
                         size_t ldo) {
    const uint8_t *row = w->data + (size_t)r * w->row_bytes, *sc = row + w->code_bytes;
    const int ng = w->n_groups, nch = w->n_chunks;
    const int8_t *q[4], *qp[4];
    const int32_t *gs[4];
    const float *sx = a->scale + t0; // group g's 4 tokens at sx + g * n_max
    for (int t = 0; t < 4; t++) {
        q[t] = a->q + (size_t)(t0 + t) * a->stride, qp[t] = a->qp + (size_t)(t0 + t) * a->stride;
        gs[t] = a->gsum + (size_t)(t0 + t) * a->n_groups;
    }
    __m128 acc = _mm_setzero_ps();
    for (int g = 0; g < ng; g++) {
        int c = g * 4, end = c + 4 < nch ? c + 4 : nch;
        __m256i s[4];
        for (int t = 0; t < 4; t++) s[t] = _mm256_setzero_si256();
        if (end - c == 4) {
            __m256i u[4];
            t2_decode_bundle(row + (size_t)c * 8, u);
            for (int t = 0; t < 4; t++) {
                const __m256i *xp = (const __m256i *)(qp[t] + (size_t)c * TERN_KCHUNK);
                for (int k = 0; k < 4; k++) s[t] = _mm256_dpbusd_epi32(s[t], u[k], _mm256_loadu_si256(xp + k));
            }
        } else {
            for (; c < end; c++) {
                __m256i u = expand2(row + (size_t)c * 8);
                for (int t = 0; t < 4; t++)
                    s[t] = _mm256_dpbusd_epi32(s[t], u, _mm256_loadu_si256((const __m256i *)(q[t] + (size_t)c * TERN_KCHUNK)));
            }
        }
        __m128i gsv = _mm_setr_epi32(gs[0][g], gs[1][g], gs[2][g], gs[3][g]);
        __m128i raw = _mm_sub_epi32(reduce4(s[0], s[1], s[2], s[3]), gsv);
        const __m128 vsx = _mm_loadu_ps(sx + (size_t)g * a->n_max);
        acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(_cvtsh_ss(load_u16(sc, g))), vsx), _mm_cvtepi32_ps(raw), acc);
        if (w->has_shift)
            acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(_cvtsh_ss(load_u16(sc, ng + g))), vsx), _mm_cvtepi32_ps(gsv), acc);
    }
    finish4_tokens(acc, bias, r, out, ldo);
}

// 64 signed weight bytes as unsigned w + 128 (the top bit flipped), so one
// vpdpbusd sums (w + 128) * q; the group's sum then loses 128 * sum(q) (exact
// in int32). Half the instructions of |w| times q * sign(w).
INL __m512i q8_dot(__m512i acc, __m512i wv, __m512i x) {
    return _mm512_dpbusd_epi32(acc, _mm512_xor_si512(wv, _mm512_set1_epi8((char)0x80)), x);
}

// 64 bytes at p, or only the first 32 (the rest zero) when half.
INL __m512i load64(const void *p, int half) {
    return half ? _mm512_maskz_loadu_epi8(0xffffffffull, p) : _mm512_loadu_si512(p);
}

// q8-row GEMV, 4 rows per pass (8 rows ran the 576-wide shapes 2-8% faster
// hot but SmolLM2's LM head, streamed from DRAM, ~8% slower in whole-model
// generation).
INL void gemv_q8_4(const tern_kmatrix *w, int r, const tern_qact *a, int t, const float *bias, float *out) {
    const uint8_t *row[4], *sc[4];
    for (int i = 0; i < 4; i++) row[i] = w->data + (size_t)(r + i) * w->row_bytes, sc[i] = row[i] + w->code_bytes;
    const int nch = w->n_chunks;
    const size_t pf = (size_t)PF_BLOCKS * 4 * w->row_bytes;
    const int8_t *q = a->q + (size_t)t * a->stride;
    const int32_t *gs = a->gsum + (size_t)t * a->n_groups;
    __m128 acc = _mm_setzero_ps();
    int c = 0;
    for (int g = 0; g < w->n_groups; g++) {
        const int end = c + w->cpg < nch ? c + w->cpg : nch;
        __m512i s[4];
        for (int i = 0; i < 4; i++) s[i] = _mm512_setzero_si512();
        for (; c < end; c += 2) {
            const int half = c + 1 == end;
            __m512i x = load64(q + (size_t)c * TERN_KCHUNK, half);
            for (int i = 0; i < 4; i++) {
                _mm_prefetch((const char *)(row[i] + (size_t)c * 32 + pf), PF_HINT);
                s[i] = q8_dot(s[i], load64(row[i] + (size_t)c * 32, half), x);
            }
        }
        c = end;
        __m128i raw = _mm_sub_epi32(reduce4x512(s), _mm_set1_epi32(128 * gs[g]));
        __m128 alpha = _mm_mul_ps(_mm_cvtph_ps(gather_u16(sc, 4, (size_t)g)), _mm_set1_ps(tern_kact_scale(a, t, g)));
        acc = _mm_fmadd_ps(alpha, _mm_cvtepi32_ps(raw), acc);
    }
    finish4(acc, bias, r, out);
}

// q8-row GEMM, 1 row x 4 tokens: w + 128 formed once per 64 weights for the 4 tokens.
INL void gemm_q8_4(const tern_kmatrix *w, int r, const tern_qact *a, int t0, const float *bias, float *out,
                   size_t ldo) {
    const uint8_t *row = w->data + (size_t)r * w->row_bytes, *sc = row + w->code_bytes;
    const int nch = w->n_chunks;
    const int8_t *q[4];
    const int32_t *gs[4];
    const float *sx = a->scale + t0; // group g's 4 tokens at sx + g * n_max
    for (int t = 0; t < 4; t++) q[t] = a->q + (size_t)(t0 + t) * a->stride, gs[t] = a->gsum + (size_t)(t0 + t) * a->n_groups;
    __m128 acc = _mm_setzero_ps();
    int c = 0;
    for (int g = 0; g < w->n_groups; g++) {
        const int end = c + w->cpg < nch ? c + w->cpg : nch;
        __m512i s[4];
        for (int t = 0; t < 4; t++) s[t] = _mm512_setzero_si512();
        for (; c < end; c += 2) {
            const int half = c + 1 == end;
            __m512i u = _mm512_xor_si512(load64(row + (size_t)c * 32, half), _mm512_set1_epi8((char)0x80));
            for (int t = 0; t < 4; t++)
                s[t] = _mm512_dpbusd_epi32(s[t], u, load64(q[t] + (size_t)c * TERN_KCHUNK, half));
        }
        c = end;
        const __m128 vsx = _mm_loadu_ps(sx + (size_t)g * a->n_max);
        __m128i gsv = _mm_setr_epi32(gs[0][g], gs[1][g], gs[2][g], gs[3][g]);
        __m128i raw = _mm_sub_epi32(reduce4x512(s), _mm_slli_epi32(gsv, 7));
        acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(_cvtsh_ss(load_u16(sc, g))), vsx), _mm_cvtepi32_ps(raw), acc);
    }
    finish4_tokens(acc, bias, r, out, ldo);
}

// GEMV and GEMM loops kept apart (not inlined into one function): sharing a
// body, the GEMM measured up to 20% slower after the 8-row GEMV was added.
__attribute__((noinline)) TGT static void t2_gemv(const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t,
                                                 const float *bias, float *out) {
    int r = r0;
    for (; r + 8 <= r1; r += 8) gemv_t2_bundles(w, r, a, t, bias, out + (r - r0), 8);
    for (; r + 4 <= r1; r += 4) gemv_t2_bundles(w, r, a, t, bias, out + (r - r0), 4);
    if (r < r1) tern_kdot_t2_avx2(w, r, r1, a, t, 1, bias, out + (r - r0), 0);
}

__attribute__((noinline)) TGT static void t2_gemm(const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t0,
                                                 int nt, const float *bias, float *out, size_t ldo) {
    for (int r = r0; r < r1; r++) {
        float *o = out + (r - r0);
        int t = t0;
        for (; t + 4 <= t0 + nt; t += 4) gemm_t2_bundles(w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo);
        if (t < t0 + nt) tern_kdot_t2_avx2(w, r, r + 1, a, t, t0 + nt - t, bias, o + (size_t)(t - t0) * ldo, ldo);
    }
}

TGT TERN_KDECL(tern_kdot_t2_avx512) {
    if (w->cpg != 4 || w->n_groups < 2) tern_kdot_t2_avx2(w, r0, r1, a, t0, nt, bias, out, ldo);
    else if (nt == 1) t2_gemv(w, r0, r1, a, t0, bias, out);
    else t2_gemm(w, r0, r1, a, t0, nt, bias, out, ldo);
}

TGT TERN_KDECL(tern_kdot_q8_avx512) {
    if (nt == 1) {
        int r = r0;
        for (; r + 4 <= r1; r += 4) gemv_q8_4(w, r, a, t0, bias, out + (r - r0));
        if (r < r1) tern_kdot_q8_avx2(w, r, r1, a, t0, 1, bias, out + (r - r0), ldo);
        return;
    }
    for (int r = r0; r < r1; r++) {
        float *o = out + (r - r0);
        int t = t0;
        for (; t + 4 <= t0 + nt; t += 4) gemm_q8_4(w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo);
        if (t < t0 + nt) tern_kdot_q8_avx2(w, r, r + 1, a, t, t0 + nt - t, bias, o + (size_t)(t - t0) * ldo, ldo);
    }
}

#endif
