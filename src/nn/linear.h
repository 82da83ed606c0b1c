// A linear layer as the inference forward sees it: FP32 weights by default, or
// another storage (packed ternary, bf16, ...) supplied by a higher layer
// through `apply`, so nn does not depend on the kernels.
#ifndef TERN_NN_LINEAR_H
#define TERN_NN_LINEAR_H

typedef struct tern_linear tern_linear;
struct tern_linear {
    int rows, cols;     // out, in features
    const float *w;     // [rows, cols] FP32 (used when apply is NULL)
    // [rows] or NULL. For n == 1 it may alias out (a residual added in the
    // epilogue): implementations read bias[r] only to produce out[r].
    const float *bias;
    // out[n, rows] = in[n, cols] · Wᵀ + bias. `fresh` is 0 when `in` holds the
    // same values as in the previous apply call of this forward step (q, k, v
    // read one input; so do gate and up), so an implementation may reuse work
    // it derived from the input, e.g. its int8 quantization.
    void (*apply)(const tern_linear *l, float *out, const float *in, int n, int fresh);
    // Optional split form of a one-token apply, for several matrices that read
    // the same input in one parallel region (tern_linear_forward_many):
    // prepare (may be NULL) derives per-input state once, before any thread
    // runs; gemv_rows computes out[r0..r1) on the calling thread only.
    void (*prepare)(const tern_linear *l, const float *in, int fresh);
    void (*gemv_rows)(const tern_linear *l, float *out, const float *in, int r0, int r1);
    void *ctx;          // the implementation's state
    long long bytes;    // bytes of weight storage (for bandwidth accounting)
};

// Runs l (FP32 GEMV/GEMM when l->apply is NULL).
void tern_linear_forward(const tern_linear *l, float *out, const float *in, int n, int fresh);
// Runs ls[0..count) on the same input, outs[i] = in · ls[i]ᵀ. One token runs
// every matrix's rows in one parallel region (one fork/join instead of count,
// and matrices too small to split on their own are split too) when each
// linear is FP32 or has gemv_rows; otherwise one tern_linear_forward each.
void tern_linear_forward_many(const tern_linear *ls, float *const *outs, int count, const float *in, int n);

#endif
