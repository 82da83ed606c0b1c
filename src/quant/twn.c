// TWN (ternary weight networks): Δ = 0.7·mean|w| per group, T = sign(w)·[|w| > Δ],
// α = mean |w| over the non-zero set, ŵ = α·T; straight-through backward.
#include "quant/quant.h"

static int twn_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra) {
    (void)extra, (void)has_extra;
    const tern_quant_linear *L = &q->lin[id];
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t o = (size_t)r * L->in + (size_t)g * L->G;
            tern_group_twn_q(w + o, tern_group_len(L, g), w_eff + o);
        }
    return 0;
}

static int twn_backward(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra,
                        float *d_w) {
    (void)w, (void)d_extra;
    const tern_quant_linear *L = &q->lin[id];
    size_t n = (size_t)L->out * L->in;
    for (size_t i = 0; i < n; i++) d_w[i] += d_w_eff[i];
    return 0;
}

static void twn_codes(const tern_quant *q, int id, const float *w, int8_t *T, float *delta) {
    const tern_quant_linear *L = &q->lin[id];
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t o = (size_t)r * L->in + (size_t)g * L->G;
            delta[(size_t)r * L->n_groups + g] = tern_group_twn_codes(w + o, tern_group_len(L, g), T + o);
        }
}

const tern_quant_method tern_quant_twn = {
    .name = "twn",
    .ternary = 1,
    .trains_weights = 1,
    .trains = 1,
    .effective = twn_effective,
    .backward = twn_backward,
    .codes = twn_codes,
};
