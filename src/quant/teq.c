// TEQ: a trainable scale s per input channel, shared by the linears that read
// the same normalized input (attn_norm -> q, k, v; ffn_norm -> gate, up); o and
// down keep s = 1. Forward: x' = x / max(s, 1e-5), W' = W·diag(s),
// y = x'·Q(W')ᵀ, i.e. as a weight hook w_eff = Q(W·diag(s))·diag(1/max(s, 1e-5)).
// Q is b-bit RTN per group (asym/sym) or a ternary quantizer (--inner absmean|twn).
// Backward: Q is the identity (straight-through through round, clamp and the
// scale computation); s gets its gradient through W·diag(s) and through 1/s.
// Model weights stay frozen: only s trains. Export folds 1/s into the norms.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant/quant.h"

static float s_floor(float s) { return s > 1e-5f ? s : 1e-5f; }

static int teq_check(const tern_quant_opts *o) {
    const char *in = o->inner ? o->inner : "rtn";
    if (strcmp(in, "rtn") && strcmp(in, "absmean") && strcmp(in, "twn"))
        return tern_errorf("--inner must be rtn, absmean or twn, got '%s'", in);
    if (!strcmp(in, "rtn") && (o->bits < 2 || o->bits > 8))
        return tern_errorf("--bits must be in [2, 8], got %d", o->bits);
    return 0;
}

// q, k, v share the scales stored with q; gate, up those stored with gate.
static int64_t teq_n_params(const tern_quant *q, int id, int *share) {
    int k = id % TERN_LIN_COUNT, base = id - k;
    if (k == TERN_LIN_K || k == TERN_LIN_V) return *share = base + TERN_LIN_Q, -1;
    if (k == TERN_LIN_UP) return *share = base + TERN_LIN_GATE, -1;
    if (k == TERN_LIN_Q || k == TERN_LIN_GATE) return q->lin[id].in;
    return 0;
}

static void teq_init(tern_quant *q, int id, const float *w) {
    (void)w;
    tern_quant_linear *L = &q->lin[id];
    for (int i = 0; i < L->in; i++) L->p[i] = 1.0f;
}

// Q over one group, in place-safe (out may equal w).
static void inner_q(const tern_quant *q, const float *w, int n, float *out) {
    const char *in = q->opt.inner ? q->opt.inner : "rtn";
    if (!strcmp(in, "absmean")) tern_group_absmean_q(w, n, out);
    else if (!strcmp(in, "twn")) tern_group_twn_q(w, n, out);
    else tern_group_rtn_q(w, n, q->opt.bits, q->opt.sym, out);
}

// row_q = Q(W[r]·diag(s)) for one row (s NULL: s = 1).
static void scaled_row_q(const tern_quant *q, const tern_quant_linear *L, const float *w_row, float *row_q) {
    for (int i = 0; i < L->in; i++) row_q[i] = L->p ? w_row[i] * L->p[i] : w_row[i];
    for (int g = 0; g < L->n_groups; g++)
        inner_q(q, row_q + (size_t)g * L->G, tern_group_len(L, g), row_q + (size_t)g * L->G);
}

static int teq_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra) {
    (void)extra, (void)has_extra;
    const tern_quant_linear *L = &q->lin[id];
    for (int r = 0; r < L->out; r++) {
        float *row = w_eff + (size_t)r * L->in;
        scaled_row_q(q, L, w + (size_t)r * L->in, row);
        if (L->p)
            for (int i = 0; i < L->in; i++) row[i] /= s_floor(L->p[i]);
    }
    return 0;
}

// ds_i += Σ_j dŵ_ji·(W_ji / m_i - Q_ji / m_i² · [s_i > 1e-5]), m = max(s, 1e-5).
// Latent weights are frozen, so d_w is left alone.
static int teq_backward(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra,
                        float *d_w) {
    (void)d_extra, (void)d_w;
    const tern_quant_linear *L = &q->lin[id];
    if (!L->p) return 0;
    for (int r = 0; r < L->out; r++) {
        const float *wr = w + (size_t)r * L->in, *dr = d_w_eff + (size_t)r * L->in;
        scaled_row_q(q, L, wr, q->scratch);
        for (int i = 0; i < L->in; i++) {
            float m = s_floor(L->p[i]);
            float g = dr[i] * wr[i] / m;
            if (L->p[i] > 1e-5f) g -= dr[i] * q->scratch[i] / (m * m);
            L->g[i] += g;
        }
    }
    return 0;
}

// Folds 1/s into the RMSNorm weight feeding each scaled linear and writes
// Q(W·diag(s)): the exported model computes x/s · Q(W·diag(s))ᵀ as in training.
static int teq_export(tern_quant *q, tern_model *m) {
    char name[TERN_NAME_MAX];
    for (int id = 0; id < q->n_lin; id++) {
        const tern_quant_linear *L = &q->lin[id];
        tern_quant_linear_name(id, name, sizeof name);
        tern_tensor *t = tern_model_find(m, name);
        if (!t) return tern_errorf("export: %s missing", name);
        for (int r = 0; r < L->out; r++) {
            scaled_row_q(q, L, t->data + (size_t)r * L->in, q->scratch);
            memcpy(t->data + (size_t)r * L->in, q->scratch, (size_t)L->in * sizeof(float));
        }
        int k = id % TERN_LIN_COUNT;
        if (k != TERN_LIN_Q && k != TERN_LIN_GATE) continue;
        snprintf(name, sizeof name, "blk.%d.%s.weight", id / TERN_LIN_COUNT, k == TERN_LIN_Q ? "attn_norm" : "ffn_norm");
        tern_tensor *n = tern_model_find(m, name);
        if (!n || n->numel != L->in) return tern_errorf("export: %s missing or of the wrong size", name);
        for (int i = 0; i < L->in; i++) n->data[i] /= s_floor(L->p[i]);
    }
    return 0;
}

const tern_quant_method tern_quant_teq = {
    .name = "teq",
    .ternary = 0,
    .trains_weights = 0,
    .trains = 1,
    .check = teq_check,
    .n_params = teq_n_params,
    .init = teq_init,
    .effective = teq_effective,
    .backward = teq_backward,
    .export_model = teq_export,
};
