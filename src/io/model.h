// The one in-memory description of a model: config, named tensors, vocabulary.
// Every reader (llama2.c, GGUF, Hugging Face) produces this; everything
// downstream (forward, training, quantization, export) consumes it.
//
// Conventions (fixed, whatever the source file used):
// - Tensor names follow GGUF: token_embd.weight, output_norm.weight, output.weight,
//   blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,ffn_gate,ffn_up,ffn_down}.weight,
//   blk.N.attn_{q,k,v,output}.bias, blk.N.ffn_{gate,up,down}.bias,
//   BitNet's blk.N.attn_sub_norm.weight [n_heads*head_dim], blk.N.ffn_sub_norm.weight [hidden].
// - Shapes are row-major, outermost first (PyTorch order): a linear layer mapping
//   `in` to `out` features is shape {out, in}; token_embd is {vocab, dim}.
// - Data is always float32 after loading (quantized sources are dequantized).
// - RoPE rotates adjacent pairs (2i, 2i+1) within each head (Meta/GGUF/llama2.c
//   layout). Hugging Face Q/K rows are permuted into this layout at load.
#ifndef TERN_IO_MODEL_H
#define TERN_IO_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define TERN_MAX_DIMS 4
#define TERN_NAME_MAX 96

typedef enum {
    TERN_ROPE_SCALING_NONE = 0,
    TERN_ROPE_SCALING_LINEAR,
    TERN_ROPE_SCALING_LLAMA3,
} tern_rope_scaling;

typedef enum {
    TERN_FFN_SILU = 0, // SwiGLU: silu(gate) * up (LLaMA)
    TERN_FFN_RELU2,    // relu(gate)^2 * up (BitNet b1.58)
} tern_ffn_act;

typedef struct {
    char arch[32];     // "llama" or "bitnet" (LLaMA + sub-norms + relu² + int8 activations)
    char name[128];    // human-readable model name when the file has one
    int dim;           // model width (embedding length)
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;      // usually dim / n_heads
    int hidden_dim;    // SwiGLU inner width
    int vocab_size;
    int max_seq;       // context length the model was trained for
    float rope_theta;
    tern_rope_scaling rope_scaling;
    float rope_factor;             // linear / llama3
    float rope_low_freq_factor;    // llama3
    float rope_high_freq_factor;   // llama3
    int rope_orig_max_seq;         // llama3
    float rms_eps;
    int tied_embeddings;           // output.weight absent: the head reuses token_embd
    int attn_qkv_bias;             // q/k/v biases present
    int attn_out_bias;             // o bias present
    int ffn_bias;                  // gate/up/down biases present (Tequila's exported dead-zone term)
    // BitNet b1.58 (arch "bitnet"; act_int8 also for LLaMA checkpoints quantized the BitNet way):
    int sub_norms;                 // RMSNorm before attn_output (attn_sub_norm) and ffn_down (ffn_sub_norm)
    tern_ffn_act ffn_act;
    // Every decoder linear sees its input fake-quantized per token: s = 127 / max(max|x|, 1e-5),
    // x -> clamp(round_half_even(x s), -128, 127) / s (W1.58A8); the LM head does not.
    int act_int8;
    char quant[128];               // the source's weight quantization in words, "" when none
} tern_config;

typedef struct {
    char name[TERN_NAME_MAX];
    int ndim;
    int64_t shape[TERN_MAX_DIMS]; // outermost first
    int64_t numel;
    // Owned by the model (one aligned allocation per tensor). NULL for a packed
    // linear of a model loaded with TERN_LOAD_PACKED (inference only).
    float *data;
    char src_type[16];            // type in the source file, e.g. "Q4_1", "BF16", "F32"
    // Packed storage from a .tern file (NULL otherwise): rows x packed row bytes
    // in a kernels/formats.h format (packed_fmt = tern_kfmt_id), with its group
    // and shift flag. Owned by the model; `data` still holds the FP32 values
    // unless the model was loaded with TERN_LOAD_PACKED.
    const void *packed;
    size_t packed_bytes;
    int packed_fmt, packed_group, packed_shift;
    // Relative RMS error of the packed values against the file's when the
    // loader had to requantize them (a llama.cpp block type with no exact
    // packing, run as q8-row); 0 for an exact (or fp16-rounded) repack.
    float packed_err;
    // Packed-only loads (TERN_LOAD_PACKED): the embedding's bytes as the file
    // holds them when data is NULL; tern_tensor_rows dequantizes rows of it
    // exactly as a full load would. Owned by the model (io/gguf.c).
    struct tern_row_source *rows;
    // A kernel-layout copy of packed that inference sessions make once and
    // share (infer/packed.c: row-interleaved for AVX-512); NULL until one
    // does. Owned by the model.
    void *packed_copy;
    // Packed-only loads on AVX-512: packed holds only the row-interleaved
    // layout (kernels/formats.h tern_kilv_pack; packed_copy is the same
    // buffer), not the row layout, so the weights are in memory once.
    int packed_ilv;
} tern_tensor;

typedef enum {
    TERN_VOCAB_NONE = 0,
    TERN_VOCAB_SPM,   // SentencePiece-style BPE: scores, byte fallback <0xNN>, U+2581 for space
    TERN_VOCAB_BPE,   // byte-level BPE (GPT-2 style): merges, byte-to-unicode map
} tern_vocab_type;

// Token types as in GGUF / SentencePiece.
enum {
    TERN_TOKEN_NORMAL = 1,
    TERN_TOKEN_UNKNOWN = 2,
    TERN_TOKEN_CONTROL = 3,
    TERN_TOKEN_USER_DEFINED = 4,
    TERN_TOKEN_UNUSED = 5,
    TERN_TOKEN_BYTE = 6,
};

typedef struct {
    tern_vocab_type type;
    int n_tokens;
    char **tokens;       // [n_tokens] NUL-terminated UTF-8 (or raw bytes for llama2.c pieces)
    int *token_lens;     // [n_tokens] byte length (tokens may contain NUL for llama2.c)
    float *scores;       // [n_tokens] or NULL
    int *token_types;    // [n_tokens] or NULL (then all NORMAL)
    int n_merges;
    char **merges;       // [n_merges] "left right" (BPE only)
    char pre[32];        // pre-tokenizer family for BPE: "gpt2", "smollm", "llama3", ...
    int bos_id, eos_id, unk_id, pad_id; // -1 when absent
    int add_bos, add_eos;
    int add_space_prefix; // SPM: prepend a space to the input (llama/llama2.c do)
    char *chat_template;  // the Jinja chat template (GGUF tokenizer.chat_template, HF
                          // tokenizer_config.json chat_template), malloc'd; NULL when absent
} tern_vocab;

typedef struct {
    tern_config cfg;
    int n_tensors;
    tern_tensor *tensors;
    tern_vocab vocab;
    char format[16];   // "llama2c", "gguf", "hf"
    char path[512];    // where it came from
    int cap_tensors;   // allocated length of `tensors`
    int packed_only;   // loaded with TERN_LOAD_PACKED: packed linears have no FP32 data
} tern_model;

// Weights of one decoder block, resolved by name (pointers into tensors).
typedef struct {
    const float *attn_norm;                 // [dim]
    const float *wq, *wk, *wv, *wo;         // [n_heads*hd, dim], [n_kv*hd, dim] x2, [dim, n_heads*hd]
    const float *bq, *bk, *bv, *bo;         // optional biases, NULL when absent
    const float *ffn_norm;                  // [dim]
    const float *w_gate, *w_up, *w_down;    // [hidden, dim] x2, [dim, hidden]
    const float *b_gate, *b_up, *b_down;    // optional biases, NULL when absent
    const float *attn_sub_norm, *ffn_sub_norm; // [n_heads*hd], [hidden] when cfg.sub_norms, else NULL
} tern_layer_weights;

typedef struct {
    const float *tok_embd;   // [vocab, dim]
    const float *out_norm;   // [dim]
    const float *output;     // [vocab, dim] (== tok_embd when tied)
    tern_layer_weights *layers; // [n_layers]
} tern_weights;

// Loads any supported model: a directory (Hugging Face), a GGUF file, a .tern
// file, or a llama2.c checkpoint. `tokenizer_path` (may be NULL) overrides the
// embedded tokenizer (required for llama2.c checkpoints, which carry none).
int tern_model_load(tern_model *m, const char *path, const char *tokenizer_path);
// flags: TERN_LOAD_TOKENIZER (without it a model without a tokenizer loads too:
// tern info on a llama2.c checkpoint) | TERN_LOAD_PACKED: for packed inference
// only, a GGUF / .tern model's packed linears (and an untied packed head) are
// not dequantized and keep no FP32 data, so a model takes about its file's size
// in memory instead of 4 bytes a weight, and loads that much faster. The
// embedding stays FP32 (its rows are looked up). Sessions of such a model run
// only the "native" format.
#define TERN_LOAD_TOKENIZER 1
#define TERN_LOAD_PACKED 2
int tern_model_load_ex(tern_model *m, const char *path, const char *tokenizer_path, int flags);
void tern_model_free(tern_model *m);

// Checks the config for sane, non-overflowing values ("PATH: n_heads 0 ...").
int tern_config_validate(const tern_config *c, const char *path);
// Resolves and shape-checks every tensor the LLaMA forward needs.
int tern_model_bind(const tern_model *m, tern_weights *w);
void tern_weights_free(tern_weights *w);

// 0 for a plain LLaMA-family model; otherwise an error "PATH: WHAT supports
// the LLaMA architecture, not BitNet ..." (training, quantization and export
// know neither sub-norms, relu² nor int8 activations).
int tern_model_require_llama(const tern_model *m, const char *what);

tern_tensor *tern_model_find(const tern_model *m, const char *name);
// Rows of a q/k weight (or bias: cols 1) from the rotate-half RoPE layout
// (Hugging Face, llama.cpp's NEOX) to tern's adjacent pairs, in place.
int tern_permute_rope_rows(float *data, int heads, int hd, int64_t cols);
// Rows ids[0..n) of a 2-D tensor (t->shape[1] floats each) into out: from
// data, or dequantized from t->rows when data is NULL. -1 (error set) when
// the tensor has neither.
int tern_tensor_rows(const tern_tensor *t, const int *ids, int n, float *out);
void tern_row_source_free(struct tern_row_source *r);
// Row `row` of a row source into out (io/gguf.c); -1 (error set) when out of range.
int tern_row_source_get(const struct tern_row_source *r, int64_t row, float *out);

// Adds a tensor with freshly allocated float storage (zeroed); returns it or NULL.
tern_tensor *tern_model_add_tensor(tern_model *m, const char *name, int ndim, const int64_t *shape,
                                   const char *src_type);
// Same; zero 0 leaves the storage uninitialized (for a reader that writes every value).
tern_tensor *tern_model_add_tensor_ex(tern_model *m, const char *name, int ndim, const int64_t *shape,
                                      const char *src_type, int zero);
int64_t tern_model_param_count(const tern_model *m);

void tern_vocab_free(tern_vocab *v);
int tern_vocab_find(const tern_vocab *v, const char *token); // -1 when absent
// Hash of everything that determines tokenization (tokens, scores, types, merges, specials).
uint64_t tern_vocab_fingerprint(const tern_vocab *v);

#endif
