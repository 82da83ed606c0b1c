// Quantization methods (src/quant): forward and backward of each method
// against PyTorch (tests/ref/quant_ref.py -> tests/fixtures/quant_ref.bin),
// finite differences where the function is differentiable, TEQ's shared scales
// and export folding, Tequila's export biases, the dead-zone diagnostics, the
// trainer adapter, and bad options.
#include <stdint.h>

#include "io/model.h"
#include "quant/quant.h"
#include "test.h"

enum { R = 6, C = 40, G = 16, NG = 3 };

// ---- Fixture ----

static FILE *fx;

// Reads the next record, which must hold n floats (n < 0: at most -n; returns the count).
static int next_rec(float *dst, int n) {
    uint32_t len = 0;
    if (fread(&len, 4, 1, fx) != 1) return -1;
    if (n >= 0 ? (int)len != n : (int)len > -n) {
        fprintf(stderr, "fixture record has %u floats, expected %d\n", len, n);
        exit(1);
    }
    if (len && fread(dst, 4, len, fx) != len) return -1;
    return (int)len;
}

// A one-layer model whose seven linears are all [R, C] = W, with norms of ones.
static void make_model(tern_model *m, const float *W) {
    memset(m, 0, sizeof *m);
    m->cfg.n_layers = 1;
    m->cfg.dim = C;
    m->cfg.hidden_dim = C;
    char name[TERN_NAME_MAX];
    for (int id = 0; id < TERN_LIN_COUNT; id++) {
        tern_quant_linear_name(id, name, sizeof name);
        int64_t shape[2] = {R, C};
        tern_tensor *t = tern_model_add_tensor(m, name, 2, shape, "F32");
        memcpy(t->data, W, sizeof(float) * R * C);
    }
    const char *norms[2] = {"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"};
    for (int k = 0; k < 2; k++) {
        int64_t shape[1] = {C};
        tern_tensor *t = tern_model_add_tensor(m, norms[k], 1, shape, "F32");
        for (int i = 0; i < C; i++) t->data[i] = 1.0f + 0.01f * (float)i;
    }
}

static double max_abs(const float *a, int n) {
    double m = 0;
    for (int i = 0; i < n; i++)
        if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

static float W[R * C], GU[R * C], DE[R], S[C];

typedef struct {
    const char *label, *method;
    int bits, sym;
    float lambda;
    const char *inner;
} ref_case;

// One fixture case: forward (w_eff, extra), backward (dL/dw, dL/dparams).
static void check_case(const ref_case *rc) {
    float ref_weff[R * C], ref_extra[R], ref_dw[R * C], ref_p[64], ref_dp[64];
    next_rec(ref_weff, R * C);
    next_rec(ref_extra, R);
    next_rec(ref_dw, R * C);
    int np = next_rec(ref_p, -64);
    CHECK(next_rec(ref_dp, np) == np);

    tern_model m;
    make_model(&m, W);
    tern_quant_opts o;
    tern_quant_opts_defaults(&o);
    o.group = G, o.bits = rc->bits, o.sym = rc->sym, o.lambda = rc->lambda, o.inner = rc->inner;
    o.lsq_scale = 1; // the reference (tests/ref) applies DLT's optional LSQ gradient scale
    tern_quant *q;
    CHECK_OK(tern_quant_create(&q, tern_quant_find(rc->method), &o, &m));
    if (!q) return;
    tern_quant_linear *L = &q->lin[0];
    if (!strcmp(rc->method, "teq")) memcpy(L->p, S, sizeof S); // trained scales, not the init 1
    if (np) {
        // The method's own init (dlt) must match the reference init; teq's is set above.
        double e = test_max_rel_err(L->p, ref_p, (size_t)np, 1e-6);
        printf("%-12s params      rel err %.2e\n", rc->label, e);
        CHECK_MSG(e < 1e-5, "%s: parameters differ (%.3g)", rc->label, e);
    }
    float weff[R * C], extra[R] = {0}, dw[R * C] = {0};
    int has_extra = 0;
    CHECK_OK(tern_quant_effective(q, 0, W, weff, extra, &has_extra));
    if (!has_extra) memset(extra, 0, sizeof extra);
    CHECK_OK(tern_quant_backward(q, 0, W, GU, has_extra ? DE : NULL, dw));
    double e_w = test_max_rel_err(weff, ref_weff, R * C, 1e-6), e_x = test_max_rel_err(extra, ref_extra, R, 1e-6);
    double e_dw = test_max_rel_err(dw, ref_dw, R * C, 1e-6);
    double e_dp = np ? test_max_rel_err(L->g, ref_dp, (size_t)np, 1e-6) : 0;
    printf("%-12s w_eff %.2e  extra %.2e  dw %.2e  dparams %.2e (rel)\n", rc->label, e_w, e_x, e_dw, e_dp);
    CHECK_MSG(e_w < 1e-5, "%s w_eff", rc->label);
    CHECK_MSG(e_x < 1e-5, "%s extra", rc->label);
    CHECK_MSG(e_dw < 1e-5, "%s dL/dw", rc->label);
    CHECK_MSG(e_dp < 1e-5, "%s dL/dparams", rc->label);
    CHECK(has_extra == !strcmp(rc->method, "tequila"));
    if (!strcmp(rc->method, "tequila")) CHECK(max_abs(ref_extra, R) > 1e-3); // the term is visible
    tern_quant_free(q);
    tern_model_free(&m);
}

static void test_reference(void) {
    fx = fopen(test_src_path("tests/fixtures/quant_ref.bin"), "rb");
    CHECK_MSG(fx != NULL, "missing fixture");
    if (!fx) return;
    next_rec(W, R * C), next_rec(GU, R * C), next_rec(DE, R), next_rec(S, C);
    static const ref_case cases[] = {
        {"absmean", "absmean", 4, 0, 0, "rtn"},  {"twn", "twn", 4, 0, 0, "rtn"},
        {"tequila", "tequila", 4, 0, 0.1f, "rtn"}, {"dlt", "dlt", 4, 0, 0, "rtn"},
        {"rtn b3", "rtn", 3, 0, 0, "rtn"},       {"rtn b4 sym", "rtn", 4, 1, 0, "rtn"},
        {"teq b3", "teq", 3, 0, 0, "rtn"},       {"teq b3 sym", "teq", 3, 1, 0, "rtn"},
        {"teq absmean", "teq", 4, 0, 0, "absmean"}, {"uniform b3", "uniform", 3, 0, 0, "rtn"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
    float extra;
    CHECK(next_rec(&extra, -1) == -1); // fixture fully consumed (a record here would exit)
    fclose(fx);
}

// ---- Finite differences ----

// L = <GU, w_eff> + <DE, extra> through the method.
static double loss_of(tern_quant *q, const float *w) {
    float weff[R * C], extra[R];
    int has = 0;
    tern_quant_effective(q, 0, w, weff, extra, &has);
    double L = 0;
    for (int i = 0; i < R * C; i++) L += (double)GU[i] * weff[i];
    for (int j = 0; j < R && has; j++) L += (double)DE[j] * extra[j];
    return L;
}

// DLT with every weight outside |w̃| ≤ 1: there ŵ = ±α + γ is smooth in α, γ
// (and constant in w), so the LSQ gradients are the true derivatives.
static void test_dlt_fd(void) {
    float w[R * C];
    uint32_t seed = 5;
    for (int i = 0; i < R * C; i++) {
        seed = seed * 1664525u + 1013904223u;
        float u = (float)(seed >> 8) / 16777216.0f;
        w[i] = 0.05f + (i % 3 ? 1.0f : -1.0f) * (1.2f + 1.8f * u) * 0.1f;
    }
    tern_model m;
    make_model(&m, w);
    tern_quant_opts o;
    tern_quant_opts_defaults(&o);
    o.group = G, o.lsq_scale = 0;
    tern_quant *q;
    CHECK_OK(tern_quant_create(&q, &tern_quant_dlt, &o, &m));
    tern_quant_linear *L = &q->lin[0];
    for (int j = 0; j < R * NG; j++) L->p[j] = 0.1f, L->p[R * NG + j] = 0.05f;
    float dw[R * C] = {0};
    memset(L->g, 0, sizeof(float) * 2 * R * NG);
    CHECK_OK(tern_quant_backward(q, 0, w, GU, NULL, dw));
    CHECK(max_abs(dw, R * C) == 0);
    double worst = 0;
    for (int j = 0; j < 2 * R * NG; j++) {
        float keep = L->p[j], eps = 1e-3f;
        L->p[j] = keep + eps;
        double lp = loss_of(q, w);
        L->p[j] = keep - eps;
        double lm = loss_of(q, w);
        L->p[j] = keep;
        double fd = (lp - lm) / (2 * eps), err = fabs(fd - L->g[j]) / fmax(1.0, fabs(fd));
        if (err > worst) worst = err;
    }
    printf("dlt alpha/gamma vs finite differences: max rel err %.2e\n", worst);
    CHECK(worst < 1e-3);
    tern_quant_free(q);
    tern_model_free(&m);
}

// Tequila's extra term C_j = λ·Σ_{D_j} w is smooth in w away from the
// thresholds: its FD gradient is the "mixed" part of the backward.
static void test_tequila_fd(void) {
    tern_model m;
    make_model(&m, W);
    tern_quant_opts o;
    tern_quant_opts_defaults(&o);
    o.group = G, o.lambda = 0.1f;
    tern_quant *q;
    CHECK_OK(tern_quant_create(&q, &tern_quant_tequila, &o, &m));
    float zero_up[R * C] = {0}, dw[R * C] = {0}, w[R * C];
    CHECK_OK(tern_quant_backward(q, 0, W, zero_up, DE, dw));
    memcpy(w, W, sizeof w);
    double worst = 0;
    int checked = 0, dead = 0;
    for (int i = 0; i < R * C; i++) {
        // Skip weights whose group has a weight near its threshold (α moves with w).
        int r = i / C, g = (i % C) / G, s = g * G, n = s + G > C ? C - s : G;
        float a = tern_group_absmean(W + r * C + s, n);
        int near = 0;
        for (int k = 0; k < n; k++) near |= fabsf(fabsf(W[r * C + s + k]) - 0.5f * a) < 2e-3f;
        if (near) continue;
        float eps = 1e-3f, extra_p[R], extra_m[R], weff[R * C];
        int has;
        w[i] = W[i] + eps;
        tern_quant_effective(q, 0, w, weff, extra_p, &has);
        w[i] = W[i] - eps;
        tern_quant_effective(q, 0, w, weff, extra_m, &has);
        w[i] = W[i];
        double fd = 0;
        for (int j = 0; j < R; j++) fd += (double)DE[j] * (extra_p[j] - extra_m[j]) / (2 * eps);
        double err = fabs(fd - dw[i]);
        if (err > worst) worst = err;
        checked++, dead += dw[i] != 0;
    }
    printf("tequila dead-zone gradient vs finite differences: %d weights (%d dead), max abs err %.2e\n", checked, dead,
           worst);
    CHECK(checked > R * C / 3 && dead > 10);
    CHECK(worst < 1e-4);
    tern_quant_free(q);
    tern_model_free(&m);
}

// ---- TEQ: shared scales, export folding ----

static void test_teq_share_and_export(void) {
    tern_model m;
    make_model(&m, W);
    tern_quant_opts o;
    tern_quant_opts_defaults(&o);
    o.group = G, o.bits = 3;
    tern_quant *q;
    CHECK_OK(tern_quant_create(&q, &tern_quant_teq, &o, &m));
    CHECK(q->n_params == 2 * C);
    CHECK(q->lin[TERN_LIN_K].p == q->lin[TERN_LIN_Q].p && q->lin[TERN_LIN_V].p == q->lin[TERN_LIN_Q].p);
    CHECK(q->lin[TERN_LIN_UP].p == q->lin[TERN_LIN_GATE].p && q->lin[TERN_LIN_GATE].p != q->lin[TERN_LIN_Q].p);
    CHECK(q->lin[TERN_LIN_O].p == NULL && q->lin[TERN_LIN_DOWN].p == NULL);
    for (int i = 0; i < C; i++) CHECK(q->lin[TERN_LIN_Q].p[i] == 1.0f); // init s = 1
    memcpy(q->lin[TERN_LIN_Q].p, S, sizeof S);
    memcpy(q->lin[TERN_LIN_GATE].p, S, sizeof S);
    // Gradients of q, k and v accumulate into the one shared s.
    float dw[R * C] = {0};
    CHECK_OK(tern_quant_backward(q, TERN_LIN_Q, W, GU, NULL, dw));
    float g1 = q->lin[TERN_LIN_Q].g[7];
    CHECK_OK(tern_quant_backward(q, TERN_LIN_K, W, GU, NULL, dw));
    CHECK_NEAR(q->lin[TERN_LIN_Q].g[7], 2 * g1, 1e-5 * fabs(g1) + 1e-9);
    CHECK(max_abs(dw, R * C) == 0); // latent weights frozen
    // Hook output y = (h ⊙ norm)·w_effᵀ equals the exported (h ⊙ norm/s)·Q(W diag s)ᵀ.
    float weff[TERN_LIN_COUNT][R * C], extra[R], h[C], norm0[2][C];
    int has;
    for (int id = 0; id < TERN_LIN_COUNT; id++) CHECK_OK(tern_quant_effective(q, id, W, weff[id], extra, &has));
    memcpy(norm0[0], tern_model_find(&m, "blk.0.attn_norm.weight")->data, sizeof norm0[0]);
    memcpy(norm0[1], tern_model_find(&m, "blk.0.ffn_norm.weight")->data, sizeof norm0[1]);
    for (int i = 0; i < C; i++) h[i] = sinf(0.7f * (float)i);
    double code_frac[3];
    CHECK_OK(tern_quant_export(q, &m, code_frac));
    const float *n1[2] = {tern_model_find(&m, "blk.0.attn_norm.weight")->data,
                          tern_model_find(&m, "blk.0.ffn_norm.weight")->data};
    double worst = 0;
    char name[TERN_NAME_MAX];
    for (int id = 0; id < TERN_LIN_COUNT; id++) {
        tern_quant_linear_name(id, name, sizeof name);
        const float *we = tern_model_find(&m, name)->data;
        int k = id <= TERN_LIN_V ? 0 : id == TERN_LIN_GATE || id == TERN_LIN_UP ? 1 : -1;
        for (int r = 0; r < R; r++) {
            double y0 = 0, y1 = 0;
            for (int i = 0; i < C; i++) {
                float x0 = k >= 0 ? h[i] * norm0[k][i] : h[i], x1 = k >= 0 ? h[i] * n1[k][i] : h[i];
                y0 += (double)x0 * weff[id][r * C + i];
                y1 += (double)x1 * we[r * C + i];
            }
            if (fabs(y0 - y1) > worst) worst = fabs(y0 - y1);
        }
    }
    printf("teq export (norms folded) vs hook forward: max abs diff %.2e\n", worst);
    CHECK(worst < 1e-5);
    tern_quant_free(q);
    tern_model_free(&m);
}

// ---- Tequila export: biases ----

static void test_tequila_export(void) {
    tern_model m;
    make_model(&m, W);
    tern_quant_opts o;
    tern_quant_opts_defaults(&o);
    o.group = G, o.lambda = 0.1f;
    tern_quant *q;
    CHECK_OK(tern_quant_create(&q, &tern_quant_tequila, &o, &m));
    float weff[R * C], extra[R];
    int has;
    CHECK_OK(tern_quant_effective(q, 0, W, weff, extra, &has));
    double frac[3];
    CHECK_OK(tern_quant_export(q, &m, frac));
    CHECK(m.cfg.attn_qkv_bias && m.cfg.attn_out_bias);
    tern_tensor *b = tern_model_find(&m, "blk.0.attn_q.bias"), *fb = tern_model_find(&m, "blk.0.ffn_down.bias");
    CHECK(b && fb && b->numel == R);
    for (int j = 0; b && fb && j < R; j++) CHECK(b->data[j] == extra[j] && fb->data[j] == extra[j]);
    CHECK(memcmp(tern_model_find(&m, "blk.0.attn_q.weight")->data, weff, sizeof weff) == 0);
    CHECK(frac[0] > 0.2 && frac[1] > 0.2 && frac[2] > 0.2);
    CHECK_NEAR(frac[0] + frac[1] + frac[2], 1.0, 1e-9);
    tern_quant_free(q);
    tern_model_free(&m);
}

// ---- Diagnostics ----

static const float *diag_w;
static const float *get_w(void *ctx, int id) {
    (void)ctx, (void)id;
    return diag_w;
}

// Parses "key": number out of the JSON fragment.
static double json_num(const char *buf, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(buf, pat);
    return p ? atof(p + strlen(pat)) : -1;
}

static void test_diagnostics(void) {
    tern_model m;
    make_model(&m, W);
    tern_quant_opts o;
    tern_quant_opts_defaults(&o);
    o.group = G, o.diag_window = 3, o.diag_every = 2;
    tern_quant *q;
    CHECK_OK(tern_quant_create(&q, &tern_quant_absmean, &o, &m));
    // Expected by hand: dead |w| ≤ α/2 (round-half-even keeps 0.5 at 0), trapped also |w| ≥ 0.45α.
    int dead = 0, trapped = 0;
    for (int r = 0; r < R; r++)
        for (int g = 0; g < NG; g++) {
            int s = g * G, n = s + G > C ? C - s : G;
            double a = 0;
            for (int k = 0; k < n; k++) a += fabs(W[r * C + s + k]);
            a /= n;
            for (int k = 0; k < n; k++) {
                double x = fabs(W[r * C + s + k]);
                dead += x < 0.5 * a, trapped += x < 0.5 * a && x >= 0.45 * a;
            }
        }
    double n_all = TERN_LIN_COUNT * R * C;
    diag_w = W;
    char buf[2048];
    for (int step = 0; step < 4; step++) {
        buf[0] = 0;
        tern_quant_diag_update(q, get_w, NULL, step, buf, sizeof buf);
        CHECK_NEAR(json_num(buf, "dz_frac"), TERN_LIN_COUNT * dead / n_all, 1e-6);
        CHECK_NEAR(json_num(buf, "dz_crossed"), 0, 1e-9);
        // Trapped needs a full window of K = 3 observed steps.
        CHECK_NEAR(json_num(buf, "dz_trapped"), step >= 2 ? TERN_LIN_COUNT * trapped / n_all : 0, 1e-6);
        CHECK((strstr(buf, "dz_frac_layers") != NULL) == (step % 2 == 1));
    }
    printf("diagnostics: dead %d, trapped %d of %d weights per linear; %s\n", dead, trapped, R * C, buf);
    CHECK(trapped > 0);
    // Push one dead weight of every linear over its threshold: it crossed.
    float w2[R * C];
    memcpy(w2, W, sizeof w2);
    int i0 = -1;
    for (int i = 0; i < R * C && i0 < 0; i++)
        if (fabsf(W[i]) < 1e-3f) i0 = i;
    CHECK(i0 >= 0);
    w2[i0] = 1.0f;
    diag_w = w2;
    buf[0] = 0;
    tern_quant_diag_update(q, get_w, NULL, 4, buf, sizeof buf);
    CHECK(json_num(buf, "dz_crossed") > 0);
    // A small buffer gets no half-written field.
    char tiny[20] = "";
    tern_quant_diag_update(q, get_w, NULL, 5, tiny, sizeof tiny);
    CHECK(tiny[0] == 0);
    tern_quant_free(q);
    tern_model_free(&m);
}

// ---- Adapter and options ----

static void test_adapter_and_options(void) {
    tern_model m;
    make_model(&m, W);
    tern_quant_opts o;
    tern_quant_opts_defaults(&o);
    o.group = G;
    tern_quant *q;
    CHECK_OK(tern_quant_create(&q, &tern_quant_absmean, &o, &m));
    const tern_train_method *tm = tern_quant_train_method(q);
    CHECK(tm->hook && tm->is_trainable(tm->ctx, "blk.0.ffn_down.weight"));
    CHECK(!tm->is_trainable(tm->ctx, "token_embd.weight") && !tm->is_trainable(tm->ctx, "blk.0.attn_norm.weight"));
    CHECK(!tm->is_trainable(tm->ctx, "blk.0.attn_q.bias") && !tm->is_trainable(tm->ctx, "blk.1.attn_q.weight"));
    float weff[R * C], extra[R];
    int has;
    CHECK_FAILS(tm->hook->effective(tm->hook->ctx, 0, W, R, C + 1, weff, extra, &has), "another shape");
    tern_quant_free(q);
    CHECK_OK(tern_quant_create(&q, &tern_quant_teq, &o, &m));
    tm = tern_quant_train_method(q);
    // TEQ: weights stay frozen; the engine still calls its backward (for s).
    CHECK(!tm->is_trainable(tm->ctx, "blk.0.attn_v.weight") && tm->hook->backward_when_frozen);
    tern_quant_free(q);
    CHECK_OK(tern_quant_create(&q, &tern_quant_rtn, &o, &m));
    tm = tern_quant_train_method(q);
    CHECK(!tm->is_trainable(tm->ctx, "blk.0.attn_q.weight"));
    tern_quant_free(q);

    CHECK(tern_quant_find("bogus") == NULL && tern_quant_find("tequila") == &tern_quant_tequila);
    o.group = 64; // wider than the rows: each row is one short group
    CHECK_OK(tern_quant_create(&q, &tern_quant_absmean, &o, &m));
    CHECK(q && q->lin[0].in < 64 && q->lin[0].n_groups == 1);
    tern_quant_free(q);
    o.group = 0;
    CHECK_FAILS(tern_quant_create(&q, &tern_quant_absmean, &o, &m), "--group");
    o.group = -1;
    CHECK_OK(tern_quant_create(&q, &tern_quant_absmean, &o, &m));
    CHECK(q && q->lin[0].G == C && q->lin[0].n_groups == 1);
    tern_quant_free(q);
    o.bits = 9;
    CHECK_FAILS(tern_quant_create(&q, &tern_quant_rtn, &o, &m), "--bits");
    o.bits = 4, o.lambda = 2;
    CHECK_FAILS(tern_quant_create(&q, &tern_quant_tequila, &o, &m), "--lambda");
    o.lambda = 0.1f, o.inner = "bogus";
    CHECK_FAILS(tern_quant_create(&q, &tern_quant_teq, &o, &m), "--inner");
    CHECK_FAILS(tern_quant_create(&q, NULL, &o, &m), "unknown");
    tern_model_free(&m);
}

int main(void) {
    test_reference();
    test_dlt_fd();
    test_tequila_fd();
    test_teq_share_and_export();
    test_tequila_export();
    test_diagnostics();
    test_adapter_and_options();
    return test_report();
}
