// A linear layer as the inference forward sees it: FP32 weights by default, or
// another storage (packed ternary, bf16, ...) supplied by a higher layer
// through `apply`, so nn does not depend on the kernels.
#ifndef TERN_NN_LINEAR_H
#define TERN_NN_LINEAR_H

typedef struct tern_linear tern_linear;
struct tern_linear {
    int rows, cols;     // out, in features
    const float *w;     // [rows, cols] FP32 (used when apply is NULL)
    const float *bias;  // [rows] or NULL
    // out[n, rows] = in[n, cols] · Wᵀ + bias. `fresh` is 0 when `in` holds the
    // same values as in the previous apply call of this forward step (q, k, v
    // read one input; so do gate and up), so an implementation may reuse work
    // it derived from the input, e.g. its int8 quantization.
    void (*apply)(const tern_linear *l, float *out, const float *in, int n, int fresh);
    void *ctx;          // the implementation's state
    long long bytes;    // bytes of weight storage (for bandwidth accounting)
};

// Runs l (FP32 GEMV/GEMM when l->apply is NULL).
void tern_linear_forward(const tern_linear *l, float *out, const float *in, int n, int fresh);

#endif
