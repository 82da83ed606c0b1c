// llama-bench-style throughput: pp (prompt processing, one batched forward of
// n_prompt tokens) and tg (n_gen single-token steps), each after a warm-up run,
// as mean ± sd over repetitions; plus a STREAM-like read-bandwidth probe.
#ifndef TERN_INFER_BENCH_H
#define TERN_INFER_BENCH_H

#include <stdint.h>

#include "io/model.h"
#include "nn/transformer.h"

typedef struct {
    int n_prompt, n_gen, reps;
    int profile; // time the phases of the measured tg steps (tern_session.profile)
} tern_bench_opts;

typedef struct {
    char format[16];        // e.g. "f32"
    char test[16];          // "pp512", "tg128"
    double tokens_per_s, sd;
    double bytes_per_token; // bytes streamed from memory per token (tg: weights + KV cache)
    int64_t file_bytes;     // size of the model in this format
    // tg with opts.profile: wall-clock microseconds per token in each phase
    // (the timers add ~0.2 us per phase call); 0 otherwise.
    double phase_us[TERN_PH_COUNT];
} tern_bench_result;

// Runs the model with its linear layers in `format` (see infer/packed.h: f32,
// bf16, t2, t1.6, q8); fills res[0] (pp) and res[1] (tg).
int tern_bench_run(const tern_model *m, const char *format, const tern_bench_opts *o, tern_bench_result res[2]);
// Sustained read bandwidth over a buffer much larger than the caches, in GB/s,
// using all threads (best of several passes).
double tern_bench_read_bandwidth(void);

#endif
