// Backward ops of the training engine against central finite differences of
// float64 reference forwards written here (small random shapes, odd sizes),
// the backward GEMMs against a float64 product, and whole-model gradients
// (tied head, q/k/v/o biases, a toy weight hook, dL/dhidden, frozen linears)
// against finite differences of the model's own loss.
#include "core/mem.h"
#include "core/threads.h"
#include "io/model.h"
#include "nn/llama_train.h"
#include "nn/matmul.h"
#include "nn/ops.h"
#include "test.h"

static unsigned seed = 12345;
static float frand(void) {
    seed = seed * 1103515245u + 12345u;
    return ((float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f) * 2;
}
// Random values that are exact in float, so the float op and the double
// reference see identical inputs.
static void fill(double *d, float *f, int n, double scale) {
    for (int i = 0; i < n; i++) {
        f[i] = (float)(frand() * scale);
        d[i] = f[i];
    }
}
static double *dalloc(int n) { return calloc((size_t)n, sizeof(double)); }
static float *falloc(int n) { return calloc((size_t)n, sizeof(float)); }

// L = Σ r[i] y[i]: dL/dy = r, so any op's backward can be fed r as dout.
static double dotr(const double *y, const double *r, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += y[i] * r[i];
    return s;
}

// Relative error of an analytic gradient against central differences of
// loss() over the n entries of x (perturbed in place, in double).
typedef double (*loss_fn)(void *ctx);
static double fd_err(double *x, int n, const float *analytic, loss_fn loss, void *ctx) {
    const double h = 1e-6;
    double maxdiff = 0, maxref = 1e-12;
    for (int i = 0; i < n; i++) {
        double save = x[i];
        x[i] = save + h;
        double lp = loss(ctx);
        x[i] = save - h;
        double lm = loss(ctx);
        x[i] = save;
        double fd = (lp - lm) / (2 * h);
        maxdiff = fmax(maxdiff, fabs(fd - analytic[i]));
        maxref = fmax(maxref, fabs(fd));
    }
    return maxdiff / maxref;
}

#define TOL 1e-4
static double worst_op_err;
#define CHECK_GRAD(err, what)                                          \
    do {                                                               \
        double e_ = (err);                                             \
        worst_op_err = fmax(worst_op_err, e_);                         \
        CHECK_MSG(e_ < TOL, "%s: rel err %.3g", what, e_);             \
    } while (0)

// ---- embedding ----

static void test_embedding(void) {
    int V = 7, D = 13, n = 9, tokens[9] = {3, 0, 3, 6, 3, 1, 0, 5, 6}; // repeats must add up
    float *dout = falloc(n * D), *de = falloc(V * D);
    double *dd = dalloc(n * D);
    fill(dd, dout, n * D, 1);
    for (int i = 0; i < V * D; i++) de[i] = 0.5f; // accumulates on top
    tern_embedding_backward(de, dout, tokens, n, D);
    double maxdiff = 0;
    for (int v = 0; v < V; v++)
        for (int c = 0; c < D; c++) {
            double ref = 0.5;
            for (int i = 0; i < n; i++)
                if (tokens[i] == v) ref += dd[i * D + c];
            maxdiff = fmax(maxdiff, fabs(ref - de[v * D + c]));
        }
    CHECK_MSG(maxdiff < 1e-6, "embedding backward: max diff %.3g", maxdiff);
    free(dout), free(de), free(dd);
}

// ---- RMSNorm ----

typedef struct {
    int n, dim;
    double *x, *w, *r;
} norm_ctx;

static double norm_loss(void *p) {
    norm_ctx *c = p;
    double L = 0;
    for (int i = 0; i < c->n; i++) {
        const double *x = c->x + i * c->dim;
        double ss = 0;
        for (int k = 0; k < c->dim; k++) ss += x[k] * x[k];
        double s = 1 / sqrt(ss / c->dim + 1e-5);
        for (int k = 0; k < c->dim; k++) L += c->r[i * c->dim + k] * x[k] * s * c->w[k];
    }
    return L;
}

static void test_rmsnorm(void) {
    int n = 3, D = 37;
    norm_ctx c = {n, D, dalloc(n * D), dalloc(D), dalloc(n * D)};
    float *x = falloc(n * D), *w = falloc(D), *r = falloc(n * D), *y = falloc(n * D), *y2 = falloc(n * D);
    float *rstd = falloc(n), *dx = falloc(n * D), *dw = falloc(D);
    fill(c.x, x, n * D, 2);
    fill(c.w, w, D, 1);
    fill(c.r, r, n * D, 1);
    tern_rmsnorm_forward_train(y, rstd, x, w, n, D, 1e-5f);
    tern_rmsnorm_forward(y2, x, w, n, D, 1e-5f);
    CHECK(memcmp(y, y2, (size_t)n * D * 4) == 0); // training forward == inference forward, bit for bit
    tern_rmsnorm_backward(dx, dw, r, x, w, rstd, n, D);
    CHECK_GRAD(fd_err(c.x, n * D, dx, norm_loss, &c), "rmsnorm dx");
    CHECK_GRAD(fd_err(c.w, D, dw, norm_loss, &c), "rmsnorm dw");
    // dx accumulates, dw NULL skips: a second call with dw NULL doubles dx only.
    float *dx2 = falloc(n * D);
    memcpy(dx2, dx, (size_t)n * D * 4);
    tern_rmsnorm_backward(dx2, NULL, r, x, w, rstd, n, D);
    double maxd = 0;
    for (int i = 0; i < n * D; i++) maxd = fmax(maxd, fabs(dx2[i] - 2 * dx[i]));
    CHECK(maxd < 1e-5);
    // The check can fail: dropping the normalisation term of dx is caught.
    for (int i = 0; i < n; i++)
        for (int k = 0; k < D; k++) dx2[i * D + k] = rstd[i] * w[k] * r[i * D + k];
    CHECK(fd_err(c.x, n * D, dx2, norm_loss, &c) > 1e-2);
    free(c.x), free(c.w), free(c.r), free(x), free(w), free(r), free(y), free(y2), free(rstd), free(dx);
    free(dw), free(dx2);
}

// ---- linear ----

typedef struct {
    int n, in, out;
    double *x, *w, *b, *r;
} lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    double L = 0;
    for (int t = 0; t < c->n; t++)
        for (int o = 0; o < c->out; o++) {
            double s = c->b[o];
            for (int k = 0; k < c->in; k++) s += c->x[t * c->in + k] * c->w[o * c->in + k];
            L += c->r[t * c->out + o] * s;
        }
    return L;
}

static void test_linear_fd(int n, int in, int out) {
    lin_ctx c = {n, in, out, dalloc(n * in), dalloc(out * in), dalloc(out), dalloc(n * out)};
    float *x = falloc(n * in), *w = falloc(out * in), *b = falloc(out), *r = falloc(n * out);
    float *dx = falloc(n * in), *dw = falloc(out * in), *db = falloc(out);
    fill(c.x, x, n * in, 1);
    fill(c.w, w, out * in, 1);
    fill(c.b, b, out, 1);
    fill(c.r, r, n * out, 1);
    tern_linear_backward(dx, dw, db, r, x, w, n, in, out, 0);
    char what[64];
    snprintf(what, sizeof what, "linear %dx%dx%d dx", n, in, out);
    CHECK_GRAD(fd_err(c.x, n * in, dx, lin_loss, &c), what);
    snprintf(what, sizeof what, "linear %dx%dx%d dw", n, in, out);
    CHECK_GRAD(fd_err(c.w, out * in, dw, lin_loss, &c), what);
    snprintf(what, sizeof what, "linear %dx%dx%d db", n, in, out);
    CHECK_GRAD(fd_err(c.b, out, db, lin_loss, &c), what);
    free(c.x), free(c.w), free(c.b), free(c.r), free(x), free(w), free(b), free(r), free(dx), free(dw), free(db);
}

// The backward GEMMs (dispatch and built-in) against float64 products, on
// shapes that cross the built-in kernels' tile edges; accumulate modes too.
static void test_backward_gemms(int n, int in, int out) {
    float *x = falloc(n * in), *w = falloc(out * in), *dy = falloc(n * out);
    double *xd = dalloc(n * in), *wd = dalloc(out * in), *dyd = dalloc(n * out);
    fill(xd, x, n * in, 1);
    fill(wd, w, out * in, 1);
    fill(dyd, dy, n * out, 1);
    float *ref_dx = falloc(n * in), *ref_dw = falloc(out * in), *got = falloc(n * in > out * in ? n * in : out * in);
    for (int t = 0; t < n; t++)
        for (int k = 0; k < in; k++) {
            double s = 0;
            for (int o = 0; o < out; o++) s += dyd[t * out + o] * wd[o * in + k];
            ref_dx[t * in + k] = (float)(s + 0.25); // + the 0.25 already there when accumulating
        }
    for (int o = 0; o < out; o++)
        for (int k = 0; k < in; k++) {
            double s = 0;
            for (int t = 0; t < n; t++) s += dyd[t * out + o] * xd[t * in + k];
            ref_dw[o * in + k] = (float)(s + 0.25);
        }
    double tol = 2e-6 * sqrt((double)(in > n ? in : n) + out);
    for (int variant = 0; variant < 2; variant++) {
        const char *name = variant ? tern_gemm_backend() : "blocked";
        for (int i = 0; i < n * in; i++) got[i] = 0.25f;
        if (variant) tern_matmul_dx_f32(got, dy, w, n, in, out, 1);
        else tern_gemm_dx_f32_blocked(got, dy, w, n, in, out, 1);
        CHECK_MSG(test_max_rel_err(got, ref_dx, (size_t)n * in, 1) < tol, "dx(%s, +=) %dx%dx%d", name, n, in, out);
        for (int i = 0; i < n * in; i++) got[i] = 1e9f; // overwritten, not accumulated
        if (variant) tern_matmul_dx_f32(got, dy, w, n, in, out, 0);
        else tern_gemm_dx_f32_blocked(got, dy, w, n, in, out, 0);
        for (int i = 0; i < n * in; i++) got[i] += 0.25f;
        CHECK_MSG(test_max_rel_err(got, ref_dx, (size_t)n * in, 1) < tol, "dx(%s, =) %dx%dx%d", name, n, in, out);
        for (int i = 0; i < out * in; i++) got[i] = 0.25f;
        if (variant) tern_matmul_dw_f32(got, dy, x, n, in, out);
        else tern_gemm_dw_f32_blocked(got, dy, x, n, in, out);
        CHECK_MSG(test_max_rel_err(got, ref_dw, (size_t)out * in, 1) < tol, "dw(%s) %dx%dx%d", name, n, in, out);
    }
    free(x), free(w), free(dy), free(xd), free(wd), free(dyd), free(ref_dx), free(ref_dw), free(got);
}

// ---- RoPE ----

typedef struct {
    int n, heads, hd;
    const int *pos;
    const tern_rope *rope;
    double *x, *r;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    double L = 0;
    int half = c->hd / 2;
    for (int t = 0; t < c->n; t++)
        for (int h = 0; h < c->heads; h++)
            for (int i = 0; i < half; i++) {
                size_t o = ((size_t)t * c->heads + h) * c->hd + 2 * i;
                double cs = c->rope->cos[c->pos[t] * half + i], sn = c->rope->sin[c->pos[t] * half + i];
                double a = c->x[o], b = c->x[o + 1];
                L += c->r[o] * (a * cs - b * sn) + c->r[o + 1] * (a * sn + b * cs);
            }
    return L;
}

static void test_rope(void) {
    int n = 4, heads = 3, hd = 10, pos[4] = {0, 5, 2, 11};
    tern_rope rope;
    CHECK_OK(tern_rope_init(&rope, hd, 16, 10000.0f, TERN_ROPE_SCALING_NONE, 0, 0, 0, 0));
    int cnt = n * heads * hd;
    rope_ctx c = {n, heads, hd, pos, &rope, dalloc(cnt), dalloc(cnt)};
    float *x = falloc(cnt), *r = falloc(cnt);
    fill(c.x, x, cnt, 1);
    fill(c.r, r, cnt, 1);
    tern_rope_backward(r, &rope, pos, n, heads); // r becomes dL/dx
    CHECK_GRAD(fd_err(c.x, cnt, r, rope_loss, &c), "rope");
    tern_rope_free(&rope);
    free(c.x), free(c.r), free(x), free(r);
}

// ---- SwiGLU ----

typedef struct {
    int n;
    double *g, *u, *r;
} swiglu_ctx;

static double swiglu_loss(void *p) {
    swiglu_ctx *c = p;
    double L = 0;
    for (int i = 0; i < c->n; i++) L += c->r[i] * c->g[i] / (1 + exp(-c->g[i])) * c->u[i];
    return L;
}

static void test_swiglu(void) {
    int n = 53;
    swiglu_ctx c = {n, dalloc(n), dalloc(n), dalloc(n)};
    float *g = falloc(n), *u = falloc(n), *r = falloc(n), *dg = falloc(n), *du = falloc(n);
    fill(c.g, g, n, 8); // wide range: saturated and linear regions of silu
    fill(c.u, u, n, 1);
    fill(c.r, r, n, 1);
    tern_swiglu_backward(dg, du, r, g, u, n);
    CHECK_GRAD(fd_err(c.g, n, dg, swiglu_loss, &c), "swiglu dgate");
    CHECK_GRAD(fd_err(c.u, n, du, swiglu_loss, &c), "swiglu dup");
    memcpy(dg, r, (size_t)n * 4); // dgate may alias dout
    tern_swiglu_backward(dg, du, dg, g, u, n);
    CHECK_GRAD(fd_err(c.g, n, dg, swiglu_loss, &c), "swiglu dgate (aliased)");
    free(c.g), free(c.u), free(c.r), free(g), free(u), free(r), free(dg), free(du);
}

static void test_residual(void) {
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {0}, d[5] = {0.5f, -1, 2, 0, 3};
    tern_residual_backward(a, b, d, 5);
    CHECK(a[0] == 1.5f && a[2] == 5 && b[1] == -1 && b[4] == 3);
    tern_residual_backward(NULL, b, d, 5);
    CHECK(b[4] == 6);
}

// ---- attention ----

typedef struct {
    int B, T, H, KVH, hd;
    double *q, *k, *v, *r;
} att_ctx;

// out[b, t, h] = Σ_{s<=t} softmax_s(q·k / sqrt(hd)) v, head h reading KV head h / (H/KVH).
static void attention_ref(const att_ctx *c, double *out) {
    int hd = c->hd, group = c->H / c->KVH;
    double *p = dalloc(c->T);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int t = 0; t < c->T; t++) {
                const double *q = c->q + ((b * c->T + t) * c->H + h) * hd;
                double mx = -1e300, sum = 0;
                for (int s = 0; s <= t; s++) {
                    const double *k = c->k + ((b * c->T + s) * c->KVH + h / group) * hd;
                    double dot = 0;
                    for (int i = 0; i < hd; i++) dot += q[i] * k[i];
                    p[s] = dot / sqrt((double)hd);
                    mx = fmax(mx, p[s]);
                }
                for (int s = 0; s <= t; s++) sum += p[s] = exp(p[s] - mx);
                double *o = out + ((b * c->T + t) * c->H + h) * hd;
                for (int i = 0; i < hd; i++) o[i] = 0;
                for (int s = 0; s <= t; s++) {
                    const double *v = c->v + ((b * c->T + s) * c->KVH + h / group) * hd;
                    for (int i = 0; i < hd; i++) o[i] += p[s] / sum * v[i];
                }
            }
    free(p);
}

static double att_loss(void *p) {
    att_ctx *c = p;
    int n = c->B * c->T * c->H * c->hd;
    double *out = dalloc(n);
    attention_ref(c, out);
    double L = dotr(out, c->r, n);
    free(out);
    return L;
}

static void test_attention(int B, int T, int H, int KVH, int hd) {
    int nq = B * T * H * hd, nkv = B * T * KVH * hd, natt = B * H * T * T;
    att_ctx c = {B, T, H, KVH, hd, dalloc(nq), dalloc(nkv), dalloc(nkv), dalloc(nq)};
    float *q = falloc(nq), *k = falloc(nkv), *v = falloc(nkv), *r = falloc(nq), *out = falloc(nq);
    float *att = falloc(natt), *datt = falloc(natt), *dq = falloc(nq), *dk = falloc(nkv), *dv = falloc(nkv);
    fill(c.q, q, nq, 1.5);
    fill(c.k, k, nkv, 1.5);
    fill(c.v, v, nkv, 1);
    fill(c.r, r, nq, 1);
    tern_attention_forward(out, att, q, k, v, B, T, H, KVH, hd);
    double *ref = dalloc(nq);
    attention_ref(&c, ref);
    double maxd = 0;
    for (int i = 0; i < nq; i++) maxd = fmax(maxd, fabs(ref[i] - out[i]));
    CHECK_MSG(maxd < 1e-5, "attention forward B%d T%d H%d KVH%d: max diff %.3g", B, T, H, KVH, maxd);
    // Saved probabilities: rows sum to 1, zero above the diagonal.
    double worst_row = 0;
    int upper_zero = 1;
    for (int row = 0; row < B * H * T; row++) {
        int t = row % T;
        double s = 0;
        for (int j = 0; j < T; j++) {
            s += att[(size_t)row * T + j];
            if (j > t && att[(size_t)row * T + j] != 0) upper_zero = 0;
        }
        worst_row = fmax(worst_row, fabs(s - 1));
    }
    CHECK(worst_row < 1e-5 && upper_zero);
    tern_attention_backward(dq, dk, dv, datt, r, att, q, k, v, B, T, H, KVH, hd);
    char what[96];
    snprintf(what, sizeof what, "attention B%d T%d H%d KVH%d hd%d dq", B, T, H, KVH, hd);
    CHECK_GRAD(fd_err(c.q, nq, dq, att_loss, &c), what);
    what[strlen(what) - 1] = 'k';
    CHECK_GRAD(fd_err(c.k, nkv, dk, att_loss, &c), what);
    what[strlen(what) - 1] = 'v';
    CHECK_GRAD(fd_err(c.v, nkv, dv, att_loss, &c), what);
    free(c.q), free(c.k), free(c.v), free(c.r), free(q), free(k), free(v), free(r), free(out), free(att);
    free(datt), free(dq), free(dk), free(dv), free(ref);
}

// ---- expf over arrays ----

// ULPs between two finite floats of the same sign.
static int64_t ulp_dist(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    return ia > ib ? (int64_t)ia - ib : (int64_t)ib - ia;
}

// Lanes of y that differ from expf(x) bit for bit; *worst_ulp = the largest
// distance in ulps from the correctly rounded exp (normal results only).
static int64_t expf_mismatches(const float *x, const float *y, int n, int64_t *worst_ulp) {
    int64_t mismatched = 0;
    for (int i = 0; i < n; i++) {
        float want = expf(x[i]);
        if (isnan(want) && isnan(y[i])) continue;
        mismatched += memcmp(&want, &y[i], 4) != 0;
        double exact = exp((double)x[i]);
        int64_t d = isinf(exact) || exact < 1e-37 ? (isinf(exact) != isinf(y[i])) * 99 : ulp_dist(y[i], (float)exact);
        if (d > *worst_ulp) *worst_ulp = d;
    }
    return mismatched;
}

// tern_expf_array against expf on every tail length, with the special inputs
// (over/underflow, inf, NaN, subnormals) mixed into vectors of ordinary ones,
// over a dense sweep of [-104, 89]. Under glibc on AVX2+FMA the vector path
// reproduces glibc's expf bit for bit; anywhere it stays within 1 ulp of exp.
// Softmax and SwiGLU go through it.
static void test_expf_array(void) {
    enum { N = 1 << 16 };
    float *x = falloc(N), *y = falloc(N);
    const float special[] = {0.0f, -0.0f, 88.0f, -88.0f, 88.7f, 88.73f, -103.9f, -104.0f, -110.0f, 1e-40f,
                             -1e-40f, 1e-7f, -87.5f, -0.5f, INFINITY, -INFINITY, NAN, 3.4e38f, -3.4e38f};
    int ns = (int)(sizeof special / sizeof special[0]);
    int64_t mismatched = 0, worst_ulp = 0;
    for (int round = 0; round < 64; round++) {
        for (int i = 0; i < N; i++) x[i] = -104.0f + 193.0f * ((float)(round * N + i) / (64.0f * N));
        if (round == 0)
            for (int i = 0; i < ns; i++) x[37 + 11 * i] = special[i];
        int n = N - round % 8; // tails of every length
        if (round & 1) { // odd rounds in place
            memcpy(y, x, (size_t)n * 4);
            tern_expf_array(y, y, n);
        } else {
            tern_expf_array(y, x, n);
        }
        mismatched += expf_mismatches(x, y, n, &worst_ulp);
    }
    printf("expf array: %lld lanes differ from expf, worst %lld ulp from exp\n", (long long)mismatched,
           (long long)worst_ulp);
    CHECK_MSG(worst_ulp <= 1, "expf array: %lld ulp from exp", (long long)worst_ulp);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 27) && defined(__AVX2__) && defined(__FMA__) && \
    defined(__x86_64__)
    CHECK_MSG(mismatched == 0, "expf array: %lld values differ from glibc's expf", (long long)mismatched);
#endif
    // The checks can fail: an output 2 ulps off is caught by both.
    for (int i = 0; i < 64; i++) x[i] = -0.37f * i;
    tern_expf_array(y, x, 64);
    y[5] = nextafterf(nextafterf(y[5], 0), 0);
    int64_t w = 0;
    CHECK(expf_mismatches(x, y, 64, &w) == 1 && w >= 2);
    free(x), free(y);
}

// ---- whole model: tied head, biases, toy hook, dL/dhidden, frozen tensors ----

// Toy quantizer: w_eff = 2 w and extra[o] = Σ_k w[o, k], so
// dL/dw[o, k] = 2 dL/dw_eff[o, k] + dL/dextra[o].
typedef struct {
    int effective_calls, backward_calls, broken;
} toy_hook;

static int toy_effective(void *ctx, int id, const float *w, int out_dim, int in_dim, float *w_eff, float *extra,
                         int *has_extra) {
    toy_hook *h = ctx;
    h->effective_calls++;
    for (int o = 0; o < out_dim; o++) {
        double s = 0;
        for (int k = 0; k < in_dim; k++) {
            w_eff[(size_t)o * in_dim + k] = 2 * w[(size_t)o * in_dim + k];
            s += w[(size_t)o * in_dim + k];
        }
        extra[o] = (float)s;
    }
    *has_extra = 1;
    return 0;
}

static int toy_backward(void *ctx, int id, const float *w, int out_dim, int in_dim, const float *d_w_eff,
                        const float *d_extra, float *d_w) {
    toy_hook *h = ctx;
    h->backward_calls++;
    float two = h->broken ? 1.0f : 2.0f;
    for (int o = 0; o < out_dim; o++)
        for (int k = 0; k < in_dim; k++)
            d_w[(size_t)o * in_dim + k] += two * d_w_eff[(size_t)o * in_dim + k] + (d_extra ? d_extra[o] : 0);
    return 0;
}

static void make_model(tern_model *m) {
    memset(m, 0, sizeof *m);
    tern_config *c = &m->cfg;
    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = 16, c->n_layers = 2, c->n_heads = 4, c->n_kv_heads = 2, c->head_dim = 4, c->hidden_dim = 24;
    c->vocab_size = 19, c->max_seq = 32, c->rope_theta = 10000, c->rms_eps = 1e-5f;
    c->tied_embeddings = 1, c->attn_qkv_bias = 1, c->attn_out_bias = 1;
    int64_t D = c->dim, KV = c->n_kv_heads * c->head_dim, F = c->hidden_dim;
    struct {
        const char *name;
        int64_t d0, d1;
        double scale, offset;
    } specs[] = {{"attn_norm.weight", D, 0, 0.1, 1}, {"attn_q.weight", D, D, 0.5, 0}, {"attn_q.bias", D, 0, 0.3, 0},
                 {"attn_k.weight", KV, D, 0.5, 0},   {"attn_k.bias", KV, 0, 0.3, 0},  {"attn_v.weight", KV, D, 0.5, 0},
                 {"attn_v.bias", KV, 0, 0.3, 0},     {"attn_output.weight", D, D, 0.5, 0},
                 {"attn_output.bias", D, 0, 0.3, 0}, {"ffn_norm.weight", D, 0, 0.1, 1},
                 {"ffn_gate.weight", F, D, 0.5, 0},  {"ffn_up.weight", F, D, 0.5, 0},
                 {"ffn_down.weight", D, F, 0.5, 0}};
    int64_t shape[2] = {c->vocab_size, D};
    tern_tensor *t = tern_model_add_tensor(m, "token_embd.weight", 2, shape, "F32");
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = frand();
    for (int l = 0; l < c->n_layers; l++)
        for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
            char name[TERN_NAME_MAX];
            snprintf(name, sizeof name, "blk.%d.%s", l, specs[s].name);
            int64_t sh[2] = {specs[s].d0, specs[s].d1};
            t = tern_model_add_tensor(m, name, specs[s].d1 ? 2 : 1, sh, "F32");
            for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)(specs[s].offset + specs[s].scale * frand());
        }
    shape[0] = D;
    t = tern_model_add_tensor(m, "output_norm.weight", 1, shape, "F32");
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = 1 + 0.1f * frand();
}

enum { MB = 2, MT = 5 };
typedef struct {
    tern_train_model *tm;
    const int *tokens;
    const float *r_logits, *r_hidden; // loss = Σ r_logits·logits + Σ r_hidden·hidden[0]
} model_ctx;

static double model_loss(model_ctx *c) {
    if (tern_train_forward(c->tm, c->tokens, MB, MT)) return NAN;
    const float *lg = tern_train_logits(c->tm), *h0 = tern_train_hidden(c->tm, 0);
    double L = 0;
    for (int i = 0; i < MB * MT * 19; i++) L += (double)c->r_logits[i] * lg[i];
    for (int i = 0; i < MB * MT * 16; i++) L += (double)c->r_hidden[i] * h0[i];
    return L;
}

// Finite differences in float32 of the whole model (noisier than the op checks,
// hence the larger step and tolerance), at a few coordinates of every tensor.
static double model_fd_worst(model_ctx *c, int skip_frozen_param, const char **worst_name) {
    tern_train_model *tm = c->tm;
    double worst = 0;
    for (int p = 0; p < tern_train_n_params(tm); p++) {
        if (p == skip_frozen_param) continue;
        int64_t numel;
        float *w = tern_train_param(tm, p, &numel), *g = tern_train_grad(tm, p);
        double gmax = 1e-3;
        for (int64_t i = 0; i < numel; i++) gmax = fmax(gmax, fabs(g[i]));
        for (int s = 0; s < 4; s++) {
            int64_t i = (int64_t)((s * 2654435761u + (unsigned)p * 40503u) % (unsigned)numel);
            // Richardson: (4 D(h/2) - D(h)) / 3 cancels the h² error of central
            // differences, so h can stay well above the float32 noise.
            double d[2];
            for (int k = 0; k < 2; k++) {
                float save = w[i], h = k ? 5e-3f : 1e-2f;
                w[i] = save + h;
                double lp = model_loss(c);
                w[i] = save - h;
                double lm = model_loss(c);
                w[i] = save;
                d[k] = (lp - lm) / (2.0 * h);
            }
            double fd = (4 * d[1] - d[0]) / 3, e = fabs(fd - g[i]) / gmax;
            if (e > worst) {
                worst = e;
                *worst_name = tern_train_param_name(tm, p);
            }
        }
    }
    return worst;
}

static int find_param(tern_train_model *tm, const char *name) {
    for (int i = 0; i < tern_train_n_params(tm); i++)
        if (!strcmp(tern_train_param_name(tm, i), name)) return i;
    return -1;
}

static void test_model(int with_hook) {
    seed = 777; // the model does not depend on how many numbers the tests before drew
    tern_model m;
    make_model(&m);
    tern_train_model *tm;
    CHECK_OK(tern_train_model_init(&tm, &m));
    if (!tm) return;
    CHECK(tern_train_n_params(tm) == 1 + 2 * 13 + 1); // tied: no output.weight; 4 biases per layer
    int tokens[MB * MT] = {3, 7, 3, 18, 0, 5, 5, 1, 12, 3};
    float r_logits[MB * MT * 19], r_hidden[MB * MT * 16];
    for (int i = 0; i < MB * MT * 19; i++) r_logits[i] = frand();
    for (int i = 0; i < MB * MT * 16; i++) r_hidden[i] = frand();
    toy_hook th = {0};
    tern_weight_hook hook = {.ctx = &th, .effective = toy_effective, .backward = toy_backward};
    if (with_hook) CHECK_OK(tern_train_set_hook(tm, &hook));
    model_ctx c = {tm, tokens, r_logits, r_hidden};
    const float *dh[2] = {r_hidden, NULL};

    tern_train_zero_grad(tm);
    CHECK_OK(tern_train_forward(tm, tokens, MB, MT));
    CHECK_OK(tern_train_backward(tm, r_logits, dh));
    if (with_hook) CHECK(th.effective_calls == 14 && th.backward_calls == 14);
    const char *worst_name = "";
    double worst = model_fd_worst(&c, -1, &worst_name);
    CHECK_MSG(worst < 1e-2, "model FD (hook %d): rel err %.3g at %s", with_hook, worst, worst_name);
    printf("model FD (hook %d, tied, biases, dL/dhidden): worst rel err %.3g (%s)\n", with_hook, worst, worst_name);

    if (with_hook) {
        // A frozen linear still calls effective() but neither computes dW nor calls the hook's backward.
        int q1 = find_param(tm, "blk.1.attn_q.weight");
        tern_train_set_frozen(tm, q1, 1);
        th.effective_calls = th.backward_calls = 0;
        tern_train_zero_grad(tm);
        CHECK_OK(tern_train_forward(tm, tokens, MB, MT));
        CHECK_OK(tern_train_backward(tm, r_logits, dh));
        CHECK(th.effective_calls == 14 && th.backward_calls == 13);
        int64_t numel;
        tern_train_param(tm, q1, &numel);
        int zero = 1;
        for (int64_t i = 0; i < numel; i++) zero &= tern_train_grad(tm, q1)[i] == 0;
        CHECK(zero);
        worst = model_fd_worst(&c, q1, &worst_name);
        CHECK_MSG(worst < 1e-2, "model FD, frozen q1: rel err %.3g at %s", worst, worst_name);
        tern_train_set_frozen(tm, q1, 0);
        // The check can fail: a hook whose backward uses the wrong chain rule is caught.
        th.broken = 1;
        tern_train_zero_grad(tm);
        CHECK_OK(tern_train_forward(tm, tokens, MB, MT));
        CHECK_OK(tern_train_backward(tm, r_logits, dh));
        CHECK(model_fd_worst(&c, -1, &worst_name) > 0.1);
    }
    tern_train_model_free(tm);
    tern_model_free(&m);
}

// ---- threading ----

// Runs every op at sizes above the parallel thresholds on 1 and on 2 threads:
// the results must match bit for bit (one owner per output element, fixed
// summation order), which also exercises the threaded paths under sanitizers.
typedef struct {
    float *emb, *y, *rstd, *dx, *dw, *db, *dg, *du, *out, *att, *datt, *dq, *dk, *dv, *gdx, *gdw;
} op_results;

enum { BIG_B = 2, BIG_T = 64, BIG_H = 4, BIG_KVH = 2, BIG_HD = 16, BIG_D = 320, BIG_N = BIG_B * BIG_T, BIG_V = 37 };

static void run_big_ops(op_results *r, const float *x, const float *w, const float *g, const float *q,
                        const float *k, const float *v, const float *wmat, const int *tokens) {
    int nq = BIG_N * BIG_H * BIG_HD, nkv = BIG_N * BIG_KVH * BIG_HD, natt = BIG_B * BIG_H * BIG_T * BIG_T;
    int nd = BIG_N * BIG_D;
    r->emb = falloc(BIG_V * BIG_D), r->y = falloc(nd), r->rstd = falloc(BIG_N), r->dx = falloc(nd);
    r->dw = falloc(BIG_D), r->db = falloc(BIG_D), r->dg = falloc(nd), r->du = falloc(nd), r->out = falloc(nq);
    r->att = falloc(natt), r->datt = falloc(natt), r->dq = falloc(nq), r->dk = falloc(nkv), r->dv = falloc(nkv);
    r->gdx = falloc(nd), r->gdw = falloc(BIG_D * BIG_D);
    tern_embedding_backward(r->emb, g, tokens, BIG_N, BIG_D);
    tern_rmsnorm_forward_train(r->y, r->rstd, x, w, BIG_N, BIG_D, 1e-5f);
    tern_rmsnorm_backward(r->dx, r->dw, g, x, w, r->rstd, BIG_N, BIG_D);
    tern_bias_backward(r->db, g, BIG_N, BIG_D);
    tern_swiglu_backward(r->dg, r->du, g, x, r->y, nd);
    tern_attention_forward(r->out, r->att, q, k, v, BIG_B, BIG_T, BIG_H, BIG_KVH, BIG_HD);
    tern_attention_backward(r->dq, r->dk, r->dv, r->datt, q, r->att, q, k, v, BIG_B, BIG_T, BIG_H, BIG_KVH, BIG_HD);
    tern_gemm_dx_f32_blocked(r->gdx, g, wmat, BIG_N, BIG_D, BIG_D, 0);
    tern_gemm_dw_f32_blocked(r->gdw, g, x, BIG_N, BIG_D, BIG_D);
}

static void free_results(op_results *r) {
    float **p = (float **)r;
    for (size_t i = 0; i < sizeof *r / sizeof(float *); i++) free(p[i]);
}

static void test_threads(void) {
    int nd = BIG_N * BIG_D, nq = BIG_N * BIG_H * BIG_HD, nkv = BIG_N * BIG_KVH * BIG_HD;
    float *x = falloc(nd), *w = falloc(BIG_D), *g = falloc(nd), *q = falloc(nq), *k = falloc(nkv), *v = falloc(nkv);
    float *wmat = falloc(BIG_D * BIG_D);
    double *tmp = dalloc(BIG_D * BIG_D);
    int *tokens = malloc(BIG_N * sizeof(int));
    fill(tmp, x, nd, 2), fill(tmp, w, BIG_D, 1), fill(tmp, g, nd, 1);
    fill(tmp, q, nq, 1), fill(tmp, k, nkv, 1), fill(tmp, v, nkv, 1), fill(tmp, wmat, BIG_D * BIG_D, 1);
    for (int i = 0; i < BIG_N; i++) tokens[i] = (i * 7) % BIG_V; // many repeats
    op_results one, two;
    int saved = tern_get_threads();
    tern_set_threads(1);
    run_big_ops(&one, x, w, g, q, k, v, wmat, tokens);
    tern_set_threads(2);
    run_big_ops(&two, x, w, g, q, k, v, wmat, tokens);
    tern_set_threads(saved);
    int sizes[] = {BIG_V * BIG_D, nd, BIG_N, nd, BIG_D, BIG_D, nd, nd, nq, BIG_B * BIG_H * BIG_T * BIG_T,
                   BIG_B * BIG_H * BIG_T * BIG_T, nq, nkv, nkv, nd, BIG_D * BIG_D};
    const char *names[] = {"embedding", "rmsnorm y", "rstd", "rmsnorm dx", "rmsnorm dw", "bias", "swiglu dgate",
                           "swiglu dup", "attention out", "att", "datt", "dq", "dk", "dv", "gemm dx", "gemm dw"};
    float **a = (float **)&one, **b = (float **)&two;
    for (int i = 0; i < 16; i++)
        CHECK_MSG(memcmp(a[i], b[i], (size_t)sizes[i] * 4) == 0, "%s: 1 vs 2 threads differ", names[i]);
    free_results(&one), free_results(&two);
    free(x), free(w), free(g), free(q), free(k), free(v), free(wmat), free(tmp), free(tokens);
}

int main(void) {
    test_embedding();
    test_rmsnorm();
    int lin_shapes[][3] = {{1, 1, 1}, {5, 37, 29}, {7, 3, 41}, {2, 40, 1}};
    for (size_t i = 0; i < sizeof lin_shapes / sizeof lin_shapes[0]; i++)
        test_linear_fd(lin_shapes[i][0], lin_shapes[i][1], lin_shapes[i][2]);
    int gemm_shapes[][3] = {{1, 1, 1}, {3, 17, 5}, {33, 129, 17}, {70, 300, 130}, {64, 128, 16}, {5, 7, 200}};
    for (size_t i = 0; i < sizeof gemm_shapes / sizeof gemm_shapes[0]; i++)
        test_backward_gemms(gemm_shapes[i][0], gemm_shapes[i][1], gemm_shapes[i][2]);
    test_rope();
    test_swiglu();
    test_residual();
    test_attention(2, 5, 4, 2, 6); // GQA
    test_attention(1, 7, 3, 1, 4); // MQA
    test_attention(2, 3, 2, 2, 2); // MHA
    test_attention(1, 1, 2, 1, 8); // single token
    test_attention(1, 70, 4, 2, 4); // more query rows than one attention block (64)
    test_attention(1, 130, 2, 1, 2); // three blocks, the last one short
    test_expf_array();
    printf("op checks: worst rel err vs finite differences %.3g\n", worst_op_err);
    test_threads();
    test_model(0);
    test_model(1);
    return test_report();
}
