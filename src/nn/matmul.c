#include "nn/matmul.h"

#include <stddef.h>

#include "core/threads.h"
#ifdef TERN_HAVE_OPENBLAS
#include <cblas.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define TERN_F32_AVX2 1
#endif

#ifdef TERN_F32_AVX2
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

static inline float dot_f32(const float *a, const float *b, int n) {
    int i = 0;
    float sum = 0;
#ifdef TERN_F32_AVX2
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    sum = hsum256(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
#endif
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

void tern_gemv_f32(float *out, const float *in, const float *w, const float *bias, int in_dim, int out_dim) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < out_dim; r++) {
        float s = dot_f32(w + (size_t)r * in_dim, in, in_dim);
        out[r] = bias ? s + bias[r] : s;
    }
}

void tern_gemm_f32_reference(float *out, const float *in, const float *w, const float *bias, int n,
                             int in_dim, int out_dim) {
    for (int t = 0; t < n; t++)
        for (int r = 0; r < out_dim; r++) {
            double s = bias ? bias[r] : 0;
            for (int k = 0; k < in_dim; k++) s += (double)in[(size_t)t * in_dim + k] * w[(size_t)r * in_dim + k];
            out[(size_t)t * out_dim + r] = (float)s;
        }
}

// 4 tokens x 4 rows per micro-tile: each step loads 8 vectors and issues 16
// FMAs, so the weight rows are read from cache once per 4 tokens.
#define TILE_T 4
#define TILE_R 4

static void tile_4x4(float *out, const float *in, const float *w, const float *bias, int in_dim, int out_dim,
                     int t0, int r0) {
#ifdef TERN_F32_AVX2
    __m256 acc[TILE_T][TILE_R];
    for (int a = 0; a < TILE_T; a++)
        for (int b = 0; b < TILE_R; b++) acc[a][b] = _mm256_setzero_ps();
    const float *x[TILE_T], *wr[TILE_R];
    for (int a = 0; a < TILE_T; a++) x[a] = in + (size_t)(t0 + a) * in_dim;
    for (int b = 0; b < TILE_R; b++) wr[b] = w + (size_t)(r0 + b) * in_dim;
    int k = 0;
    for (; k + 8 <= in_dim; k += 8) {
        __m256 wv[TILE_R];
        for (int b = 0; b < TILE_R; b++) wv[b] = _mm256_loadu_ps(wr[b] + k);
        for (int a = 0; a < TILE_T; a++) {
            __m256 xv = _mm256_loadu_ps(x[a] + k);
            for (int b = 0; b < TILE_R; b++) acc[a][b] = _mm256_fmadd_ps(xv, wv[b], acc[a][b]);
        }
    }
    for (int a = 0; a < TILE_T; a++)
        for (int b = 0; b < TILE_R; b++) {
            float s = hsum256(acc[a][b]);
            for (int kk = k; kk < in_dim; kk++) s += x[a][kk] * wr[b][kk];
            out[(size_t)(t0 + a) * out_dim + r0 + b] = bias ? s + bias[r0 + b] : s;
        }
#else
    for (int a = 0; a < TILE_T; a++)
        for (int b = 0; b < TILE_R; b++) {
            float s = dot_f32(in + (size_t)(t0 + a) * in_dim, w + (size_t)(r0 + b) * in_dim, in_dim);
            out[(size_t)(t0 + a) * out_dim + r0 + b] = bias ? s + bias[r0 + b] : s;
        }
#endif
}

// Blocked GEMM: threads split output rows in panels; within a panel, a block
// of tokens is swept so the panel's weights stay in L2 across tokens.
void tern_gemm_f32_blocked(float *out, const float *in, const float *w, const float *bias, int n, int in_dim,
                           int out_dim) {
    const int panel = 64, token_block = 64;
    int n_panels = (out_dim + panel - 1) / panel;
#pragma omp parallel for schedule(dynamic, 1)
    for (int p = 0; p < n_panels; p++) {
        int r_begin = p * panel, r_end = r_begin + panel < out_dim ? r_begin + panel : out_dim;
        for (int tb = 0; tb < n; tb += token_block) {
            int t_end = tb + token_block < n ? tb + token_block : n;
            int t = tb;
            for (; t + TILE_T <= t_end; t += TILE_T) {
                int r = r_begin;
                for (; r + TILE_R <= r_end; r += TILE_R) tile_4x4(out, in, w, bias, in_dim, out_dim, t, r);
                for (; r < r_end; r++)
                    for (int a = 0; a < TILE_T; a++) {
                        float s = dot_f32(in + (size_t)(t + a) * in_dim, w + (size_t)r * in_dim, in_dim);
                        out[(size_t)(t + a) * out_dim + r] = bias ? s + bias[r] : s;
                    }
            }
            for (; t < t_end; t++)
                for (int r = r_begin; r < r_end; r++) {
                    float s = dot_f32(in + (size_t)t * in_dim, w + (size_t)r * in_dim, in_dim);
                    out[(size_t)t * out_dim + r] = bias ? s + bias[r] : s;
                }
        }
    }
}

const char *tern_gemm_backend(void) {
#ifdef TERN_HAVE_OPENBLAS
    return "openblas";
#else
    return "blocked";
#endif
}

void tern_matmul_f32(float *out, const float *in, const float *w, const float *bias, int n, int in_dim,
                     int out_dim) {
    if (n == 1) {
        tern_gemv_f32(out, in, w, bias, in_dim, out_dim);
        return;
    }
#ifdef TERN_HAVE_OPENBLAS
    static int threads_set;
    if (!threads_set) {
        openblas_set_num_threads(tern_get_threads());
        threads_set = 1;
    }
    if (bias)
        for (int t = 0; t < n; t++)
            for (int r = 0; r < out_dim; r++) out[(size_t)t * out_dim + r] = bias[r];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out_dim, in_dim, 1.0f, in, in_dim, w, in_dim,
                bias ? 1.0f : 0.0f, out, out_dim);
#else
    tern_gemm_f32_blocked(out, in, w, bias, n, in_dim, out_dim);
#endif
}
