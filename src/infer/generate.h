// Text generation: prompt processing (batched) then token-by-token decoding.
#ifndef TERN_INFER_GENERATE_H
#define TERN_INFER_GENERATE_H

#include <stdint.h>
#include <stdio.h>

#include "io/model.h"
#include "infer/packed.h"
#include "infer/sampler.h"
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
    const char *format; // the linears' storage (infer/packed.h); NULL = "native"
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

// A generation in progress on a caller-owned session: tern_gen_begin runs the
// prompt, each tern_gen_next samples one token. Same tokens, same stops as
// tern_generate_cb, one call at a time (a server streams them this way).
typedef struct {
    tern_session *s;
    const tern_tokenizer *tok;
    tern_sampler smp;
    int n_predict;
    int prev;        // the last token (the prompt's last, then each sampled one)
    int pos;         // positions of the session's KV cache that are filled
    int pending;     // prev is sampled but not yet run through the model
    int stop_id;     // a token that also ends generation unseen, like end-of-generation
                     // ones (a chat template's end of turn); -1 (the default): none
    int done;
    double t_gen;    // when decoding started
    tern_gen_stats st;
} tern_gen_run;

// Runs ids[reuse..n) at positions reuse..n-1: the caller promises that the
// session's cache already holds ids[0..reuse) (a previous request's common
// prefix; 0 for a fresh session). At least the last prompt token is run again
// so that its logits are current.
int tern_gen_begin(tern_gen_run *g, tern_session *s, const tern_tokenizer *tok, const int *ids, int n, int reuse,
                   const tern_gen_opts *o);
// A session for generation: context and batch from o, a .tern model's packed
// linears installed (free with tern_gen_session_free).
int tern_gen_session(tern_session *s, tern_packed **packed, const tern_model *m, const tern_gen_opts *o);
void tern_gen_session_free(tern_session *s, tern_packed *packed);
// 1: one token was generated, its text in piece[0..*len) and its id in g->prev;
// 0: finished (g->st says why: end of generation, a full context, or n_predict);
// -1: error.
int tern_gen_next(tern_gen_run *g, char *piece, size_t cap, size_t *len);
// Frees the sampler and completes the timings in g->st; the session stays.
void tern_gen_end(tern_gen_run *g);
// Tokenizes a prompt as tern generate does (BOS when the vocabulary adds it;
// an empty prompt is BOS alone).
int tern_gen_tokenize(const tern_tokenizer *tok, const char *prompt, int **ids, int *n);

// Generates from `prompt`, passing the text of each token (not the prompt's) to `fn`.
int tern_generate_cb(const tern_model *m, const tern_tokenizer *tok, const char *prompt, const tern_gen_opts *o,
                     tern_gen_piece_fn fn, void *user, tern_gen_stats *stats);
// Streams generated text (not the prompt) to `out`, flushing each piece.
int tern_generate(const tern_model *m, const tern_tokenizer *tok, const char *prompt, const tern_gen_opts *o,
                  FILE *out, tern_gen_stats *stats);

#endif
