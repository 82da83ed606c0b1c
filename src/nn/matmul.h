// FP32 matrix products for linear layers: out = in · Wᵀ (+ bias).
#ifndef TERN_NN_MATMUL_H
#define TERN_NN_MATMUL_H

// out[n, out_dim] = in[n, in_dim] · w[out_dim, in_dim]ᵀ + bias[out_dim] (bias may be NULL).
// n == 1 takes the GEMV path (bandwidth-bound, rows split across threads);
// n > 1 takes a blocked GEMM (or OpenBLAS sgemm when built with it).
void tern_matmul_f32(float *out, const float *in, const float *w, const float *bias, int n, int in_dim,
                     int out_dim);

// The built-in kernels, exposed for tests and benchmarks.
void tern_gemv_f32(float *out, const float *in, const float *w, const float *bias, int in_dim, int out_dim);
void tern_gemm_f32_blocked(float *out, const float *in, const float *w, const float *bias, int n, int in_dim,
                           int out_dim);
void tern_gemm_f32_reference(float *out, const float *in, const float *w, const float *bias, int n,
                             int in_dim, int out_dim);

// Σ a[i] b[i] (AVX2: 32 lanes at a time, a fixed order for a given n).
float tern_dot_f32(const float *a, const float *b, int n);

// Which GEMM backs prompt processing: "openblas" or "blocked".
const char *tern_gemm_backend(void);

// Backward products of a linear layer y[n, out] = x[n, in] · w[out, in]ᵀ.
// OpenBLAS sgemm when built with it, otherwise the threaded built-in kernels
// below. Every output element is owned by one thread and summed in a fixed
// order, so results are bit-identical run to run for a given thread count.
//
// dx[n, in] (= or +=, by `accumulate`) dy[n, out] · w[out, in]
void tern_matmul_dx_f32(float *dx, const float *dy, const float *w, int n, int in_dim, int out_dim,
                        int accumulate);
// dw[out, in] += dy[n, out]ᵀ · x[n, in]
void tern_matmul_dw_f32(float *dw, const float *dy, const float *x, int n, int in_dim, int out_dim);
// The built-in versions, exposed for tests.
void tern_gemm_dx_f32_blocked(float *dx, const float *dy, const float *w, int n, int in_dim, int out_dim,
                              int accumulate);
void tern_gemm_dw_f32_blocked(float *dw, const float *dy, const float *x, int n, int in_dim, int out_dim);

// General product on strided row-major matrices, run on the calling thread only
// (for per-head products inside a parallel region, e.g. attention):
//   C[m, n] = alpha · op(A) · op(B) + beta · C
// op(A) is A[m, k] (row stride lda), or with trans_a the transpose of A[k, m];
// op(B) is B[k, n] (ldb), or with trans_b the transpose of B[n, k]. beta == 0
// overwrites C without reading it. OpenBLAS sgemm (single-threaded) when built
// with it, otherwise the built-in loops below. Call tern_gemm_serial_prepare()
// once outside any parallel region before the first such call inside one.
void tern_gemm_serial_f32(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                          const float *b, int ldb, float beta, float *c, int ldc);
void tern_gemm_serial_f32_builtin(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                                  int lda, const float *b, int ldb, float beta, float *c, int ldc);
void tern_gemm_serial_prepare(void);

#endif
