// Packed ternary / low-bit matrix products with int8 activations.
//
// y[t, r] = sum_g step_g + bias[r], where each group's integer dot (exact
// int32) is turned into float, times its weight scale and its activation
// scale s_x[t, g], by one fixed sequence of fmaf calls shared by every
// implementation (kern_impl.h), so the SIMD kernels equal the scalar
// reference bit for bit.
//
// Implementation choice: tern_kernel_default() picks the best one the CPU
// supports, or the one named by env TERN_KERNEL=scalar|avx2|avx512|neon.
#ifndef TERN_KERNELS_KERNELS_H
#define TERN_KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/formats.h"

// Activations of n tokens quantized to int8, absmax per group of columns
// (like llama.cpp's q8 activation blocks: one outlier channel then costs its
// own group's precision, not the whole token's; per-token scales cost
// SmolLM2 +6.7% perplexity at 4 bits, docs/PERFORMANCE.md), with the
// per-group sums of q that the shift / zero-point / ternary terms need. The
// group is tern_kact_group of the matrices the activations feed: the weights'
// group, or a smaller one that splits it evenly; each activation group is one
// float step of the kernels' epilogue.
struct tern_qact {
    int n_max, n;       // capacity and tokens currently held
    int cols, group, n_groups;
    size_t stride;      // bytes per token in q: cols rounded up to 64, zero padded
    int8_t *q;          // [n_max, stride], values in [-127, 127]
    // [n_groups, n_max]: s_x = max|x| / 127 over the group (0 for an all-zero
    // group); group-major, so a GEMM kernel loads 4 tokens' scales at once.
    float *scale;
    int32_t *gsum;      // [n_max, n_groups]: sum of q over each group
    // [n_max, stride]: q of each whole 4-chunk bundle b, reordered so that
    // vector k (32 bytes at 128b + 32k) holds q[32(4b+j) + 8k + i] at 8j + i.
    // Shifting 32 bytes of 2-bit codes (4 chunks) right by 2k then lines up with
    // vector k, so the AVX2 kernel decodes 4 chunks from one load (kern_avx2.c).
    int8_t *qp;
    // Tiles of TERN_KTILE tokens for the AVX-512 panel GEMM, interleaved by 4
    // bytes: tile b's bytes 4d..4d+3 of token 12b + t at ((b * stride / 4) + d)
    // * 48 + 4t, so one pointer walks a tile's 12 tokens. Filled only for the
    // batches that GEMM runs (tern_quantize_act with AVX-512, n >= TERN_KPANEL_MIN).
    int8_t *qi;
    int qi_n;           // tokens qi holds (0: not filled; the panel GEMM then does not run)
};

// group: tern_kact_group of the matrices the activations feed (same rule as
// tern_kmatrix: a multiple of 32 or >= cols). -1 (error set) on bad sizes or
// out of memory.
int tern_qact_init(tern_qact *a, int n_max, int cols, int group);
void tern_qact_free(tern_qact *a);
// The activation group w's kernels expect: its format's act_group when that is
// smaller than the row and divides the weights' group into several (or the row
// is one group), else the weights' group.
int tern_kact_group(const tern_kmatrix *w);
// Quantizes x[n, cols] (n <= n_max) with the given implementation.
void tern_quantize_act(tern_kimpl impl, tern_qact *a, const float *x, int n);

// Resolves a kernel name ("scalar", "avx2", "avx512", "neon"; NULL or "" or "auto" =
// best available). -1 with a one-line error naming the kernel and the missing
// CPU feature when this CPU cannot run it, or naming the bad value.
int tern_kernel_resolve(const char *name, tern_kimpl *out);
// tern_kernel_resolve(getenv("TERN_KERNEL")), resolved once and cached.
int tern_kernel_default(tern_kimpl *out);
const char *tern_kernel_name(tern_kimpl impl);
// Whether this CPU (and this build) can run impl; *missing names the feature.
int tern_kernel_supported(tern_kimpl impl, const char **missing);

// out[t*ldo + r] for t < n, r < w->rows (ldo = w->rows for a dense output).
// Output rows are split across OpenMP threads above a work threshold. With
// AVX-512 and n >= TERN_KPANEL_MIN every format runs the panel GEMM (16 rows
// decoded once, 12 tokens per tile, kern_avx512.c); otherwise each thread runs
// tokens in blocks of 4 so a weight chunk is decoded once per 4 tokens. bias may be NULL. a->cols must equal w->cols and a->group tern_kact_group(w).
void tern_kgemm(tern_kimpl impl, const tern_kmatrix *w, const tern_qact *a, int n, const float *bias,
                float *out, size_t ldo);
// One token (token index t of a).
void tern_kgemv(tern_kimpl impl, const tern_kmatrix *w, const tern_qact *a, int t, const float *bias,
                float *out);
// Rows [r0, r1) of one token on the calling thread (no threads of its own):
// out[r] for r in [r0, r1), out indexed from row 0.
void tern_kgemv_rows(tern_kimpl impl, const tern_kmatrix *w, const tern_qact *a, int t, const float *bias,
                     float *out, int r0, int r1);
// One row, one token.
float tern_kdot_row(tern_kimpl impl, const tern_kmatrix *w, int r, const tern_qact *a, int t,
                    const float *bias);

#endif
