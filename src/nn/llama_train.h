// Training graph of the LLaMA stack: forward that keeps the activations the
// backward needs, and an exact backward, in the style of llm.c's train_gpt2.c
// (one allocation for all parameters, one for their gradients, one for the
// activations; each op a forward/backward pair in nn/ops.h).
//
// Shapes: B sequences of T tokens, D = dim, V = vocab, L = layers.
#ifndef TERN_NN_LLAMA_TRAIN_H
#define TERN_NN_LLAMA_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "io/model.h"

// A linear layer's weight passes through this hook, so quantization methods can
// plug in without touching the engine. For FP training it is NULL (identity).
typedef struct tern_weight_hook tern_weight_hook;
struct tern_weight_hook {
    void *ctx;
    // Writes the effective weight w_eff[out, in] from the latent weight w, and
    // optionally an extra per-output term extra[out] added to y = x·w_effᵀ
    // (set *has_extra = 1 when it wrote one; e.g. Tequila's dead-zone bias).
    int (*effective)(void *ctx, int linear_id, const float *w, int out_dim, int in_dim, float *w_eff,
                     float *extra, int *has_extra);
    // Given dL/dw_eff[out, in] and dL/dextra[out] (NULL when no extra), adds the
    // gradient into dL/dw (latent) and into the method's own parameters.
    int (*backward)(void *ctx, int linear_id, const float *w, int out_dim, int in_dim, const float *d_w_eff,
                    const float *d_extra, float *d_w);
    // Set when the method trains parameters of its own behind frozen weights
    // (TEQ's scales): backward is then also called for frozen linears, with
    // d_w = NULL, and the backward pass always runs down to the first block.
    int backward_when_frozen;
};

// Linear ids: layer * 7 + {0 q, 1 k, 2 v, 3 o, 4 gate, 5 up, 6 down}.
enum { TERN_LIN_Q, TERN_LIN_K, TERN_LIN_V, TERN_LIN_O, TERN_LIN_GATE, TERN_LIN_UP, TERN_LIN_DOWN, TERN_LIN_COUNT };

typedef struct tern_train_model tern_train_model;

// Copies the model's tensors into one parameter buffer (FP32) and allocates
// gradients (and activations for batch B x T on first forward).
int tern_train_model_init(tern_train_model **out, const tern_model *m);
void tern_train_model_free(tern_train_model *tm);

// Parameter tensors, in a fixed order (names as in tern_model).
int tern_train_n_params(const tern_train_model *tm);
const char *tern_train_param_name(const tern_train_model *tm, int i);
float *tern_train_param(tern_train_model *tm, int i, int64_t *numel);
float *tern_train_grad(tern_train_model *tm, int i);
float *tern_train_params_flat(tern_train_model *tm, int64_t *total); // all parameters, contiguous
float *tern_train_grads_flat(tern_train_model *tm, int64_t *total);
// Frozen tensors get no gradient computed (their weight-gradient work is skipped)
// but gradients still flow through them to earlier trainable tensors.
void tern_train_set_frozen(tern_train_model *tm, int i, int frozen);
// Installs (a copy of) the hook, or removes it with NULL. With a hook, each
// linear's w_eff is kept from the forward for the backward (one FP32 copy of
// all linear weights). Returns -1 when that cannot be allocated (no hook then).
int tern_train_set_hook(tern_train_model *tm, const tern_weight_hook *hook);

// Forward over tokens[B, T], each sequence at positions 0..T-1. The activation
// buffers grow when a larger B x T comes (dropping what they held).
int tern_train_forward(tern_train_model *tm, const int *tokens, int B, int T);
// Runs blocks layer..L-1 and the head on x_in[B*T, D], the input of block
// `layer` (e.g. a stored hidden state), for tern_train_logits; no backward.
int tern_train_forward_from(tern_train_model *tm, int layer, const float *x_in, int B, int T);
// After a forward: logits [B*T, V] (NULL unless the last forward was
// tern_train_forward or tern_train_forward_from), and block l's output [B*T, D] (the residual stream after
// block l); valid until the next forward (full or block-wise).
const float *tern_train_logits(const tern_train_model *tm);
const float *tern_train_hidden(const tern_train_model *tm, int layer);
// Backward from dL/dlogits [B*T, V] (may be NULL) and optional dL/dhidden[l]
// ([B*T, D] each, NULL entries skipped; the array itself may be NULL).
// Gradients ACCUMULATE into the grad buffers; call tern_train_zero_grad first.
int tern_train_backward(tern_train_model *tm, const float *d_logits, const float *const *d_hidden);
void tern_train_zero_grad(tern_train_model *tm);
// Block-wise training: run one decoder block alone on its input x_in[B*T, D]
// (positions 0..T-1 within each sequence), keeping activations for the matching
// backward, which accumulates parameter gradients of that block and writes
// dL/dx_in (d_in may equal d_out; x_out may equal x_in). A block-wise forward
// invalidates the last full forward for tern_train_backward.
int tern_train_block_forward(tern_train_model *tm, int layer, const float *x_in, int B, int T, float *x_out);
// Runs block `layer` on x_in[B*T, D] only as far as the input of linear kind
// `kind` (TERN_LIN_*) and returns it: [B*T, in], the attention-norm output for
// q/k/v, the attention output for o, the ffn-norm output for gate/up,
// silu(gate)·up for down. Valid until the next forward; NULL with an error.
const float *tern_train_block_linear_input(tern_train_model *tm, int layer, const float *x_in, int B, int T,
                                           int kind);
int tern_train_block_backward(tern_train_model *tm, int layer, const float *d_out, float *d_in);
// Writes the (possibly updated) parameters back into a tern_model's tensors.
int tern_train_export(const tern_train_model *tm, tern_model *m);

#endif
