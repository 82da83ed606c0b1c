// Token sampling: greedy (temp 0), temperature, nucleus (top-p), and
// llama.cpp's top-k, min-p and repetition penalty.
#ifndef TERN_INFER_SAMPLER_H
#define TERN_INFER_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temp;    // 0 = greedy
    float top_p;   // 1 = off
    int top_k;     // 0 = off
    float min_p;   // 0 = off
    float repeat_penalty; // 1 = off
    int repeat_last_n;    // tokens of history the penalty looks at
    uint64_t rng;  // xorshift state (never 0)
    int vocab;
    int *order;    // [vocab] scratch for top-p
    float *probs;  // [vocab]
    float *adj;    // [vocab] logits after the penalty
    int *history, n_history; // [repeat_last_n] ring of accepted tokens
} tern_sampler;

int tern_sampler_init(tern_sampler *s, int vocab, float temp, float top_p, uint64_t seed);
void tern_sampler_free(tern_sampler *s);
// llama.cpp's filters, applied in its order before temperature and top-p:
// the repetition penalty on tokens among the last repeat_last_n accepted
// (logit / penalty when positive, * penalty otherwise; greedy included), then
// the top_k most likely tokens, then those whose probability at temperature 1
// is at least min_p times the most likely one's. 0 / 0 / 1 turn them off.
int tern_sampler_set_filters(tern_sampler *s, int top_k, float min_p, float repeat_penalty, int repeat_last_n);
// Adds a token to the history the repetition penalty looks at.
void tern_sampler_accept(tern_sampler *s, int token);
// Picks a token from logits[vocab] (logits are left unchanged).
int tern_sample(tern_sampler *s, const float *logits);
int tern_argmax(const float *x, int n);

#endif
