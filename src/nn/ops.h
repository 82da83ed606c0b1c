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
// Columns [c0, c1) (both even) of one token's x[n_heads * head_dim] at position
// pos rotated in place: exactly what tern_rope_forward does to those columns.
void tern_rope_columns(float *x, const tern_rope *r, int pos, int c0, int c1);

// out[N, H] = silu(gate[N, H]) * up[N, H]; out may alias gate.
void tern_swiglu_forward(float *out, const float *gate, const float *up, int64_t count);
// out = relu(gate)^2 * up (BitNet b1.58's gated FFN); out may alias gate.
void tern_relu2_glu_forward(float *out, const float *gate, const float *up, int64_t count);
// BitNet's per-token int8 activation fake quantization of x[n, dim] in place
// (Hugging Face ActQuant): s = 127 / max(max|x_t|, 1e-5), x -> clamp(rint(x s), -128, 127) / s.
void tern_act_quant_int8_forward(float *x, int n, int dim);

// x[i] += y[i]
void tern_residual_forward(float *x, const float *y, int64_t count);

// y[i] = expf(x[i]) for n values (y may alias x). With AVX2+FMA, 8 lanes at a
// time by glibc's expf algorithm (same table, polynomial and FMA steps): the
// same values as glibc's expf, bit for bit (checked for all 2^32 inputs on
// glibc 2.36); lanes with NaN or an overflowing x go to expf itself.
void tern_expf_array(float *y, const float *x, int64_t n);

// In-place softmax of x[n] (exp by tern_expf_array, the sum in double).
void tern_softmax(float *x, int n);

// ---- Training: forward variants that keep what the backward needs, and the
// backward passes. Parameter gradients always ACCUMULATE (+=); a NULL
// parameter-gradient pointer skips that work (frozen tensor). Each output
// element is summed by one thread in a fixed order, so results are
// bit-identical run to run for a given thread count (no float atomics).

// dembd[V, C] += dout[N, C] scattered to rows tokens[n] (repeated tokens add up).
void tern_embedding_backward(float *dembd, const float *dout, const int *tokens, int n, int dim);

// tern_rmsnorm_forward (bit-identical out) that also saves rstd[N] = 1/rms(in[n, :]).
void tern_rmsnorm_forward_train(float *out, float *rstd, const float *in, const float *w, int n, int dim,
                                float eps);
// From dout[N, C]: dx[N, C] += dL/din; dw[C] += dL/dw (dw may be NULL).
void tern_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *in, const float *w,
                           const float *rstd, int n, int dim);

// Linear y[N, out] = x[N, in] · w[out, in]ᵀ + b[out]. From dy[N, out]:
// dx[N, in] = dy · w (+= when accumulate_dx; dx NULL skips), dw[out, in] += dyᵀ · x
// (NULL skips), db[out] += Σ_n dy[n, :] (NULL skips).
void tern_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                          int n, int in_dim, int out_dim, int accumulate_dx);
// db[out] += Σ_n dy[n, out]
void tern_bias_backward(float *db, const float *dy, int n, int out_dim);

// dx[N, n_heads, head_dim] in place: the gradient through tern_rope_forward
// (the transpose of a rotation is the inverse rotation).
void tern_rope_backward(float *dx, const tern_rope *r, const int *pos, int n, int n_heads);

// out = silu(gate) * up: dgate[i], dup[i] (written) from dout[i]; dgate may alias dout.
void tern_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                          int64_t count);

// x = a + b: da[i] += dout[i], db[i] += dout[i] (either may be NULL).
void tern_residual_backward(float *da, float *db, const float *dout, int64_t count);

// Causal grouped-query attention over B sequences of T tokens (positions 0..T-1),
// head h reading KV head h / (n_heads / n_kv_heads), scores scaled by 1/sqrt(hd).
// q[B*T, H, hd], k/v[B*T, KVH, hd] -> out[B*T, H, hd]; att[B, H, T, T] receives
// the softmax probabilities (row t holds s <= t, zeros above the diagonal).
// Runs per head as strided products (tern_gemm_serial_f32: OpenBLAS when built
// with it) over blocks of query rows, skipping keys past each block.
void tern_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B,
                            int T, int n_heads, int n_kv_heads, int head_dim);
// From dout[B*T, H, hd] and the forward's att/q/k/v: dq[B*T, H, hd] and
// dk/dv[B*T, KVH, hd] (written, not accumulated; dK/dV sum over the heads that
// share a KV head). datt is scratch [B, H, T, T].
void tern_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout, const float *att,
                             const float *q, const float *k, const float *v, int B, int T, int n_heads,
                             int n_kv_heads, int head_dim);

#endif
