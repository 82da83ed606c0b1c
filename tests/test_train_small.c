// Losses vs PyTorch (values and gradients) and finite differences; AdamW
// trajectory vs torch.optim.AdamW; schedules; gradient clipping.
#include "core/file.h"
#include "train/loss.h"
#include "train/optim.h"
#include "test.h"

enum { N = 5, V = 11, D = 9, P = 37, S = 5 };
static const double *fx;
static size_t fx_pos;

static const double *take(size_t n) {
    const double *p = fx + fx_pos;
    fx_pos += n;
    return p;
}

static void to_f32(float *dst, const double *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

static double max_rel(const float *a, const double *b, size_t n) {
    double md = 0, mr = 1e-12;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs(a[i] - b[i]));
        mr = fmax(mr, fabs(b[i]));
    }
    return md / mr;
}

typedef double (*loss_fn)(const float *x, const float *other, int n, int dim, float *grad);
static const int *g_targets;
static double ce_fn(const float *x, const float *o, int n, int dim, float *g) {
    (void)o;
    return tern_loss_cross_entropy(x, g_targets, n, dim, 1.0f, g);
}
static double kl_fn(const float *x, const float *o, int n, int dim, float *g) { return tern_loss_kl(x, o, n, dim, 2.0f, 1.0f, g); }
static double cos_fn(const float *x, const float *o, int n, int dim, float *g) { return tern_loss_cosine(x, o, n, dim, 1.0f, g); }
static double mse_fn(const float *x, const float *o, int n, int dim, float *g) { return tern_loss_mse(x, o, n, dim, 1.0f, g); }

// Central differences of the loss wrt every input element vs the analytic grad.
static double fd_check(loss_fn f, float *x, const float *other, int n, int dim) {
    float *g = calloc((size_t)n * dim, 4);
    f(x, other, n, dim, g);
    double worst = 0, h = 1e-2;
    for (int i = 0; i < n * dim; i++) {
        float keep = x[i];
        x[i] = keep + (float)h;
        double up = f(x, other, n, dim, NULL);
        x[i] = keep - (float)h;
        double down = f(x, other, n, dim, NULL);
        x[i] = keep;
        double fd = (up - down) / (2 * h);
        worst = fmax(worst, fabs(fd - g[i]) / fmax(1e-2, fabs(fd)));
    }
    free(g);
    return worst;
}

static void test_losses(void) {
    float student[N * V], teacher[N * V], fs[N * D], ft[N * D], g[N * V];
    int targets[N];
    to_f32(student, take(N * V), N * V);
    to_f32(teacher, take(N * V), N * V);
    const double *t = take(N);
    for (int i = 0; i < N; i++) targets[i] = (int)t[i];
    g_targets = targets;

    double ce_ref = *take(1);
    memset(g, 0, sizeof g);
    CHECK_NEAR(tern_loss_cross_entropy(student, targets, N, V, 1.0f, g), ce_ref, 1e-6);
    CHECK_MSG(max_rel(g, take(N * V), N * V) < 1e-5, "ce grad");
    // weight scales value and gradient; grads accumulate (+=)
    memset(g, 0, sizeof g);
    tern_loss_cross_entropy(student, targets, N, V, 0.5f, g);
    tern_loss_cross_entropy(student, targets, N, V, 0.5f, g);
    CHECK_MSG(max_rel(g, fx + fx_pos - N * V, N * V) < 1e-5, "ce grad accumulates");

    double kl_ref = *take(1);
    memset(g, 0, sizeof g);
    CHECK_NEAR(tern_loss_kl(student, teacher, N, V, 2.0f, 1.0f, g), kl_ref, 1e-6);
    CHECK_MSG(max_rel(g, take(N * V), N * V) < 1e-5, "kl grad");
    CHECK_NEAR(tern_loss_kl(teacher, teacher, N, V, 2.0f, 1.0f, NULL), 0.0, 1e-9);

    to_f32(fs, take(N * D), N * D);
    to_f32(ft, take(N * D), N * D);
    double cos_ref = *take(1);
    memset(g, 0, sizeof g);
    CHECK_NEAR(tern_loss_cosine(fs, ft, N, D, 1.0f, g), cos_ref, 1e-6);
    CHECK_MSG(max_rel(g, take(N * D), N * D) < 1e-5, "cosine grad");
    double mse_ref = *take(1);
    memset(g, 0, sizeof g);
    CHECK_NEAR(tern_loss_mse(fs, ft, N, D, 1.0f, g), mse_ref, 1e-6);
    CHECK_MSG(max_rel(g, take(N * D), N * D) < 1e-5, "mse grad");

    CHECK_MSG(fd_check(ce_fn, student, NULL, N, V) < 2e-3, "ce fd");
    CHECK_MSG(fd_check(kl_fn, student, teacher, N, V) < 2e-3, "kl fd");
    CHECK_MSG(fd_check(cos_fn, fs, ft, N, D) < 2e-3, "cos fd");
    CHECK_MSG(fd_check(mse_fn, fs, ft, N, D) < 2e-3, "mse fd");
}

static void test_adamw(void) {
    float p[P], g[P];
    to_f32(p, take(P), P);
    const double *grads = take(S * P);
    tern_adamw o;
    tern_adamw_init(&o);
    int grp = tern_adamw_add_group(&o, (tern_adamw_hparams){.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f});
    CHECK_OK(tern_adamw_add(&o, p, g, P, grp));
    for (int k = 0; k < S; k++) {
        to_f32(g, grads + (size_t)k * P, P);
        tern_adamw_step(&o, 1.0f);
        CHECK_MSG(max_rel(p, take(P), P) < 2e-6, "adamw step %d", k + 1);
    }
    // Clipping: the norm after clipping is the limit.
    for (int i = 0; i < P; i++) g[i] = 3.0f;
    double before = tern_clip_grad_norm(&o, 1.0);
    CHECK_NEAR(before, 3.0 * sqrt(P), 1e-4);
    CHECK_NEAR(tern_grad_norm(&o), 1.0, 1e-5);
    tern_adamw_free(&o);
}

static void test_schedules(void) {
    tern_schedule s = {.kind = TERN_SCHED_COSINE, .total_steps = 110, .warmup_steps = 10, .min_lr_ratio = 0.1f};
    CHECK_NEAR(tern_schedule_factor(&s, 0), 0.1, 1e-6);
    CHECK_NEAR(tern_schedule_factor(&s, 9), 1.0, 1e-6);
    CHECK_NEAR(tern_schedule_factor(&s, 10), 1.0, 1e-6);
    CHECK_NEAR(tern_schedule_factor(&s, 60), 0.55, 1e-6);
    CHECK_NEAR(tern_schedule_factor(&s, 110), 0.1, 1e-6);
    s.kind = TERN_SCHED_LINEAR;
    CHECK_NEAR(tern_schedule_factor(&s, 60), 0.55, 1e-6);
    s = (tern_schedule){.kind = TERN_SCHED_WSD, .total_steps = 100, .warmup_steps = 0, .min_lr_ratio = 0.0f, .decay_frac = 0.2f};
    CHECK_NEAR(tern_schedule_factor(&s, 79), 1.0, 1e-6);
    CHECK_NEAR(tern_schedule_factor(&s, 89), 0.5, 1e-6);
    CHECK_NEAR(tern_schedule_factor(&s, 99), 0.0, 1e-6);
    s.kind = TERN_SCHED_CONSTANT;
    CHECK_NEAR(tern_schedule_factor(&s, 50), 1.0, 1e-9);
    CHECK_OK(tern_schedule_parse(&s, "wsd"));
    CHECK(s.kind == TERN_SCHED_WSD);
    CHECK_FAILS(tern_schedule_parse(&s, "exp"), "unknown schedule 'exp'");
}

int main(void) {
    char *data;
    size_t size;
    if (tern_read_file(test_src_path("tests/fixtures/train_small.bin"), &data, &size)) {
        fprintf(stderr, "%s\n", tern_last_error());
        return 1;
    }
    fx = (const double *)data;
    test_losses();
    test_adamw();
    CHECK(fx_pos * 8 == size);
    test_schedules();
    free(data);
    return test_report();
}
