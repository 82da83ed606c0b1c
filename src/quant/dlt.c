// DLT (TernaryLLM's Dual Learnable Ternarization): a learnable scale α and
// shift γ per group. w̃ = (w - γ)/α, T = clamp(round(w̃), -1, 1), ŵ = α·T + γ.
// LSQ-style gradients with I = [|w̃| ≤ 1]:
//   dL/dw = dL/dŵ·I,  dL/dα = Σ dL/dŵ·(T - w̃·I),  dL/dγ = Σ dL/dŵ·(1 - I),
// the α/γ sums optionally scaled by 1/sqrt(group size) (LSQ's gradient scale
// with Qp = 1). Init: γ = group mean, α = the TWN scale of the centred group.
// Parameters of a linear: α[out*n_groups] then γ[out*n_groups].
#include <math.h>

#include "quant/quant.h"

// α is used through a floor so a step that drives it to 0 or below cannot divide by 0.
static float alpha_of(float a) { return a > 1e-6f ? a : 1e-6f; }

static int64_t dlt_n_params(const tern_quant *q, int id, int *share) {
    (void)share;
    return 2 * (int64_t)q->lin[id].out * q->lin[id].n_groups;
}

static void dlt_init(tern_quant *q, int id, const float *w) {
    tern_quant_linear *L = &q->lin[id];
    size_t ng = (size_t)L->out * L->n_groups;
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            const float *x = w + (size_t)r * L->in + (size_t)g * L->G;
            int n = tern_group_len(L, g);
            size_t j = (size_t)r * L->n_groups + g;
            double mean = 0;
            if (q->opt.dlt_absmean_init) { // ablation: BitNet's absmean scale, no shift
                for (int i = 0; i < n; i++) mean += fabs(x[i]);
                L->p[j] = alpha_of((float)(mean / n));
                L->p[ng + j] = 0.0f;
                continue;
            }
            for (int i = 0; i < n; i++) mean += x[i];
            mean /= n;
            // TWN rule on the centred weights: Δ = 0.7·mean|c|, α = mean |c| over |c| > Δ.
            double abs_mean = 0;
            for (int i = 0; i < n; i++) abs_mean += fabs(x[i] - mean);
            abs_mean /= n;
            double delta = 0.7 * abs_mean, s = 0;
            int k = 0;
            for (int i = 0; i < n; i++)
                if (fabs(x[i] - mean) > delta) s += fabs(x[i] - mean), k++;
            L->p[j] = alpha_of(k ? (float)(s / k) : 0.0f);
            L->p[ng + j] = (float)mean;
        }
}

static int dlt_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra) {
    (void)extra, (void)has_extra;
    const tern_quant_linear *L = &q->lin[id];
    size_t ng = (size_t)L->out * L->n_groups;
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t j = (size_t)r * L->n_groups + g, o = (size_t)r * L->in + (size_t)g * L->G;
            float a = alpha_of(L->p[j]), c = L->p[ng + j];
            int n = tern_group_len(L, g);
            for (int i = 0; i < n; i++) {
                float t = nearbyintf((w[o + i] - c) / a);
                t = t < -1.0f ? -1.0f : t > 1.0f ? 1.0f : t;
                w_eff[o + i] = a * t + c;
            }
        }
    return 0;
}

static int dlt_backward(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra,
                        float *d_w) {
    (void)d_extra;
    tern_quant_linear *L = &q->lin[id];
    size_t ng = (size_t)L->out * L->n_groups;
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t j = (size_t)r * L->n_groups + g, o = (size_t)r * L->in + (size_t)g * L->G;
            float a = alpha_of(L->p[j]), c = L->p[ng + j];
            int n = tern_group_len(L, g);
            double da = 0, dc = 0;
            for (int i = 0; i < n; i++) {
                float wt = (w[o + i] - c) / a, t = nearbyintf(wt), d = d_w_eff[o + i];
                t = t < -1.0f ? -1.0f : t > 1.0f ? 1.0f : t;
                int in_range = fabsf(wt) <= 1.0f;
                if (in_range && d_w) d_w[o + i] += d; // d_w NULL: weights frozen (E2E-QP)
                da += d * (t - (in_range ? wt : 0.0f));
                dc += in_range ? 0.0 : d;
            }
            double scale = q->opt.lsq_scale ? 1.0 / sqrt((double)n) : 1.0;
            // The floor on α passes no gradient once α is below it (as clamp does).
            if (L->p[j] > 1e-6f) L->g[j] += (float)(da * scale);
            L->g[ng + j] += (float)(dc * scale);
        }
    return 0;
}

// Codes for the diagnostics and export statistics; the threshold is on |w - γ|,
// not |w|, so Δ is reported as NaN.
static void dlt_codes(const tern_quant *q, int id, const float *w, int8_t *T, float *delta) {
    const tern_quant_linear *L = &q->lin[id];
    size_t ng = (size_t)L->out * L->n_groups;
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t j = (size_t)r * L->n_groups + g, o = (size_t)r * L->in + (size_t)g * L->G;
            float a = alpha_of(L->p[j]), c = L->p[ng + j];
            for (int i = 0; i < tern_group_len(L, g); i++) {
                float t = nearbyintf((w[o + i] - c) / a);
                T[o + i] = (int8_t)(t < -1.0f ? -1 : t > 1.0f ? 1 : t);
            }
            delta[j] = NAN;
        }
}

// α and γ are the method's own parameters; GPTQ's updated weights already
// round to T on that grid, so they are the latent weights as they are.
static void dlt_adopt(tern_quant *q, int id, float *w, const int8_t *T, const float *scale, const float *shift) {
    (void)w, (void)T;
    tern_quant_linear *L = &q->lin[id];
    size_t ng = (size_t)L->out * L->n_groups;
    for (size_t j = 0; j < ng; j++) L->p[j] = scale[j], L->p[ng + j] = shift[j];
}

const tern_quant_method tern_quant_dlt = {
    .name = "dlt",
    .ternary = 1,
    .trains_weights = 1,
    .trains = 1,
    .n_params = dlt_n_params,
    .init = dlt_init,
    .effective = dlt_effective,
    .backward = dlt_backward,
    .codes = dlt_codes,
    .grid = TERN_GRID_SHIFT,
    .adopt = dlt_adopt,
};
