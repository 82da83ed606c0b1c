// Tequila: absmean-style ternarization whose dead zone still contributes.
// Per group α = mean|w|, Δ = α/2; T = +1 if w ≥ Δ, -1 if w ≤ -Δ, else 0 (the
// dead zone D). y = x·(αT)ᵀ + C with C_j = λ·Σ_{i∈D_j} w_ji over the whole row.
// Backward: dL/dw = dL/dŵ (straight-through) for every weight, plus λ·dL/dC_j
// for w in D, so dead-zone weights get a gradient that does not vanish with x
// and can leave the dead zone. α and Δ are recomputed each step, no gradient.
#include "quant/quant.h"

static int tequila_check(const tern_quant_opts *o) {
    if (!(o->lambda >= 0 && o->lambda <= 1)) return tern_errorf("--lambda must be in [0, 1], got %g", o->lambda);
    return 0;
}

// Codes with Tequila's inclusive thresholds; returns Δ.
static float tequila_group_codes(const float *w, int n, int8_t *T, float *alpha) {
    float a = tern_group_absmean(w, n), delta = 0.5f * a;
    for (int i = 0; i < n; i++) T[i] = (int8_t)(w[i] >= delta ? 1 : w[i] <= -delta ? -1 : 0);
    *alpha = a;
    return delta;
}

static int tequila_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra) {
    const tern_quant_linear *L = &q->lin[id];
    float lambda = q->opt.lambda;
    for (int r = 0; r < L->out; r++) {
        double c = 0;
        for (int g = 0; g < L->n_groups; g++) {
            size_t o = (size_t)r * L->in + (size_t)g * L->G;
            int n = tern_group_len(L, g);
            float a = tern_group_absmean(w + o, n), delta = 0.5f * a;
            for (int i = 0; i < n; i++) {
                float x = w[o + i];
                int t = x >= delta ? 1 : x <= -delta ? -1 : 0;
                w_eff[o + i] = a * (float)t;
                if (!t) c += x;
            }
        }
        extra[r] = lambda * (float)c;
    }
    *has_extra = 1;
    return 0;
}

static int tequila_backward(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra,
                            float *d_w) {
    const tern_quant_linear *L = &q->lin[id];
    float lambda = q->opt.lambda;
    if (!d_w) return 0; // weights frozen: Tequila has no parameters of its own
    for (int r = 0; r < L->out; r++) {
        float dc = d_extra ? lambda * d_extra[r] : 0.0f;
        for (int g = 0; g < L->n_groups; g++) {
            size_t o = (size_t)r * L->in + (size_t)g * L->G;
            int n = tern_group_len(L, g);
            float delta = 0.5f * tern_group_absmean(w + o, n);
            for (int i = 0; i < n; i++) {
                float x = w[o + i];
                int dead = x < delta && x > -delta;
                d_w[o + i] += d_w_eff[o + i] + (dead ? dc : 0.0f);
            }
        }
    }
    return 0;
}

static void tequila_codes(const tern_quant *q, int id, const float *w, int8_t *T, float *delta) {
    const tern_quant_linear *L = &q->lin[id];
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t o = (size_t)r * L->in + (size_t)g * L->G;
            float a;
            delta[(size_t)r * L->n_groups + g] = tequila_group_codes(w + o, tern_group_len(L, g), T + o, &a);
        }
}

// Tequila's codes and α follow absmean's rule; its constant term then comes
// from the zero-coded latent weights GPTQ leaves (clipped into the dead zone).
static void tequila_adopt(tern_quant *q, int id, float *w, const int8_t *T, const float *scale, const float *shift) {
    (void)shift;
    tern_linear_groups_adopt(&q->lin[id], w, T, scale, tern_group_absmean_adopt);
}

const tern_quant_method tern_quant_tequila = {
    .name = "tequila",
    .ternary = 1,
    .trains_weights = 1,
    .trains = 1,
    .check = tequila_check,
    .effective = tequila_effective,
    .backward = tequila_backward,
    .codes = tequila_codes,
    .grid = TERN_GRID_SYM,
    .adopt = tequila_adopt,
};
