// Micro-benchmark of the packed ternary / low-bit kernels on SmolLM2-135M's
// linear-layer and LM-head shapes: GEMV (1 token) and GEMM (8 tokens, or
// --tokens N: 512 is a prompt) per format and kernel implementation, next to
// the FP32 GEMV/GEMM of nn/matmul.c. On a CPU with AVX-512 VNNI it first
// measures the peak of vpdpbusd (zmm) on the given threads, and the GEMM
// column says which fraction of that int8 peak each kernel reaches.
// The head (28 MiB at 8 bits) is only run in q8-row, the format it is stored in.
//
//   build/bench/bench_kernels [--threads N] [--tokens N] [--ms T] [--group G] [--q8-group G] [--formats a,b] [--impls a,b] [--cpu-time] [--cold] [--shape RxC]
//
// --shape RxC runs one matrix of R rows and C columns instead of SmolLM2's
// (e.g. 6912x2560, a 2B model's gate/up). With --cold it also prints the
// read-bandwidth probe of `tern bench` on the same threads, the ceiling the
// streamed GB/s compare with.
//
// Prints a Markdown table. GB/s counts the packed weight bytes streamed per
// call (read once per call, also for GEMM); GMAC/s counts multiply-adds
// (rows * cols * tokens). Activation quantization is timed separately.
// Each figure is the best of 5 rounds of at least T/5 ms. By default the
// weights stay in cache between calls; --cold rotates through copies filling
// 256 MiB, so every call streams its weights from DRAM as in a real forward.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/cpu.h"
#include "core/error.h"
#include "core/mem.h"
#include "core/threads.h"
#include "infer/bench.h"
#include "kernels/kernels.h"
#include "nn/matmul.h"

static unsigned rng = 1;
static unsigned rnd(void) { return (rng = rng * 1664525u + 1013904223u) >> 8; }
static float frand(void) { return (float)(rnd() & 0xffff) / 32768.0f - 1.0f; }

typedef struct {
    int rows, cols;
    const char *what;
    int head; // the LM head: run only in q8-row, the format it is stored in
} shape;

static int N_GEMM = 8; // --tokens

typedef struct {
    int kind; // 0 packed gemv, 1 packed gemm, 2 f32 gemv, 3 f32 gemm, 4 quantize
    tern_kimpl impl;
    const tern_kmatrix *w;
    tern_qact *a;
    const float *x, *wf;
    float *out;
    int rows, cols;
    int copies, next;   // --cold: rotate through this many copies of the weights
    size_t stride;      // bytes between copies
} job;

static void run(job *j) {
    size_t off = (size_t)j->next * j->stride;
    j->next = (j->next + 1) % j->copies;
    tern_kmatrix w;
    if (j->w) {
        w = *j->w;
        if (w.data) w.data += off;
        if (w.ilv) w.ilv += off;
    }
    const float *wf = j->wf ? (const float *)((const char *)j->wf + off) : NULL;
    switch (j->kind) {
    case 0: tern_kgemv(j->impl, &w, j->a, 0, NULL, j->out); break;
    case 1: tern_kgemm(j->impl, &w, j->a, N_GEMM, NULL, j->out, (size_t)j->rows); break;
    case 2: tern_gemv_f32(j->out, j->x, wf, NULL, j->cols, j->rows); break;
    case 3: tern_gemm_f32_blocked(j->out, j->x, wf, NULL, N_GEMM, j->cols, j->rows); break;
    default: tern_quantize_act(j->impl, j->a, j->x, 1); break;
    }
}

static int use_cpu_time;
static int tern_group = 128, q8_group = TERN_KQ8_GROUP; // --group, --q8-group
static size_t cold_bytes; // --cold: weights copied to fill this many bytes (0 = hot cache)

static int n_copies(size_t bytes) { return cold_bytes > bytes ? (int)(cold_bytes / bytes) : 1; }

// Wall clock, or with --cpu-time this thread's CPU time: on a shared machine
// that leaves out the time the benchmark is not scheduled at all (only
// meaningful with --threads 1).
static double now(void) {
    if (!use_cpu_time) return tern_now_sec();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Seconds per call: best of 5 rounds, each at least ms/5 milliseconds.
static double time_job(job *j, double ms) {
    double best = 1e30;
    run(j); // warm caches and the thread pool
    for (int round = 0; round < 5; round++) {
        long calls = 0;
        double t0 = now(), t;
        do {
            run(j);
            calls++;
            t = now() - t0;
        } while (t < ms / 5e3);
        if (t / calls < best) best = t / calls;
    }
    return best;
}

static int listed(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

static double int8_peak; // GMAC/s of vpdpbusd on all threads (0: not measured)

static void row(const char *shape_s, const char *fmt, const char *impl, double bytes, double macs, double t1,
                double t8) {
    double gmac8 = macs * N_GEMM / t8 / 1e9;
    printf("| %s | %s | %s | %.0f | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f |", shape_s, fmt, impl, bytes / 1024,
           t1 * 1e6, bytes / t1 / 1e9, macs / t1 / 1e9, t8 * 1e6, bytes / t8 / 1e9, gmac8);
    if (int8_peak > 0) printf(" %.0f%% |", 100 * gmac8 / int8_peak);
    printf("\n");
}

#if defined(__x86_64__)
// Multiply-adds per second of one thread issuing independent zmm vpdpbusd
// (12 accumulators: more than latency x throughput), for about sec seconds.
__attribute__((target("avx512f,avx512vnni"), noinline)) static double vnni_thread_gmacs(double sec) {
    __m512i acc[12], w = _mm512_set1_epi8(1), x = _mm512_set1_epi8(2);
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_epi32(i);
    long n = 0;
    double t0 = tern_now_sec(), t;
    do {
        for (int k = 0; k < 100000; k++) {
            for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], w, x);
            __asm__ volatile("" : "+v"(w), "+v"(x));
        }
        n += 100000;
        t = tern_now_sec() - t0;
    } while (t < sec);
    int sink = 0;
    for (int i = 0; i < 12; i++) sink += _mm512_reduce_add_epi32(acc[i]);
    __asm__ volatile("" ::"r"(sink));
    return (double)n * 12 * 64 / t / 1e9;
}
#endif

// The int8 peak: every thread runs the probe at once; the sum of their rates.
static double vnni_peak(int threads) {
#if defined(__x86_64__)
    if (!(tern_cpu_features() & TERN_CPU_AVX512VNNI)) return 0;
    double sum = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : sum)
    for (int i = 0; i < threads; i++) sum += vnni_thread_gmacs(0.3);
    return sum;
#else
    (void)threads;
    return 0;
#endif
}

int main(int argc, char **argv) {
    int threads = 1;
    double ms = 300;
    const char *formats = NULL, *impls = NULL;
    shape custom = {0, 0, NULL, 0};
    char custom_name[32];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc) ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--formats") && i + 1 < argc) formats = argv[++i];
        else if (!strcmp(argv[i], "--impls") && i + 1 < argc) impls = argv[++i];
        else if (!strcmp(argv[i], "--cpu-time")) use_cpu_time = 1;
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc && atoi(argv[i + 1]) > 0) N_GEMM = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--group") && i + 1 < argc) tern_group = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--q8-group") && i + 1 < argc) q8_group = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cold")) cold_bytes = (size_t)256 << 20;
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            char tail;
            if (sscanf(argv[++i], "%dx%d%c", &custom.rows, &custom.cols, &tail) != 2 || custom.rows < 1 ||
                custom.cols < 1 || custom.rows > (1 << 20) || custom.cols > TERN_KMAX_COLS) {
                fprintf(stderr, "bench_kernels: --shape %s: expected ROWSxCOLS, rows 1..%d, cols 1..%d\n", argv[i],
                        1 << 20, TERN_KMAX_COLS);
                return 2;
            }
            snprintf(custom_name, sizeof custom_name, "%dx%d", custom.rows, custom.cols);
            custom.what = custom_name;
        } else {
            fprintf(stderr, "usage: %s [--threads N] [--tokens N] [--ms T] [--formats a,b] [--impls scalar,avx2,avx512] [--cpu-time] [--cold] [--shape RxC]\n", argv[0]);
            return 2;
        }
    }
    tern_set_threads(threads);
    static const shape smollm2[] = {{576, 576, "q/o 576x576", 0},
                                    {192, 576, "k/v 192x576", 0},
                                    {1536, 576, "gate/up 1536x576", 0},
                                    {576, 1536, "down 576x1536", 0},
                                    {49152, 576, "head 49152x576", 1}};
    const shape *shapes = custom.rows ? &custom : smollm2;
    const size_t n_shapes = custom.rows ? 1 : sizeof smollm2 / sizeof smollm2[0];
    printf("cpu: %s; threads: %d; GEMM = %d tokens; G = %d (q8-row: %d); timing: %s; weights %s\n\n",
           tern_cpu_describe(), threads, N_GEMM, tern_group, q8_group, use_cpu_time ? "thread CPU time" : "wall clock",
           cold_bytes ? "streamed from DRAM (--cold)" : "hot in cache");
    if (cold_bytes) printf("read-bandwidth probe (%d thread%s): %.1f GB/s\n\n", threads, threads > 1 ? "s" : "",
                           tern_bench_read_bandwidth());
    int8_peak = vnni_peak(threads);
    if (int8_peak > 0) printf("int8 peak (vpdpbusd zmm, %d thread%s): %.1f GMAC/s\n\n", threads, threads > 1 ? "s" : "", int8_peak);
    printf("| shape (rows x cols) | format | kernel | weights KiB | GEMV us | GEMV GB/s | GEMV GMAC/s | GEMM%d us | "
           "GEMM%d GB/s | GEMM%d GMAC/s |%s\n|---|---|---|---|---|---|---|---|---|---|%s\n",
           N_GEMM, N_GEMM, N_GEMM, int8_peak > 0 ? " GEMM % of int8 peak |" : "", int8_peak > 0 ? "---|" : "");
    for (size_t s = 0; s < n_shapes; s++) {
        int rows = shapes[s].rows, cols = shapes[s].cols;
        float *x = malloc((size_t)N_GEMM * cols * sizeof(float));
        size_t fbytes = (size_t)rows * cols * sizeof(float);
        int fcopies = n_copies(fbytes);
        float *wf = malloc(fbytes * fcopies);
        float *out = malloc((size_t)N_GEMM * rows * sizeof(float));
        for (size_t i = 0; i < (size_t)N_GEMM * cols; i++) x[i] = frand();
        for (size_t i = 0; i < (size_t)rows * cols; i++) wf[i] = 0.05f * frand();
        for (int k = 1; k < fcopies; k++) memcpy((char *)wf + k * fbytes, wf, fbytes);
        job jf = {2, TERN_KIMPL_SCALAR, NULL, NULL, x, wf, out, rows, cols, fcopies, 0, fbytes};
        double f1 = time_job(&jf, ms);
        jf.kind = 3;
        double f8 = time_job(&jf, ms);
        row(shapes[s].what, "f32", "tern_gemv_f32 / gemm_blocked", (double)rows * cols * 4, (double)rows * cols, f1, f8);
        for (int fi = 0; fi < TERN_KFMT_COUNT; fi++) {
            const tern_kformat *f = tern_kformat_get((tern_kfmt_id)fi);
            if (!listed(formats, f->name)) continue;
            if (shapes[s].head && f->kind != TERN_KKIND_Q8) continue; // the head is stored at 8 bits
            int group = f->kind == TERN_KKIND_Q8 ? q8_group : tern_group, has_shift = 0;
            tern_kmatrix km;
            if (tern_kmatrix_init(&km, f, rows, cols, group, has_shift, NULL)) return 1;
            int ng = km.n_groups;
            int8_t *codes = malloc((size_t)rows * cols);
            float *sc = malloc((size_t)rows * ng * sizeof(float));
            size_t pbytes = (size_t)rows * km.row_bytes;
            int pcopies = n_copies(pbytes);
            uint8_t *z = malloc((size_t)rows * ng), *buf = tern_alloc(pbytes * pcopies);
            for (size_t i = 0; i < (size_t)rows * cols; i++)
                codes[i] = (int8_t)(f->code_min + (int)(rnd() % (unsigned)(f->code_max - f->code_min + 1)));
            for (size_t i = 0; i < (size_t)rows * ng; i++) sc[i] = 0.01f + 0.01f * frand(), z[i] = 1;
            km.data = buf;
            if (tern_kpack(&km, buf, codes, sc, NULL, z)) {
                fprintf(stderr, "%s\n", tern_last_error());
                return 1;
            }
            for (int k = 1; k < pcopies; k++) memcpy(buf + k * pbytes, buf, pbytes);
            tern_qact a;
            if (tern_qact_init(&a, N_GEMM, cols, tern_kact_group(&km))) return 1;
            for (int impl = 0; impl < TERN_KIMPL_COUNT; impl++) {
                if (!tern_kernel_supported((tern_kimpl)impl, NULL) || !listed(impls, tern_kernel_name((tern_kimpl)impl)))
                    continue;
                tern_quantize_act((tern_kimpl)impl, &a, x, N_GEMM); // in the layout this implementation's GEMM reads
                job j = {0, (tern_kimpl)impl, &km, &a, x, NULL, out, rows, cols, pcopies, 0, pbytes};
                double t1 = time_job(&j, ms);
                j.kind = 1;
                double t8 = time_job(&j, ms);
                row(shapes[s].what, f->name, tern_kernel_name((tern_kimpl)impl), (double)rows * km.row_bytes,
                    (double)rows * cols, t1, t8);
                if (impl == TERN_KIMPL_AVX512 && tern_kilv_ok(&km)) { // the layout a packed session runs
                    uint8_t *ilv = tern_alloc(pbytes * pcopies);
                    for (int k = 0; k < pcopies; k++) {
                        tern_kmatrix kc = km;
                        kc.data = buf + k * pbytes;
                        tern_kilv_pack(&kc, ilv + k * pbytes);
                    }
                    tern_kmatrix ki = km;
                    ki.data = NULL, ki.ilv = ilv;
                    j.w = &ki, j.kind = 0;
                    t1 = time_job(&j, ms);
                    j.kind = 1;
                    t8 = time_job(&j, ms);
                    row(shapes[s].what, f->name, "avx512, row-interleaved", (double)rows * km.row_bytes,
                        (double)rows * cols, t1, t8);
                    tern_free(ilv);
                }
            }
            tern_qact_free(&a);
            free(codes), free(sc), free(z), tern_free(buf);
        }
        free(x), free(wf), free(out);
    }
    // Activation quantization (per token, once per matrix input).
    printf("\n| activation quantizer | kernel | us per token (576) | us per token (1536) |\n|---|---|---|---|\n");
    for (int impl = 0; impl < TERN_KIMPL_COUNT; impl++) {
        if (impl == TERN_KIMPL_AVX512) continue; // shares the AVX2 quantizer
        if (!tern_kernel_supported((tern_kimpl)impl, NULL)) continue;
        double us[2];
        for (int k = 0; k < 2; k++) {
            int cols = k ? 1536 : 576;
            float *x = malloc((size_t)cols * sizeof(float));
            for (int i = 0; i < cols; i++) x[i] = frand();
            tern_qact a;
            if (tern_qact_init(&a, 1, cols, 128)) return 1;
            job j = {4, (tern_kimpl)impl, NULL, &a, x, NULL, NULL, 1, cols, 1, 0, 0};
            us[k] = time_job(&j, ms) * 1e6;
            tern_qact_free(&a);
            free(x);
        }
        printf("| int8 absmax + group sums | %s | %.2f | %.2f |\n", tern_kernel_name((tern_kimpl)impl), us[0], us[1]);
    }
    return 0;
}
