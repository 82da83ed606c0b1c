#include "infer/bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/progress.h"
#include "core/threads.h"
#include "infer/packed.h"
#include "nn/transformer.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif

static void mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : 0;
}

int tern_bench_run(const tern_model *m, const char *format, const tern_bench_opts *o, tern_bench_result res[2]) {
    const tern_config *c = &m->cfg;
    int n_prompt = o->n_prompt, n_gen = o->n_gen, reps = o->reps < 1 ? 1 : o->reps;
    int ctx = n_prompt > n_gen ? n_prompt : n_gen;
    tern_session s;
    tern_packed *packed = NULL;
    if (tern_session_init(&s, m, ctx, n_prompt)) return -1;
    if (tern_session_set_format(&s, format, 0, &packed)) {
        tern_session_free(&s);
        return -1;
    }
    int *tokens = malloc((size_t)ctx * sizeof(int));
    double *tps = malloc((size_t)reps * sizeof(double));
    if (!tokens || !tps) {
        free(tokens), free(tps);
        tern_session_free(&s);
        tern_packed_free(packed);
        return tern_errorf("bench: out of memory");
    }
    unsigned seed = 42;
    for (int i = 0; i < ctx; i++) {
        seed = seed * 1103515245u + 12345u;
        tokens[i] = (int)((seed >> 8) % (unsigned)c->vocab_size);
    }
    memset(res, 0, 2 * sizeof *res);
    tern_progress bar;
    tern_progress_begin(&bar, format, "run", 2 * (reps + 1));
    int rc = 0, done = 0;
    for (int r = -1; r < reps && rc == 0; r++) { // r = -1: warm-up
        double t0 = tern_now_sec();
        rc = tern_forward(&s, tokens, n_prompt, 0, NULL);
        if (r >= 0) tps[r] = n_prompt / (tern_now_sec() - t0);
        tern_progress_update(&bar, ++done, "pp");
    }
    if (rc == 0) mean_sd(tps, reps, &res[0].tokens_per_s, &res[0].sd);
    double phase_s[TERN_PH_COUNT] = {0};
    for (int r = -1; r < reps && rc == 0; r++) {
        s.profile = o->profile && r >= 0 ? phase_s : NULL; // the measured repetitions only
        double t0 = tern_now_sec();
        for (int i = 0; i < n_gen && rc == 0; i++) rc = tern_forward(&s, &tokens[i], 1, i, NULL);
        if (r >= 0) tps[r] = n_gen / (tern_now_sec() - t0);
        tern_progress_update(&bar, ++done, "tg");
    }
    tern_progress_end(&bar);
    if (rc == 0) mean_sd(tps, reps, &res[1].tokens_per_s, &res[1].sd);
    s.profile = NULL;
    for (int ph = 0; ph < TERN_PH_COUNT && o->profile; ph++) res[1].phase_us[ph] = 1e6 * phase_s[ph] / ((double)reps * n_gen);
    int64_t w = tern_session_weight_bytes(&s), file_bytes = tern_session_file_bytes(&s, packed);
    // tg reads, on average, half of the n_gen cached positions' K and V per layer.
    double kv = (double)c->n_layers * 2.0 * c->n_kv_heads * c->head_dim * 4 * (n_gen / 2.0);
    for (int k = 0; k < 2; k++) {
        const char *name = !strcmp(format, "native") ? tern_packed_format_name(packed) : format;
        snprintf(res[k].format, sizeof res[k].format, "%s", name ? name : "f32");
        res[k].file_bytes = file_bytes;
    }
    snprintf(res[0].test, sizeof res[0].test, "pp%d", n_prompt);
    snprintf(res[1].test, sizeof res[1].test, "tg%d", n_gen);
    res[0].bytes_per_token = (double)w / n_prompt; // weights stream once per batch
    res[1].bytes_per_token = (double)w + kv;
    free(tokens);
    free(tps);
    tern_session_free(&s);
    tern_packed_free(packed);
    return rc;
}

static double sum_block(const float *p, size_t n) {
#if defined(__AVX2__)
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
#else
    float s = 0;
    for (size_t i = 0; i < n; i++) s += p[i];
    return s;
#endif
}

double tern_bench_read_bandwidth(void) {
    const size_t n = (size_t)64 << 20; // 256 MiB of floats: far beyond any cache
    float *buf = tern_alloc(n * sizeof(float));
    if (!buf) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = 1.0f;
    double best = 0;
    volatile double sink = 0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = tern_now_sec(), total = 0;
        const size_t chunk = (size_t)1 << 16;
#pragma omp parallel for schedule(static) reduction(+ : total)
        for (size_t i = 0; i < n; i += chunk) total += sum_block(buf + i, chunk);
        double dt = tern_now_sec() - t0;
        sink += total;
        double gbs = (double)n * sizeof(float) / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    (void)sink;
    tern_free(buf);
    return best;
}
