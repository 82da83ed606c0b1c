// LLaMA-family forward pass in FP32 with a KV cache (llama2.c's run.c shape,
// batched over tokens so a prompt is processed with matrix-matrix products).
#ifndef TERN_NN_TRANSFORMER_H
#define TERN_NN_TRANSFORMER_H

#include "io/model.h"
#include "nn/linear.h"
#include "nn/ops.h"

// The seven linear layers of a decoder block, in this order.
enum { TERN_L_Q, TERN_L_K, TERN_L_V, TERN_L_O, TERN_L_GATE, TERN_L_UP, TERN_L_DOWN, TERN_L_COUNT };
// Their tensors' names: blk.N.<name>.weight ("attn_q", ...), in TERN_L_* order.
extern const char *const tern_linear_names[TERN_L_COUNT];

// Phases of a forward step, for the optional wall-clock profile
// (tern_session.profile): summed over layers; o and down include their
// residual adds, head the final norm. A one-token step run as one parallel
// region (2+ threads, packed or bf16 linears) times them on thread 0: rope
// and swiglu are its time inside q/k and gate/up; attn_norm and ffn_norm
// include the quantization of the next product's input, o and down the
// (BitNet sub-norm and) quantization of their own.
enum {
    TERN_PH_ATTN_NORM, TERN_PH_QKV, TERN_PH_ROPE, TERN_PH_ATTN, TERN_PH_O,
    TERN_PH_FFN_NORM, TERN_PH_GATE_UP, TERN_PH_SWIGLU, TERN_PH_DOWN, TERN_PH_HEAD, TERN_PH_COUNT
};
extern const char *const tern_phase_names[TERN_PH_COUNT];

typedef struct {
    const tern_model *model;
    tern_config cfg;
    tern_weights w;
    const tern_tensor *embd; // token_embd: rows from w.tok_embd, or (packed-only loads) its file bytes
    tern_linear *lin;   // [n_layers * TERN_L_COUNT]; FP32 views of w unless replaced
    tern_linear head;   // LM head (FP32 view of w.output unless replaced)
    tern_rope rope;
    int max_seq;   // KV cache length
    int max_batch; // tokens per internal forward step
    // KV cache: [n_layers, max_seq, kv_dim]
    float *key_cache, *value_cache;
    // Activations for one step of up to max_batch tokens.
    float *x;      // [B, dim] residual stream
    float *xb;     // [B, max(dim, q_dim)] normalised input / attention output
    float *xb2;    // [B, dim]
    float *q;      // [B, q_dim]
    float *hb, *hb2; // [B, hidden]
    float *att;    // [threads, max_seq] attention scores
    int att_threads;
    float *logits; // [max_batch, vocab]: logits of the last forward call
    int *pos;      // [B] positions of the tokens in the step
    double *profile; // [TERN_PH_COUNT]: seconds per phase are added here when non-NULL (caller-owned)
} tern_session;

// max_seq <= 0 uses the model's context length (capped at 4096).
int tern_session_init(tern_session *s, const tern_model *m, int max_seq, int max_batch);
void tern_session_free(tern_session *s);

// Runs tokens[0..n) at positions pos0..pos0+n-1 (earlier positions must already
// be in the cache). Logits: when `logits_out` is non-NULL, the logits of every
// token are written there ([n, vocab]); the last token's logits are always in
// s->logits. Returns 0, or -1 when the context would overflow or a token is invalid.
int tern_forward(tern_session *s, const int *tokens, int n, int pos0, float *logits_out);

#endif
