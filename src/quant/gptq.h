// GPTQ-style initialization (`tern quantize --init gptq`): the decoder linears
// are quantized in model order, each against the Hessian H = XᵀX of its inputs
// X in the model quantized so far, column by column with GPTQ's error feedback
// (inverse-Hessian Cholesky, lazy block updates). A group's grid is fitted when
// its first column comes up, on the error-updated weights, each column weighted
// by diag(H): the method's tern_grid (α·T, α·T + γ or a b-bit s·(c - z)). The
// result is handed to the method (tern_quant_method.adopt), so QAT starts from
// it and 0 steps is pure PTQ. Exact formulas: docs/methods.md.
#ifndef TERN_QUANT_GPTQ_H
#define TERN_QUANT_GPTQ_H

#include <stdint.h>

#include "quant/quant.h"

typedef struct {
    float damp;   // added to diag(H): damp × mean(diag H) (default 0.01); raised ×10 while Cholesky fails
    int block;    // lazy-update block in columns (default 128)
    int batch;    // sequences per forward while collecting H (default: about 2048 tokens)
    int verbose;  // one line per linear on stderr
} tern_gptq_opts;

void tern_gptq_opts_defaults(tern_gptq_opts *o);

// One linear's result.
typedef struct {
    double rel_err;      // ‖(W - Q)X‖² / ‖WX‖² = tr(ΔW H ΔWᵀ) / tr(W H Wᵀ), H undamped
    double rel_err_init; // the same for the method's plain (round-to-nearest) initialization
    float damp;          // damping that made H factorable
} tern_gptq_linear_report;

// Quantizes one linear in place. W[out, in] (row-major) is replaced by the
// error-updated weights that were rounded (what `adopt` expects); H[in, in]
// (symmetric, row-major) is read only. T receives codes (a uniform grid's
// 0..2^b-1 stored as uint8), scale and shift one
// value per group (out × ceil(in/G)). bits is for TERN_GRID_UNIFORM. Returns
// -1 with an error when H cannot be factored even with damping raised to 1.
int tern_gptq_linear(float *W, int out, int in, const float *H, int G, tern_grid grid, int bits,
                     const tern_gptq_opts *o, int8_t *T, float *scale, float *shift, float *damp_used,
                     const char *name);

// Relative output error tr(ΔW H ΔWᵀ) / tr(W H Wᵀ) of Q against W.
double tern_gptq_rel_err(const float *W, const float *Q, int out, int in, const float *H);

// The sequential pass over model m (FP, unchanged): calibration sequences
// tokens[n_seqs, seq_len]; every linear's method gets GPTQ's grid through
// adopt, and latent[id] (allocated here, out×in floats each; free with
// tern_gptq_latent_free) receives its latent weights. reports[n_lin] may be NULL.
int tern_gptq_run(tern_quant *q, const tern_model *m, const int *tokens, int n_seqs, int seq_len,
                  const tern_gptq_opts *o, float ***latent, tern_gptq_linear_report *reports);
void tern_gptq_latent_free(float **latent, int n_lin);

#endif
