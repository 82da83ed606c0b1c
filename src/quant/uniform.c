// uniform: a b-bit asymmetric grid with a learnable scale s and zero point z
// per group (EfficientQAT's quantizer; the linears --keep holds at b bits use
// it too). With a = max(s, 1e-8), zr = clamp(round(z), 0, L), L = 2^b - 1:
//   c = clamp(round(w/a) + zr, 0, L),  ŵ = a·(c - zr).
// Gradients as autograd gives them with straight-through rounding, I = [0 <=
// round(w/a) + zr <= L]:
//   dL/dw = dL/dŵ·I,  dL/ds = Σ dL/dŵ·((c - zr) - I·w/a),  dL/dz = -Σ dL/dŵ·a·(1 - I).
// Init: round to nearest on the group's range [min, max] (0 included), the
// same grid as rtn. Parameters of a linear: s[out*n_groups] then z[out*n_groups].
#include <math.h>

#include "quant/quant.h"

static float scale_of(float s) { return s > 1e-8f ? s : 1e-8f; }

static float levels(const tern_quant_linear *L) { return (float)((1 << L->bits) - 1); }

static float zero_of(float z, float lv) { return fminf(fmaxf(nearbyintf(z), 0.0f), lv); }

static int uniform_check(const tern_quant_opts *o) {
    if (o->bits < 2 || o->bits > 8) return tern_errorf("--bits must be in [2, 8], got %d", o->bits);
    return 0;
}

static int64_t uniform_n_params(const tern_quant *q, int id, int *share) {
    (void)share;
    return 2 * (int64_t)q->lin[id].out * q->lin[id].n_groups;
}

static void uniform_init(tern_quant *q, int id, const float *w) {
    tern_quant_linear *L = &q->lin[id];
    size_t ng = (size_t)L->out * L->n_groups;
    float lv = levels(L);
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            const float *x = w + (size_t)r * L->in + (size_t)g * L->G;
            float mn = 0, mx = 0;
            for (int i = 0; i < tern_group_len(L, g); i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
            size_t j = (size_t)r * L->n_groups + g;
            float s = (mx - mn) / lv;
            L->p[j] = s;
            L->p[ng + j] = s > 0 ? nearbyintf(-mn / s) : 0.0f;
        }
}

static int uniform_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra) {
    (void)extra, (void)has_extra;
    const tern_quant_linear *L = &q->lin[id];
    size_t ng = (size_t)L->out * L->n_groups;
    float lv = levels(L);
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t j = (size_t)r * L->n_groups + g, o = (size_t)r * L->in + (size_t)g * L->G;
            float a = scale_of(L->p[j]), z = zero_of(L->p[ng + j], lv);
            for (int i = 0; i < tern_group_len(L, g); i++) {
                float c = fminf(fmaxf(nearbyintf(w[o + i] / a) + z, 0.0f), lv);
                w_eff[o + i] = a * (c - z);
            }
        }
    return 0;
}

static int uniform_backward(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra,
                            float *d_w) {
    (void)d_extra;
    tern_quant_linear *L = &q->lin[id];
    size_t ng = (size_t)L->out * L->n_groups;
    float lv = levels(L);
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            size_t j = (size_t)r * L->n_groups + g, o = (size_t)r * L->in + (size_t)g * L->G;
            float a = scale_of(L->p[j]), z = zero_of(L->p[ng + j], lv);
            double ds = 0, dz = 0;
            for (int i = 0; i < tern_group_len(L, g); i++) {
                float u = nearbyintf(w[o + i] / a) + z, c = fminf(fmaxf(u, 0.0f), lv), d = d_w_eff[o + i];
                int in_range = u >= 0.0f && u <= lv;
                if (in_range && d_w) d_w[o + i] += d;
                ds += d * ((c - z) - (in_range ? w[o + i] / a : 0.0f));
                dz += in_range ? 0.0 : -d * a;
            }
            if (L->p[j] > 1e-8f) L->g[j] += (float)ds; // the floor on s passes no gradient
            L->g[ng + j] += (float)dz;
        }
    return 0;
}

// GPTQ's grid is this method's own: s, z as fitted, latent = the updated weights.
static void uniform_adopt(tern_quant *q, int id, float *w, const int8_t *T, const float *scale, const float *shift) {
    (void)w, (void)T;
    tern_quant_linear *L = &q->lin[id];
    size_t ng = (size_t)L->out * L->n_groups;
    for (size_t j = 0; j < ng; j++) L->p[j] = scale[j], L->p[ng + j] = shift[j];
}

const tern_quant_method tern_quant_uniform = {
    .name = "uniform",
    .ternary = 0,
    .trains_weights = 1,
    .trains = 1,
    .check = uniform_check,
    .n_params = uniform_n_params,
    .init = uniform_init,
    .effective = uniform_effective,
    .backward = uniform_backward,
    .grid = TERN_GRID_UNIFORM,
    .adopt = uniform_adopt,
};
