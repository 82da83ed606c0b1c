#include "nn/matmul.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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

float tern_dot_f32(const float *a, const float *b, int n) { return dot_f32(a, b, n); }

// Below this many multiply-adds a fork/join costs more than it saves, and on a
// loaded machine spinning threads make small parallel regions far slower.
#define PARALLEL_MIN_MACS (1 << 18)

void tern_gemv_f32(float *out, const float *in, const float *w, const float *bias, int in_dim, int out_dim) {
#pragma omp parallel for schedule(static) if ((int64_t)in_dim * out_dim >= PARALLEL_MIN_MACS)
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
#pragma omp parallel for schedule(dynamic, 1) if ((int64_t)n * in_dim * out_dim >= PARALLEL_MIN_MACS)
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
    // OpenBLAS repacks the whole weight matrix on every call; for a handful of
    // tokens (eval continuations, short prompts) that copy costs more than the
    // product, and the built-in kernel measured 1.1-2x faster up to 8 tokens.
    if (n <= 8) {
        tern_gemm_f32_blocked(out, in, w, bias, n, in_dim, out_dim);
        return;
    }
    // One thread pool only: OpenBLAS runs single-threaded inside each OpenMP
    // thread on a panel of output rows. (OpenBLAS's own spinning threads would
    // otherwise compete with OpenMP's for the same cores.)
    static int single_threaded;
    if (!single_threaded) {
        openblas_set_num_threads(1);
        single_threaded = 1;
    }
#pragma omp parallel if ((int64_t)n * in_dim * out_dim >= PARALLEL_MIN_MACS)
    {
        int nt = 1, id = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        id = omp_get_thread_num();
#endif
        int per = ((out_dim + nt - 1) / nt + 15) / 16 * 16;
        int r0 = id * per, r1 = r0 + per < out_dim ? r0 + per : out_dim;
        if (r0 < r1) {
            float *o = out + r0;
            if (bias)
                for (int t = 0; t < n; t++) memcpy(o + (size_t)t * out_dim, bias + r0, (size_t)(r1 - r0) * 4);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r1 - r0, in_dim, 1.0f, in, in_dim,
                        w + (size_t)r0 * in_dim, in_dim, bias ? 1.0f : 0.0f, o, out_dim);
        }
    }
#else
    tern_gemm_f32_blocked(out, in, w, bias, n, in_dim, out_dim);
#endif
}

// ---- Backward products (training) ----

// Tiles small enough that a tile's accumulators stay in L1 while the long
// operand streams past: 32 tokens x 128 columns (16 KB) for dx, 16 rows x 128
// columns (8 KB) for dw.
#define DX_TOKENS 32
#define DW_ROWS 16
#define COLS 128

void tern_gemm_dx_f32_blocked(float *dx, const float *dy, const float *w, int n, int in_dim, int out_dim,
                              int accumulate) {
    int t_tiles = (n + DX_TOKENS - 1) / DX_TOKENS, k_tiles = (in_dim + COLS - 1) / COLS;
#pragma omp parallel for schedule(dynamic, 1) if ((int64_t)n * in_dim * out_dim >= PARALLEL_MIN_MACS)
    for (int tile = 0; tile < t_tiles * k_tiles; tile++) {
        int t0 = tile / k_tiles * DX_TOKENS, k0 = tile % k_tiles * COLS;
        int nt = n - t0 < DX_TOKENS ? n - t0 : DX_TOKENS, nk = in_dim - k0 < COLS ? in_dim - k0 : COLS;
        float acc[DX_TOKENS][COLS];
        for (int a = 0; a < nt; a++)
            for (int k = 0; k < nk; k++) acc[a][k] = accumulate ? dx[(size_t)(t0 + a) * in_dim + k0 + k] : 0.0f;
        // Sum over output rows r in order: dx[t, k] += dy[t, r] * w[r, k].
        for (int r = 0; r < out_dim; r++) {
            const float *wr = w + (size_t)r * in_dim + k0;
            for (int a = 0; a < nt; a++) {
                float d = dy[(size_t)(t0 + a) * out_dim + r];
                for (int k = 0; k < nk; k++) acc[a][k] += d * wr[k];
            }
        }
        for (int a = 0; a < nt; a++) memcpy(dx + (size_t)(t0 + a) * in_dim + k0, acc[a], (size_t)nk * 4);
    }
}

void tern_gemm_dw_f32_blocked(float *dw, const float *dy, const float *x, int n, int in_dim, int out_dim) {
    int r_tiles = (out_dim + DW_ROWS - 1) / DW_ROWS, k_tiles = (in_dim + COLS - 1) / COLS;
#pragma omp parallel for schedule(dynamic, 1) if ((int64_t)n * in_dim * out_dim >= PARALLEL_MIN_MACS)
    for (int tile = 0; tile < r_tiles * k_tiles; tile++) {
        int r0 = tile / k_tiles * DW_ROWS, k0 = tile % k_tiles * COLS;
        int nr = out_dim - r0 < DW_ROWS ? out_dim - r0 : DW_ROWS, nk = in_dim - k0 < COLS ? in_dim - k0 : COLS;
        // Sum over tokens t in order: dw[r, k] += dy[t, r] * x[t, k].
        for (int t = 0; t < n; t++) {
            const float *xr = x + (size_t)t * in_dim + k0;
            for (int a = 0; a < nr; a++) {
                float d = dy[(size_t)t * out_dim + r0 + a];
                float *o = dw + (size_t)(r0 + a) * in_dim + k0;
                for (int k = 0; k < nk; k++) o[k] += d * xr[k];
            }
        }
    }
}

#ifdef TERN_HAVE_OPENBLAS
// Same scheme as tern_matmul_f32: OpenBLAS single-threaded, called by each
// OpenMP thread on its own slice of the output (one thread pool only).
static void blas_single_thread(void) {
    static int done;
    if (!done) {
        openblas_set_num_threads(1);
        done = 1;
    }
}

// Thread id's slice [*b, *e) of `len`, in multiples of 16 (whole cache lines).
static void omp_slice(int len, int *b, int *e) {
    int nt = 1, id = 0;
#ifdef _OPENMP
    nt = omp_get_num_threads();
    id = omp_get_thread_num();
#endif
    int per = ((len + nt - 1) / nt + 15) / 16 * 16;
    *b = id * per < len ? id * per : len;
    *e = *b + per < len ? *b + per : len;
}
#endif

void tern_matmul_dx_f32(float *dx, const float *dy, const float *w, int n, int in_dim, int out_dim,
                        int accumulate) {
#ifdef TERN_HAVE_OPENBLAS
    blas_single_thread();
#pragma omp parallel if ((int64_t)n * in_dim * out_dim >= PARALLEL_MIN_MACS)
    {
        int k0, k1; // columns of dx (and of w) owned by this thread
        omp_slice(in_dim, &k0, &k1);
        if (k0 < k1)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k1 - k0, out_dim, 1.0f, dy, out_dim, w + k0,
                        in_dim, accumulate ? 1.0f : 0.0f, dx + k0, in_dim);
    }
#else
    tern_gemm_dx_f32_blocked(dx, dy, w, n, in_dim, out_dim, accumulate);
#endif
}

void tern_matmul_dw_f32(float *dw, const float *dy, const float *x, int n, int in_dim, int out_dim) {
#ifdef TERN_HAVE_OPENBLAS
    blas_single_thread();
#pragma omp parallel if ((int64_t)n * in_dim * out_dim >= PARALLEL_MIN_MACS)
    {
        int r0, r1; // rows of dw (columns of dy) owned by this thread
        omp_slice(out_dim, &r0, &r1);
        if (r0 < r1)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, in_dim, n, 1.0f, dy + r0, out_dim, x,
                        in_dim, 1.0f, dw + (size_t)r0 * in_dim, in_dim);
    }
#else
    tern_gemm_dw_f32_blocked(dw, dy, x, n, in_dim, out_dim);
#endif
}

// ---- Strided products on the calling thread (per-head attention products) ----

void tern_gemm_serial_f32_builtin(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                                  int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++) {
        float *ci = c + (size_t)i * ldc;
        if (beta == 0) memset(ci, 0, (size_t)n * sizeof(float));
        else if (beta != 1)
            for (int j = 0; j < n; j++) ci[j] *= beta;
        if (!trans_b) {
            // Row i of C gathers alpha·A(i, p) times row p of B (contiguous: vectorizes).
            for (int p = 0; p < k; p++) {
                float aip = alpha * (trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]);
                const float *bp = b + (size_t)p * ldb;
                for (int j = 0; j < n; j++) ci[j] += aip * bp[j];
            }
        } else if (!trans_a) {
            const float *ai = a + (size_t)i * lda;
            for (int j = 0; j < n; j++) ci[j] += alpha * dot_f32(ai, b + (size_t)j * ldb, k);
        } else {
            for (int j = 0; j < n; j++) {
                float s = 0;
                for (int p = 0; p < k; p++) s += a[(size_t)p * lda + i] * b[(size_t)j * ldb + p];
                ci[j] += alpha * s;
            }
        }
    }
}

void tern_gemm_serial_prepare(void) {
#ifdef TERN_HAVE_OPENBLAS
    blas_single_thread();
#endif
}

void tern_gemm_serial_f32(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                          const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
#ifdef TERN_HAVE_OPENBLAS
    if (k > 0) {
        if (beta == 0) { // memset is faster than OpenBLAS's beta pass, which then is skipped
            for (int i = 0; i < m; i++) memset(c + (size_t)i * ldc, 0, (size_t)n * sizeof(float));
            beta = 1;
        }
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n,
                    k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
#endif
    tern_gemm_serial_f32_builtin(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

#include "nn/linear.h"

void tern_linear_forward(const tern_linear *l, float *out, const float *in, int n, int fresh) {
    if (l->apply) l->apply(l, out, in, n, fresh);
    else tern_matmul_f32(out, in, l->w, l->bias, n, l->cols, l->rows);
}

// Rows per scheduling unit of tern_linear_forward_many (as in kernels.c).
#define MANY_ROW_BLOCK 16
#define MANY_MAX 4

static void fp32_gemv_rows(const tern_linear *l, float *out, const float *in, int r0, int r1) {
    for (int r = r0; r < r1; r++) {
        float s = dot_f32(l->w + (size_t)r * l->cols, in, l->cols);
        out[r] = l->bias ? s + l->bias[r] : s;
    }
}

void tern_linear_forward_many(const tern_linear *ls, float *const *outs, int count, const float *in, int n) {
    int fused = n == 1 && count <= MANY_MAX;
    for (int i = 0; i < count && fused; i++) fused = !ls[i].apply || ls[i].gemv_rows;
    if (!fused) {
        for (int i = 0; i < count; i++) tern_linear_forward(&ls[i], outs[i], in, n, i == 0);
        return;
    }
    int first[MANY_MAX + 1] = {0}; // first row block of each matrix
    int64_t macs = 0;
    for (int i = 0; i < count; i++) {
        if (ls[i].prepare) ls[i].prepare(&ls[i], in, i == 0);
        first[i + 1] = first[i] + (ls[i].rows + MANY_ROW_BLOCK - 1) / MANY_ROW_BLOCK;
        macs += (int64_t)ls[i].rows * ls[i].cols;
    }
#pragma omp parallel for schedule(guided) if (macs >= PARALLEL_MIN_MACS)
    for (int b = 0; b < first[count]; b++) {
        int i = 0;
        while (b >= first[i + 1]) i++;
        const tern_linear *l = &ls[i];
        int r0 = (b - first[i]) * MANY_ROW_BLOCK, r1 = r0 + MANY_ROW_BLOCK < l->rows ? r0 + MANY_ROW_BLOCK : l->rows;
        if (l->gemv_rows) l->gemv_rows(l, outs[i], in, r0, r1);
        else fp32_gemv_rows(l, outs[i], in, r0, r1);
    }
}
