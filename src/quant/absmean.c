// absmean (BitNet b1.58): α = mean|w| per group, T = clamp(round(w/α), -1, 1),
// ŵ = α·T; straight-through backward (dL/dw = dL/dŵ).
#include "quant/quant.h"

static void absmean_group(const float *w, int n, const tern_quant_opts *o, float *out) {
    (void)o;
    tern_group_absmean_q(w, n, out);
}

static int absmean_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra) {
    (void)extra, (void)has_extra;
    tern_linear_groups_q(&q->lin[id], w, w_eff, absmean_group, &q->opt);
    return 0;
}

static void absmean_codes(const tern_quant *q, int id, const float *w, int8_t *T, float *delta) {
    tern_linear_groups_codes(&q->lin[id], w, T, delta, tern_group_absmean_codes);
}

static void absmean_adopt(tern_quant *q, int id, float *w, const int8_t *T, const float *scale, const float *shift) {
    (void)shift;
    tern_linear_groups_adopt(&q->lin[id], w, T, scale, tern_group_absmean_adopt);
}

const tern_quant_method tern_quant_absmean = {
    .name = "absmean",
    .ternary = 1,
    .trains_weights = 1,
    .trains = 1,
    .effective = absmean_effective,
    .backward = tern_quant_ste_backward,
    .codes = absmean_codes,
    .grid = TERN_GRID_SYM,
    .adopt = absmean_adopt,
};
