#include "nn/ops.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define TERN_OPS_AVX2 1
#endif

#include "core/error.h"
#include "core/mem.h"
#include "io/model.h"
#include "nn/matmul.h"

// Column chunk for loops where threads own column ranges and walk rows in
// order (deterministic reductions over tokens without atomics).
#define COL_CHUNK 64
// Below this much work a loop stays on one thread: a fork/join costs more, and
// on a loaded machine spinning threads make small regions far slower. The
// split never changes results (one owner per output element, fixed order).
#define PAR_MIN (1 << 16)

// ---- expf over arrays ----

#ifdef TERN_OPS_AVX2
// glibc's expf (sysdeps/ieee754/flt-32/e_expf.c, the FMA build that x86-64
// dispatches to on CPUs with AVX2+FMA), four lanes at a time in double:
// x·32/ln2 = k + r, 2^(k/32) from a table, 2^(r/32) by a cubic, with the same
// constants and the same FMA steps, so every lane rounds as glibc's expf does.
// tab[i] = bits(2^(i/32)) − (i << 47).
static const uint64_t expf_tab[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

static inline __m128 expf4(__m128 x) {
    const __m256d inv_ln2_n = _mm256_set1_pd(0x1.71547652b82fep+5), shift = _mm256_set1_pd(0x1.8p+52);
    const __m256d c0 = _mm256_set1_pd(0x1.c6af84b912394p-20), c1 = _mm256_set1_pd(0x1.ebfce50fac4f3p-13);
    const __m256d c2 = _mm256_set1_pd(0x1.62e42ff0c52d6p-6), one = _mm256_set1_pd(1.0);
    __m256d xd = _mm256_cvtps_pd(x);
    __m256d kd = _mm256_fmadd_pd(inv_ln2_n, xd, shift); // round(x·N/ln2) in the low bits
    __m256i ki = _mm256_castpd_si256(kd);
    kd = _mm256_sub_pd(kd, shift);
    __m256d r = _mm256_fmsub_pd(inv_ln2_n, xd, kd);
    // Table lookups by scalar loads: faster than a gather on Zen.
    __m128i lo = _mm256_castsi256_si128(ki), hi = _mm256_extracti128_si256(ki, 1);
    __m256i t = _mm256_set_epi64x((long long)expf_tab[_mm_extract_epi64(hi, 1) & 31],
                                  (long long)expf_tab[_mm_cvtsi128_si64(hi) & 31],
                                  (long long)expf_tab[_mm_extract_epi64(lo, 1) & 31],
                                  (long long)expf_tab[_mm_cvtsi128_si64(lo) & 31]);
    __m256d s = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64(ki, 47)));
    __m256d z = _mm256_fmadd_pd(c0, r, c1), r2 = _mm256_mul_pd(r, r);
    __m256d y = _mm256_fmadd_pd(c2, r, one);
    y = _mm256_fmadd_pd(z, r2, y);
    return _mm256_cvtpd_ps(_mm256_mul_pd(y, s));
}

// expf of 8 lanes: glibc's main path, which it takes for -103.97 <= x <= 88.72
// (below, expf is +0). Returns 0 when a lane is NaN or overflows (left to expf).
static inline int expf8(__m256 x, __m256 *y) {
    const __m256 lo = _mm256_set1_ps(-0x1.9fe368p6f), hi = _mm256_set1_ps(0x1.62e42ep6f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 ok = _mm256_or_ps(under, _mm256_and_ps(_mm256_cmp_ps(x, lo, _CMP_GE_OQ), _mm256_cmp_ps(x, hi, _CMP_LE_OQ)));
    if (_mm256_movemask_ps(ok) != 0xff) return 0;
    __m256 e = _mm256_set_m128(expf4(_mm256_extractf128_ps(x, 1)), expf4(_mm256_castps256_ps128(x)));
    *y = _mm256_andnot_ps(under, e);
    return 1;
}

// Up to 8 values of x through expf8 (zero-padded), else expf.
static inline void expf_tail(float *y, const float *x, int n) {
    float t[8] = {0};
    memcpy(t, x, (size_t)n * sizeof(float));
    __m256 e;
    if (expf8(_mm256_loadu_ps(t), &e)) {
        _mm256_storeu_ps(t, e);
        memcpy(y, t, (size_t)n * sizeof(float));
    } else {
        for (int j = 0; j < n; j++) y[j] = expf(x[j]);
    }
}
#endif

void tern_expf_array(float *y, const float *x, int64_t n) {
    int64_t i = 0;
#ifdef TERN_OPS_AVX2
    for (; i + 8 <= n; i += 8) {
        __m256 e;
        if (expf8(_mm256_loadu_ps(x + i), &e)) _mm256_storeu_ps(y + i, e);
        else
            for (int j = 0; j < 8; j++) y[i + j] = expf(x[i + j]);
    }
    if (i < n) expf_tail(y + i, x + i, (int)(n - i));
#else
    for (; i < n; i++) y[i] = expf(x[i]);
#endif
}

void tern_embedding_forward(float *out, const float *embd, const int *tokens, int n, int dim) {
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * dim, embd + (size_t)tokens[i] * dim, (size_t)dim * 4);
}

// Σ a[i] b[i] in double over 8 lanes (vectorizes; a fixed order for a given n).
static double dot_f64(const float *a, const float *b, int n) {
    double acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)a[i + j] * b[i + j];
    for (; i < n; i++) acc[i & 7] += (double)a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// 1/rms of one row. The sum of squares runs in 8 double lanes: a single
// running double sum was a 4-cycle add chain per element, ~0.7 us per
// 576-wide row, 2-3% of a generated ternary token.
static float rms_inv(const float *x, int dim, float eps) { return (float)(1.0 / sqrt(dot_f64(x, x, dim) / dim + eps)); }

static void rmsnorm_row(float *o, const float *x, const float *w, int dim, float eps) {
    float scale = rms_inv(x, dim, eps);
    for (int c = 0; c < dim; c++) o[c] = x[c] * scale * w[c];
}

// Ops below PAR_MIN run their loop directly: an OpenMP region whose `if` is
// false still costs 0.2 us here (0.5 us inside another region, where the
// one-region generation step calls them), more than a 576-wide norm.
void tern_rmsnorm_forward(float *out, const float *in, const float *w, int n, int dim, float eps) {
    if ((int64_t)n * dim < PAR_MIN) {
        for (int i = 0; i < n; i++) rmsnorm_row(out + (size_t)i * dim, in + (size_t)i * dim, w, dim, eps);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) rmsnorm_row(out + (size_t)i * dim, in + (size_t)i * dim, w, dim, eps);
}

// LLaMA 3 scaling leaves high frequencies alone, divides low ones by `factor`,
// and interpolates smoothly in between (by wavelength against the original context).
static double llama3_scaled(double inv_freq, float factor, float low, float high, int orig_max) {
    double wavelen = 2 * M_PI / inv_freq;
    double low_wavelen = orig_max / low, high_wavelen = orig_max / high;
    if (wavelen < high_wavelen) return inv_freq;
    if (wavelen > low_wavelen) return inv_freq / factor;
    double smooth = (orig_max / wavelen - low) / (high - low);
    return (1 - smooth) * inv_freq / factor + smooth * inv_freq;
}

int tern_rope_init(tern_rope *r, int head_dim, int max_seq, float theta, int scaling, float factor,
                   float low_freq_factor, float high_freq_factor, int orig_max_seq) {
    r->max_seq = max_seq;
    r->half = head_dim / 2;
    size_t count = (size_t)max_seq * r->half;
    r->cos = tern_alloc(count * sizeof(float));
    r->sin = tern_alloc(count * sizeof(float));
    if (!r->cos || !r->sin) {
        tern_rope_free(r);
        return -1;
    }
    for (int i = 0; i < r->half; i++) {
        // Same float32 inverse frequency as the PyTorch reference implementations.
        float inv_freq_f = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
        double inv_freq = inv_freq_f;
        if (scaling == TERN_ROPE_SCALING_LINEAR) inv_freq /= factor;
        else if (scaling == TERN_ROPE_SCALING_LLAMA3)
            inv_freq = llama3_scaled(inv_freq, factor, low_freq_factor, high_freq_factor, orig_max_seq);
        float f = (float)inv_freq;
        for (int p = 0; p < max_seq; p++) {
            float angle = (float)p * f;
            r->cos[(size_t)p * r->half + i] = cosf(angle);
            r->sin[(size_t)p * r->half + i] = sinf(angle);
        }
    }
    return 0;
}

void tern_rope_free(tern_rope *r) {
    tern_free(r->cos);
    tern_free(r->sin);
    r->cos = r->sin = NULL;
}

// Rotates each adjacent pair (2i, 2i+1) of x[N, n_heads, head_dim] by the angle
// of its position; sign -1 rotates backwards (the transpose, for the gradient).
static void rope_rotate(float *x, const tern_rope *r, const int *pos, int n, int n_heads, float sign) {
    int hd = 2 * r->half;
#pragma omp parallel for schedule(static) if ((int64_t)n * n_heads * hd >= PAR_MIN)
    for (int t = 0; t < n; t++) {
        const float *c = r->cos + (size_t)pos[t] * r->half, *s = r->sin + (size_t)pos[t] * r->half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * hd;
            for (int i = 0; i < r->half; i++) {
                float a = v[2 * i], b = v[2 * i + 1], si = sign * s[i];
                v[2 * i] = a * c[i] - b * si;
                v[2 * i + 1] = a * si + b * c[i];
            }
        }
    }
}

void tern_rope_forward(float *x, const tern_rope *r, const int *pos, int n, int n_heads) {
    rope_rotate(x, r, pos, n, n_heads, 1.0f);
}

void tern_rope_columns(float *x, const tern_rope *r, int pos, int c0, int c1) {
    const float *c = r->cos + (size_t)pos * r->half, *s = r->sin + (size_t)pos * r->half;
    for (int k = c0; k < c1; k += 2) {
        int i = k / 2 % r->half;
        float a = x[k], b = x[k + 1], si = 1.0f * s[i]; // rope_rotate's sign, exactly
        x[k] = a * c[i] - b * si;
        x[k + 1] = a * si + b * c[i];
    }
}

// Elementwise ops that need expf take it for blocks of this many elements.
#define EXP_BLOCK 256

// SwiGLU of the block of (at most EXP_BLOCK) elements from i0 < count.
static void swiglu_block(float *out, const float *gate, const float *up, int64_t i0, int64_t count) {
    int64_t len = count - i0 < EXP_BLOCK ? count - i0 : EXP_BLOCK;
    float e[EXP_BLOCK];
    e[0] = 0; // (len >= 1; GCC 12 cannot tell the array is written before expf reads it)
    for (int64_t j = 0; j < len; j++) e[j] = -gate[i0 + j];
    tern_expf_array(e, e, len);
    for (int64_t j = 0; j < len; j++) {
        float g = gate[i0 + j];
        out[i0 + j] = g / (1.0f + e[j]) * up[i0 + j];
    }
}

void tern_swiglu_forward(float *out, const float *gate, const float *up, int64_t count) {
    int64_t blocks = (count + EXP_BLOCK - 1) / EXP_BLOCK;
    if (count < PAR_MIN) {
        for (int64_t bk = 0; bk < blocks; bk++) swiglu_block(out, gate, up, bk * EXP_BLOCK, count);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t bk = 0; bk < blocks; bk++) swiglu_block(out, gate, up, bk * EXP_BLOCK, count);
}

static inline float relu2_glu(float gate, float up) {
    float g = gate > 0 ? gate : 0;
    return g * g * up;
}

void tern_relu2_glu_forward(float *out, const float *gate, const float *up, int64_t count) {
    if (count < PAR_MIN) {
        for (int64_t i = 0; i < count; i++) out[i] = relu2_glu(gate[i], up[i]);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) out[i] = relu2_glu(gate[i], up[i]);
}

static void act_quant_row(float *xt, int dim) {
    float amax = 0;
    for (int i = 0; i < dim; i++) amax = fmaxf(amax, fabsf(xt[i]));
    float s = 127.0f / fmaxf(amax, 1e-5f); // torch's float ops: multiply, round half even, divide
    for (int i = 0; i < dim; i++) xt[i] = fminf(fmaxf(nearbyintf(xt[i] * s), -128.0f), 127.0f) / s;
}

void tern_act_quant_int8_forward(float *x, int n, int dim) {
    if ((int64_t)n * dim < PAR_MIN) {
        for (int t = 0; t < n; t++) act_quant_row(x + (size_t)t * dim, dim);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n; t++) act_quant_row(x + (size_t)t * dim, dim);
}

void tern_residual_forward(float *x, const float *y, int64_t count) {
#pragma omp parallel for schedule(static) if (count >= 4 * PAR_MIN)
    for (int64_t i = 0; i < count; i++) x[i] += y[i];
}

static float max_f32(const float *x, int n) {
    float m[8];
    for (int j = 0; j < 8; j++) m[j] = x[0];
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    float max = m[0];
    for (int j = 1; j < 8; j++) max = m[j] > max ? m[j] : max;
    return max;
}

// x[i] = expf(x[i] - max) in place; returns Σ x[i] in double over 8 lanes (lane i % 8).
static double exp_shifted_sum(float *x, int n, float max) {
    int i = 0;
    double acc[8] = {0};
#ifdef TERN_OPS_AVX2
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    __m256 m = _mm256_set1_ps(max);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_sub_ps(_mm256_loadu_ps(x + i), m), e;
        if (!expf8(v, &e)) {
            float t[8];
            _mm256_storeu_ps(t, v);
            for (int j = 0; j < 8; j++) t[j] = expf(t[j]);
            e = _mm256_loadu_ps(t);
        }
        _mm256_storeu_ps(x + i, e);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    _mm256_storeu_pd(acc, lo);
    _mm256_storeu_pd(acc + 4, hi);
    if (i < n) {
        for (int j = i; j < n; j++) x[j] -= max;
        expf_tail(x + i, x + i, n - i);
        for (; i < n; i++) acc[i & 7] += x[i];
    }
#endif
    for (; i < n; i++) acc[i & 7] += x[i] = expf(x[i] - max);
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

void tern_softmax(float *x, int n) {
    float inv = (float)(1.0 / exp_shifted_sum(x, n, max_f32(x, n)));
    for (int i = 0; i < n; i++) x[i] *= inv;
}

// ---- Training ----


void tern_embedding_backward(float *dembd, const float *dout, const int *tokens, int n, int dim) {
    int chunks = (dim + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static) if ((int64_t)n * dim >= PAR_MIN)
    for (int ch = 0; ch < chunks; ch++) {
        int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < dim ? c0 + COL_CHUNK : dim;
        for (int i = 0; i < n; i++) {
            float *d = dembd + (size_t)tokens[i] * dim;
            const float *g = dout + (size_t)i * dim;
            for (int c = c0; c < c1; c++) d[c] += g[c];
        }
    }
}

void tern_rmsnorm_forward_train(float *out, float *rstd, const float *in, const float *w, int n, int dim,
                                float eps) {
    // Same arithmetic as tern_rmsnorm_forward, so training and inference agree bit for bit.
#pragma omp parallel for schedule(static) if ((int64_t)n * dim >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * dim;
        float *o = out + (size_t)i * dim;
        float scale = rms_inv(x, dim, eps);
        rstd[i] = scale;
        for (int c = 0; c < dim; c++) o[c] = x[c] * scale * w[c];
    }
}

// y_c = x_c r w_c with r = (Σx²/C + eps)^-1/2 and dr/dx_j = -r³ x_j / C, so
// dx_j = r w_j dy_j - (r³/C) x_j Σ_c dy_c w_c x_c and dw_c = Σ_n dy_c x_c r.
void tern_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *in, const float *w,
                           const float *rstd, int n, int dim) {
#pragma omp parallel for schedule(static) if ((int64_t)n * dim >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * dim, *dy = dout + (size_t)i * dim;
        float *d = dx + (size_t)i * dim;
        double dot = 0;
        for (int c = 0; c < dim; c++) dot += (double)dy[c] * w[c] * x[c];
        double r = rstd[i];
        float coef = (float)(r * r * r * dot / dim);
        float rf = rstd[i];
        for (int c = 0; c < dim; c++) d[c] += rf * w[c] * dy[c] - coef * x[c];
    }
    if (!dw) return;
    int chunks = (dim + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static) if ((int64_t)n * dim >= PAR_MIN)
    for (int ch = 0; ch < chunks; ch++) {
        int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < dim ? c0 + COL_CHUNK : dim;
        for (int i = 0; i < n; i++) {
            const float *x = in + (size_t)i * dim, *dy = dout + (size_t)i * dim;
            float r = rstd[i];
            for (int c = c0; c < c1; c++) dw[c] += dy[c] * x[c] * r;
        }
    }
}

void tern_bias_backward(float *db, const float *dy, int n, int out_dim) {
    int chunks = (out_dim + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static) if ((int64_t)n * out_dim >= PAR_MIN)
    for (int ch = 0; ch < chunks; ch++) {
        int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < out_dim ? c0 + COL_CHUNK : out_dim;
        for (int i = 0; i < n; i++)
            for (int c = c0; c < c1; c++) db[c] += dy[(size_t)i * out_dim + c];
    }
}

void tern_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                          int n, int in_dim, int out_dim, int accumulate_dx) {
    if (dx) tern_matmul_dx_f32(dx, dy, w, n, in_dim, out_dim, accumulate_dx);
    if (dw) tern_matmul_dw_f32(dw, dy, x, n, in_dim, out_dim);
    if (db) tern_bias_backward(db, dy, n, out_dim);
}

void tern_rope_backward(float *dx, const tern_rope *r, const int *pos, int n, int n_heads) {
    rope_rotate(dx, r, pos, n, n_heads, -1.0f);
}

// silu(g) = g σ(g), silu'(g) = σ(g) (1 + g (1 - σ(g))).
void tern_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                          int64_t count) {
    int64_t blocks = (count + EXP_BLOCK - 1) / EXP_BLOCK;
#pragma omp parallel for schedule(static) if (count >= PAR_MIN)
    for (int64_t bk = 0; bk < blocks; bk++) {
        int64_t i0 = bk * EXP_BLOCK, len = count - i0 < EXP_BLOCK ? count - i0 : EXP_BLOCK;
        float e[EXP_BLOCK];
        for (int64_t j = 0; j < len; j++) e[j] = -gate[i0 + j];
        tern_expf_array(e, e, len);
        for (int64_t j = 0; j < len; j++) {
            int64_t i = i0 + j;
            float g = gate[i], d = dout[i];
            float sig = 1.0f / (1.0f + e[j]);
            dup[i] = d * g * sig;
            dgate[i] = d * up[i] * sig * (1.0f + g * (1.0f - sig));
        }
    }
}

void tern_residual_backward(float *da, float *db, const float *dout, int64_t count) {
    if (da) tern_residual_forward(da, dout, count);
    if (db) tern_residual_forward(db, dout, count);
}

// Attention runs per head as strided products (tern_gemm_serial_f32) over
// blocks of ATT_ROWS query rows: block [r0, r1) only needs keys s < r1, so the
// products skip most of the masked upper triangle. One head (forward) or one
// KV head with its group (backward) is one task on one thread, so the results
// do not depend on the thread count.
#define ATT_ROWS 64

void tern_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B,
                            int T, int n_heads, int n_kv_heads, int head_dim) {
    int hd = head_dim, H = n_heads, KVH = n_kv_heads, group = H / KVH, ldq = H * hd, ldk = KVH * hd;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t work = (int64_t)B * H * T * T * hd; // ~ multiply-adds of one pass
    tern_gemm_serial_prepare();
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (work >= PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *Q = q + (size_t)b * T * ldq + (size_t)h * hd;
            const float *K = k + (size_t)b * T * ldk + (size_t)(h / group) * hd;
            const float *V = v + (size_t)b * T * ldk + (size_t)(h / group) * hd;
            float *P = att + ((size_t)b * H + h) * T * T, *O = out + (size_t)b * T * ldq + (size_t)h * hd;
            for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
                int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T;
                float *Pb = P + (size_t)r0 * T;
                // Scores of rows [r0, r1) against keys [0, r1), scaled; softmax over s <= t.
                tern_gemm_serial_f32(0, 1, r1 - r0, r1, hd, scale, Q + (size_t)r0 * ldq, ldq, K, ldk, 0.0f, Pb, T);
                for (int t = r0; t < r1; t++) {
                    float *p = P + (size_t)t * T;
                    tern_softmax(p, t + 1);
                    memset(p + t + 1, 0, (size_t)(T - t - 1) * sizeof(float));
                }
                tern_gemm_serial_f32(0, 0, r1 - r0, hd, r1, 1.0f, Pb, T, V, ldk, 0.0f, O + (size_t)r0 * ldq, ldq);
            }
        }
}

// Per KV head and its group of query heads, per block of query rows:
// dP = dout · Vᵀ, the softmax backward dS = P ∘ (dP − Σ_s P dP) · scale (into
// datt), dq = dS · K, and dk += dSᵀ · Q, dv += Pᵀ · dout summed over the
// group's heads in order.
void tern_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout, const float *att,
                             const float *q, const float *k, const float *v, int B, int T, int n_heads,
                             int n_kv_heads, int head_dim) {
    int hd = head_dim, H = n_heads, KVH = n_kv_heads, group = H / KVH, ldq = H * hd, ldk = KVH * hd;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t work = (int64_t)B * H * T * T * hd; // ~ multiply-adds of one pass
    tern_gemm_serial_prepare();
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (work >= PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int kvh = 0; kvh < KVH; kvh++) {
            size_t kv_off = (size_t)b * T * ldk + (size_t)kvh * hd;
            const float *K = k + kv_off, *V = v + kv_off;
            float *gK = dk + kv_off, *gV = dv + kv_off;
            for (int s = 0; s < T; s++) {
                memset(gK + (size_t)s * ldk, 0, (size_t)hd * sizeof(float));
                memset(gV + (size_t)s * ldk, 0, (size_t)hd * sizeof(float));
            }
            for (int h = kvh * group; h < (kvh + 1) * group; h++) {
                size_t q_off = (size_t)b * T * ldq + (size_t)h * hd;
                const float *Q = q + q_off, *dO = dout + q_off, *P = att + ((size_t)b * H + h) * T * T;
                float *gQ = dq + q_off, *dS = datt + ((size_t)b * H + h) * T * T;
                for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
                    int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T, m = r1 - r0;
                    const float *Pb = P + (size_t)r0 * T;
                    float *dSb = dS + (size_t)r0 * T;
                    tern_gemm_serial_f32(0, 1, m, r1, hd, 1.0f, dO + (size_t)r0 * ldq, ldq, V, ldk, 0.0f, dSb, T);
                    for (int t = r0; t < r1; t++) {
                        const float *p = P + (size_t)t * T;
                        float *ds = dS + (size_t)t * T;
                        float sumf = (float)dot_f64(p, ds, t + 1);
                        for (int s = 0; s <= t; s++) ds[s] = p[s] * (ds[s] - sumf) * scale;
                        memset(ds + t + 1, 0, (size_t)(r1 - t - 1) * sizeof(float));
                    }
                    tern_gemm_serial_f32(0, 0, m, hd, r1, 1.0f, dSb, T, K, ldk, 0.0f, gQ + (size_t)r0 * ldq, ldq);
                    tern_gemm_serial_f32(1, 0, r1, hd, m, 1.0f, dSb, T, Q + (size_t)r0 * ldq, ldq, 1.0f, gK, ldk);
                    tern_gemm_serial_f32(1, 0, r1, hd, m, 1.0f, Pb, T, dO + (size_t)r0 * ldq, ldq, 1.0f, gV, ldk);
                }
            }
        }
}
