// RTN: plain b-bit round-to-nearest per group (asymmetric, or symmetric with
// --sym); no training (PTQ only). The backward is straight-through so the
// method also works inside the training graph (e.g. for tests).
#include "quant/quant.h"

static int rtn_check(const tern_quant_opts *o) {
    if (o->bits < 2 || o->bits > 8) return tern_errorf("--bits must be in [2, 8], got %d", o->bits);
    return 0;
}

static int rtn_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra) {
    (void)extra, (void)has_extra;
    const tern_quant_linear *L = &q->lin[id];
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t o = (size_t)r * L->in + (size_t)g * L->G;
            tern_group_rtn_q(w + o, tern_group_len(L, g), q->opt.bits, q->opt.sym, w_eff + o);
        }
    return 0;
}

static int rtn_backward(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra,
                        float *d_w) {
    (void)w, (void)d_extra;
    const tern_quant_linear *L = &q->lin[id];
    size_t n = (size_t)L->out * L->in;
    for (size_t i = 0; i < n; i++) d_w[i] += d_w_eff[i];
    return 0;
}

const tern_quant_method tern_quant_rtn = {
    .name = "rtn",
    .ternary = 0,
    .trains_weights = 0,
    .trains = 0,
    .check = rtn_check,
    .effective = rtn_effective,
    .backward = rtn_backward,
};
