// TWN (ternary weight networks): Δ = 0.7·mean|w| per group, T = sign(w)·[|w| > Δ],
// α = mean |w| over the non-zero set, ŵ = α·T; straight-through backward.
#include "quant/quant.h"

static void twn_group(const float *w, int n, const tern_quant_opts *o, float *out) {
    (void)o;
    tern_group_twn_q(w, n, out);
}

static int twn_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra) {
    (void)extra, (void)has_extra;
    tern_linear_groups_q(&q->lin[id], w, w_eff, twn_group, &q->opt);
    return 0;
}

static void twn_codes(const tern_quant *q, int id, const float *w, int8_t *T, float *delta) {
    tern_linear_groups_codes(&q->lin[id], w, T, delta, tern_group_twn_codes);
}

static void twn_adopt(tern_quant *q, int id, float *w, const int8_t *T, const float *scale, const float *shift) {
    (void)shift;
    tern_linear_groups_adopt(&q->lin[id], w, T, scale, tern_group_twn_adopt);
}

const tern_quant_method tern_quant_twn = {
    .name = "twn",
    .ternary = 1,
    .trains_weights = 1,
    .trains = 1,
    .effective = twn_effective,
    .backward = tern_quant_ste_backward,
    .codes = twn_codes,
    .grid = TERN_GRID_SYM,
    .adopt = twn_adopt,
};
