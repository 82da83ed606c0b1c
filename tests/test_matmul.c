// FP32 GEMV / blocked GEMM / dispatching matmul vs a float64 reference on odd shapes.
#include "core/mem.h"
#include "nn/matmul.h"
#include "test.h"

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return ((float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f) * 2;
}

static void check_shape(int n, int in_dim, int out_dim, int with_bias) {
    unsigned seed = (unsigned)(n * 131 + in_dim * 7 + out_dim);
    float *x = malloc((size_t)n * in_dim * 4), *w = malloc((size_t)out_dim * in_dim * 4);
    float *b = malloc((size_t)out_dim * 4), *ref = malloc((size_t)n * out_dim * 4);
    float *got = malloc((size_t)n * out_dim * 4);
    for (int i = 0; i < n * in_dim; i++) x[i] = frand(&seed);
    for (int i = 0; i < out_dim * in_dim; i++) w[i] = frand(&seed);
    for (int i = 0; i < out_dim; i++) b[i] = frand(&seed);
    const float *bias = with_bias ? b : NULL;
    tern_gemm_f32_reference(ref, x, w, bias, n, in_dim, out_dim);
    double tol = 1e-5 * sqrt((double)in_dim);
    tern_gemm_f32_blocked(got, x, w, bias, n, in_dim, out_dim);
    CHECK_MSG(test_max_rel_err(got, ref, (size_t)n * out_dim, 1) < tol, "blocked %dx%dx%d", n, in_dim, out_dim);
    tern_matmul_f32(got, x, w, bias, n, in_dim, out_dim);
    CHECK_MSG(test_max_rel_err(got, ref, (size_t)n * out_dim, 1) < tol, "matmul(%s) %dx%dx%d",
              tern_gemm_backend(), n, in_dim, out_dim);
    for (int t = 0; t < n; t++) tern_gemv_f32(got + (size_t)t * out_dim, x + (size_t)t * in_dim, w, bias, in_dim, out_dim);
    CHECK_MSG(test_max_rel_err(got, ref, (size_t)n * out_dim, 1) < tol, "gemv %dx%dx%d", n, in_dim, out_dim);
    free(x), free(w), free(b), free(ref), free(got);
}

// The strided single-thread product (OpenBLAS when built with it, and the
// built-in loops) against a float64 product: every transpose combination,
// row strides wider than the rows, alpha, and beta 0 (C not read), 1 and 0.5.
static void check_serial(int ta, int tb, int m, int n, int k, float alpha, float beta) {
    unsigned seed = (unsigned)(m * 31 + n * 7 + k + ta * 1000 + tb * 2000);
    int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
    int rows_a = ta ? k : m, rows_b = tb ? n : k;
    float *a = malloc((size_t)rows_a * lda * 4), *b = malloc((size_t)rows_b * ldb * 4);
    float *c0 = malloc((size_t)m * ldc * 4), *got = malloc((size_t)m * ldc * 4), *ref = malloc((size_t)m * n * 4);
    for (int i = 0; i < rows_a * lda; i++) a[i] = frand(&seed);
    for (int i = 0; i < rows_b * ldb; i++) b[i] = frand(&seed);
    for (int i = 0; i < m * ldc; i++) c0[i] = beta == 0 ? NAN : frand(&seed); // beta 0 must not read C
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)(ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]) *
                     (tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j]);
            ref[i * n + j] = (float)(alpha * s + (beta == 0 ? 0 : beta * (double)c0[i * ldc + j]));
        }
    double tol = 1e-5 * sqrt((double)k + 1);
    for (int variant = 0; variant < 2; variant++) {
        memcpy(got, c0, (size_t)m * ldc * 4);
        if (variant) tern_gemm_serial_f32(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, got, ldc);
        else tern_gemm_serial_f32_builtin(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, got, ldc);
        double worst = 0;
        int pad_kept = 1;
        for (int i = 0; i < m; i++) {
            worst = fmax(worst, test_max_rel_err(got + (size_t)i * ldc, ref + (size_t)i * n, (size_t)n, 1));
            for (int j = n; j < ldc; j++) pad_kept &= memcmp(&got[i * ldc + j], &c0[i * ldc + j], 4) == 0;
        }
        CHECK_MSG(worst < tol && pad_kept, "serial gemm (%s) ta%d tb%d %dx%dx%d alpha %g beta %g: rel err %.3g",
                  variant ? tern_gemm_backend() : "built-in", ta, tb, m, n, k, alpha, beta, worst);
    }
    free(a), free(b), free(c0), free(got), free(ref);
}

int main(void) {
    tern_gemm_serial_prepare();
    int serial_shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {64, 70, 8}, {33, 17, 129}, {70, 64, 70}};
    for (size_t i = 0; i < sizeof serial_shapes / sizeof serial_shapes[0]; i++)
        for (int t = 0; t < 4; t++) {
            int m = serial_shapes[i][0], n = serial_shapes[i][1], k = serial_shapes[i][2];
            check_serial(t & 1, t >> 1, m, n, k, 1.0f, 0.0f);
            check_serial(t & 1, t >> 1, m, n, k, 0.35f, 1.0f);
            check_serial(t & 1, t >> 1, m, n, k, -1.0f, 0.5f);
        }
    int shapes[][3] = {{1, 1, 1}, {1, 7, 5}, {3, 33, 17}, {4, 64, 64}, {5, 100, 67}, {17, 129, 130},
                       {64, 576, 192}, {70, 48, 300}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], 0);
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], 1);
    }
    // A wrong result must be caught: corrupt one output and compare.
    float ref[4], got[4], x[2] = {1, 2}, w[4] = {1, 0, 0, 1};
    tern_gemm_f32_reference(ref, x, w, NULL, 1, 2, 2);
    tern_gemv_f32(got, x, w, NULL, 2, 2);
    got[1] += 1e-3f;
    CHECK(test_max_rel_err(got, ref, 2, 1) > 1e-4);
    return test_report();
}
