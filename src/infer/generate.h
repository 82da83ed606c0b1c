// Text generation: prompt processing (batched) then token-by-token decoding.
#ifndef TERN_INFER_GENERATE_H
#define TERN_INFER_GENERATE_H

#include <stdint.h>
#include <stdio.h>

#include "infer/packed.h"
#include "infer/sampler.h"
#include "io/model.h"
#include "nn/transformer.h"
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

// A session (a .tern model's packed linears installed) and a sampler set up
// from o (ctx, batch, sampling); tern_gen_teardown releases them.
int tern_gen_setup(const tern_model *m, const tern_gen_opts *o, tern_session *s, tern_packed **packed,
                   tern_sampler *smp);
void tern_gen_teardown(tern_session *s, tern_packed *packed, tern_sampler *smp);

// The decoding loop after a forward pass whose last logits are in s->logits
// (the last token run was `prev`, at position pos - 1): samples, passes each
// token's text to fn and runs it, until n_predict tokens, an end-of-generation
// token or stop_id (-1: none; neither is passed on nor run), the end of the
// context (stats->stopped_ctx), or fn asks to stop. Adds to stats->generated
// and sets its stopped_* flags; *end_pos (may be NULL): the position after the
// last token run, i.e. how many positions of the cache are now valid;
// run_ids (may be NULL, max_seq entries): run_ids[p] = the token run at p.
int tern_decode(tern_session *s, tern_sampler *smp, const tern_tokenizer *tok, int prev, int pos, int n_predict,
                int stop_id, tern_gen_piece_fn fn, void *user, tern_gen_stats *stats, int *end_pos, int *run_ids);

// Generates from `prompt`, passing the text of each token (not the prompt's) to `fn`.
int tern_generate_cb(const tern_model *m, const tern_tokenizer *tok, const char *prompt, const tern_gen_opts *o,
                     tern_gen_piece_fn fn, void *user, tern_gen_stats *stats);
// Streams generated text (not the prompt) to `out`, flushing each piece.
int tern_generate(const tern_model *m, const tern_tokenizer *tok, const char *prompt, const tern_gen_opts *o,
                  FILE *out, tern_gen_stats *stats);

#endif
