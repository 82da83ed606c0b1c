// AVX-512 VNNI kernels: vpdpbusd multiplies u8 fields by s8 activations and
// adds groups of 4 products straight into int32 lanes, so there is no int16
// stage and no overflow bound beyond the int32 one (docs/format.md).
//
//   tern-t2 at G = 128 (one 4-chunk bundle per group, the default; the GEMV
//                   also any G of whole bundles): an 8-row
//                   GEMV and a 1-row x 4-token GEMM on the bundle layout (one
//                   32-byte load gives 128 fields, kern_avx2.c's idea), with
//                   vpdpbusd in place of maddubs + int16 adds.
//   q8-row:         signed weights offset to w + 128 (u8) times q (s8), 64
//                   fields per instruction, minus 128 * sum(q) per group; a
//                   4-row GEMV and a 1-row x 4-token GEMM.
//   tern-t1.6:      an 8-row GEMV with two rows per zmm (x3 byte adds; the
//                   digit sums from 3 sum(x_k q) - sum(x_{k+1} q), no digits).
//   any format, batches of >= TERN_KPANEL_MIN tokens: the panel GEMM (16
//                   rows x 12 tokens, lanes = rows; see its section below).
// Shapes these do not cover (other group sizes, remainder rows and tokens)
// and the other formats run the AVX2 kernels: on Zen 4 a generic VNNI kernel
// (64 fields per instruction, one horizontal sum per group) was slower than
// them (docs/PERFORMANCE.md).
// Every kernel's integer part is exact and its float epilogue is the shared
// sequence of kern_impl.h, so results equal the scalar reference bit for bit
// (tests/test_kernels.c).
#include <stdlib.h>

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

typedef int32_t i32u __attribute__((may_alias, aligned(1)));

// s += u . broadcast(4 bytes at x): vpdpbusd with the activations as an
// embedded broadcast operand. Written in asm because GCC 12 copies every
// accumulator twice per step around the intrinsic and loads the broadcast
// separately (53 instructions per 12 vpdpbusd instead of 25).
INL __m512i dp_bcast(__m512i s, __m512i u, const int8_t *x) {
    __asm__("vpdpbusd %[x]%{1to16%}, %[u], %[s]" : [s] "+v"(s) : [u] "v"(u), [x] "m"(*(const i32u *)x));
    return s;
}

// The row-interleaved GEMVs prefetch ILV_PF bytes ahead into L2, within the
// rows asked for (end), and the first ILV_PF bytes at once: each product then
// streams from its first row on.
#define ILV_PF 16384
INL void ilv_prefetch_start(const uint8_t *p, const uint8_t *end) {
    for (size_t o = 0; o < ILV_PF && p + o < end; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T2);
}
// The lines of a step that starts at p (lines * 64 bytes), ILV_PF ahead.
INL void ilv_prefetch(const uint8_t *p, int lines, const uint8_t *end) {
    if (p + ILV_PF < end)
        for (int l = 0; l < lines; l++) _mm_prefetch((const char *)p + ILV_PF + 64 * l, _MM_HINT_T2);
}

// Group g's 16 fp16 scales of a block's scale area al, and one float step
// acc + (alpha * sx) * dot with token t's activation scale of group k: the
// epilogue of every interleaved GEMV (tern_kstep_v, lane for lane).
INL __m512 ilv_scales(const uint8_t *al, size_t g) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(al + g * 32)));
}
INL __m512 ilv_fma(__m512 alpha, const tern_qact *a, int t, int k, __m512i dot, __m512 acc) {
    return _mm512_fmadd_ps(_mm512_mul_ps(alpha, _mm512_set1_ps(tern_kact_scale(a, t, k))), _mm512_cvtepi32_ps(dot), acc);
}
// A block's 16 results (+ bias) to out, whose first row is r0.
INL void ilv_store(__m512 acc, const float *bias, int r, int r0, float *out) {
    if (bias) acc = _mm512_add_ps(acc, _mm512_loadu_ps(bias + r));
    _mm512_storeu_ps(out + (r - r0), acc);
}

// A row-interleaved GEMV (t2_gemv_ilv, t16_gemv_ilv, q4_gemv_ilv, q8_gemv_ilv) as a kernel entry: one
// token streams the rows; a few (more run the panel GEMM) take each block for
// all of them while it is in L1.
typedef void (*ilv_gemv_fn)(const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t, const float *bias,
                            float *out);
INL void ilv_dot(ilv_gemv_fn gemv, const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t0, int nt,
                 const float *bias, float *out, size_t ldo) {
    if (nt == 1) {
        gemv(w, r0, r1, a, t0, bias, out);
        return;
    }
    for (int r = r0; r < r1; r += TERN_KILV_ROWS)
        for (int t = 0; t < nt; t++) gemv(w, r, r + TERN_KILV_ROWS, a, t0 + t, bias, out + (size_t)t * ldo + (r - r0));
}

// One group's epilogue for a block's 16 rows (tern_kstep_v, lane for lane):
// dot = the lanes' sums of stored field * q over group g, scales at al (the
// block's scale area: alphas, then shifts, 16 fp16 per group).
// The shift's term of weight group g with activation group k (gsum its sum of
// q), when the matrix has shifts (16 fp16 a group after the alphas).
INL __m512 ilv_shift(const tern_kmatrix *w, const tern_qact *a, int t, int g, int k, const uint8_t *al, int32_t gsum,
                     __m512 acc) {
    return w->has_shift ? ilv_fma(ilv_scales(al, (size_t)w->n_groups + g), a, t, k, _mm512_set1_epi32(gsum), acc) : acc;
}
INL __m512 ilv_step(const tern_kmatrix *w, const tern_qact *a, int t, int g, const uint8_t *al, __m512i dot,
                    __m512 acc) {
    const int32_t gsum = a->gsum[(size_t)t * a->n_groups + g];
    acc = ilv_fma(ilv_scales(al, (size_t)g), a, t, g, _mm512_sub_epi32(dot, _mm512_set1_epi32(gsum)), acc);
    return ilv_shift(w, a, t, g, g, al, gsum, acc);
}

// tern-t2 GEMV, RB = 4 or 8 rows (a compile-time constant after inlining),
// activation groups of whole bundles (G = 128, the default, or llama.cpp's
// 256, or one group per row): per row and bundle one 32-byte load, 4 shift/mask decodes and 4 vpdpbusd against the
// bundle-ordered activations (tern_qact.qp), in int32; the 4 activation
// vectors are loaded once for the RB rows and each activation group's
// epilogue runs in RB float lanes (8 rows: +10-14% on SmolLM2's shapes over 4,
// docs/PERFORMANCE.md).
INL void gemv_t2_bundles(const tern_kmatrix *w, int r, const tern_qact *a, int t, const float *bias, float *out,
                         const int RB) {
    const uint8_t *row[8], *sc[8];
    for (int i = 0; i < RB; i++) row[i] = w->data + (size_t)(r + i) * w->row_bytes, sc[i] = row[i] + w->code_bytes;
    const int ng = w->n_groups, nch = w->n_chunks, cpg = tern_kact_cpg(a, nch);
    // 32 rows ahead for either RB (64 and 128 measured slower in whole-model generation).
    const size_t pf = (size_t)PF_BLOCKS * 4 * w->row_bytes;
    const int8_t *q = a->q + (size_t)t * a->stride, *qp = a->qp + (size_t)t * a->stride;
    const int32_t *gs = a->gsum + (size_t)t * a->n_groups;
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < ng; g++) {
        const __m256 alpha = _mm256_cvtph_ps(gather_u16(sc, RB, (size_t)g));
        const __m256 gamma = w->has_shift ? _mm256_cvtph_ps(gather_u16(sc, RB, (size_t)ng + g)) : _mm256_setzero_ps();
        int k0, k1;
        tern_kact_range(w, a, g, &k0, &k1);
        for (int k = k0; k < k1; k++) {
            int c = k * cpg, end = c + cpg < nch ? c + cpg : nch;
            __m256i s[8];
            for (int i = 0; i < RB; i++) s[i] = _mm256_setzero_si256();
            for (; c + 4 <= end; c += 4) {
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
            }
            for (; c < end; c++) { // the row's last chunks, short of a bundle
                __m256i x = _mm256_loadu_si256((const __m256i *)(q + (size_t)c * TERN_KCHUNK));
                for (int i = 0; i < RB; i++) s[i] = _mm256_dpbusd_epi32(s[i], expand2(row[i] + (size_t)c * 8), x);
            }
            __m256i raw = _mm256_sub_epi32(reduce_rows(s, RB), _mm256_set1_epi32(gs[k]));
            const __m256 vsx = _mm256_set1_ps(tern_kact_scale(a, t, k));
            acc = _mm256_fmadd_ps(_mm256_mul_ps(alpha, vsx), _mm256_cvtepi32_ps(raw), acc);
            if (w->has_shift) acc = _mm256_fmadd_ps(_mm256_mul_ps(gamma, vsx), _mm256_set1_ps((float)gs[k]), acc);
        }
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
        const __m128 vsx = _mm_set1_ps(tern_kact_scale(a, t, g));
        acc = _mm_fmadd_ps(_mm_mul_ps(_mm_cvtph_ps(gather_u16(sc, 4, (size_t)g)), vsx), _mm_cvtepi32_ps(raw), acc);
        if (w->has_shift)
            acc = _mm_fmadd_ps(_mm_mul_ps(_mm_cvtph_ps(gather_u16(sc, 4, (size_t)w->n_groups + g)), vsx),
                               _mm_set1_ps((float)gs[g]), acc);
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
        if (w->has_shift)
            acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(_cvtsh_ss(load_u16(sc, w->n_groups + g))), vsx),
                               _mm_cvtepi32_ps(gsv), acc);
    }
    finish4_tokens(acc, bias, r, out, ldo);
}

// 32 bytes at lo and at hi as one zmm (lo in the low half).
INL __m512i pair256(const uint8_t *lo, const uint8_t *hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)),
                              _mm256_loadu_si256((const __m256i *)hi), 1);
}

// tern-t1.6 GEMV, 8 rows as 4 pairs: a pair's bundles share one zmm (row 2p in
// the low half, 2p + 1 in the high half), and one vpdpbusd multiplies both
// with the chunk's 32 activations broadcast to both halves.
//
// The digits are never formed. With x_k = (byte * 3^k) mod 256, digit k is
// d_k = floor(3 x_k / 256) and x_{k+1} = 3 x_k - 256 d_k, so
//     256 * sum(d_k q) = 3 * sum(x_k q) - sum(x_{k+1} q),
// two vpdpbusd of bytes the decoder has anyway (x_{k+1} = x_k + x_k + x_k in
// wrapping byte adds) instead of two mask compares, two masked moves and one
// vpdpbusd. Each int32 lane's 3A - B is 256 times its exact digit sum, so the
// lanes are shifted back before the rows are reduced; A and B may wrap, their
// difference does not (|digit sum| <= 4 * 2 * 128 per chunk in a lane stays
// below 2^23 for any group of fewer than 262,144 columns).
// Chunks are walked in order, so a group may end inside a bundle (G = 128 is
// 4 chunks, a bundle 5); chunks past the last whole bundle are 2-bit fields,
// added to the shifted digit sum as they are.
INL void gemv_t16_8(const tern_kmatrix *w, int r, const tern_qact *a, int t, const float *bias, float *out) {
    const uint8_t *row[8], *sc[8];
    for (int i = 0; i < 8; i++) row[i] = w->data + (size_t)(r + i) * w->row_bytes, sc[i] = row[i] + w->code_bytes;
    const int ng = w->n_groups, nch = w->n_chunks, full = nch / 5;
    const size_t pf = (size_t)PF_BLOCKS * 4 * w->row_bytes;
    const int8_t *q = a->q + (size_t)t * a->stride;
    const int32_t *gs = a->gsum + (size_t)t * a->n_groups;
    __m256 acc = _mm256_setzero_ps();
    __m512i m[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
    int c = 0, k = 0; // chunk, and its digit in the bundle (c % 5)
    for (int g = 0; g < ng; g++) {
        const int end = c + w->cpg < nch ? c + w->cpg : nch;
        __m512i sa[4], sb[4];
        for (int p = 0; p < 4; p++) sa[p] = sb[p] = _mm512_setzero_si512();
        const int bend = end < 5 * full ? end : 5 * full;
        for (; c < bend; c++) {
            const __m512i x = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(q + (size_t)c * TERN_KCHUNK)));
            if (k == 0) {
                const size_t at = (size_t)(c / 5) * 32;
                for (int p = 0; p < 4; p++) {
                    _mm_prefetch((const char *)(row[2 * p] + at + pf), PF_HINT);
                    _mm_prefetch((const char *)(row[2 * p + 1] + at + pf), PF_HINT);
                    m[p] = pair256(row[2 * p] + at, row[2 * p + 1] + at);
                }
            }
            for (int p = 0; p < 4; p++) {
                sa[p] = _mm512_dpbusd_epi32(sa[p], m[p], x);
                m[p] = _mm512_add_epi8(m[p], _mm512_add_epi8(m[p], m[p]));
                sb[p] = _mm512_dpbusd_epi32(sb[p], m[p], x);
            }
            k = k == 4 ? 0 : k + 1;
        }
        // sa = (3A - B) / 256: each lane's exact digit sum
        for (int p = 0; p < 4; p++)
            sa[p] = _mm512_srai_epi32(_mm512_sub_epi32(_mm512_add_epi32(sa[p], _mm512_add_epi32(sa[p], sa[p])), sb[p]), 8);
        for (; c < end; c++) {
            const __m512i x = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(q + (size_t)c * TERN_KCHUNK)));
            const size_t at = (size_t)full * 32 + (size_t)(c - 5 * full) * 8;
            for (int p = 0; p < 4; p++) {
                __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(expand2(row[2 * p] + at)), expand2(row[2 * p + 1] + at), 1);
                sa[p] = _mm512_dpbusd_epi32(sa[p], u, x);
            }
        }
        __m256i h[8];
        for (int p = 0; p < 4; p++) h[2 * p] = _mm512_castsi512_si256(sa[p]), h[2 * p + 1] = _mm512_extracti64x4_epi64(sa[p], 1);
        __m256i raw = _mm256_sub_epi32(reduce_rows(h, 8), _mm256_set1_epi32(gs[g]));
        const __m256 vsx = _mm256_set1_ps(tern_kact_scale(a, t, g));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtph_ps(gather_u16(sc, 8, (size_t)g)), vsx), _mm256_cvtepi32_ps(raw), acc);
        if (w->has_shift)
            acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtph_ps(gather_u16(sc, 8, (size_t)ng + g)), vsx),
                                  _mm256_set1_ps((float)gs[g]), acc);
    }
    finish_rows(acc, bias, r, out, 8);
}

__attribute__((noinline)) TGT static void t16_gemv(const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t,
                                                  const float *bias, float *out) {
    int r = r0;
    for (; r + 8 <= r1; r += 8) gemv_t16_8(w, r, a, t, bias, out + (r - r0));
    if (r < r1) tern_kdot_t16_avx2(w, r, r1, a, t, 1, bias, out + (r - r0), 0);
}

// *x = 3 * *x in wrapping byte adds, in place: GCC otherwise computes into a
// scratch register and copies it back, one more instruction per vector.
INL void times3(__m512i *x) {
    __m512i t;
    __asm__("vpaddb %[x], %[x], %[t]\n\tvpaddb %[t], %[x], %[x]" : [x] "+v"(*x), [t] "=&v"(t));
}

// tern-t1.6 GEMV on the row-interleaved copy (formats.h): lanes = a block's
// 16 rows, as for tern-t2. Word w of bundle b holds each row's bundle bytes
// 4w..4w+3; their x_k (the x3 chain of gemv_t16_8) carry digit k of slots
// 4w..4w+3 of chunk 5b + k, whose 4 activations are contiguous, so
// sa += x_k . q and sb += x_{k+1} . q with q broadcast, and 3 sa - sb is 256
// times the lanes' exact digit sums (gemv_t16_8's identity). It is shifted
// back at each group's end, and at each bundle's end when a group is so long
// that 256 times its digit sum could leave int32 (32768 columns or more). The
// 2-bit tail chunks are tern-t2's words, decoded by shift and mask.
// sum + (3 sa - sb) / 256 over the 4 accumulator pairs, which are then zeroed.
INL __m512i t16_fold(__m512i sa[4], __m512i sb[4], __m512i sum) {
    __m512i A = _mm512_add_epi32(_mm512_add_epi32(sa[0], sa[1]), _mm512_add_epi32(sa[2], sa[3]));
    __m512i B = _mm512_add_epi32(_mm512_add_epi32(sb[0], sb[1]), _mm512_add_epi32(sb[2], sb[3]));
    for (int i = 0; i < 4; i++) sa[i] = sb[i] = _mm512_setzero_si512();
    return _mm512_add_epi32(sum, _mm512_srai_epi32(_mm512_sub_epi32(_mm512_add_epi32(A, _mm512_add_epi32(A, A)), B), 8));
}

TGT static void t16_gemv_ilv(const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t, const float *bias,
                             float *out) {
    const int nch = w->n_chunks, full = nch / 5, cpg = w->cpg;
    const int fold_bundles = cpg * TERN_KCHUNK >= 32768;
    const int8_t *q = a->q + (size_t)t * a->stride;
    const uint8_t *end = w->ilv + tern_kilv_block(w, r1);
    const __m512i m3 = _mm512_set1_epi8(3);
    ilv_prefetch_start(w->ilv + tern_kilv_block(w, r0), end);
    for (int r = r0; r < r1; r += TERN_KILV_ROWS) {
        const uint8_t *b = w->ilv + tern_kilv_block(w, r), *al = b + tern_kilv_scales(w);
        __m512 acc = _mm512_setzero_ps();
        __m512i sa[4], sb[4], sum = _mm512_setzero_si512(); // sum: exact digit sums of the group so far
        for (int i = 0; i < 4; i++) sa[i] = sb[i] = _mm512_setzero_si512();
        int g = 0; // the group chunk c is in: chunks [g * cpg, g * cpg + cpg)
        for (int bb = 0; bb < full; bb++) {
            const uint8_t *p = b + (size_t)bb * 512;
            ilv_prefetch(p, 8, end);
            __m512i x[8];
            for (int v = 0; v < 8; v++) x[v] = _mm512_loadu_si512(p + 64 * v);
            for (int k = 0; k < 5; k++) {
                const int c = 5 * bb + k;
                if (c == (g + 1) * cpg) {
                    acc = ilv_step(w, a, t, g++, al, t16_fold(sa, sb, sum), acc);
                    sum = _mm512_setzero_si512();
                }
                const int8_t *xq = q + (size_t)c * TERN_KCHUNK;
                for (int v = 0; v < 8; v++) {
                    sa[v & 3] = dp_bcast(sa[v & 3], x[v], xq + 4 * v);
                    times3(&x[v]);
                    sb[v & 3] = dp_bcast(sb[v & 3], x[v], xq + 4 * v);
                }
            }
            if (fold_bundles) sum = t16_fold(sa, sb, sum);
        }
        sum = t16_fold(sa, sb, sum);
        for (int c = 5 * full; c < nch; c++) { // 2-bit tail chunks
            if (c == (g + 1) * cpg) {
                acc = ilv_step(w, a, t, g++, al, sum, acc);
                sum = _mm512_setzero_si512();
            }
            const uint8_t *p = b + (size_t)full * 512 + (size_t)(c - 5 * full) * 128;
            const __m512i v[2] = {_mm512_loadu_si512(p), _mm512_loadu_si512(p + 64)};
            for (int k = 0; k < 4; k++)
                for (int h = 0; h < 2; h++)
                    sum = dp_bcast(sum, _mm512_and_si512(_mm512_srli_epi32(v[h], 2 * k), m3), q + (size_t)c * TERN_KCHUNK + 8 * k + 4 * h);
        }
        acc = ilv_step(w, a, t, g, al, sum, acc);
        ilv_store(acc, bias, r, r0, out);
    }
}

// One activation group per weight group (t1.6's act_group is its G): the
// VNNI GEMV; other shapes and token blocks run the AVX2 kernel.
TGT TERN_KDECL(tern_kdot_t16_avx512) {
    if (tern_kilv_direct(TERN_KIMPL_AVX512, w, a, r0, r1)) ilv_dot(t16_gemv_ilv, w, r0, r1, a, t0, nt, bias, out, ldo);
    else if (nt == 1 && a->group == w->group) t16_gemv(w, r0, r1, a, t0, bias, out);
    else tern_kdot_t16_avx2(w, r0, r1, a, t0, nt, bias, out, ldo);
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

// tern-t2 GEMV on the row-interleaved copy (formats.h, tern_kilv_pack): the
// 16 lanes are a block's 16 rows, so there is no horizontal sum and the
// weights are one sequential stream. Word h of chunk c holds, in field k of
// byte i, slot 8k + 4h + i: masking with 3 << 2k (no shift) leaves 4^k times
// the fields of quad (k, h), whose 4 activations are contiguous, and one
// vpdpbusd with them broadcast adds 4^k times the quad's dot to accumulator
// (k, h). At the group's end each k's sum is exact and a multiple of 4^k
// (|sum| < 2^31: 192 * 127 * 4 per lane and chunk, at most 2048 chunks), so
// an arithmetic shift by 2k divides it exactly. The epilogue is the row
// layout's (tern_kstep_v), 16 rows at once. Streamed from DRAM it reaches
// 93-100% of a plain read, the row-layout GEMV 70-75% (docs/PERFORMANCE.md).
TGT static void t2_gemv_ilv(const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t, const float *bias,
                            float *out) {
    const int ng = w->n_groups, nch = w->n_chunks, cpg = w->cpg;
    const int8_t *q = a->q + (size_t)t * a->stride;
    const uint8_t *end = w->ilv + tern_kilv_block(w, r1);
    const __m512i m[4] = {_mm512_set1_epi8(3), _mm512_set1_epi8(12), _mm512_set1_epi8(48), _mm512_set1_epi8((char)192)};
    ilv_prefetch_start(w->ilv + tern_kilv_block(w, r0), end);
    for (int r = r0; r < r1; r += TERN_KILV_ROWS) {
        const uint8_t *b = w->ilv + tern_kilv_block(w, r), *al = b + tern_kilv_scales(w);
        __m512 acc = _mm512_setzero_ps();
        for (int g = 0, c = 0; g < ng; g++) {
            const int c1 = c + cpg < nch ? c + cpg : nch;
            __m512i s[4][2];
            for (int k = 0; k < 4; k++) s[k][0] = s[k][1] = _mm512_setzero_si512();
            for (; c < c1; c++) {
                const uint8_t *p = b + (size_t)c * 128;
                ilv_prefetch(p, 2, end);
                const __m512i v[2] = {_mm512_loadu_si512(p), _mm512_loadu_si512(p + 64)};
                const int8_t *x = q + (size_t)c * TERN_KCHUNK;
                for (int k = 0; k < 4; k++)
                    for (int h = 0; h < 2; h++) s[k][h] = dp_bcast(s[k][h], _mm512_and_si512(v[h], m[k]), x + 8 * k + 4 * h);
            }
            __m512i dot = _mm512_add_epi32(s[0][0], s[0][1]);
            for (int k = 1; k < 4; k++) dot = _mm512_add_epi32(dot, _mm512_srai_epi32(_mm512_add_epi32(s[k][0], s[k][1]), 2 * k));
            acc = ilv_step(w, a, t, g, al, dot, acc);
        }
        ilv_store(acc, bias, r, r0, out);
    }
}

// The GEMV needs activation groups of whole bundles (128 columns), the GEMM
// groups of exactly one.
TGT TERN_KDECL(tern_kdot_t2_avx512) {
    const int bundles = a->n_groups == 1 || a->group % 128 == 0;
    if (tern_kilv_direct(TERN_KIMPL_AVX512, w, a, r0, r1)) ilv_dot(t2_gemv_ilv, w, r0, r1, a, t0, nt, bias, out, ldo);
    else if (nt == 1 && bundles) t2_gemv(w, r0, r1, a, t0, bias, out);
    else if (nt > 1 && w->cpg == 4 && w->n_groups > 1) t2_gemm(w, r0, r1, a, t0, nt, bias, out, ldo);
    else tern_kdot_t2_avx2(w, r0, r1, a, t0, nt, bias, out, ldo);
}

// q4g GEMV on the row-interleaved copy (formats.h): lanes = a block's 16
// rows, as for tern-t2. Word h (0..3) of chunk c holds, in byte i, slot 4h + i
// in the low nibble and slot 16 + 4h + i in the high one: masking with 0x0f
// leaves the low codes, with 0xf0 16 times the high ones, and one vpdpbusd
// each with the 4 activations broadcast adds their dots to a low and a high
// accumulator. At each activation group's end high / 16 is exact (a multiple
// of 16, |sum| <= 15 * 16 * 128 * 32 per chunk), and the group's step is the
// row layout's (tern_kstep_v, RTN: alpha * sx * (raw - zero * gsum), plus the
// shift's term when the matrix has one). The
// activation groups may split the weights' (tern_kact_group: 64 under 128).
TGT static void q4_gemv_ilv(const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t, const float *bias,
                            float *out) {
    const int ng = w->n_groups, nch = w->n_chunks, acpg = tern_kact_cpg(a, nch);
    const int8_t *q = a->q + (size_t)t * a->stride;
    const int32_t *gs = a->gsum + (size_t)t * a->n_groups;
    const uint8_t *end = w->ilv + tern_kilv_block(w, r1);
    const __m512i lo = _mm512_set1_epi8(0x0f), hi = _mm512_set1_epi8((char)0xf0);
    ilv_prefetch_start(w->ilv + tern_kilv_block(w, r0), end);
    for (int r = r0; r < r1; r += TERN_KILV_ROWS) {
        const uint8_t *b = w->ilv + tern_kilv_block(w, r), *al = b + tern_kilv_scales(w), *zp = b + tern_kilv_zeros(w);
        __m512 acc = _mm512_setzero_ps();
        for (int g = 0, c = 0; g < ng; g++) {
            const __m512 alpha = ilv_scales(al, (size_t)g);
            const __m512i zero = w->has_shift ? _mm512_setzero_si512()
                                              : _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(zp + (size_t)g * 16)));
            int k0, k1;
            tern_kact_range(w, a, g, &k0, &k1);
            for (int k = k0; k < k1; k++) {
                const int c1 = c + acpg < nch ? c + acpg : nch;
                __m512i s[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                                _mm512_setzero_si512()};
                for (; c < c1; c++) {
                    const uint8_t *p = b + (size_t)c * 256;
                    ilv_prefetch(p, 4, end);
                    const int8_t *x = q + (size_t)c * TERN_KCHUNK;
                    for (int h = 0; h < 4; h++) {
                        const __m512i v = _mm512_loadu_si512(p + 64 * h);
                        s[h & 1] = dp_bcast(s[h & 1], _mm512_and_si512(v, lo), x + 4 * h);
                        s[2 + (h & 1)] = dp_bcast(s[2 + (h & 1)], _mm512_and_si512(v, hi), x + 16 + 4 * h);
                    }
                }
                const __m512i raw = _mm512_add_epi32(_mm512_add_epi32(s[0], s[1]),
                                                     _mm512_srai_epi32(_mm512_add_epi32(s[2], s[3]), 4));
                const __m512i zg = _mm512_mullo_epi32(zero, _mm512_set1_epi32(gs[k]));
                acc = ilv_fma(alpha, a, t, k, _mm512_sub_epi32(raw, zg), acc);
                acc = ilv_shift(w, a, t, g, k, al, gs[k], acc);
            }
        }
        ilv_store(acc, bias, r, r0, out);
    }
}

// q4g: the interleaved GEMV where the session set one up, else the AVX2 kernel.
TGT TERN_KDECL(tern_kdot_q4_avx512) {
    if (tern_kilv_direct(TERN_KIMPL_AVX512, w, a, r0, r1)) ilv_dot(q4_gemv_ilv, w, r0, r1, a, t0, nt, bias, out, ldo);
    else tern_kdot_q4_avx2(w, r0, r1, a, t0, nt, bias, out, ldo);
}

// q8-row GEMV on the row-interleaved copy (formats.h): lanes = a block's 16
// rows; word h of chunk c holds slots 4h..4h+3, so one vpdpbusd of the word
// vector + 128 (u8) with their 4 activations broadcast adds each row's 4
// products, and the group's step subtracts 128 * gsum (as gemv_q8_4 does).
TGT static void q8_gemv_ilv(const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t, const float *bias,
                            float *out) {
    const int ng = w->n_groups, nch = w->n_chunks, cpg = w->cpg;
    const int8_t *q = a->q + (size_t)t * a->stride;
    const int32_t *gs = a->gsum + (size_t)t * a->n_groups;
    const uint8_t *end = w->ilv + tern_kilv_block(w, r1);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    ilv_prefetch_start(w->ilv + tern_kilv_block(w, r0), end);
    for (int r = r0; r < r1; r += TERN_KILV_ROWS) {
        const uint8_t *b = w->ilv + tern_kilv_block(w, r), *al = b + tern_kilv_scales(w);
        __m512 acc = _mm512_setzero_ps();
        for (int g = 0, c = 0; g < ng; g++) {
            const int c1 = c + cpg < nch ? c + cpg : nch;
            __m512i s[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                            _mm512_setzero_si512()};
            for (; c < c1; c++) {
                const uint8_t *p = b + (size_t)c * 512;
                ilv_prefetch(p, 8, end);
                const int8_t *x = q + (size_t)c * TERN_KCHUNK;
                for (int h = 0; h < 8; h++)
                    s[h & 3] = dp_bcast(s[h & 3], _mm512_xor_si512(_mm512_loadu_si512(p + 64 * h), flip), x + 4 * h);
            }
            const __m512i raw = _mm512_sub_epi32(_mm512_add_epi32(_mm512_add_epi32(s[0], s[1]), _mm512_add_epi32(s[2], s[3])),
                                                 _mm512_set1_epi32(128 * gs[g]));
            acc = ilv_fma(ilv_scales(al, (size_t)g), a, t, g, raw, acc);
            acc = ilv_shift(w, a, t, g, g, al, gs[g], acc);
        }
        ilv_store(acc, bias, r, r0, out);
    }
}

TGT TERN_KDECL(tern_kdot_q8_avx512) {
    if (tern_kilv_direct(TERN_KIMPL_AVX512, w, a, r0, r1)) {
        ilv_dot(q8_gemv_ilv, w, r0, r1, a, t0, nt, bias, out, ldo);
        return;
    }
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

/* ---- panel GEMM (prompts): 16 rows x up to 12 tokens per tile, any format ---- */

// For a batch of tokens (tern_kgemm, n >= TERN_KPANEL_MIN) every format runs
// this one kernel. A block of 16 rows is decoded once (2-bit fields straight
// from the rows by gathers, other formats through their AVX2 decoder) into a
// panel in vpdpbusd order: 64 bytes per 4 columns, row i's
// 4 stored fields at bytes 4i..4i+3 (q8's signed fields offset to u8 as in
// q8_dot). One vpdpbusd then multiplies the 16 rows by 4 activations of one
// token broadcast from memory, and the 16 int32 lanes ARE the 16 rows' sums:
// no horizontal reductions, 12 tokens per panel load, and each group's
// epilogue runs once per token for 16 rows in float lanes (tern_kstep_v,
// lane for lane, so results equal the scalar kernel bit for bit). The decode
// (16 x cols fields) is amortized over all the batch's tokens.
#define PANEL_ROWS 16
#define PANEL_T TERN_KTILE

typedef struct {
    uint8_t *u;                   // n_chunks * 8 quads of 64 bytes
    float *alpha, *gamma;         // n_groups x 16 rows: scale and shift
    int32_t *zero;                // n_groups x 16 rows: RTN zero points (0 with shifts)
} panel;

// 2-bit fields (tern-t2, q2g; layout in formats.c) straight from the rows:
// word h (bytes 4h..4h+3) of a chunk holds quad 2k + h in bits 2k..2k+1 of
// each byte, so one gather of word h from the 16 rows gives 4 panel quads.
INL void panel_fill_2bit(const tern_kmatrix *w, int r, __mmask16 live, uint8_t *u) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)w->row_bytes));
    const __m512i m3 = _mm512_set1_epi8(3);
    const uint8_t *base = w->data + (size_t)r * w->row_bytes;
    for (int c = 0; c < w->n_chunks; c++)
        for (int h = 0; h < 2; h++) {
            __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, base + (size_t)c * 8 + 4 * h, 1);
            for (int k = 0; k < 4; k++)
                _mm512_store_si512(u + ((size_t)c * 8 + 2 * k + h) * 64, _mm512_and_si512(_mm512_srli_epi32(v, 2 * k), m3));
        }
}

// tern-t2 from the row-interleaved copy: its word vectors are the gathers
// above, stored (r: a block's first row).
INL void panel_fill_ilv(const tern_kmatrix *w, int r, uint8_t *u) {
    const uint8_t *b = w->ilv + tern_kilv_block(w, r);
    const __m512i m3 = _mm512_set1_epi8(3);
    for (int c = 0; c < w->n_chunks; c++)
        for (int h = 0; h < 2; h++) {
            __m512i v = _mm512_loadu_si512(b + ((size_t)c * 2 + h) * 64);
            for (int k = 0; k < 4; k++)
                _mm512_store_si512(u + ((size_t)c * 8 + 2 * k + h) * 64, _mm512_and_si512(_mm512_srli_epi32(v, 2 * k), m3));
        }
}

// Any format: each row decoded to bytes (kern_avx2.c), then quad d of the 16
// rows gathered from the 16 decoded rows. A row-interleaved matrix's rows are
// copied back to the row layout first.
INL int panel_fill_any(const tern_kmatrix *w, int r, int nr, __mmask16 live, uint8_t *u) {
    const size_t ld = (size_t)w->n_chunks * TERN_KCHUNK;
    // aligned_alloc wants a multiple of the alignment (ld is one, row_bytes not)
    uint8_t *rows = aligned_alloc(64, PANEL_ROWS * ld + (w->ilv ? (w->row_bytes + 63) / 64 * 64 : 0));
    if (!rows) return -1;
    for (int i = 0; i < nr; i++) {
        if (!w->ilv) {
            tern_kdecode_row_avx2(w, r + i, rows + i * ld);
            continue;
        }
        tern_kmatrix one = *w;
        uint8_t *row = rows + PANEL_ROWS * ld;
        tern_kilv_unpack_row(w, r + i, row);
        one.rows = 1, one.data = row, one.ilv = NULL;
        tern_kdecode_row_avx2(&one, 0, rows + i * ld);
    }
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)ld));
    const __m512i flip = _mm512_set1_epi8(w->fmt->kind == TERN_KKIND_Q8 ? (char)0x80 : 0);
    for (size_t d = 0; d < ld / 4; d++) {
        __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, rows + 4 * d, 1);
        _mm512_store_si512(u + d * 64, _mm512_xor_si512(v, flip));
    }
    free(rows);
    return 0;
}

TGT static int panel_build(const tern_kmatrix *w, int r, int nr, panel *p, void **mem) {
    const tern_kformat *f = w->fmt;
    const int ng = w->n_groups, nch = w->n_chunks;
    size_t ub = (size_t)nch * 8 * 64, gb = (size_t)ng * PANEL_ROWS * 4;
    uint8_t *m = aligned_alloc(64, ub + 3 * gb);
    if (!m) return -1;
    memset(m + ub, 0, 3 * gb);
    p->u = m, p->alpha = (float *)(m + ub), p->gamma = (float *)(m + ub + gb), p->zero = (int32_t *)(m + ub + 2 * gb);
    const __mmask16 live = (__mmask16)((1u << nr) - 1);
    // tern_kgemm's row blocks are whole interleaved blocks, so an interleaved
    // matrix's panel is one block: its word vectors (tern-t2) or its rows
    // copied back (tern-t1.6, q4g), and its scales 16 at a time.
    if (w->ilv && f->id == TERN_KFMT_T2) panel_fill_ilv(w, r, p->u);
    else if (f->code_bits == 2 && !w->ilv) panel_fill_2bit(w, r, live, p->u);
    else if (panel_fill_any(w, r, nr, live, p->u)) {
        free(m);
        return -1;
    }
    *mem = m;
    if (w->ilv) {
        const uint8_t *al = w->ilv + tern_kilv_block(w, r) + tern_kilv_scales(w);
        for (int g = 0; g < ng; g++)
            for (int i = 0; i < PANEL_ROWS; i++) {
                p->alpha[g * PANEL_ROWS + i] = tern_kload_f16(al + (size_t)g * 32, i);
                if (w->has_shift) p->gamma[g * PANEL_ROWS + i] = tern_kload_f16(al + (size_t)(ng + g) * 32, i);
                if (tern_kmatrix_zeros(w)) p->zero[g * PANEL_ROWS + i] = al[tern_kilv_zeros(w) - tern_kilv_scales(w) + (size_t)g * 16 + i];
            }
        return 0;
    }
    for (int i = 0; i < nr; i++) {
        const uint8_t *sc = w->data + (size_t)(r + i) * w->row_bytes + w->code_bytes;
        for (int g = 0; g < ng; g++) {
            p->alpha[g * PANEL_ROWS + i] = tern_kload_f16(sc, g);
            if (w->has_shift) p->gamma[g * PANEL_ROWS + i] = tern_kload_f16(sc, ng + g);
            if (tern_kmatrix_zeros(w)) p->zero[g * PANEL_ROWS + i] = sc[2 * (size_t)ng + g];
        }
    }
    return 0;
}

// T tokens (a compile-time constant after inlining) of tile b (tern_qact.qi),
// the panel's nr rows from r.
INL void panel_tile(const tern_kmatrix *w, const panel *p, const tern_qact *a, int b, int r, int nr,
                    const float *bias, float *out, size_t ldo, const int T) {
    const tern_kkind kind = w->fmt->kind;
    const int ng = w->n_groups, nch = w->n_chunks, cpg = tern_kact_cpg(a, nch), t0 = b * PANEL_T;
    const int shift = w->has_shift;
    const int8_t *x = a->qi + (size_t)b * (a->stride / 4) * (4 * PANEL_T);
    __m512 acc[PANEL_T];
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    int c = 0;
    for (int g = 0; g < ng; g++) {
        const __m512 alpha = _mm512_load_ps(p->alpha + (size_t)g * PANEL_ROWS);
        const __m512i zero = _mm512_load_si512(p->zero + (size_t)g * PANEL_ROWS);
        int k0, k1;
        tern_kact_range(w, a, g, &k0, &k1);
        for (int k = k0; k < k1; k++) {
            const int end = c + cpg < nch ? c + cpg : nch;
            // The lanes start at the group's offset: raw - gsum (ternary),
            // raw - zero * gsum (RTN), minus the 128 * gsum of the u8 offset (q8).
            int32_t gs[PANEL_T];
            __m512i s[PANEL_T];
            for (int t = 0; t < T; t++) {
                gs[t] = a->gsum[(size_t)(t0 + t) * a->n_groups + k];
                s[t] = kind == TERN_KKIND_RTN ? _mm512_mullo_epi32(zero, _mm512_set1_epi32(-gs[t]))
                                              : _mm512_set1_epi32((int32_t)(0u - (uint32_t)gs[t] * (kind == TERN_KKIND_Q8 ? 128u : 1u)));
            }
            const uint8_t *u = p->u + (size_t)c * 8 * 64;
            const int8_t *xd = x + (size_t)c * 8 * (4 * PANEL_T);
            for (int d = 0; d < (end - c) * 8; d++, u += 64, xd += 4 * PANEL_T) {
                const __m512i ud = _mm512_load_si512(u);
                for (int t = 0; t < T; t++) s[t] = dp_bcast(s[t], ud, xd + 4 * t);
            }
            c = end;
            const float *sx = a->scale + (size_t)k * a->n_max + t0;
            for (int t = 0; t < T; t++) {
                const __m512 vs = _mm512_set1_ps(sx[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(alpha, vs), _mm512_cvtepi32_ps(s[t]), acc[t]);
                if (shift)
                    acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_load_ps(p->gamma + (size_t)g * PANEL_ROWS), vs),
                                             _mm512_set1_ps((float)gs[t]), acc[t]);
            }
        }
    }
    const __mmask16 m = (__mmask16)((1u << nr) - 1);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(m, bias + r) : _mm512_setzero_ps();
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(out + (size_t)t * ldo, m, bias ? _mm512_add_ps(acc[t], bv) : acc[t]);
}

__attribute__((noinline)) TGT static void panel_tiles(const tern_kmatrix *w, const panel *p, const tern_qact *a, int nt,
                                                     int r, int nr, const float *bias, float *out, size_t ldo) {
    int b = 0;
    for (; (b + 1) * PANEL_T <= nt; b++) panel_tile(w, p, a, b, r, nr, bias, out + (size_t)b * PANEL_T * ldo, ldo, PANEL_T);
    float *o = out + (size_t)b * PANEL_T * ldo;
    switch (nt - b * PANEL_T) {
#define TAIL(n) case n: panel_tile(w, p, a, b, r, nr, bias, o, ldo, n); break;
        TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6) TAIL(7) TAIL(8) TAIL(9) TAIL(10) TAIL(11)
#undef TAIL
    default: break;
    }
}

// Tokens [0, nt) of a (t0 must be 0: tiles start at token 0).
TGT TERN_KDECL(tern_kgemm_panel_avx512) {
    (void)t0;
    for (int r = r0; r < r1; r += PANEL_ROWS) {
        const int nr = r1 - r < PANEL_ROWS ? r1 - r : PANEL_ROWS;
        panel p;
        void *mem;
        if (panel_build(w, r, nr, &p, &mem)) { // out of memory: the format's own kernel
            tern_kdot_fn f = w->fmt->dot[TERN_KIMPL_AVX512] ? w->fmt->dot[TERN_KIMPL_AVX512] : tern_kdot_scalar;
            f(w, r, r + nr, a, t0, nt, bias, out + (r - r0), ldo);
            continue;
        }
        panel_tiles(w, &p, a, nt, r, nr, bias, out + (r - r0), ldo);
        free(mem);
    }
}

// tern_qact.qi of tokens [0, n): per tile and 4-byte word d, a gather of the
// tile's 12 tokens' word d.
TGT void tern_kinterleave_avx512(tern_qact *a, int n) {
    const size_t nq = a->stride / 4;
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 0, 0, 0),
                                           _mm512_set1_epi32((int)a->stride));
    for (int b = 0; b * PANEL_T < n; b++) {
        const int T = n - b * PANEL_T < PANEL_T ? n - b * PANEL_T : PANEL_T;
        const __mmask16 live = (__mmask16)((1u << T) - 1);
        const int8_t *q = a->q + (size_t)b * PANEL_T * a->stride;
        int8_t *o = a->qi + (size_t)b * nq * (4 * PANEL_T);
        for (size_t d = 0; d < nq; d++)
            _mm512_mask_storeu_epi32(o + d * 4 * PANEL_T, 0x0fff,
                                     _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, q + 4 * d, 1));
    }
    a->qi_n = n;
}

#endif
