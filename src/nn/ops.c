#include "nn/ops.h"

#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "io/model.h"
#include "nn/matmul.h"

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

// Rotates each adjacent pair (2i, 2i+1) of x[N, n_heads, head_dim] by the angle
// of its position; sign -1 rotates backwards (the transpose, for the gradient).
static void rope_rotate(float *x, const tern_rope *r, const int *pos, int n, int n_heads, float sign) {
    int hd = 2 * r->half;
    for (int t = 0; t < n; t++) {
        const float *c = r->cos + (size_t)pos[t] * r->half, *s = r->sin + (size_t)pos[t] * r->half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * hd;
            for (int i = 0; i < r->half; i++) {
                float a = v[2 * i], b = v[2 * i + 1], si = sign * s[i];
                v[2 * i] = a * c[i] - b * si;
                v[2 * i + 1] = a * si + b * c[i];
            }
        }
    }
}

void tern_rope_forward(float *x, const tern_rope *r, const int *pos, int n, int n_heads) {
    rope_rotate(x, r, pos, n, n_heads, 1.0f);
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

// ---- Training ----

// Column chunk for loops where threads own column ranges and walk rows in
// order (deterministic reductions over tokens without atomics).
#define COL_CHUNK 64
// Below this much work a loop stays on one thread: a fork/join costs more, and
// on a loaded machine spinning threads make small regions far slower. The
// split never changes results (one owner per output element, fixed order).
#define PAR_MIN (1 << 16)

void tern_embedding_backward(float *dembd, const float *dout, const int *tokens, int n, int dim) {
    int chunks = (dim + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static) if ((int64_t)n * dim >= PAR_MIN)
    for (int ch = 0; ch < chunks; ch++) {
        int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < dim ? c0 + COL_CHUNK : dim;
        for (int i = 0; i < n; i++) {
            float *d = dembd + (size_t)tokens[i] * dim;
            const float *g = dout + (size_t)i * dim;
            for (int c = c0; c < c1; c++) d[c] += g[c];
        }
    }
}

void tern_rmsnorm_forward_train(float *out, float *rstd, const float *in, const float *w, int n, int dim,
                                float eps) {
    // Same arithmetic as tern_rmsnorm_forward, so training and inference agree bit for bit.
#pragma omp parallel for schedule(static) if ((int64_t)n * dim >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * dim;
        float *o = out + (size_t)i * dim;
        double ss = 0;
        for (int c = 0; c < dim; c++) ss += (double)x[c] * x[c];
        float scale = (float)(1.0 / sqrt(ss / dim + eps));
        rstd[i] = scale;
        for (int c = 0; c < dim; c++) o[c] = x[c] * scale * w[c];
    }
}

// y_c = x_c r w_c with r = (Σx²/C + eps)^-1/2 and dr/dx_j = -r³ x_j / C, so
// dx_j = r w_j dy_j - (r³/C) x_j Σ_c dy_c w_c x_c and dw_c = Σ_n dy_c x_c r.
void tern_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *in, const float *w,
                           const float *rstd, int n, int dim) {
#pragma omp parallel for schedule(static) if ((int64_t)n * dim >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * dim, *dy = dout + (size_t)i * dim;
        float *d = dx + (size_t)i * dim;
        double dot = 0;
        for (int c = 0; c < dim; c++) dot += (double)dy[c] * w[c] * x[c];
        double r = rstd[i];
        float coef = (float)(r * r * r * dot / dim);
        float rf = rstd[i];
        for (int c = 0; c < dim; c++) d[c] += rf * w[c] * dy[c] - coef * x[c];
    }
    if (!dw) return;
    int chunks = (dim + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static) if ((int64_t)n * dim >= PAR_MIN)
    for (int ch = 0; ch < chunks; ch++) {
        int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < dim ? c0 + COL_CHUNK : dim;
        for (int i = 0; i < n; i++) {
            const float *x = in + (size_t)i * dim, *dy = dout + (size_t)i * dim;
            float r = rstd[i];
            for (int c = c0; c < c1; c++) dw[c] += dy[c] * x[c] * r;
        }
    }
}

void tern_bias_backward(float *db, const float *dy, int n, int out_dim) {
    int chunks = (out_dim + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static) if ((int64_t)n * out_dim >= PAR_MIN)
    for (int ch = 0; ch < chunks; ch++) {
        int c0 = ch * COL_CHUNK, c1 = c0 + COL_CHUNK < out_dim ? c0 + COL_CHUNK : out_dim;
        for (int i = 0; i < n; i++)
            for (int c = c0; c < c1; c++) db[c] += dy[(size_t)i * out_dim + c];
    }
}

void tern_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                          int n, int in_dim, int out_dim, int accumulate_dx) {
    if (dx) tern_matmul_dx_f32(dx, dy, w, n, in_dim, out_dim, accumulate_dx);
    if (dw) tern_matmul_dw_f32(dw, dy, x, n, in_dim, out_dim);
    if (db) tern_bias_backward(db, dy, n, out_dim);
}

void tern_rope_backward(float *dx, const tern_rope *r, const int *pos, int n, int n_heads) {
    rope_rotate(dx, r, pos, n, n_heads, -1.0f);
}

// silu(g) = g σ(g), silu'(g) = σ(g) (1 + g (1 - σ(g))).
void tern_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                          int64_t count) {
#pragma omp parallel for schedule(static) if (count >= PAR_MIN)
    for (int64_t i = 0; i < count; i++) {
        float g = gate[i], d = dout[i];
        float sig = 1.0f / (1.0f + expf(-g));
        dup[i] = d * g * sig;
        dgate[i] = d * up[i] * sig * (1.0f + g * (1.0f - sig));
    }
}

void tern_residual_backward(float *da, float *db, const float *dout, int64_t count) {
    if (da) tern_residual_forward(da, dout, count);
    if (db) tern_residual_forward(db, dout, count);
}

void tern_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B,
                            int T, int n_heads, int n_kv_heads, int head_dim) {
    int hd = head_dim, H = n_heads, KVH = n_kv_heads, group = H / KVH;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t work = (int64_t)B * H * T * T * hd; // ~ multiply-adds of one pass
    // Same arithmetic per row as the inference attention (transformer.c).
#pragma omp parallel for collapse(3) schedule(static) if (work >= PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const float *qh = q + (((size_t)b * T + t) * H + h) * hd;
                float *p = att + (((size_t)b * H + h) * T + t) * T;
                int kvh = h / group;
                for (int s = 0; s <= t; s++) {
                    const float *kh = k + (((size_t)b * T + s) * KVH + kvh) * hd;
                    float dot = 0;
                    for (int i = 0; i < hd; i++) dot += qh[i] * kh[i];
                    p[s] = dot * scale;
                }
                tern_softmax(p, t + 1);
                for (int s = t + 1; s < T; s++) p[s] = 0;
                float *o = out + (((size_t)b * T + t) * H + h) * hd;
                memset(o, 0, (size_t)hd * 4);
                for (int s = 0; s <= t; s++) {
                    const float *vh = v + (((size_t)b * T + s) * KVH + kvh) * hd;
                    float a = p[s];
                    for (int i = 0; i < hd; i++) o[i] += a * vh[i];
                }
            }
}

// Two passes so every output has one owner: (1) per query row, the softmax
// backward dS = P ∘ (dP − Σ P dP) with dP = dout · Vᵀ, stored in datt, and dq;
// (2) per key row s and KV head, dk and dv summed over the group's heads and
// over the queries t >= s that saw it.
void tern_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout, const float *att,
                             const float *q, const float *k, const float *v, int B, int T, int n_heads,
                             int n_kv_heads, int head_dim) {
    int hd = head_dim, H = n_heads, KVH = n_kv_heads, group = H / KVH;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t work = (int64_t)B * H * T * T * hd; // ~ multiply-adds of one pass
#pragma omp parallel for collapse(3) schedule(static) if (work >= PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                size_t row = (((size_t)b * H + h) * T + t) * T;
                const float *p = att + row, *go = dout + (((size_t)b * T + t) * H + h) * hd;
                float *ds = datt + row;
                int kvh = h / group;
                double sum = 0;
                for (int s = 0; s <= t; s++) {
                    const float *vh = v + (((size_t)b * T + s) * KVH + kvh) * hd;
                    float dp = 0;
                    for (int i = 0; i < hd; i++) dp += go[i] * vh[i];
                    ds[s] = dp;
                    sum += (double)p[s] * dp;
                }
                float sumf = (float)sum;
                for (int s = 0; s <= t; s++) ds[s] = p[s] * (ds[s] - sumf) * scale;
                float *g = dq + (((size_t)b * T + t) * H + h) * hd;
                memset(g, 0, (size_t)hd * 4);
                for (int s = 0; s <= t; s++) {
                    const float *kh = k + (((size_t)b * T + s) * KVH + kvh) * hd;
                    for (int i = 0; i < hd; i++) g[i] += ds[s] * kh[i];
                }
            }
#pragma omp parallel for collapse(3) schedule(static) if (work >= PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int kvh = 0; kvh < KVH; kvh++)
            for (int s = 0; s < T; s++) {
                float *gk = dk + (((size_t)b * T + s) * KVH + kvh) * hd;
                float *gv = dv + (((size_t)b * T + s) * KVH + kvh) * hd;
                memset(gk, 0, (size_t)hd * 4);
                memset(gv, 0, (size_t)hd * 4);
                for (int h = kvh * group; h < (kvh + 1) * group; h++)
                    for (int t = s; t < T; t++) {
                        size_t idx = (((size_t)b * H + h) * T + t) * T + s;
                        const float *qh = q + (((size_t)b * T + t) * H + h) * hd;
                        const float *go = dout + (((size_t)b * T + t) * H + h) * hd;
                        float ds = datt[idx], p = att[idx];
                        for (int i = 0; i < hd; i++) {
                            gk[i] += ds * qh[i];
                            gv[i] += p * go[i];
                        }
                    }
            }
}
