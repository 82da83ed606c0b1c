// Shared per-group quantizers: absmean and TWN ternary, b-bit round-to-nearest.
// Rounding is nearbyintf (ties to even under the default rounding mode), the
// same as torch.round, so the PyTorch reference matches bit for bit on ties.
#include <math.h>

#include "quant/quant.h"

float tern_group_absmean(const float *w, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += fabsf(w[i]);
    return n > 0 ? (float)(s / n) : 0.0f;
}

static float clamp1(float x) { return x < -1.0f ? -1.0f : x > 1.0f ? 1.0f : x; }

// α = mean|w| (floored so an all-zero group does not divide by zero).
static float absmean_alpha(const float *w, int n) {
    float a = tern_group_absmean(w, n);
    return a > 1e-8f ? a : 1e-8f;
}

float tern_group_absmean_codes(const float *w, int n, int8_t *T) {
    float a = absmean_alpha(w, n);
    for (int i = 0; i < n; i++) T[i] = (int8_t)clamp1(nearbyintf(w[i] / a));
    return 0.5f * a; // round(w/α) leaves 0 exactly when |w| < α/2
}

void tern_group_absmean_q(const float *w, int n, float *out) {
    float a = absmean_alpha(w, n);
    for (int i = 0; i < n; i++) out[i] = a * clamp1(nearbyintf(w[i] / a));
}

float tern_group_twn_codes(const float *w, int n, int8_t *T) {
    float delta = 0.7f * tern_group_absmean(w, n);
    for (int i = 0; i < n; i++) T[i] = (int8_t)(fabsf(w[i]) > delta ? (w[i] > 0 ? 1 : -1) : 0);
    return delta;
}

void tern_group_twn_q(const float *w, int n, float *out) {
    float delta = 0.7f * tern_group_absmean(w, n);
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(w[i]) > delta) s += fabsf(w[i]), k++;
    float a = k ? (float)(s / k) : 0.0f;
    for (int i = 0; i < n; i++) out[i] = fabsf(w[i]) > delta ? (w[i] > 0 ? a : -a) : 0.0f;
}

void tern_group_rtn_q(const float *w, int n, int bits, int sym, float *out) {
    if (sym) {
        // Levels -qmax..qmax (b = 2: ternary with an absmax scale).
        float qmax = (float)((1 << (bits - 1)) - 1), amax = 0;
        for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(w[i]));
        float scale = amax / qmax;
        for (int i = 0; i < n; i++) {
            float q = scale > 0 ? nearbyintf(w[i] / scale) : 0.0f;
            out[i] = fminf(fmaxf(q, -qmax), qmax) * scale;
        }
        return;
    }
    // Asymmetric: the range includes 0 so that 0 is exactly representable.
    float mn = 0, mx = 0, levels = (float)((1 << bits) - 1);
    for (int i = 0; i < n; i++) mn = fminf(mn, w[i]), mx = fmaxf(mx, w[i]);
    float scale = (mx - mn) / levels;
    if (!(scale > 0)) {
        for (int i = 0; i < n; i++) out[i] = 0.0f;
        return;
    }
    float z = nearbyintf(-mn / scale);
    for (int i = 0; i < n; i++) {
        float q = fminf(fmaxf(nearbyintf(w[i] / scale) + z, 0.0f), levels);
        out[i] = (q - z) * scale;
    }
}

void tern_linear_groups_q(const tern_quant_linear *L, const float *w, float *out, tern_group_q_fn fq,
                          const tern_quant_opts *o) {
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t off = (size_t)r * L->in + (size_t)g * L->G;
            fq(w + off, tern_group_len(L, g), o, out + off);
        }
}

void tern_linear_groups_codes(const tern_quant_linear *L, const float *w, int8_t *T, float *delta,
                              tern_group_codes_fn fc) {
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t off = (size_t)r * L->in + (size_t)g * L->G;
            delta[(size_t)r * L->n_groups + g] = fc(w + off, tern_group_len(L, g), T + off);
        }
}

int tern_quant_ste_backward(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra,
                            float *d_w) {
    (void)w, (void)d_extra;
    const tern_quant_linear *L = &q->lin[id];
    if (!d_w) return 0;
    size_t n = (size_t)L->out * L->in;
    for (size_t i = 0; i < n; i++) d_w[i] += d_w_eff[i];
    return 0;
}

// Latent weights for which absmean's rule (α = mean|w|, T = round(w/α) clamped)
// gives codes T and scale a. Zero-coded weights keep their value clipped to
// ±0.4a (inside the dead zone |w| < a/2); the k non-zero ones share one
// magnitude m = (n·a - Σ|zeros|)/k >= a, so mean|w| = a and round(±m/a) = ±1.
void tern_group_absmean_adopt(float *w, int n, const int8_t *T, float a) {
    double zsum = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (T[i]) {
            k++;
            continue;
        }
        float lim = 0.4f * a;
        w[i] = w[i] > lim ? lim : w[i] < -lim ? -lim : w[i];
        zsum += fabsf(w[i]);
    }
    if (k == 0 || !(a > 0)) { // all codes 0: only all-zero weights give that
        for (int i = 0; i < n; i++) w[i] = 0.0f;
        return;
    }
    float m = (float)(((double)n * a - zsum) / k);
    for (int i = 0; i < n; i++)
        if (T[i]) w[i] = T[i] > 0 ? m : -m;
}

// Latent weights for which TWN's rule (Δ = 0.7·mean|w|, α = mean|w| over
// |w| > Δ) gives codes T and scale a: non-zero codes at ±a, zero codes clipped
// to ±0.35·a·k/n, which stays below Δ >= 0.7·a·k/n while a > Δ.
void tern_group_twn_adopt(float *w, int n, const int8_t *T, float a) {
    int k = 0;
    for (int i = 0; i < n; i++) k += T[i] != 0;
    float lim = 0.35f * a * (float)k / (float)n;
    for (int i = 0; i < n; i++)
        w[i] = T[i] ? (T[i] > 0 ? a : -a) : w[i] > lim ? lim : w[i] < -lim ? -lim : w[i];
}

void tern_linear_groups_adopt(const tern_quant_linear *L, float *w, const int8_t *T, const float *scale,
                              void (*adopt)(float *w, int n, const int8_t *T, float a)) {
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t off = (size_t)r * L->in + (size_t)g * L->G;
            adopt(w + off, tern_group_len(L, g), T + off, scale[(size_t)r * L->n_groups + g]);
        }
}
