// Packed ternary / low-bit kernels: pack/unpack round trips for every format,
// every SIMD kernel == the scalar reference bit for bit, the scalar reference
// against a float64 dequantize-then-dot oracle, the activation quantizer
// against its formula, and TERN_KERNEL forcing.
#include <stdint.h>
#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

#include "core/cpu.h"
#include "core/half.h"
#include "core/mem.h"
#include "kernels/kernels.h"
#include "test.h"

static unsigned rng = 12345u;
static unsigned rnd(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}
static float frand(void) { return (float)(rnd() & 0xffff) / 32768.0f - 1.0f; } // [-1, 1)

// ---- a random (or patterned) unpacked matrix ----

typedef struct {
    int rows, cols, group, ng, shift;
    int8_t *codes;
    float *scales, *shifts;
    uint8_t *zeros;
} mat;

enum { FILL_RANDOM, FILL_MAX, FILL_MIN }; // codes all at the top / bottom of their range

static mat mat_make(const tern_kformat *f, int rows, int cols, int group, int shift, int fill, float scale_mag) {
    mat m = {rows, cols, group, (cols + group - 1) / group, shift, NULL, NULL, NULL, NULL};
    m.codes = malloc((size_t)rows * cols);
    m.scales = malloc((size_t)rows * m.ng * sizeof(float));
    m.shifts = malloc((size_t)rows * m.ng * sizeof(float));
    m.zeros = malloc((size_t)rows * m.ng);
    int span = f->code_max - f->code_min + 1;
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        m.codes[i] = (int8_t)(fill == FILL_MAX ? f->code_max
                              : fill == FILL_MIN ? f->code_min
                                                 : f->code_min + (int)(rnd() % (unsigned)span));
    for (size_t i = 0; i < (size_t)rows * m.ng; i++) {
        m.scales[i] = scale_mag * (0.25f + fabsf(frand())); // <= 1.25 * scale_mag
        if (f->kind == TERN_KKIND_Q8 && rnd() % 4 == 0) m.scales[i] = -m.scales[i];
        m.shifts[i] = scale_mag * 0.3f * frand();
        m.zeros[i] = shift ? 0 // a shifted matrix has no zero points (z = 0)
                           : (uint8_t)(fill == FILL_RANDOM ? (int)(rnd() % (unsigned)(f->code_max + 1))
                                                           : fill == FILL_MAX ? 0 : f->code_max);
    }
    return m;
}

static void mat_free(mat *m) { free(m->codes), free(m->scales), free(m->shifts), free(m->zeros); }

static uint8_t *pack(const tern_kformat *f, const mat *m, tern_kmatrix *km) {
    if (tern_kmatrix_init(km, f, m->rows, m->cols, m->group, m->shift, NULL)) return NULL;
    uint8_t *buf = tern_alloc((size_t)m->rows * km->row_bytes + 1);
    km->data = buf;
    if (tern_kpack(km, buf, m->codes, m->scales, m->shift ? m->shifts : NULL, m->zeros)) {
        tern_free(buf);
        return NULL;
    }
    return buf;
}

static float f16_round(float v) { return tern_f16_to_f32(tern_f32_to_f16(v)); }

// ---- 1. pack / unpack round trips ----

static void roundtrip(const tern_kformat *f, int rows, int cols, int group, int shift) {
    mat m = mat_make(f, rows, cols, group, shift, FILL_RANDOM, 0.05f);
    tern_kmatrix km;
    uint8_t *buf = pack(f, &m, &km);
    CHECK_MSG(buf != NULL, "%s pack %dx%d G=%d: %s", f->name, rows, cols, group, tern_last_error());
    if (!buf) return mat_free(&m);
    size_t n = (size_t)rows * cols, ng = (size_t)rows * m.ng;
    int8_t *codes = malloc(n);
    float *sc = malloc(ng * sizeof(float)), *sh = malloc(ng * sizeof(float));
    uint8_t *z = malloc(ng);
    tern_kunpack(&km, codes, sc, sh, z);
    int bad_codes = memcmp(codes, m.codes, n) != 0, bad_sc = 0, bad_z = 0;
    for (size_t i = 0; i < ng; i++) {
        bad_sc += sc[i] != f16_round(m.scales[i]);
        bad_sc += sh[i] != (shift ? f16_round(m.shifts[i]) : 0.0f);
        bad_z += f->kind == TERN_KKIND_RTN && z[i] != m.zeros[i];
    }
    CHECK_MSG(!bad_codes && !bad_sc && !bad_z, "%s round trip %dx%d G=%d shift=%d: codes %d scales %d zeros %d",
              f->name, rows, cols, group, shift, bad_codes, bad_sc, bad_z);
    CHECK(km.row_bytes == tern_kformat_row_bytes(f, cols, group, shift));
    free(codes), free(sc), free(sh), free(z);
    tern_free(buf);
    mat_free(&m);
}

// Every 5-trit combination through the t1.6 base-3 byte coding.
static void t16_exhaustive(void) {
    const tern_kformat *f = tern_kformat_get(TERN_KFMT_T1_6);
    int rows = 8, cols = 160; // one whole bundle per row: 256 bytes >= 243 values
    mat m = mat_make(f, rows, cols, cols, 0, FILL_RANDOM, 1);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < 32; j++) {
            int v = (r * 32 + j) % 243;
            for (int k = 4; k >= 0; k--, v /= 3) m.codes[(size_t)r * cols + 32 * k + j] = (int8_t)(v % 3 - 1);
        }
    tern_kmatrix km;
    uint8_t *buf = pack(f, &m, &km);
    int8_t *codes = malloc((size_t)rows * cols);
    tern_kunpack(&km, codes, NULL, NULL, NULL);
    CHECK(memcmp(codes, m.codes, (size_t)rows * cols) == 0);
    CHECK(km.code_bytes == 32); // 160 codes in 32 bytes: 1.6 bits
    free(codes), tern_free(buf), mat_free(&m);
}

// ---- 2. kernels ----

static int same_bits(const float *a, const float *b, size_t n, size_t *where) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            *where = i;
            return 0;
        }
    return 1;
}

// float64 dequantize-then-dot; *mag gets the sum of |terms| for the tolerance.
static double oracle(const tern_kformat *f, const tern_kmatrix *km, const int8_t *codes, const float *sc,
                     const float *sh, const uint8_t *z, const tern_qact *a, int t, int r, const float *bias,
                     double *mag) {
    double y = 0, m = 0;
    const int8_t *q = a->q + (size_t)t * a->stride;
    for (int i = 0; i < km->cols; i++) {
        size_t gi = (size_t)r * km->n_groups + i / km->group;
        double sx = a->scale[(size_t)(i / a->group) * a->n_max + t]; // activation scale of i's group
        int c = codes[(size_t)r * km->cols + i];
        double ws = (double)sc[gi] * (f->kind == TERN_KKIND_RTN ? c - z[gi] : c);
        y += (ws + (double)sh[gi]) * (sx * q[i]);
        // The kernels sum a group's scale and shift terms apart (two fmaf
        // steps), so each term's size bounds the rounding, not their possibly
        // cancelling sum.
        m += fabs(ws * (sx * q[i])) + fabs((double)sh[gi] * (sx * q[i]));
    }
    if (bias) y += bias[r], m += fabs(bias[r]);
    *mag = m;
    return y;
}

static int n_impls_tested[TERN_KIMPL_COUNT];

// Packs m, quantizes n tokens of x, and checks every kernel entry point of
// every supported implementation against the scalar GEMM bit for bit, and
// the scalar GEMM against the oracle.
static void check_kernels(const tern_kformat *f, const mat *m, const float *x, int n, const float *bias,
                          const char *what) {
    tern_kmatrix km;
    uint8_t *buf = pack(f, m, &km);
    CHECK_MSG(buf != NULL, "%s %s: %s", f->name, what, tern_last_error());
    if (!buf) return;
    tern_qact a, a2;
    CHECK_OK(tern_qact_init(&a, n, m->cols, tern_kact_group(&km)));
    CHECK_OK(tern_qact_init(&a2, n, m->cols, tern_kact_group(&km)));
    tern_quantize_act(TERN_KIMPL_SCALAR, &a, x, n);
    size_t no = (size_t)n * m->rows;
    float *ref = malloc(no * sizeof(float)), *got = malloc(no * sizeof(float));
    tern_kgemm(TERN_KIMPL_SCALAR, &km, &a, n, bias, ref, (size_t)m->rows);

    // Oracle.
    int8_t *codes = malloc((size_t)m->rows * m->cols);
    size_t ng = (size_t)m->rows * km.n_groups;
    float *sc = malloc(ng * sizeof(float)), *sh = malloc(ng * sizeof(float));
    uint8_t *z = malloc(ng);
    tern_kunpack(&km, codes, sc, sh, z);
    int bad = 0;
    for (int t = 0; t < n && bad < 3; t++)
        for (int r = 0; r < m->rows && bad < 3; r++) {
            double mag, y = oracle(f, &km, codes, sc, sh, z, &a, t, r, bias, &mag);
            // fp32 epilogue: per group the scale product and each fmaf step
            // round (<= 4 per group), plus the bias add.
            double tol = (4.0 * a.n_groups + 2) * ldexp(mag, -23) + 1e-30;
            double g = ref[(size_t)t * m->rows + r];
            if (!isfinite(y)) continue;
            if (!(fabs(g - y) <= tol)) {
                bad++;
                CHECK_MSG(0, "%s %s oracle t=%d r=%d: got %.9g want %.9g tol %.3g", f->name, what, t, r, g, y, tol);
            }
        }
    CHECK(bad == 0);

    for (int impl = 0; impl < TERN_KIMPL_COUNT; impl++) {
        if (!tern_kernel_supported((tern_kimpl)impl, NULL)) continue;
        n_impls_tested[impl]++;
        // Quantizer of this implementation: identical bytes, scales, sums.
        tern_quantize_act((tern_kimpl)impl, &a2, x, n);
        int qsame = memcmp(a.q, a2.q, (size_t)n * a.stride) == 0 &&
                    memcmp(a.scale, a2.scale, (size_t)n * a.n_groups * sizeof(float)) == 0 &&
                    memcmp(a.gsum, a2.gsum, (size_t)n * a.n_groups * sizeof(int32_t)) == 0;
        CHECK_MSG(qsame, "%s quantizer differs from scalar (%s)", tern_kernel_name((tern_kimpl)impl), what);
        size_t where = 0;
        memset(got, 0xff, no * sizeof(float));
        tern_kgemm((tern_kimpl)impl, &km, &a2, n, bias, got, (size_t)m->rows);
        CHECK_MSG(same_bits(got, ref, no, &where), "%s %s gemm %s: [%zu] %.9g vs scalar %.9g", f->name,
                  tern_kernel_name((tern_kimpl)impl), what, where, got[where], ref[where]);
        memset(got, 0xff, no * sizeof(float));
        for (int t = 0; t < n; t++) tern_kgemv((tern_kimpl)impl, &km, &a2, t, bias, got + (size_t)t * m->rows);
        CHECK_MSG(same_bits(got, ref, no, &where), "%s %s gemv %s: [%zu] %.9g vs scalar %.9g", f->name,
                  tern_kernel_name((tern_kimpl)impl), what, where, got[where], ref[where]);
        if (tern_kilv_ok(&km)) { // held only row-interleaved: AVX-512 reads the blocks, the others rows copied back
            uint8_t *ilv = tern_alloc((size_t)m->rows * km.row_bytes);
            tern_kilv_pack(&km, ilv);
            tern_kmatrix ki = km;
            ki.data = NULL, ki.ilv = ilv;
            const char *in = tern_kernel_name((tern_kimpl)impl);
            memset(got, 0xff, no * sizeof(float));
            tern_kgemm((tern_kimpl)impl, &ki, &a2, n, bias, got, (size_t)m->rows);
            CHECK_MSG(same_bits(got, ref, no, &where), "%s %s interleaved gemm %s: [%zu] %.9g vs scalar %.9g",
                      f->name, in, what, where, got[where], ref[where]);
            memset(got, 0xff, no * sizeof(float));
            for (int t = 0; t < n; t++) tern_kgemv((tern_kimpl)impl, &ki, &a2, t, bias, got + (size_t)t * m->rows);
            CHECK_MSG(same_bits(got, ref, no, &where), "%s %s interleaved gemv %s: [%zu] %.9g vs scalar %.9g",
                      f->name, in, what, where, got[where], ref[where]);
            int r0 = m->rows > TERN_KILV_ROWS ? TERN_KILV_ROWS : 0; // a run that starts past row 0
            memset(got, 0xff, no * sizeof(float));
            tern_kgemv_rows((tern_kimpl)impl, &ki, &a2, n - 1, bias, got, r0, m->rows);
            size_t last = (size_t)(n - 1) * m->rows;
            CHECK_MSG(same_bits(got + r0, ref + last + r0, (size_t)(m->rows - r0), &where),
                      "%s %s interleaved gemv_rows %s: [%zu]", f->name, in, what, where);
            float y = tern_kdot_row((tern_kimpl)impl, &ki, 5, &a2, 0, bias);
            CHECK_MSG(same_bits(&y, &ref[5], 1, &where), "%s %s interleaved dot_row %s", f->name, in, what);
            tern_free(ilv);
        }
        int t = n - 1, r = m->rows - 1;
        float y = tern_kdot_row((tern_kimpl)impl, &km, r, &a2, t, bias);
        CHECK_MSG(same_bits(&y, &ref[(size_t)t * m->rows + r], 1, &where), "%s %s dot_row %s", f->name,
                  tern_kernel_name((tern_kimpl)impl), what);
    }
    free(codes), free(sc), free(sh), free(z);
    free(ref), free(got);
    tern_qact_free(&a), tern_qact_free(&a2);
    tern_free(buf);
}

static float *rand_x(int n, int cols, float mag) {
    float *x = malloc((size_t)n * cols * sizeof(float));
    for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = mag * frand() * (rnd() % 16 == 0 ? 8.0f : 1.0f);
    return x;
}

static void random_cases(const tern_kformat *f) {
    static const int shapes[][2] = {{1, 1}, {3, 7}, {5, 31}, {9, 33}, {7, 100}, {13, 161}, {6, 320},
                                    {17, 577}, {8, 1000}, {33, 576},
                                    {16, 100}, {32, 577}, {48, 320}};
    static const int groups[] = {32, 64, 96, 128, 160, 256, 0 /* = width */};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
            int rows = shapes[s][0], cols = shapes[s][1], group = groups[gi] ? groups[gi] : cols;
            if (group < cols && group % 32) continue;
            for (int shift = 0; shift <= 1; shift++) {
                // Half the cases batch >= 8 tokens: AVX-512's panel GEMM (kernels.c).
                int n = 1 + (int)(rnd() % (rnd() % 2 ? 9 : 30));
                mat m = mat_make(f, rows, cols, group, shift, FILL_RANDOM, 0.05f);
                float *x = rand_x(n, cols, 2.0f), *bias = malloc((size_t)rows * sizeof(float));
                for (int r = 0; r < rows; r++) bias[r] = frand();
                char what[96];
                snprintf(what, sizeof what, "%dx%d G=%d shift=%d n=%d", rows, cols, group, shift, n);
                check_kernels(f, &m, x, n, (rows + cols) % 2 ? bias : NULL, what);
                roundtrip(f, rows, cols, group, shift);
                free(x), free(bias);
                mat_free(&m);
            }
        }
    // Every token count 1..9 on one shape (token blocks of 4 plus tails), and
    // batches for the panel GEMM: whole tiles of 12 tokens plus every tail.
    static const int counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 37};
    for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        int n = counts[ci];
        mat m = mat_make(f, 11, 200, 64, f->kind == TERN_KKIND_TERNARY || ci % 2, FILL_RANDOM, 0.05f);
        float *x = rand_x(n, 200, 1.0f);
        char what[64];
        snprintf(what, sizeof what, "11x200 G=64 n=%d", n);
        check_kernels(f, &m, x, n, NULL, what);
        free(x);
        mat_free(&m);
    }
}

// Extreme values: saturated activations (q = +-127 everywhere), codes all at
// one end of their range, zero activations, huge and tiny scales. Long single
// groups stress the int16 widening; a 40000-column group of 16 rows, the
// row-interleaved t1.6 GEMV's int32 bound (256 times its digit sum).
static void extreme_cases(const tern_kformat *f) {
    static const int shapes[][3] = {{5, 4096, 4096}, {9, 1537, 128}, {4, 64, 32}, {3, 2048, 256}, {16, 40000, 40000}};
    static const float xs[] = {1.0f, -1.0f};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int fill = FILL_MAX; fill <= FILL_MIN; fill++)
            for (int sign = 0; sign < 2; sign++) {
                int rows = shapes[s][0], cols = shapes[s][1], group = shapes[s][2], n = sign ? 13 : 5; // 13: panel GEMM
                float mag = s == 1 ? 50000.0f : s == 2 ? 1e-7f : 1.0f;  // fp16 extremes
                mat m = mat_make(f, rows, cols, group, f->kind == TERN_KKIND_TERNARY || sign, fill, mag);
                float *x = malloc((size_t)n * cols * sizeof(float));
                for (int t = 0; t < n; t++)
                    for (int i = 0; i < cols; i++)
                        x[(size_t)t * cols + i] = t == 2 ? 0.0f                      // zero token
                                                  : t == 3 ? ((i & 1) ? xs[sign] : -xs[sign]) * 3.0f
                                                           : xs[sign] * (t + 1.0f); // all q = +-127
                char what[96];
                snprintf(what, sizeof what, "extreme %dx%d G=%d fill=%d sign=%d", rows, cols, group, fill, sign);
                check_kernels(f, &m, x, n, NULL, what);
                free(x);
                mat_free(&m);
            }
}

// ---- 3. activation quantizer against its formula ----

static void quantizer_formula(void) {
    int n = 4, cols = 77, group = 32;
    float *x = rand_x(n, cols, 3.0f);
    x[5] = -100.0f; // token 0's max-magnitude element: must map to exactly -127
    for (int i = 0; i < cols; i++) x[(size_t)3 * cols + i] = 0.0f; // zero token
    for (int impl = 0; impl < TERN_KIMPL_COUNT; impl++) {
        if (!tern_kernel_supported((tern_kimpl)impl, NULL)) continue;
        tern_qact a;
        CHECK_OK(tern_qact_init(&a, n, cols, group));
        tern_quantize_act((tern_kimpl)impl, &a, x, n);
        int bad = 0;
        for (int t = 0; t < n; t++) {
            // Each group of 32 has its own absmax scale.
            float s_g[3] = {0, 0, 0};
            for (int i = 0; i < cols; i++)
                s_g[i / group] = fabsf(x[(size_t)t * cols + i]) > s_g[i / group] ? fabsf(x[(size_t)t * cols + i]) : s_g[i / group];
            for (int g = 0; g < 3; g++) s_g[g] /= 127.0f, bad += a.scale[(size_t)g * a.n_max + t] != s_g[g];
            int32_t gs[3] = {0, 0, 0};
            for (int i = 0; i < cols; i++) {
                float s = s_g[i / group];
                double v = s > 0 ? (double)(x[(size_t)t * cols + i] / s) : 0.0;
                double r = floor(v + 0.5);
                if (r - v == 0.5 && fmod(r, 2.0) != 0) r -= 1; // ties to even
                r = r > 127 ? 127 : r < -127 ? -127 : r;
                bad += a.q[(size_t)t * a.stride + i] != (int8_t)r;
                gs[i / group] += (int32_t)r;
            }
            for (size_t i = cols; i < a.stride; i++) bad += a.q[(size_t)t * a.stride + i] != 0;
            for (int g = 0; g < 3; g++) bad += a.gsum[(size_t)t * a.n_groups + g] != gs[g];
        }
        CHECK_MSG(bad == 0, "quantizer %s: %d mismatches", tern_kernel_name((tern_kimpl)impl), bad);
        CHECK(a.q[5] == -127 && a.scale[3] == 0.0f && a.scale[2 * a.n_max + 3] == 0.0f);
        tern_qact_free(&a);
    }
    free(x);
}

// Near ties: x = (k + 1/2) * s for every k over many scales, where only a
// true division with round-half-even gives the scalar bytes (a reciprocal
// multiply or rounding half away from zero changes some of them).
static void quantizer_ties(void) {
    int n = 64, cols = 263, group = 64;
    float *x = malloc((size_t)n * cols * sizeof(float));
    for (int t = 0; t < n; t++) {
        float amax = ldexpf(1.0f + fabsf(frand()), t % 16 - 8), s = amax / 127.0f, *xt = x + (size_t)t * cols;
        for (int i = 0; i < cols; i++) xt[i] = ((float)(i % 254 - 127) + 0.5f) * s; // |x| < amax
        for (int i = 0; i < cols; i += group) xt[i] = (t & 1) ? -amax : amax; // every group's absmax: its scale is s
    }
    tern_qact a, b;
    CHECK_OK(tern_qact_init(&a, n, cols, group));
    CHECK_OK(tern_qact_init(&b, n, cols, group));
    tern_quantize_act(TERN_KIMPL_SCALAR, &a, x, n);
    for (int impl = 1; impl < TERN_KIMPL_COUNT; impl++) {
        if (!tern_kernel_supported((tern_kimpl)impl, NULL)) continue;
        tern_quantize_act((tern_kimpl)impl, &b, x, n);
        int same = memcmp(a.q, b.q, (size_t)n * a.stride) == 0 &&
                   memcmp(a.scale, b.scale, (size_t)n * a.n_groups * sizeof(float)) == 0 &&
                   memcmp(a.gsum, b.gsum, (size_t)n * a.n_groups * sizeof(int32_t)) == 0;
        CHECK_MSG(same, "%s quantizer differs from scalar on near-tie inputs", tern_kernel_name((tern_kimpl)impl));
    }
    tern_qact_free(&a), tern_qact_free(&b);
    free(x);
}

// ---- 4. dispatch, errors, and that the checks can fail ----

static void dispatch(void) {
    tern_kimpl k;
    setenv("TERN_KERNEL", "scalar", 1);
    CHECK_OK(tern_kernel_default(&k));
    CHECK(k == TERN_KIMPL_SCALAR);
    CHECK_OK(tern_kernel_resolve("scalar", &k));
    CHECK_OK(tern_kernel_resolve(NULL, &k));
    const char *miss = NULL;
    if (tern_kernel_supported(TERN_KIMPL_AVX512, &miss)) {
        CHECK_OK(tern_kernel_resolve("avx512", &k));
    } else {
        CHECK_FAILS(tern_kernel_resolve("avx512", &k), "TERN_KERNEL=avx512: this CPU lacks ");
        CHECK(strchr(tern_last_error(), '\n') == NULL);
        printf("avx512 unavailable here: %s\n", tern_last_error());
    }
    if (!tern_kernel_supported(TERN_KIMPL_AVX2, NULL))
        CHECK_FAILS(tern_kernel_resolve("avx2", &k), "TERN_KERNEL=avx2: this CPU lacks");
    if (tern_kernel_supported(TERN_KIMPL_NEON, NULL)) {
        CHECK_OK(tern_kernel_resolve("neon", &k));
        CHECK_OK(tern_kernel_resolve("auto", &k));
        CHECK(k == TERN_KIMPL_NEON); // the only SIMD implementation on aarch64
    } else {
        CHECK_FAILS(tern_kernel_resolve("neon", &k), "TERN_KERNEL=neon: this CPU lacks aarch64 (neon)");
        CHECK(strchr(tern_last_error(), '\n') == NULL);
    }
    CHECK_FAILS(tern_kernel_resolve("sse9", &k), "unknown kernel");
}

static void errors(void) {
    const tern_kformat *f = tern_kformat_get(TERN_KFMT_T2);
    tern_kmatrix km;
    CHECK_FAILS(tern_kmatrix_init(&km, f, 4, 100, 48, 0, NULL), "multiple of 32");
    CHECK_OK(tern_kmatrix_init(&km, tern_kformat_get(TERN_KFMT_Q4G), 4, 100, 32, 1, NULL)); // any format may shift
    CHECK_FAILS(tern_kpack(&km, (uint8_t[4 * 80]){0}, (int8_t[400]){0}, (float[16]){0}, NULL, (uint8_t[16]){0}),
                "shift but none");
    CHECK_FAILS(tern_kpack(&km, (uint8_t[4 * 80]){0}, (int8_t[400]){0}, (float[16]){0}, (float[16]){0},
                           (uint8_t[16]){0, 3}),
                "zero point 3 at row 0 group 1 with shifts");
    CHECK(km.row_bytes == 64 + 4 * 4); // 4 groups: fp16 scale and shift, no zero point
    CHECK(tern_kformat_find("tern-t1.6") == tern_kformat_get(TERN_KFMT_T1_6));
    CHECK(tern_kformat_find("t3") == NULL);
    int8_t codes[64];
    float sc[2] = {1, 1};
    uint8_t buf[256], z[2] = {0, 0}; // >= the q8 row (64 + 4 bytes)
    memset(codes, 0, sizeof codes);
    codes[40] = 2;
    CHECK_OK(tern_kmatrix_init(&km, f, 1, 64, 32, 0, buf));
    CHECK_FAILS(tern_kpack(&km, buf, codes, sc, NULL, NULL), "code 2 at row 0 col 40");
    codes[40] = 0, sc[1] = 1e6f;
    CHECK_FAILS(tern_kpack(&km, buf, codes, sc, NULL, NULL), "not finite in fp16");
    CHECK_OK(tern_kmatrix_init(&km, tern_kformat_get(TERN_KFMT_Q2G), 1, 64, 32, 0, buf));
    z[1] = 4, sc[1] = 1;
    CHECK_FAILS(tern_kpack(&km, buf, codes, sc, NULL, z), "zero point 4");
    codes[0] = -1;
    CHECK_OK(tern_kmatrix_init(&km, tern_kformat_get(TERN_KFMT_Q8), 1, 64, 32, 0, buf));
    codes[1] = -128;
    CHECK_FAILS(tern_kpack(&km, buf, codes, sc, NULL, NULL), "outside [-127, 127]");
}

// A corrupted weight byte must change the output, or the comparisons above
// could be comparing nothing.
static void sensitivity(void) {
    for (int fi = 0; fi < TERN_KFMT_COUNT; fi++) {
        const tern_kformat *f = tern_kformat_get((tern_kfmt_id)fi);
        mat m = mat_make(f, 2, 96, 32, 0, FILL_RANDOM, 0.1f);
        tern_kmatrix km;
        uint8_t *buf = pack(f, &m, &km);
        float *x = rand_x(1, 96, 1.0f);
        for (int i = 0; i < 96; i++) x[i] = copysignf(0.5f + fabsf(x[i]), x[i]); // no activation quantizes to 0
        tern_qact a;
        CHECK_OK(tern_qact_init(&a, 1, 96, 32));
        tern_quantize_act(TERN_KIMPL_SCALAR, &a, x, 1);
        for (int impl = 0; impl < TERN_KIMPL_COUNT; impl++) {
            if (!tern_kernel_supported((tern_kimpl)impl, NULL)) continue;
            float y0[2], y1[2];
            tern_kgemv((tern_kimpl)impl, &km, &a, 0, NULL, y0);
            buf[km.row_bytes + 3] ^= 0x01; // a code of row 1, chunk 0
            tern_kgemv((tern_kimpl)impl, &km, &a, 0, NULL, y1);
            buf[km.row_bytes + 3] ^= 0x01;
            CHECK_MSG(y0[0] == y1[0] && y0[1] != y1[1], "%s %s: corruption not seen", f->name,
                      tern_kernel_name((tern_kimpl)impl));
        }
        tern_qact_free(&a);
        free(x), tern_free(buf), mat_free(&m);
    }
}

int main(void) {
    printf("cpu: %s\n", tern_cpu_describe());
#if defined(__aarch64__)
    // The NEON kernels use sdot exactly when this bit is set (GCC builds; kern_neon.c).
    printf("neon kernel path: %s\n", (getauxval(AT_HWCAP) & (1ul << 20)) ? "dotprod" : "plain");
#endif
    dispatch();
    errors();
    t16_exhaustive();
    quantizer_formula();
    quantizer_ties();
    for (int fi = 0; fi < TERN_KFMT_COUNT; fi++) {
        const tern_kformat *f = tern_kformat_get((tern_kfmt_id)fi);
        random_cases(f);
        extreme_cases(f);
    }
    sensitivity();
    for (int i = 0; i < TERN_KIMPL_COUNT; i++)
        printf("%s: %d kernel cases compared\n", tern_kernel_name((tern_kimpl)i), n_impls_tested[i]);
    return test_report();
}
