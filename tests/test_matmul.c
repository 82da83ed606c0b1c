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

int main(void) {
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
