// absmean (BitNet b1.58): α = mean|w| per group, T = clamp(round(w/α), -1, 1),
// ŵ = α·T; straight-through backward (dL/dw = dL/dŵ).
#include "quant/quant.h"

static int absmean_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra) {
    (void)extra, (void)has_extra;
    const tern_quant_linear *L = &q->lin[id];
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t o = (size_t)r * L->in + (size_t)g * L->G;
            tern_group_absmean_q(w + o, tern_group_len(L, g), w_eff + o);
        }
    return 0;
}

// Straight-through: shared by every method whose only trainable input is w.
static int absmean_backward(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra,
                            float *d_w) {
    (void)w, (void)d_extra;
    const tern_quant_linear *L = &q->lin[id];
    size_t n = (size_t)L->out * L->in;
    for (size_t i = 0; i < n; i++) d_w[i] += d_w_eff[i];
    return 0;
}

static void absmean_codes(const tern_quant *q, int id, const float *w, int8_t *T, float *delta) {
    const tern_quant_linear *L = &q->lin[id];
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t o = (size_t)r * L->in + (size_t)g * L->G;
            delta[(size_t)r * L->n_groups + g] = tern_group_absmean_codes(w + o, tern_group_len(L, g), T + o);
        }
}

const tern_quant_method tern_quant_absmean = {
    .name = "absmean",
    .ternary = 1,
    .trains_weights = 1,
    .trains = 1,
    .effective = absmean_effective,
    .backward = absmean_backward,
    .codes = absmean_codes,
};
