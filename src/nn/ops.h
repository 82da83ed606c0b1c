// FP32 building blocks of the LLaMA forward pass. Shapes are in comments;
// N = tokens, C = channels. Backward passes pair with these (training engine).
#ifndef TERN_NN_OPS_H
#define TERN_NN_OPS_H

#include <stdint.h>

// out[N, C] = embd[tokens[n], :]
void tern_embedding_forward(float *out, const float *embd, const int *tokens, int n, int dim);

// out[N, C] = in[N, C] / rms(in[n, :]) * w[C]; out may alias in.
void tern_rmsnorm_forward(float *out, const float *in, const float *w, int n, int dim, float eps);

// RoPE tables for positions [0, max_seq): cos/sin[pos, head_dim/2], adjacent-pair layout.
typedef struct {
    int max_seq, half; // half = head_dim / 2
    float *cos, *sin;
} tern_rope;

// inv_freq[i] = theta^(-2i/head_dim), adjusted by the config's RoPE scaling.
int tern_rope_init(tern_rope *r, int head_dim, int max_seq, float theta, int scaling, float factor,
                   float low_freq_factor, float high_freq_factor, int orig_max_seq);
void tern_rope_free(tern_rope *r);
// x[N, n_heads, head_dim] rotated in place; token n sits at position pos[n].
void tern_rope_forward(float *x, const tern_rope *r, const int *pos, int n, int n_heads);

// out[N, H] = silu(gate[N, H]) * up[N, H]; out may alias gate.
void tern_swiglu_forward(float *out, const float *gate, const float *up, int64_t count);

// x[i] += y[i]
void tern_residual_forward(float *x, const float *y, int64_t count);

// In-place softmax of x[n].
void tern_softmax(float *x, int n);

#endif
