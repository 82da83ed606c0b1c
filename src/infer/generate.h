// Text generation: prompt processing (batched) then token-by-token decoding.
#ifndef TERN_INFER_GENERATE_H
#define TERN_INFER_GENERATE_H

#include <stdint.h>
#include <stdio.h>

#include "io/model.h"
#include "tok/tokenizer.h"

typedef struct {
    int n_predict;   // tokens to generate (stops earlier at end-of-generation)
    float temp, top_p;
    int top_k;            // 0 = off
    float min_p;          // 0 = off
    float repeat_penalty; // 1 (or 0) = off; over the last repeat_last_n tokens, prompt included
    int repeat_last_n;
    uint64_t seed;
    int ctx;         // context length (<= 0: the model's, capped)
    int batch;       // prompt tokens per forward step
} tern_gen_opts;

typedef struct {
    int prompt_tokens, generated;
    double prompt_sec, gen_sec;
    int ctx;         // the context length used
    int stopped_eog; // stopped at an end-of-generation token
    int stopped_ctx; // stopped because the context was full (before --n-predict)
    int stopped_user; // the callback asked to stop
} tern_gen_stats;

// Called with each generated piece of text (bytes, not NUL-terminated);
// returning non-zero stops generation (stats->stopped_user).
typedef int (*tern_gen_piece_fn)(const char *piece, size_t len, void *user);

// Generates from `prompt`, passing the text of each token (not the prompt's) to `fn`.
int tern_generate_cb(const tern_model *m, const tern_tokenizer *tok, const char *prompt, const tern_gen_opts *o,
                     tern_gen_piece_fn fn, void *user, tern_gen_stats *stats);
// Streams generated text (not the prompt) to `out`, flushing each piece.
int tern_generate(const tern_model *m, const tern_tokenizer *tok, const char *prompt, const tern_gen_opts *o,
                  FILE *out, tern_gen_stats *stats);

#endif
