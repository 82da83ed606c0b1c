// `tern export`: writes a packed .tern model file (docs/format.md), a GGUF
// container with tern's packed tensor types: every decoder linear ternary
// (tern-t2 or tern-t1.6, fp16 scales per group, DLT shifts when the input has
// them) or, for an RTN/TEQ input of 2-4 bits, q2g/q3g/q4g (fp16 scale and u8
// zero point per group); biases and (TEQ-folded) norms F32, token embedding
// and LM head q8 (block TERN_KQ8_GROUP = 128; one table when tied), plus the
// config and tokenizer. Written atomically.
#ifndef TERN_INFER_EXPORT_H
#define TERN_INFER_EXPORT_H

#include <stdint.h>

#include "io/model.h"

// Perplexity check of an export: with `text`, the source (the FP32 values of
// the model as loaded) and the written file (read back and dequantized by
// tern's reader) are both measured on `chunks` chunks of `ctx` tokens (0: 8
// of 512, ctx capped at the model's context). A rise above max_change percent
// fails, nothing written, unless force.
typedef struct {
    const char *text;
    int ctx, chunks;
    double max_change;
    int force;
} tern_export_check;

typedef struct {
    int checked, ctx, chunks; // checked = 0 without a check text
    double ppl_source, ppl_export, change_pct;
    int forced;               // the change exceeded the bound and force wrote the file anyway
} tern_export_checked;

// Internal state of a check (export.c).
typedef struct {
    const tern_export_check *o;
    char *text;
    size_t len;
    int ctx, chunks;
} tern_ppl_check;

typedef struct {
    const char *pack; // ternary: "2"/"t2"/"tern-t2" or "1.6"/"t1.6"/"tern-t1.6"; NULL = t2 (or the low-bit format)
    int group;        // 0: the input's tern.group_size, else 128
    tern_export_check check; // measures the perplexity change (a lossy conversion's, or none)
} tern_export_opts;

// GGUF tensor type ids of the packed formats (= TERN_GGUF_PACKED_BASE /
// TERN_GGUF_PACKED_SHIFT_BASE in io/gguf.h) + tern_kfmt_id.
#define TERN_EXPORT_PACKED_BASE 1000u
#define TERN_EXPORT_SHIFT_BASE 1100u

// What the export found and did.
typedef struct {
    char method[32];  // input's tern.method, "" for an FP model (absmean PTQ)
    char format[16];  // packed format of the decoder linears (tern-t2, tern-t1.6, q4g, q3g, q2g)
    int group, has_shift;
    // An input without tern.method (FP, a llama.cpp ternary GGUF, a .tern):
    // linears whose codes and scales were kept exactly (ternary per group),
    // and linears loaded with exact packed codes that are not ternary at the
    // group (re-ternarized by absmean: lossy) with their weight rel. RMSE.
    int exact_linears, lossy_linears;
    double lossy_rel_rmse;
    tern_export_checked check;
    int64_t bytes;    // size of the written file
} tern_export_info;

// Exports model `m` (loaded from in_path, which is re-read for its tern.*
// metadata when it is a GGUF file) to out_path. Codes come from exact
// recovery when the input is a `tern quantize` output (tern.method present:
// ternary levels, or for rtn / teq with the rtn inner quantizer the b-bit grid
// s*(c - z) of each group), from absmean per group otherwise. -1 with one
// error line, nothing written.
int tern_export_tern(const tern_model *m, const char *in_path, const tern_export_opts *o, const char *out_path,
                     tern_export_info *info);

// `tern export --format gguf-tq2|gguf-tq1`: a standard llama-architecture
// GGUF for llama.cpp (docs/format.md, "llama.cpp export"). Decoder linears
// are TQ2_0 / TQ1_0 (ggml ids 35 / 34: 256 codes per block, one fp16 scale d):
// the input's ternary codes are kept and each block gets the least-squares d
// for them, d = sum(w_i T_i) / sum(T_i^2) over the block, w the source's
// effective weights (alpha * T, + gamma for DLT); per-group shifts are dropped,
// per-output biases kept as F32 (llama.cpp's llama graph adds them). Token
// embedding and output Q8_0, norms F32, LLaMA metadata and the tokenizer.
// Every linear row must be a multiple of 256 long (refused otherwise), or with
// fallback "q4_0" such matrices are written as Q4_0 (what llama.cpp's
// llama-quantize does for TQ types): the same codes (q = T), d per block of 32
// by the same rule, which for a symmetric source is its alpha (fp16).
typedef struct {
    const char *format;       // "gguf-tq2" (default when NULL), "gguf-tq1" or "gguf-q2_0"
    const char *fallback;     // NULL / "none" (refuse) or "q4_0"
    int group;                // absmean PTQ group for an FP input (0: 128); as in tern_export_opts
    tern_export_check check;  // perplexity check (see tern_export_check)
    int allow_lossy;          // write even when DLT shifts are dropped (refused otherwise)
} tern_export_tq_opts;

#define TERN_EXPORT_TQ_MAX_PPL_CHANGE 10.0 // default --max-ppl-change, percent

typedef struct {
    char method[32];    // input's tern.method; "" for absmean PTQ of an FP model
    char source[32];    // where the codes came from: "from the .tern packing", "recovered" (tern quantize
                        // output), "by absmean PTQ", "from exact ternary blocks" (TQ / Q4_0 file)
    int group;          // source group of the codes (256 for a TQ input)
    int dropped_shift;  // a DLT shift per group was dropped (refused unless allow_lossy)
    int lossy_linears;  // linears whose exact codes are not ternary (Q2_0 with code 2): absmean, error measured
    int biases;         // per-output bias tensors kept
    int linears;        // ternary matrices written (TQ or the Q4_0 fallback)
    int fallback_linears; // of those, written as Q4_0
    double weight_rel_rmse;   // sqrt(sum (w - d T)^2 / sum w^2) over the TQ matrices
    double fallback_rel_rmse; // the same over the Q4_0 fallback matrices (0 for a symmetric source)
    tern_export_checked check; // perplexity check (checked = 0 without a check text)
    int64_t bytes;      // size of the written file
} tern_export_tq_info;

int tern_export_gguf_tq(const tern_model *m, const char *in_path, const tern_export_tq_opts *o, const char *out_path,
                        tern_export_tq_info *info);

#define TERN_EXPORT_MAX_LINEARS 7168 // tern.linear_bits entries read (1024 layers)

// An input file's tern.* metadata (all zero / "" when absent or not a GGUF file).
typedef struct {
    char method[32]; // tern.method
    char inner[16];  // tern.teq_inner (teq only)
    int group;       // tern.group_size: 0 when absent, -1 per row
    int bits, sym;   // tern.bits, tern.sym
    // tern.linear_bits (mixed precision, --keep): per linear id (layer*7 + kind)
    // the bits of a linear held on a b-bit grid, 0 for the run's method.
    int n_linear;
    uint8_t linear_bits[TERN_EXPORT_MAX_LINEARS];
} tern_export_meta;

int tern_export_input_meta(const char *path, tern_export_meta *meta);

#endif
