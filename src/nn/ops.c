#include "nn/ops.h"

#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "io/model.h"

void tern_embedding_forward(float *out, const float *embd, const int *tokens, int n, int dim) {
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * dim, embd + (size_t)tokens[i] * dim, (size_t)dim * 4);
}

void tern_rmsnorm_forward(float *out, const float *in, const float *w, int n, int dim, float eps) {
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * dim;
        float *o = out + (size_t)i * dim;
        double ss = 0;
        for (int c = 0; c < dim; c++) ss += (double)x[c] * x[c];
        float scale = (float)(1.0 / sqrt(ss / dim + eps));
        for (int c = 0; c < dim; c++) o[c] = x[c] * scale * w[c];
    }
}

// LLaMA 3 scaling leaves high frequencies alone, divides low ones by `factor`,
// and interpolates smoothly in between (by wavelength against the original context).
static double llama3_scaled(double inv_freq, float factor, float low, float high, int orig_max) {
    double wavelen = 2 * M_PI / inv_freq;
    double low_wavelen = orig_max / low, high_wavelen = orig_max / high;
    if (wavelen < high_wavelen) return inv_freq;
    if (wavelen > low_wavelen) return inv_freq / factor;
    double smooth = (orig_max / wavelen - low) / (high - low);
    return (1 - smooth) * inv_freq / factor + smooth * inv_freq;
}

int tern_rope_init(tern_rope *r, int head_dim, int max_seq, float theta, int scaling, float factor,
                   float low_freq_factor, float high_freq_factor, int orig_max_seq) {
    r->max_seq = max_seq;
    r->half = head_dim / 2;
    size_t count = (size_t)max_seq * r->half;
    r->cos = tern_alloc(count * sizeof(float));
    r->sin = tern_alloc(count * sizeof(float));
    if (!r->cos || !r->sin) {
        tern_rope_free(r);
        return -1;
    }
    for (int i = 0; i < r->half; i++) {
        // Same float32 inverse frequency as the PyTorch reference implementations.
        float inv_freq_f = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
        double inv_freq = inv_freq_f;
        if (scaling == TERN_ROPE_SCALING_LINEAR) inv_freq /= factor;
        else if (scaling == TERN_ROPE_SCALING_LLAMA3)
            inv_freq = llama3_scaled(inv_freq, factor, low_freq_factor, high_freq_factor, orig_max_seq);
        float f = (float)inv_freq;
        for (int p = 0; p < max_seq; p++) {
            float angle = (float)p * f;
            r->cos[(size_t)p * r->half + i] = cosf(angle);
            r->sin[(size_t)p * r->half + i] = sinf(angle);
        }
    }
    return 0;
}

void tern_rope_free(tern_rope *r) {
    tern_free(r->cos);
    tern_free(r->sin);
    r->cos = r->sin = NULL;
}

void tern_rope_forward(float *x, const tern_rope *r, const int *pos, int n, int n_heads) {
    int hd = 2 * r->half;
    for (int t = 0; t < n; t++) {
        const float *c = r->cos + (size_t)pos[t] * r->half, *s = r->sin + (size_t)pos[t] * r->half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * hd;
            for (int i = 0; i < r->half; i++) {
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * c[i] - b * s[i];
                v[2 * i + 1] = a * s[i] + b * c[i];
            }
        }
    }
}

void tern_swiglu_forward(float *out, const float *gate, const float *up, int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void tern_residual_forward(float *x, const float *y, int64_t count) {
    for (int64_t i = 0; i < count; i++) x[i] += y[i];
}

void tern_softmax(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}
