// Token sampling: greedy (temp 0), temperature, nucleus (top-p).
#ifndef TERN_INFER_SAMPLER_H
#define TERN_INFER_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temp;    // 0 = greedy
    float top_p;   // 1 = off
    uint64_t rng;  // xorshift state (never 0)
    int vocab;
    int *order;    // [vocab] scratch for top-p
    float *probs;  // [vocab]
} tern_sampler;

int tern_sampler_init(tern_sampler *s, int vocab, float temp, float top_p, uint64_t seed);
void tern_sampler_free(tern_sampler *s);
// Picks a token from logits[vocab] (logits are left unchanged).
int tern_sample(tern_sampler *s, const float *logits);
int tern_argmax(const float *x, int n);

#endif
