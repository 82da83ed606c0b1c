// RTN: plain b-bit round-to-nearest per group (asymmetric, or symmetric with
// --sym); no training (PTQ only). The backward is straight-through so the
// method also works inside the training graph (e.g. for tests).
#include "quant/quant.h"

static int rtn_check(const tern_quant_opts *o) {
    if (o->bits < 2 || o->bits > 8) return tern_errorf("--bits must be in [2, 8], got %d", o->bits);
    return 0;
}

static void rtn_group(const float *w, int n, const tern_quant_opts *o, float *out) {
    tern_group_rtn_q(w, n, o->bits, o->sym, out);
}

static int rtn_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra) {
    (void)extra, (void)has_extra;
    tern_linear_groups_q(&q->lin[id], w, w_eff, rtn_group, &q->opt);
    return 0;
}

const tern_quant_method tern_quant_rtn = {
    .name = "rtn",
    .ternary = 0,
    .trains_weights = 0,
    .trains = 0,
    .check = rtn_check,
    .effective = rtn_effective,
    .backward = tern_quant_ste_backward,
};
