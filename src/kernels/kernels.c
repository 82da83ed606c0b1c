// Kernel dispatch, activation buffers and the threaded GEMV/GEMM driver.
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/error.h"
#include "core/mem.h"
#include "kernels/kern_impl.h"

#ifdef _OPENMP
#include <omp.h>
#endif

// Same threshold as nn/matmul.c: below this many multiply-adds a fork/join
// costs more than it saves (and spinning threads hurt on a loaded machine).
#define PARALLEL_MIN_MACS (1 << 18)
// Rows per scheduling unit: small enough to balance 2..16 threads on 192-row
// matrices, large enough that the per-block call overhead is noise.
#define ROW_BLOCK 16
// One-token products run in this many runs of whole blocks per thread (tern_kgemv).
#define GEMV_RUNS 8
_Static_assert(ROW_BLOCK % TERN_KILV_ROWS == 0, "row blocks must be whole interleaved blocks");

// Threads a parallel region started here would get (1 without OpenMP).
static int omp_threads(void) {
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

static const char *impl_names[TERN_KIMPL_COUNT] = {"scalar", "avx2", "avx512", "neon"};

const char *tern_kernel_name(tern_kimpl impl) {
    return (unsigned)impl < TERN_KIMPL_COUNT ? impl_names[impl] : "?";
}

int tern_kernel_supported(tern_kimpl impl, const char **missing) {
    const char *miss = NULL;
    unsigned f = tern_cpu_features();
    (void)f; // unused off x86
    switch (impl) {
    case TERN_KIMPL_SCALAR: break;
#ifdef TERN_KHAVE_X86
    case TERN_KIMPL_AVX512:
        // Formats without a VNNI kernel run the AVX2 one, so AVX2 is needed too.
        if (!(f & TERN_CPU_AVX512F)) miss = "avx512f";
        else if (!(f & TERN_CPU_AVX512BW)) miss = "avx512bw";
        else if (!(f & TERN_CPU_AVX512VNNI)) miss = "avx512vnni";
        else if (!(f & TERN_CPU_AVX2)) miss = "avx2";
        else if (!(f & TERN_CPU_FMA)) miss = "fma";
        else if (!(f & TERN_CPU_F16C)) miss = "f16c";
        break;
    case TERN_KIMPL_AVX2:
        if (!(f & TERN_CPU_AVX2)) miss = "avx2";
        else if (!(f & TERN_CPU_FMA)) miss = "fma";
        else if (!(f & TERN_CPU_F16C)) miss = "f16c";
        break;
#else
    case TERN_KIMPL_AVX2: miss = "x86-64 (avx2)"; break;
    case TERN_KIMPL_AVX512: miss = "x86-64 (avx512f)"; break;
#endif
#ifdef TERN_KHAVE_NEON
    case TERN_KIMPL_NEON: break; // Advanced SIMD is part of the AArch64 base ABI; dotprod is checked per call
#else
    case TERN_KIMPL_NEON: miss = "aarch64 (neon)"; break;
#endif
    default: miss = "?"; break;
    }
    if (missing) *missing = miss;
    return miss == NULL;
}

int tern_kernel_resolve(const char *name, tern_kimpl *out) {
    if (!name || !*name || strcmp(name, "auto") == 0) {
        // AVX-512 VNNI first (bit-exact with scalar on a Zen 4, and faster
        // there: docs/PERFORMANCE.md); formats without a VNNI kernel run AVX2.
        *out = tern_kernel_supported(TERN_KIMPL_AVX512, NULL) ? TERN_KIMPL_AVX512
               : tern_kernel_supported(TERN_KIMPL_AVX2, NULL) ? TERN_KIMPL_AVX2
               : tern_kernel_supported(TERN_KIMPL_NEON, NULL) ? TERN_KIMPL_NEON
                                                              : TERN_KIMPL_SCALAR;
        return 0;
    }
    for (int i = 0; i < TERN_KIMPL_COUNT; i++) {
        if (strcmp(name, impl_names[i]) != 0) continue;
        const char *miss;
        if (!tern_kernel_supported((tern_kimpl)i, &miss))
            return tern_errorf("TERN_KERNEL=%s: this CPU lacks %s", name, miss);
        *out = (tern_kimpl)i;
        return 0;
    }
    return tern_errorf("TERN_KERNEL=%s: unknown kernel (scalar, avx2, avx512, neon, auto)", name);
}

int tern_kernel_default(tern_kimpl *out) {
    static int resolved = -1; // -1 unknown, 0 ok, 1 failed
    static tern_kimpl cached;
    static char err[TERN_ERR_MAX];
    if (resolved < 0) {
        tern_kimpl k = TERN_KIMPL_SCALAR;
        int rc = tern_kernel_resolve(getenv("TERN_KERNEL"), &k);
        if (rc) snprintf(err, sizeof err, "%s", tern_last_error());
        cached = k;
        resolved = rc ? 1 : 0;
    }
    if (resolved) return tern_errorf("%s", err);
    *out = cached;
    return 0;
}

int tern_qact_init(tern_qact *a, int n_max, int cols, int group) {
    memset(a, 0, sizeof *a);
    if (n_max < 1 || cols < 1 || cols > TERN_KMAX_COLS || group < 1 ||
        (group % TERN_KCHUNK != 0 && group < cols))
        return tern_errorf("activation buffer: bad shape n=%d cols=%d group=%d", n_max, cols, group);
    a->n_max = n_max, a->cols = cols, a->group = group;
    a->n_groups = (cols + group - 1) / group;
    // Rounded to 64: the AVX-512 kernel reads chunk pairs.
    a->stride = ((size_t)cols + 63) / 64 * 64;
    a->q = tern_calloc((size_t)n_max * a->stride);
    a->scale = tern_calloc((size_t)n_max * a->n_groups * sizeof(float));
    a->gsum = tern_calloc((size_t)n_max * a->n_groups * sizeof(int32_t));
    a->qp = tern_calloc((size_t)n_max * a->stride);
    a->qi = tern_calloc((size_t)(n_max + TERN_KTILE - 1) / TERN_KTILE * TERN_KTILE * a->stride);
    if (!a->q || !a->scale || !a->gsum || !a->qp || !a->qi) {
        tern_qact_free(a);
        return tern_errorf("activation buffer: out of memory");
    }
    return 0;
}

int tern_kact_group(const tern_kmatrix *w) {
    int ag = w->fmt->act_group;
    // Smaller activation groups must tile the weight groups exactly (G = 96
    // cannot hold groups of 64): otherwise the weights' own group is used.
    int fits = ag > 0 && ag < w->cols && ag < w->group && (w->group >= w->cols || w->group % ag == 0);
    return fits ? ag : w->group;
}

void tern_qact_free(tern_qact *a) {
    tern_free(a->q), tern_free(a->scale), tern_free(a->gsum), tern_free(a->qp), tern_free(a->qi);
    memset(a, 0, sizeof *a);
}

void tern_quantize_act(tern_kimpl impl, tern_qact *a, const float *x, int n) {
    a->qi_n = 0;
#ifdef TERN_KHAVE_X86
    if (impl == TERN_KIMPL_AVX2 || impl == TERN_KIMPL_AVX512) {
        tern_quantize_act_avx2(a, x, n);
        if (impl == TERN_KIMPL_AVX512 && n >= TERN_KPANEL_MIN) tern_kinterleave_avx512(a, n);
        return;
    }
#endif
#ifdef TERN_KHAVE_NEON
    if (impl == TERN_KIMPL_NEON) {
        tern_quantize_act_neon(a, x, n);
        return;
    }
#endif
    (void)impl;
    tern_quantize_act_scalar(a, x, n);
}

static tern_kdot_fn pick(tern_kimpl impl, const tern_kmatrix *w) {
    tern_kdot_fn f = (unsigned)impl < TERN_KIMPL_COUNT ? w->fmt->dot[impl] : NULL;
    return f ? f : tern_kdot_scalar;
}

// f on rows [r0, r1). A matrix held only row-interleaved (data NULL) where
// impl's kernels do not read that layout runs row by row on the row's bytes
// copied back (the same bytes, so the same results; slow, and never what a
// packed session sets up: it interleaves only for AVX-512).
static void dot_rows(tern_kimpl impl, tern_kdot_fn f, const tern_kmatrix *w, int r0, int r1, const tern_qact *a,
                     int t0, int nt, const float *bias, float *out, size_t ldo) {
    if (w->data || tern_kilv_direct(impl, w, a, r0, r1)) {
        f(w, r0, r1, a, t0, nt, bias, out, ldo);
        return;
    }
    uint8_t row[TERN_KILV_MAX_ROW];
    tern_kmatrix one = *w;
    one.rows = 1, one.data = row, one.ilv = NULL;
    for (int r = r0; r < r1; r++) {
        tern_kilv_unpack_row(w, r, row);
        f(&one, 0, 1, a, t0, nt, bias ? bias + r : NULL, out + (r - r0), ldo);
    }
}

void tern_kgemm(tern_kimpl impl, const tern_kmatrix *w, const tern_qact *a, int n, const float *bias,
                float *out, size_t ldo) {
    tern_kdot_fn f = pick(impl, w);
    int panel = 0; // the panel GEMM reads an interleaved matrix's blocks itself
#ifdef TERN_KHAVE_X86
    if (impl == TERN_KIMPL_AVX512 && n >= TERN_KPANEL_MIN && a->qi_n == n) f = tern_kgemm_panel_avx512, panel = 1;
#endif
    int n_blocks = (w->rows + ROW_BLOCK - 1) / ROW_BLOCK;
    int64_t macs = (int64_t)n * w->rows * w->cols;
    (void)macs; // unused without OpenMP
#pragma omp parallel for schedule(static) if (macs >= PARALLEL_MIN_MACS)
    for (int b = 0; b < n_blocks; b++) {
        int r0 = b * ROW_BLOCK, r1 = r0 + ROW_BLOCK < w->rows ? r0 + ROW_BLOCK : w->rows;
        if (panel) f(w, r0, r1, a, 0, n, bias, out + r0, ldo);
        else dot_rows(impl, f, w, r0, r1, a, 0, n, bias, out + r0, ldo);
    }
}

void tern_kgemv(tern_kimpl impl, const tern_kmatrix *w, const tern_qact *a, int t, const float *bias,
                float *out) {
    tern_kdot_fn f = pick(impl, w);
    int n_blocks = (w->rows + ROW_BLOCK - 1) / ROW_BLOCK;
    int64_t macs = (int64_t)w->rows * w->cols;
    // Runs of whole blocks, GEMV_RUNS per thread (guided keeps them balanced):
    // the row-interleaved GEMV prefetches only within the rows of one call.
    int threads = macs >= PARALLEL_MIN_MACS ? omp_threads() : 1;
    int n_runs = n_blocks < GEMV_RUNS * threads ? n_blocks : GEMV_RUNS * threads;
#pragma omp parallel for schedule(guided) if (threads > 1)
    for (int k = 0; k < n_runs; k++) {
        int r0 = (int)((int64_t)n_blocks * k / n_runs) * ROW_BLOCK;
        int r1 = (int)((int64_t)n_blocks * (k + 1) / n_runs) * ROW_BLOCK;
        if (r1 > w->rows) r1 = w->rows;
        dot_rows(impl, f, w, r0, r1, a, t, 1, bias, out + r0, 0);
    }
}

void tern_kgemv_rows(tern_kimpl impl, const tern_kmatrix *w, const tern_qact *a, int t, const float *bias,
                     float *out, int r0, int r1) {
    dot_rows(impl, pick(impl, w), w, r0, r1, a, t, 1, bias, out + r0, 0);
}

float tern_kdot_row(tern_kimpl impl, const tern_kmatrix *w, int r, const tern_qact *a, int t, const float *bias) {
    float y;
    dot_rows(impl, pick(impl, w), w, r, r + 1, a, t, 1, bias, &y, 0);
    return y;
}
