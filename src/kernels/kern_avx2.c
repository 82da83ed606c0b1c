// AVX2 kernels (maddubs/madd) and the AVX2 activation quantizer.
//
// Compiled with function-level target attributes, not -mavx2, so a portable
// build still contains them and the dispatcher (kernels.c) decides at run time.
//
// One generic row kernel, specialised per format and per token count by
// constant arguments to always_inline functions: for every chunk of 32 codes
// the weights are expanded once to 32 unsigned bytes, then multiplied with up
// to 4 tokens' int8 activations by maddubs (u8 x s8 -> pairs summed in int16).
// int16 partials are widened with madd(., 1) before TERN_KI16_LIMIT chunks
// (kern_impl.h) and at every group end; per group, int32 lanes are summed and
// handed to the shared float epilogue.
#include "kernels/kern_x86.h"

#ifdef TERN_KHAVE_X86

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

enum { F_T2, F_T16, F_Q8, F_Q4, F_Q3, F_Q2 };

// 16 bytes of nibbles: low nibbles are slots 0..15, high nibbles 16..31.
INL __m256i expand4(const uint8_t *p) {
    __m128i x = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), m), _mm_and_si128(x, m));
}

// 2-bit low part plus a 32-bit word of third bits (bit i -> slot i).
INL __m256i expand3(const uint8_t *p) {
    uint32_t hb;
    memcpy(&hb, p + 8, 4);
    const __m256i idx = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
                                         2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201ull);
    __m256i h = _mm256_shuffle_epi8(_mm256_set1_epi32((int)hb), idx); // byte i = byte i/8 of the word
    h = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);              // 0xff where bit i%8 is set
    return _mm256_or_si256(expand2(p), _mm256_and_si256(h, _mm256_set1_epi8(4)));
}

// Leading trit of bytes already multiplied by 3^k (mod 256): (x*3) >> 8,
// i.e. [x >= 86] + [x >= 171].
INL __m256i trit(__m256i x) {
    const __m256i one = _mm256_set1_epi8(1);
    __m256i a = _mm256_min_epu8(_mm256_subs_epu8(x, _mm256_set1_epi8(85)), one);
    __m256i b = _mm256_min_epu8(_mm256_subs_epu8(x, _mm256_set1_epi8((char)170)), one);
    return _mm256_add_epi8(a, b);
}

// Chunk c's 32 fields. Chunks are visited in order from 0, which lets the
// t1.6 decoder keep the current bundle in *m and step it by x3 (mod 256).
INL __m256i decode(int fmt, const uint8_t *row, int n_chunks, int c, __m256i *m) {
    switch (fmt) {
    case F_T2:
    case F_Q2: return expand2(row + (size_t)c * 8);
    case F_Q4: return expand4(row + (size_t)c * 16);
    case F_Q3: return expand3(row + (size_t)c * 12);
    case F_Q8: return _mm256_loadu_si256((const __m256i *)(row + (size_t)c * 32));
    default: { // F_T16
        int full = n_chunks / 5;
        if (c >= 5 * full) return expand2(row + (size_t)full * 32 + (size_t)(c - 5 * full) * 8);
        if (c % 5 == 0) *m = _mm256_loadu_si256((const __m256i *)(row + (size_t)(c / 5) * 32));
        else *m = _mm256_add_epi8(*m, _mm256_add_epi8(*m, *m));
        return trit(*m);
    }
    }
}

// maddubs of fields with activations. q8 fields are signed: |w| * (q * sign w).
INL __m256i pair_dot(int fmt, __m256i u, __m256i q) {
    if (fmt == F_Q8) return _mm256_maddubs_epi16(_mm256_abs_epi8(u), _mm256_sign_epi8(q, u));
    return _mm256_maddubs_epi16(u, q);
}

INL int i16_limit(int fmt) {
    switch (fmt) {
    case F_Q8: return 1; // |w| * |q| pairs reach 32258: widen every chunk
    case F_Q4: return TERN_KI16_LIMIT(15);
    case F_Q3: return TERN_KI16_LIMIT(7);
    case F_T16: return TERN_KI16_LIMIT(3); // its 2-bit tail chunks can hold a corrupt 3
    default: return TERN_KI16_LIMIT(3);
    }
}

// Formats whose activation groups split the weights' (tern_kformat.act_group);
// constant after inlining, so the others keep one epilogue per weight group
// without the inner loop (t1.6 measured 20% slower with it).
INL int split_acts(int fmt) { return fmt == F_Q4 || fmt == F_Q3 || fmt == F_Q2; }

INL tern_kkind kind_of(int fmt) {
    return fmt == F_T2 || fmt == F_T16 ? TERN_KKIND_TERNARY : fmt == F_Q8 ? TERN_KKIND_Q8 : TERN_KKIND_RTN;
}

// int16 pair sums of one 4-chunk bundle of 2-bit fields (32 bytes: chunk k in
// bits 2k..2k+1 of every byte) with the 4 bundle-ordered activation chunks.
INL __m256i bundle_dot(const uint8_t *p, __m256i x0, __m256i x1, __m256i x2, __m256i x3) {
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    __m256i p0 = _mm256_maddubs_epi16(_mm256_and_si256(v, m3), x0);
    __m256i p1 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 2), m3), x1);
    __m256i p2 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m3), x2);
    __m256i p3 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 6), m3), x3);
    return _mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3));
}

// One weight group's parameters for RB rows, loaded once for all the
// activation groups inside it.
typedef struct {
    __m256 alpha, gamma; // fp16 scale and shift, widened exactly
    __m256i zero;        // RTN zero points (0 with shifts)
} group_params;

INL group_params load_params(int fmt, int RB, int has_shift, const uint8_t *const *sc, int n_groups, int g) {
    group_params p = {_mm256_cvtph_ps(gather_u16(sc, RB, (size_t)g)), _mm256_setzero_ps(), _mm256_setzero_si256()};
    if (has_shift) p.gamma = _mm256_cvtph_ps(gather_u16(sc, RB, (size_t)n_groups + g));
    if (kind_of(fmt) == TERN_KKIND_RTN && !has_shift) {
        int32_t z[8] = {0};
        for (int r = 0; r < RB; r++) z[r] = sc[r][2 * (size_t)n_groups + g];
        p.zero = _mm256_loadu_si256((const __m256i *)z);
    }
    return p;
}

// RB float lanes of tern_kstep_v (same fmaf sequence, fused by FMA).
INL __m256 step_lanes(int fmt, int has_shift, const group_params *p, __m256i raw, int32_t gsum, float sx, __m256 acc) {
    const __m256 vsx = _mm256_set1_ps(sx);
    const __m256i gs = _mm256_set1_epi32(gsum);
    const __m256 alpha = _mm256_mul_ps(p->alpha, vsx);
    switch (kind_of(fmt)) {
    case TERN_KKIND_TERNARY: acc = _mm256_fmadd_ps(alpha, _mm256_cvtepi32_ps(_mm256_sub_epi32(raw, gs)), acc); break;
    case TERN_KKIND_RTN:
        acc = _mm256_fmadd_ps(alpha, _mm256_cvtepi32_ps(_mm256_sub_epi32(raw, _mm256_mullo_epi32(p->zero, gs))), acc);
        break;
    case TERN_KKIND_Q8:
    default: acc = _mm256_fmadd_ps(alpha, _mm256_cvtepi32_ps(raw), acc); break;
    }
    return has_shift ? _mm256_fmadd_ps(_mm256_mul_ps(p->gamma, vsx), _mm256_cvtepi32_ps(gs), acc) : acc;
}

// One row x NT tokens (NT <= 4, constant after inlining).
INL void row_tokens(int fmt, int NT, const tern_kmatrix *w, int r, const tern_qact *a, int t0, const float *bias,
                    float *out, size_t ldo) {
    const uint8_t *row = w->data + (size_t)r * w->row_bytes, *sc = row + w->code_bytes;
    const int limit = i16_limit(fmt), nch = w->n_chunks;
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *q[4];
    const int32_t *gs[4];
    for (int t = 0; t < NT; t++) {
        q[t] = a->q + (size_t)(t0 + t) * a->stride;
        gs[t] = a->gsum + (size_t)(t0 + t) * a->n_groups;
    }
    __m256i m = _mm256_setzero_si256();
    float acc[4] = {0, 0, 0, 0};
    const int cpg = tern_kact_cpg(a, nch);
    int c = 0;
    for (int g = 0; g < w->n_groups; g++) {
        int k0 = g, k1 = g + 1;
        if (split_acts(fmt)) tern_kact_range(w, a, g, &k0, &k1);
        // F16C converts exactly, like the scalar software conversion.
        const tern_kkind kind = kind_of(fmt);
        const float alpha = _cvtsh_ss(load_u16(sc, g));
        const float gamma = w->has_shift ? _cvtsh_ss(load_u16(sc, w->n_groups + g)) : 0.0f;
        const int32_t zero = tern_kmatrix_zeros(w) ? sc[2 * (size_t)w->n_groups + g] : 0;
        for (int k = k0; k < k1; k++) { // activation groups
            const int end = c + cpg < nch ? c + cpg : nch;
            __m256i s32[4];
            for (int t = 0; t < NT; t++) s32[t] = _mm256_setzero_si256();
            while (c < end) {
                int stop = c + limit < end ? c + limit : end;
                __m256i s16[4];
                for (int t = 0; t < NT; t++) s16[t] = _mm256_setzero_si256();
                for (; c < stop; c++) {
                    __m256i u = decode(fmt, row, nch, c, &m);
                    for (int t = 0; t < NT; t++) {
                        __m256i x = _mm256_loadu_si256((const __m256i *)(q[t] + (size_t)c * TERN_KCHUNK));
                        s16[t] = _mm256_add_epi16(s16[t], pair_dot(fmt, u, x));
                    }
                }
                for (int t = 0; t < NT; t++) s32[t] = _mm256_add_epi32(s32[t], _mm256_madd_epi16(s16[t], ones));
            }
            for (int t = 0; t < NT; t++)
                acc[t] = tern_kstep_v(kind, w->has_shift, alpha, gamma, zero, hsum_i32(s32[t]), gs[t][k],
                                      tern_kact_scale(a, t0 + t, k), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[(size_t)t * ldo] = tern_kfinish(acc[t], bias, r);
}

// RB = 8 rows: lane r of the result holds row r (see reduce4 in kern_x86.h).
INL __m256i reduce8(const __m256i *v) {
    __m256i lo = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    __m256i hi = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20), _mm256_permute2x128_si256(lo, hi, 0x31));
}

INL void row_block_gemv(int fmt, int RB, const tern_kmatrix *w, int r, const tern_qact *a, int t,
                        const float *bias, float *out) {
    const uint8_t *row[8], *sc[8];
    for (int i = 0; i < RB; i++) row[i] = w->data + (size_t)(r + i) * w->row_bytes, sc[i] = row[i] + w->code_bytes;
    const int nch = w->n_chunks;
    // The same bytes PF_BLOCKS row blocks ahead (kern_x86.h). Prefetches never
    // fault, even past the end.
    const size_t pf = (size_t)PF_BLOCKS * RB * w->row_bytes;
    // 2-bit fields: whole 4-chunk bundles when every group starts on a bundle
    // (the row's tail chunks take the per-chunk path); int16 widening then
    // happens on bundle boundaries, so the limit is rounded down to one.
    const int cpg = tern_kact_cpg(a, nch);
    const int bundled = (fmt == F_T2 || fmt == F_Q2) && (a->n_groups == 1 || cpg % 4 == 0);
    const int limit = bundled ? i16_limit(fmt) / 4 * 4 : i16_limit(fmt);
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *q = a->q + (size_t)t * a->stride, *qp = a->qp + (size_t)t * a->stride;
    const int32_t *gs = a->gsum + (size_t)t * a->n_groups;
    __m256 acc = _mm256_setzero_ps();
    __m256i m[8];
    for (int i = 0; i < RB; i++) m[i] = _mm256_setzero_si256();
    int c = 0;
    for (int g = 0; g < w->n_groups; g++) {
        int k0 = g, k1 = g + 1;
        if (split_acts(fmt)) tern_kact_range(w, a, g, &k0, &k1);
        group_params par;
        for (int k = k0; k < k1; k++) { // activation groups
            const int end = c + cpg < nch ? c + cpg : nch;
            __m256i s32[8];
            for (int i = 0; i < RB; i++) s32[i] = _mm256_setzero_si256();
            while (c < end) {
                const int stop = c + limit < end ? c + limit : end;
                __m256i s16[8];
                for (int i = 0; i < RB; i++) s16[i] = _mm256_setzero_si256();
                if (bundled) // 4 chunks per 32-byte load against the bundle-ordered activations
                    for (; c + 4 <= stop; c += 4) {
                        const __m256i *xp = (const __m256i *)(qp + (size_t)c * TERN_KCHUNK);
                        __m256i x0 = _mm256_loadu_si256(xp), x1 = _mm256_loadu_si256(xp + 1);
                        __m256i x2 = _mm256_loadu_si256(xp + 2), x3 = _mm256_loadu_si256(xp + 3);
                        for (int i = 0; i < RB; i++) {
                            _mm_prefetch((const char *)(row[i] + (size_t)c * 8 + pf), PF_HINT);
                            s16[i] = _mm256_add_epi16(s16[i], bundle_dot(row[i] + (size_t)c * 8, x0, x1, x2, x3));
                        }
                    }
                for (; c < stop; c++) {
                    __m256i x = _mm256_loadu_si256((const __m256i *)(q + (size_t)c * TERN_KCHUNK));
                    if (fmt == F_Q8 && !(c & 1))
                        for (int i = 0; i < RB; i++)
                            _mm_prefetch((const char *)(row[i] + (size_t)c * 32 + pf), PF_HINT);
                    for (int i = 0; i < RB; i++)
                        s16[i] = _mm256_add_epi16(s16[i], pair_dot(fmt, decode(fmt, row[i], nch, c, &m[i]), x));
                }
                for (int i = 0; i < RB; i++) s32[i] = _mm256_add_epi32(s32[i], _mm256_madd_epi16(s16[i], ones));
            }
            __m256i raw = RB == 8 ? reduce8(s32) : _mm256_castsi128_si256(reduce4(s32[0], s32[1], s32[2], s32[3]));
            if (k == k0) par = load_params(fmt, RB, w->has_shift, sc, w->n_groups, g);
            acc = step_lanes(fmt, w->has_shift, &par, raw, gs[k], tern_kact_scale(a, t, k), acc);
        }
    }
    float tmp[8] = {0};
    __m256 y = acc;
    if (bias) {
        memcpy(tmp, bias + r, (size_t)RB * sizeof(float)); // RB lanes only: never read past the bias
        y = _mm256_add_ps(acc, _mm256_loadu_ps(tmp));
    }
    _mm256_storeu_ps(tmp, y);
    memcpy(out, tmp, (size_t)RB * sizeof(float));
}

// tern-t2 GEMV, 4 rows, for groups of at most 128 codes (G <= 128, the
// default): a group's sum of field * q is then at most 128 * 2 * 127 = 32512 in
// magnitude (fields are <= 2: the .tern reader rejects a 3; the quantizer emits
// |q| <= 127), so it is exact in wrapping int16 arithmetic and needs no madd
// widening. The 8 sums of 4 rows x 2 groups are reduced by one hadd tree, and
// the 2 groups' epilogues share their scale gather and conversions: at G = 128
// the per-group work cost as much as the multiply-adds (docs/PERFORMANCE.md).
INL void t2_group_sums(const tern_kmatrix *w, const uint8_t *const *row, const int8_t *q, const int8_t *qp,
                       int g, size_t pf, __m256i *s) {
    int c = g * w->cpg, end = c + w->cpg < w->n_chunks ? c + w->cpg : w->n_chunks;
    if (end - c == 4) { // one bundle: 4 chunks per 32-byte load
        const __m256i *xp = (const __m256i *)(qp + (size_t)c * TERN_KCHUNK);
        __m256i x0 = _mm256_loadu_si256(xp), x1 = _mm256_loadu_si256(xp + 1);
        __m256i x2 = _mm256_loadu_si256(xp + 2), x3 = _mm256_loadu_si256(xp + 3);
        for (int i = 0; i < 4; i++) {
            _mm_prefetch((const char *)(row[i] + (size_t)c * 8 + pf), PF_HINT);
            s[i] = bundle_dot(row[i] + (size_t)c * 8, x0, x1, x2, x3);
        }
        return;
    }
    for (int i = 0; i < 4; i++) s[i] = _mm256_setzero_si256();
    for (; c < end; c++) { // a short last group
        __m256i x = _mm256_loadu_si256((const __m256i *)(q + (size_t)c * TERN_KCHUNK));
        for (int i = 0; i < 4; i++)
            s[i] = _mm256_add_epi16(s[i], _mm256_maddubs_epi16(expand2(row[i] + (size_t)c * 8), x));
    }
}

INL void gemv_t2_short_groups(const tern_kmatrix *w, int r, const tern_qact *a, int t, const float *bias,
                              float *out) {
    const uint8_t *row[4], *sc[8];
    for (int i = 0; i < 4; i++) row[i] = w->data + (size_t)(r + i) * w->row_bytes, sc[i] = row[i] + w->code_bytes;
    const int ng = w->n_groups;
    const size_t pf = (size_t)PF_BLOCKS * 4 * w->row_bytes;
    const int8_t *q = a->q + (size_t)t * a->stride, *qp = a->qp + (size_t)t * a->stride;
    const int32_t *gs = a->gsum + (size_t)t * a->n_groups;
    __m128 acc = _mm_setzero_ps();
    for (int g = 0; g < ng; g += 2) {
        const int two = g + 1 < ng;
        __m256i s[8];
        t2_group_sums(w, row, q, qp, g, pf, s);
        if (two) t2_group_sums(w, row, q, qp, g + 1, pf, s + 4);
        else s[4] = s[5] = s[6] = s[7] = _mm256_setzero_si256();
        // Per 128-bit lane: [s0 .. s7] each summed over its 8 int16 lanes there.
        __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(_mm256_hadd_epi16(s[0], s[1]), _mm256_hadd_epi16(s[2], s[3])),
                                      _mm256_hadd_epi16(_mm256_hadd_epi16(s[4], s[5]), _mm256_hadd_epi16(s[6], s[7])));
        __m128i sums = _mm_add_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        // Lanes 0-3: group g of rows r..r+3; lanes 4-7: group g+1.
        const int32_t gs0 = gs[g], gs1 = two ? gs[g + 1] : 0;
        __m256i raw = _mm256_sub_epi32(_mm256_cvtepi16_epi32(sums),
                                       _mm256_set_m128i(_mm_set1_epi32(gs1), _mm_set1_epi32(gs0)));
        __m256 d = _mm256_cvtepi32_ps(raw);
        for (int i = 0; i < 4; i++) sc[4 + i] = sc[i] + (two ? 2 : 0); // group g+1's halfs are 2 bytes on
        const __m256 vsx = _mm256_set_m128(_mm_set1_ps(two ? tern_kact_scale(a, t, g + 1) : 0.0f),
                                          _mm_set1_ps(tern_kact_scale(a, t, g)));
        __m256 alpha = _mm256_mul_ps(_mm256_cvtph_ps(gather_u16(sc, 8, (size_t)g)), vsx);
        __m256 gamma = _mm256_setzero_ps();
        if (w->has_shift) gamma = _mm256_mul_ps(_mm256_cvtph_ps(gather_u16(sc, 8, (size_t)ng + g)), vsx);
        acc = _mm_fmadd_ps(_mm256_castps256_ps128(alpha), _mm256_castps256_ps128(d), acc);
        if (w->has_shift) acc = _mm_fmadd_ps(_mm256_castps256_ps128(gamma), _mm_set1_ps((float)gs0), acc);
        if (two) {
            acc = _mm_fmadd_ps(_mm256_extractf128_ps(alpha, 1), _mm256_extractf128_ps(d, 1), acc);
            if (w->has_shift) acc = _mm_fmadd_ps(_mm256_extractf128_ps(gamma, 1), _mm_set1_ps((float)gs1), acc);
        }
    }
    _mm_storeu_ps(out, bias ? _mm_add_ps(acc, _mm_loadu_ps(bias + r)) : acc);
}

// tern-t2 GEMM, one row x 4 tokens, groups of at most 128 codes: the same
// int16 argument as gemv_t2_short_groups, with 4 tokens in place of 4 rows. A
// bundle is decoded once for the 4 tokens.
INL void t2_token_group_sums(const uint8_t *row, const int8_t *const *q, const int8_t *const *qp, int c, int end,
                             __m256i *s) {
    if (end - c == 4) {
        const __m256i m3 = _mm256_set1_epi8(3);
        __m256i v = _mm256_loadu_si256((const __m256i *)(row + (size_t)c * 8));
        __m256i u0 = _mm256_and_si256(v, m3), u1 = _mm256_and_si256(_mm256_srli_epi16(v, 2), m3);
        __m256i u2 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m3), u3 = _mm256_and_si256(_mm256_srli_epi16(v, 6), m3);
        for (int t = 0; t < 4; t++) {
            const __m256i *xp = (const __m256i *)(qp[t] + (size_t)c * TERN_KCHUNK);
            __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(u0, _mm256_loadu_si256(xp)),
                                           _mm256_maddubs_epi16(u1, _mm256_loadu_si256(xp + 1)));
            __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(u2, _mm256_loadu_si256(xp + 2)),
                                           _mm256_maddubs_epi16(u3, _mm256_loadu_si256(xp + 3)));
            s[t] = _mm256_add_epi16(p01, p23);
        }
        return;
    }
    for (int t = 0; t < 4; t++) s[t] = _mm256_setzero_si256();
    for (; c < end; c++) { // a short last group
        __m256i u = expand2(row + (size_t)c * 8);
        for (int t = 0; t < 4; t++)
            s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)(q[t] + (size_t)c * TERN_KCHUNK))));
    }
}

INL void gemm_t2_short_groups(const tern_kmatrix *w, int r, const tern_qact *a, int t0, const float *bias,
                              float *out, size_t ldo) {
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
    for (int g = 0; g < ng; g += 2) {
        const int two = g + 1 < ng;
        __m256i s[8];
        for (int h = 0; h < 2; h++) {
            int c = (g + h) * 4, end = c + 4 < nch ? c + 4 : nch;
            if (h == 0 || two) t2_token_group_sums(row, q, qp, c, end, s + 4 * h);
            else s[4] = s[5] = s[6] = s[7] = _mm256_setzero_si256();
        }
        __m256i hs = _mm256_hadd_epi16(_mm256_hadd_epi16(_mm256_hadd_epi16(s[0], s[1]), _mm256_hadd_epi16(s[2], s[3])),
                                       _mm256_hadd_epi16(_mm256_hadd_epi16(s[4], s[5]), _mm256_hadd_epi16(s[6], s[7])));
        __m128i sums = _mm_add_epi16(_mm256_castsi256_si128(hs), _mm256_extracti128_si256(hs, 1));
        // Lanes 0-3: group g of tokens t0..t0+3; lanes 4-7: group g+1.
        const int g1 = two ? g + 1 : g;
        __m256i gsv = _mm256_setr_epi32(gs[0][g], gs[1][g], gs[2][g], gs[3][g], gs[0][g1], gs[1][g1], gs[2][g1],
                                        gs[3][g1]);
        __m256 d = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi16_epi32(sums), gsv));
        __m256 gsf = _mm256_cvtepi32_ps(gsv);
        // Activation scales of the 4 tokens for group g (lanes 0-3) and g1 (4-7).
        __m128 sx0 = _mm_loadu_ps(sx + (size_t)g * a->n_max), sx1 = _mm_loadu_ps(sx + (size_t)g1 * a->n_max);
        acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(_cvtsh_ss(load_u16(sc, g))), sx0), _mm256_castps256_ps128(d), acc);
        if (w->has_shift)
            acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(_cvtsh_ss(load_u16(sc, ng + g))), sx0), _mm256_castps256_ps128(gsf), acc);
        if (two) {
            acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(_cvtsh_ss(load_u16(sc, g + 1))), sx1), _mm256_extractf128_ps(d, 1), acc);
            if (w->has_shift)
                acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(_cvtsh_ss(load_u16(sc, ng + g + 1))), sx1),
                                   _mm256_extractf128_ps(gsf, 1), acc);
        }
    }
    float y[4];
    _mm_storeu_ps(y, bias ? _mm_add_ps(acc, _mm_set1_ps(bias[r])) : acc);
    for (int t = 0; t < 4; t++) out[(size_t)t * ldo] = y[t];
}

INL void rows(int fmt, const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t0, int nt,
              const float *bias, float *out, size_t ldo) {
    int r = r0;
    if (nt == 1) {
        const int RB = 4;
        if (fmt == F_T2 && w->cpg == 4 && w->n_groups > 1)
            for (; r + RB <= r1; r += RB) gemv_t2_short_groups(w, r, a, t0, bias, out + (r - r0));
        for (; r + RB <= r1; r += RB) row_block_gemv(fmt, RB, w, r, a, t0, bias, out + (r - r0));
        if (RB == 8 && r + 4 <= r1) row_block_gemv(fmt, 4, w, r, a, t0, bias, out + (r - r0)), r += 4;
    }
    for (; r < r1; r++) {
        float *o = out + (r - r0);
        int t = t0;
        if (fmt == F_T2 && w->cpg == 4 && w->n_groups > 1)
            for (; t + 4 <= t0 + nt; t += 4) gemm_t2_short_groups(w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo);
        for (; t + 4 <= t0 + nt; t += 4) row_tokens(fmt, 4, w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo);
        switch (t0 + nt - t) {
        case 3: row_tokens(fmt, 3, w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo); break;
        case 2: row_tokens(fmt, 2, w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo); break;
        case 1: row_tokens(fmt, 1, w, r, a, t, bias, o + (size_t)(t - t0) * ldo, ldo); break;
        default: break;
        }
    }
}

#define ENTRY(name, fmt) \
    TGT TERN_KDECL(name) { rows(fmt, w, r0, r1, a, t0, nt, bias, out, ldo); }
ENTRY(tern_kdot_t2_avx2, F_T2)
ENTRY(tern_kdot_t16_avx2, F_T16)
ENTRY(tern_kdot_q8_avx2, F_Q8)
ENTRY(tern_kdot_q4_avx2, F_Q4)
ENTRY(tern_kdot_q3_avx2, F_Q3)
ENTRY(tern_kdot_q2_avx2, F_Q2)

// Row r's fields as bytes u[0 .. 32 * n_chunks), chunk after chunk (the
// AVX-512 panel GEMM decodes rows with this before it interleaves them).
INL void decode_row(int fmt, const tern_kmatrix *w, int r, uint8_t *u) {
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    __m256i m = _mm256_setzero_si256();
    for (int c = 0; c < w->n_chunks; c++)
        _mm256_storeu_si256((__m256i *)(u + (size_t)c * TERN_KCHUNK), decode(fmt, row, w->n_chunks, c, &m));
}

TGT void tern_kdecode_row_avx2(const tern_kmatrix *w, int r, uint8_t *u) {
    switch (w->fmt->id) {
    case TERN_KFMT_T2: decode_row(F_T2, w, r, u); break;
    case TERN_KFMT_T1_6: decode_row(F_T16, w, r, u); break;
    case TERN_KFMT_Q8: decode_row(F_Q8, w, r, u); break;
    case TERN_KFMT_Q4G: decode_row(F_Q4, w, r, u); break;
    case TERN_KFMT_Q3G: decode_row(F_Q3, w, r, u); break;
    default: decode_row(F_Q2, w, r, u); break;
    }
}

// ---- activation quantizer: same formula and operations as the scalar one ----

INL float hmax_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// round-half-even(x / s) clamped to [-127, 127], as int32 lanes.
INL __m256i quant8(const float *x, __m256 vs) {
    __m256 v = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    return _mm256_cvtps_epi32(v);
}

// Quantizes x[c0, c1) with its own absmax scale (returned).
INL float quantize_group(const float *x, int c0, int c1, int8_t *q) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 vmax = _mm256_setzero_ps();
    int i = c0;
    for (; i + 8 <= c1; i += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(x + i), absmask));
    float amax = hmax_ps(vmax);
    for (; i < c1; i++) amax = fmaxf(amax, fabsf(x[i]));
    float s = amax / 127.0f;
    i = c0;
    if (s > 0.0f) {
        const __m256 vs = _mm256_set1_ps(s);
        const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (; i + 32 <= c1; i += 32) {
            __m256i ab = _mm256_packs_epi32(quant8(x + i, vs), quant8(x + i + 8, vs));
            __m256i cd = _mm256_packs_epi32(quant8(x + i + 16, vs), quant8(x + i + 24, vs));
            // packs work per 128-bit lane; the permute restores element order.
            __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), perm);
            _mm256_storeu_si256((__m256i *)(q + i), b);
        }
    }
    for (; i < c1; i++) {
        float v = s > 0.0f ? nearbyintf(x[i] / s) : 0.0f;
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        q[i] = (int8_t)v;
    }
    return s;
}

TGT static void quantize_token(const tern_qact *a, const float *x, int8_t *q, float *scale, int32_t *gs) {
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
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int g = 0, c = 0; g < a->n_groups; g++) {
        __m256i acc = _mm256_setzero_si256();
        for (int end = c + cpg < nch ? c + cpg : nch; c < end; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(q + (size_t)c * TERN_KCHUNK));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16));
        }
        gs[g] = hsum_i32(acc);
    }
}

TGT void tern_quantize_act_avx2(tern_qact *a, const float *x, int n) {
    for (int t = 0; t < n; t++)
    {
        quantize_token(a, x + (size_t)t * a->cols, a->q + (size_t)t * a->stride, a->scale + t,
                       a->gsum + (size_t)t * a->n_groups);
        tern_kpermute_token(a, t);
    }
    a->n = n;
}

#endif
