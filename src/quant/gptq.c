// GPTQ-style initialization (see gptq.h).
//
// Per linear, with H' = H + λI (λ = damp · mean diag H): U is the upper
// Cholesky factor of H'^-1 (H'^-1 = UᵀU). Columns are quantized in order; the
// error e = (w_i - q_i) / U_ii of column i moves every later column j by
// -e·U_ij (within the current block at once, beyond it in one product at the
// block's end). Rows are independent, so threads take tiles of rows.
#include "quant/gptq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/progress.h"
#include "core/threads.h"
#include "nn/matmul.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void tern_gptq_opts_defaults(tern_gptq_opts *o) {
    memset(o, 0, sizeof *o);
    o->damp = 0.01f;
    o->block = 128;
}

// ---- Dense linear algebra (double) ----

// Lower Cholesky factor of A[n, n] in place (the upper triangle is left as
// it was). -1 when A is not positive definite.
static int cholesky(double *A, int n) {
    for (int j = 0; j < n; j++) {
        double *aj = A + (size_t)j * n, s = aj[j];
        for (int k = 0; k < j; k++) s -= aj[k] * aj[k];
        if (!(s > 0) || !isfinite(s)) return -1;
        double d = sqrt(s);
        aj[j] = d;
#pragma omp parallel for schedule(static) if (n - j > 256)
        for (int i = j + 1; i < n; i++) {
            double *ai = A + (size_t)i * n, t = ai[j];
            for (int k = 0; k < j; k++) t -= ai[k] * aj[k];
            ai[j] = t / d;
        }
    }
    return 0;
}

// U (upper, float) with (H + λI)^-1 = UᵀU. With J the order-reversing
// permutation, chol(J H' J) = L gives H' = V Vᵀ for the upper V = J L J, so
// H'^-1 = V^-T V^-1 and U = V^-1 = J L^-1 J. -1 when H' is not positive definite.
static int inverse_cholesky_upper(const float *H, int n, double lambda, double *A, double *Xt, float *U) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) A[(size_t)i * n + j] = H[(size_t)(n - 1 - i) * n + (n - 1 - j)];
    for (int i = 0; i < n; i++) A[(size_t)i * n + i] += lambda;
    if (cholesky(A, n)) return -1;
    // X = L^-1 (lower), stored transposed: Xt[j][i] = X[i][j], so both operands
    // of each dot product are contiguous.
    for (int j = 0; j < n; j++) Xt[(size_t)j * n + j] = 1.0 / A[(size_t)j * n + j];
    for (int i = 1; i < n; i++) {
        const double *li = A + (size_t)i * n;
        double inv = 1.0 / li[i];
#pragma omp parallel for schedule(static) if (i > 256)
        for (int j = 0; j < i; j++) {
            double *xj = Xt + (size_t)j * n, s = 0;
            for (int k = j; k < i; k++) s += li[k] * xj[k];
            xj[i] = -s * inv;
        }
    }
    // U[a][b] = X[n-1-a][n-1-b] = Xt[n-1-b][n-1-a], zero below the diagonal.
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            U[(size_t)a * n + b] = b < a ? 0.0f : (float)Xt[(size_t)(n - 1 - b) * n + (n - 1 - a)];
    return 0;
}

// ---- Grid fits on one row's group: x[n] weighted by h[n] (diag H) ----

typedef struct {
    float ax, h;
} abs_weight;

static int by_abs_desc(const void *a, const void *b) {
    float x = ((const abs_weight *)a)->ax, y = ((const abs_weight *)b)->ax;
    return (x < y) - (x > y);
}

// Symmetric ternary α·T: with the k largest |x| non-zero, the best α is
// Σh|x| / Σh over them and the error drops by (Σh|x|)² / Σh; the exact search
// takes the k that maximizes it (sorted |x|, running sums).
static float fit_sym(const float *x, const float *h, int n, float shift, abs_weight *tmp) {
    for (int i = 0; i < n; i++) tmp[i] = (abs_weight){fabsf(x[i] - shift), h[i]};
    qsort(tmp, (size_t)n, sizeof *tmp, by_abs_desc);
    double s = 0, w = 0, best = 0, alpha = 0;
    for (int k = 0; k < n; k++) {
        s += (double)tmp[k].h * tmp[k].ax, w += tmp[k].h;
        if (w > 0 && s * s / w > best) best = s * s / w, alpha = s / w;
    }
    return (float)alpha;
}

static float clamp1(float t) { return t < -1.0f ? -1.0f : t > 1.0f ? 1.0f : t; }

// Asymmetric ternary α·T + γ: from γ = the weighted mean and α the symmetric
// fit around it, alternate nearest codes and the weighted least-squares (α, γ)
// for those codes until the codes stop changing (at most 10 rounds).
static void fit_shift(const float *x, const float *h, int n, abs_weight *tmp, float *alpha, float *gamma) {
    double sh = 0, shx = 0;
    for (int i = 0; i < n; i++) sh += h[i], shx += (double)h[i] * x[i];
    float c = sh > 0 ? (float)(shx / sh) : 0.0f;
    float a = fit_sym(x, h, n, c, tmp);
    for (int it = 0; it < 10 && a > 0; it++) {
        double a11 = 0, a12 = 0, b1 = 0;
        for (int i = 0; i < n; i++) {
            float t = clamp1(nearbyintf((x[i] - c) / a));
            a11 += h[i] * t * t, a12 += h[i] * t, b1 += (double)h[i] * x[i] * t;
        }
        double det = a11 * sh - a12 * a12;
        if (!(det > 1e-12 * a11 * sh)) break; // every code equal: (α, γ) not identified
        float na = (float)((b1 * sh - shx * a12) / det), nc = (float)((a11 * shx - a12 * b1) / det);
        if (!(na > 0)) break;
        int same = na == a && nc == c;
        a = na, c = nc;
        if (same) break;
    }
    *alpha = a, *gamma = c;
}

// b-bit grid s·(c - z), c = clamp(round(x/s) + z, 0, L): the range [min, max]
// (0 included) shrunk by the factor with the least weighted squared error.
static void fit_uniform(const float *x, const float *h, int n, int bits, float *scale, float *zero) {
    float mn = 0, mx = 0, L = (float)((1 << bits) - 1);
    for (int i = 0; i < n; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
    *scale = 0, *zero = 0;
    double best = INFINITY;
    for (int k = 0; k < 20; k++) {
        float p = 1.0f - 0.025f * (float)k, lo = p * mn, hi = p * mx, s = (hi - lo) / L;
        if (!(s > 0)) break;
        float z = nearbyintf(-lo / s);
        double e = 0;
        for (int i = 0; i < n; i++) {
            float cq = fminf(fmaxf(nearbyintf(x[i] / s) + z, 0.0f), L), d = x[i] - s * (cq - z);
            e += (double)h[i] * d * d;
        }
        if (e < best) best = e, *scale = s, *zero = z;
    }
}

typedef struct {
    tern_grid grid;
    int bits, G;
} grid_spec;

// Fits row r's group starting at column c0 (n columns).
static void fit_group(const grid_spec *g, const float *x, const float *h, int n, abs_weight *tmp, float *scale,
                      float *shift) {
    *shift = 0;
    if (g->grid == TERN_GRID_SYM) *scale = fit_sym(x, h, n, 0.0f, tmp);
    else if (g->grid == TERN_GRID_SHIFT) fit_shift(x, h, n, tmp, scale, shift);
    else fit_uniform(x, h, n, g->bits, scale, shift);
}

// Nearest grid point of w (the methods' own rounding, bit for bit); *code gets its code.
static float grid_q(const grid_spec *g, float w, float scale, float shift, int8_t *code) {
    if (g->grid == TERN_GRID_UNIFORM) { // uniform.c's floor on s
        float L = (float)((1 << g->bits) - 1), a = scale > 1e-8f ? scale : 1e-8f;
        float c = fminf(fmaxf(nearbyintf(w / a) + shift, 0.0f), L);
        *code = (int8_t)(uint8_t)c;
        return a * (c - shift);
    }
    float a = scale > 1e-6f ? scale : 1e-6f; // dlt's floor on α
    float t = g->grid == TERN_GRID_SHIFT || scale > 0 ? clamp1(nearbyintf((w - shift) / a)) : 0.0f;
    *code = (int8_t)t;
    return a * t + shift;
}

// The column sweep over rows [r0, r1) of W. E: [rows, block] scratch.
static void sweep_rows(float *W, int in, int r0, int r1, const float *U, const float *hdiag, const grid_spec *g,
                       int block, int8_t *T, float *scale, float *shift, float *E, abs_weight *tmp) {
    int G = g->G, ng = (in + G - 1) / G, R = r1 - r0;
    for (int i1 = 0; i1 < in;) {
        // Blocks end on group boundaries, so a group's columns are up to date
        // when its first column comes up: a group lies inside one block, or
        // starts a block (all later columns are then current).
        int i2 = G <= block ? i1 + block / G * G : i1 + block;
        if (G > block && i2 > (i1 / G + 1) * G) i2 = (i1 / G + 1) * G;
        if (i2 > in) i2 = in;
        int bs = i2 - i1;
        for (int i = i1; i < i2; i++) {
            float d = U[(size_t)i * in + i];
            const float *ui = U + (size_t)i * in;
            int gi = i / G, n = in - gi * G < G ? in - gi * G : G;
            for (int r = r0; r < r1; r++) {
                float *wr = W + (size_t)r * in;
                size_t j = (size_t)r * ng + gi;
                if (i % G == 0) fit_group(g, wr + i, hdiag + i, n, tmp, &scale[j], &shift[j]);
                float q = grid_q(g, wr[i], scale[j], shift[j], &T[(size_t)r * in + i]);
                float e = (wr[i] - q) / d;
                E[(size_t)(r - r0) * block + (i - i1)] = e;
                for (int k = i + 1; k < i2; k++) wr[k] -= e * ui[k];
            }
        }
        // W[r0:r1, i2:] -= E · U[i1:i2, i2:]
        if (i2 < in)
            tern_gemm_serial_f32(0, 0, R, in - i2, bs, -1.0f, E, block, U + (size_t)i1 * in + i2, in, 1.0f,
                                 W + (size_t)r0 * in + i2, in);
        i1 = i2;
    }
}

int tern_gptq_linear(float *W, int out, int in, const float *H, int G, tern_grid grid, int bits,
                     const tern_gptq_opts *o, int8_t *T, float *scale, float *shift, float *damp_used,
                     const char *name) {
    if (grid == TERN_GRID_NONE) return tern_errorf("gptq: %s: the method has no grid for GPTQ", name);
    if (G <= 0 || G > in) G = in;
    int block = o->block > 0 ? o->block : 128;
    size_t nn = (size_t)in * in;
    float *U = tern_alloc(nn * 4), *hdiag = tern_alloc((size_t)in * 4), *Hd = tern_alloc(nn * 4);
    double *A = tern_alloc(nn * 8), *Xt = tern_alloc(nn * 8);
    int rc = U && hdiag && Hd && A && Xt ? 0 : tern_errorf("gptq: out of memory for a %dx%d Hessian", in, in);
    double mean = 0;
    if (rc == 0) {
        memcpy(Hd, H, nn * 4);
        // A column no calibration token reaches (diag 0) carries no information:
        // its weights are zeroed and H gets a unit there, as in GPTQ.
        for (size_t k = 0; k < nn && rc == 0; k++)
            if (!isfinite(Hd[k]))
                rc = tern_errorf("gptq: %s: the Hessian is not finite (row %zu): the model's activations overflow",
                                 name, k / (size_t)in);
        for (int i = 0; i < in && rc == 0; i++) {
            float *hi = Hd + (size_t)i * in;
            if (hi[i] == 0) {
                hi[i] = 1;
                for (int r = 0; r < out; r++) W[(size_t)r * in + i] = 0;
            }
            hdiag[i] = hi[i];
            mean += hi[i];
        }
        mean /= in;
    }
    // Damping raised ×10 while the factorization fails, up to 1 (mean diag H itself).
    float damp = o->damp;
    while (rc == 0 && inverse_cholesky_upper(Hd, in, damp * mean, A, Xt, U)) {
        if (damp >= 0.999f) {
            rc = tern_errorf("gptq: %s: the Hessian is singular even with damping %g (--damp)", name, damp);
            break;
        }
        float next = damp * 10 > 0.999f ? 1.0f : damp * 10;
        fprintf(stderr, "gptq: %s: Hessian not positive definite with damping %g; retrying with %g\n", name, damp,
                next);
        damp = next;
    }
    tern_free(A), tern_free(Xt), tern_free(Hd);
    if (damp_used) *damp_used = damp;
    grid_spec g = {grid, bits, G};
    int tile = 16, n_tiles = (out + tile - 1) / tile;
    int nt = tern_get_threads();
    float *E = rc == 0 ? tern_alloc((size_t)nt * tile * block * 4) : NULL;
    abs_weight *tmp = rc == 0 ? malloc((size_t)nt * G * sizeof *tmp) : NULL;
    if (rc == 0 && (!E || !tmp)) rc = tern_errorf("gptq: out of memory");
    if (rc == 0) {
        tern_gemm_serial_prepare();
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (int k = 0; k < n_tiles; k++) {
            int id = 0;
#ifdef _OPENMP
            id = omp_get_thread_num();
#endif
            int r0 = k * tile, r1 = r0 + tile < out ? r0 + tile : out;
            sweep_rows(W, in, r0, r1, U, hdiag, &g, block, T, scale, shift, E + (size_t)id * tile * block,
                       tmp + (size_t)id * G);
        }
    }
    tern_free(E), free(tmp), tern_free(U), tern_free(hdiag);
    return rc;
}

double tern_gptq_rel_err(const float *W, const float *Q, int out, int in, const float *H) {
    size_t n = (size_t)out * in;
    float *D = tern_alloc(n * 4), *M = tern_alloc(n * 4);
    if (!D || !M) {
        tern_free(D), tern_free(M);
        return NAN;
    }
    for (size_t i = 0; i < n; i++) D[i] = W[i] - Q[i];
    double num = 0, den = 0;
    tern_matmul_f32(M, D, H, NULL, out, in, in); // M = ΔW·H (H symmetric)
    for (size_t i = 0; i < n; i++) num += (double)M[i] * D[i];
    tern_matmul_f32(M, W, H, NULL, out, in, in);
    for (size_t i = 0; i < n; i++) den += (double)M[i] * W[i];
    tern_free(D), tern_free(M);
    return den > 0 ? num / den : NAN;
}

// ---- The sequential pass ----

void tern_gptq_latent_free(float **latent, int n_lin) {
    if (!latent) return;
    for (int i = 0; i < n_lin; i++) tern_free(latent[i]);
    free(latent);
}

// Index of parameter `name` in tm, or -1.
static int param_index(tern_train_model *tm, const char *name) {
    for (int i = 0; i < tern_train_n_params(tm); i++)
        if (!strcmp(tern_train_param_name(tm, i), name)) return i;
    return -1;
}

// The linears that read the same input, by the kind of the first.
static int stage_linears(int kind, int *kinds) {
    if (kind == TERN_LIN_Q) return kinds[0] = TERN_LIN_Q, kinds[1] = TERN_LIN_K, kinds[2] = TERN_LIN_V, 3;
    if (kind == TERN_LIN_GATE) return kinds[0] = TERN_LIN_GATE, kinds[1] = TERN_LIN_UP, 2;
    return kinds[0] = kind, 1;
}

// Quantizes linear id against H: method init error, GPTQ, adopt, and the
// effective weight written into the work model (so later inputs see it).
static int quantize_one(tern_quant *q, int id, const tern_model *m, tern_train_model *tm, const float *H,
                        const tern_gptq_opts *o, float **latent, tern_gptq_linear_report *rep) {
    tern_quant_linear *L = &q->lin[id];
    const tern_quant_method *me = L->m;
    char name[TERN_NAME_MAX];
    tern_quant_linear_name(id, name, sizeof name);
    size_t n = (size_t)L->out * L->in, ng = (size_t)L->out * L->n_groups;
    const float *w0 = tern_model_find(m, name)->data;
    float *w = tern_alloc(n * 4), *weff = tern_alloc(n * 4), *extra = tern_alloc((size_t)L->out * 4);
    float *scale = malloc(ng * 4), *shift = malloc(ng * 4);
    int8_t *T = malloc(n);
    int rc = w && weff && extra && scale && shift && T ? 0 : tern_errorf("gptq: out of memory");
    int has_extra = 0;
    double init_err = NAN;
    if (rc == 0 && (rc = me->effective(q, id, w0, weff, extra, &has_extra)) == 0)
        init_err = tern_gptq_rel_err(w0, weff, L->out, L->in, H);
    if (rc == 0) memcpy(w, w0, n * 4);
    float damp = 0;
    if (rc == 0)
        rc = tern_gptq_linear(w, L->out, L->in, H, L->G, me->grid, L->bits, o, T, scale, shift, &damp, name);
    if (rc == 0) {
        me->adopt(q, id, w, T, scale, shift);
        rc = me->effective(q, id, w, weff, extra, &has_extra);
    }
    if (rc == 0) {
        int pi = param_index(tm, name);
        memcpy(tern_train_param(tm, pi, NULL), weff, n * 4);
        rep->rel_err = tern_gptq_rel_err(w0, weff, L->out, L->in, H);
        rep->rel_err_init = init_err;
        rep->damp = damp;
        latent[id] = w, w = NULL;
        if (o->verbose)
            fprintf(stderr, "gptq: %-24s rel. output error %.4f (round-to-nearest %.4f)\n", name, rep->rel_err,
                    init_err);
    }
    tern_free(w), tern_free(weff), tern_free(extra);
    free(scale), free(shift), free(T);
    return rc;
}

int tern_gptq_run(tern_quant *q, const tern_model *m, const int *tokens, int n_seqs, int seq_len,
                  const tern_gptq_opts *o, float ***latent_out, tern_gptq_linear_report *reports) {
    const tern_config *c = &m->cfg;
    int D = c->dim, T = seq_len, P = n_seqs, nl = q->n_lin;
    for (int id = 0; id < nl; id++)
        if (q->lin[id].m->grid == TERN_GRID_NONE || !q->lin[id].m->adopt)
            return tern_errorf("--init gptq: method %s has no grid GPTQ can fit", q->lin[id].m->name);
    int B = o->batch > 0 ? o->batch : (2048 + T - 1) / T;
    if (B > P) B = P;
    tern_train_model *tm = NULL;
    size_t stream = (size_t)P * T * D;
    int max_in = 1;
    for (int id = 0; id < nl; id++)
        if (q->lin[id].in > max_in) max_in = q->lin[id].in;
    float *X = tern_alloc(stream * 4), *H = tern_alloc((size_t)max_in * max_in * 4);
    float **latent = calloc((size_t)nl, sizeof *latent);
    tern_gptq_linear_report scratch_rep;
    int rc = X && H && latent ? 0 : tern_errorf("gptq: out of memory for %d x %d calibration tokens", P, T);
    if (rc == 0) rc = tern_train_model_init(&tm, m);
    if (rc == 0) { // embeddings
        const float *table = tern_model_find(m, "token_embd.weight")->data;
        for (size_t i = 0; i < (size_t)P * T; i++)
            memcpy(X + i * D, table + (size_t)tokens[i] * D, (size_t)D * 4);
    }
    tern_progress bar;
    tern_progress_begin(&bar, "gptq", "linear", nl);
    double t0 = tern_now_sec();
    static const int stages[] = {TERN_LIN_Q, TERN_LIN_O, TERN_LIN_GATE, TERN_LIN_DOWN};
    for (int l = 0; l < c->n_layers && rc == 0; l++) {
        for (int s = 0; s < 4 && rc == 0; s++) {
            int kinds[3], nk = stage_linears(stages[s], kinds);
            int in = q->lin[l * TERN_LIN_COUNT + kinds[0]].in;
            memset(H, 0, (size_t)in * in * 4);
            for (int p = 0; p < P && rc == 0; p += B) {
                int b = P - p < B ? P - p : B;
                const float *x = tern_train_block_linear_input(tm, l, X + (size_t)p * T * D, b, T, kinds[0]);
                if (!x) rc = -1;
                else tern_matmul_dw_f32(H, x, x, b * T, in, in); // H += xᵀx
            }
            for (int k = 0; k < nk && rc == 0; k++) {
                int id = l * TERN_LIN_COUNT + kinds[k];
                rc = quantize_one(q, id, m, tm, H, o, latent, reports ? &reports[id] : &scratch_rep);
                char line[96];
                snprintf(line, sizeof line, "block %d/%d, %.0f s", l + 1, c->n_layers, tern_now_sec() - t0);
                tern_progress_update(&bar, id + 1, line);
            }
        }
        // The stream moves on through the quantized block.
        for (int p = 0; p < P && rc == 0; p += B) {
            int b = P - p < B ? P - p : B;
            float *xp = X + (size_t)p * T * D;
            rc = tern_train_block_forward(tm, l, xp, b, T, xp);
        }
    }
    tern_progress_end(&bar);
    tern_free(X), tern_free(H);
    tern_train_model_free(tm);
    if (rc) {
        tern_gptq_latent_free(latent, nl);
        latent = NULL;
    }
    *latent_out = latent;
    return rc;
}
