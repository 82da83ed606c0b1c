#include "train/loss.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

// Small inputs stay on one thread: forking costs more than the work.
// Per-token values are written to a scratch array in parallel and summed
// serially: OpenMP reductions may combine partial sums in any order.
static double ordered_sum(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return s;
}

// log-sum-exp of x[n] / tau, with the max shift for stability.
static double logsumexp_scaled(const float *x, int n, float tau, float *max_out) {
    float max = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp(((double)x[i] - max) / tau);
    *max_out = max;
    return log(s);
}

double tern_loss_cross_entropy(const float *logits, const int *targets, int n, int vocab, float weight,
                               float *grad) {
    double *per = malloc((size_t)n * sizeof(double));
    if (!per) return NAN;
    int count = 0, failed = 0;
    for (int t = 0; t < n; t++) count += targets[t] >= 0;
    double scale = count ? (double)weight / count : 0;
#pragma omp parallel if ((int64_t)n * vocab >= (1 << 16))
    {
        // Per thread, the token's exp(z - max) in double: the gradient reuses
        // them instead of a second exp per logit.
        double *e = grad ? malloc((size_t)vocab * sizeof(double)) : NULL;
        if (grad && !e) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int t = 0; t < n; t++) {
            per[t] = 0;
            if (targets[t] < 0) continue;
            const float *z = logits + (size_t)t * vocab;
            float max = z[0];
            for (int i = 1; i < vocab; i++)
                if (z[i] > max) max = z[i];
            double sum = 0;
            if (e) {
                for (int i = 0; i < vocab; i++) e[i] = exp((double)z[i] - max);
                for (int i = 0; i < vocab; i++) sum += e[i];
            } else {
                for (int i = 0; i < vocab; i++) sum += exp((double)z[i] - max);
            }
            double lse = log(sum);
            per[t] = lse - ((double)z[targets[t]] - max);
            if (e) {
                // softmax_i = exp(z_i - max) / Σ: the same value as exp(z_i - max - lse).
                float *g = grad + (size_t)t * vocab;
                double s = scale / sum;
                for (int i = 0; i < vocab; i++) g[i] += (float)(s * e[i]);
                g[targets[t]] -= (float)scale;
            }
        }
        free(e);
    }
    double total = ordered_sum(per, n);
    free(per);
    if (failed) return NAN;
    return count ? weight * total / count : 0;
}

double tern_loss_kl(const float *student, const float *teacher, int n, int vocab, float tau, float weight,
                    float *grad) {
    double *per = malloc((size_t)n * sizeof(double));
    if (!per) return NAN;
    double scale = (double)weight * tau * tau / n;
#pragma omp parallel for schedule(static) if ((int64_t)n * vocab >= (1 << 16))
    for (int t = 0; t < n; t++) {
        const float *zs = student + (size_t)t * vocab, *zt = teacher + (size_t)t * vocab;
        float ms, mt;
        double lse_s = logsumexp_scaled(zs, vocab, tau, &ms), lse_t = logsumexp_scaled(zt, vocab, tau, &mt);
        double kl = 0;
        float *g = grad ? grad + (size_t)t * vocab : NULL;
        for (int i = 0; i < vocab; i++) {
            double log_pt = ((double)zt[i] - mt) / tau - lse_t, log_ps = ((double)zs[i] - ms) / tau - lse_s;
            double pt = exp(log_pt);
            kl += pt * (log_pt - log_ps);
            // d/dz_s of tau² KL = tau (p_s − p_t)
            if (g) g[i] += (float)(scale / tau * (exp(log_ps) - pt));
        }
        per[t] = kl;
    }
    double total = ordered_sum(per, n);
    free(per);
    return weight * tau * tau * total / n;
}

double tern_loss_cosine(const float *student, const float *teacher, int n, int dim, float weight, float *grad) {
    double *per = malloc((size_t)n * sizeof(double));
    if (!per) return NAN;
    const double eps = 1e-8; // as torch.nn.functional.cosine_similarity
    double scale = (double)weight / n;
#pragma omp parallel for schedule(static) if ((int64_t)n * dim >= (1 << 16))
    for (int t = 0; t < n; t++) {
        const float *s = student + (size_t)t * dim, *q = teacher + (size_t)t * dim;
        double ss = 0, qq = 0, sq = 0;
        for (int i = 0; i < dim; i++) {
            ss += (double)s[i] * s[i];
            qq += (double)q[i] * q[i];
            sq += (double)s[i] * q[i];
        }
        double ns = fmax(sqrt(ss), eps), nq = fmax(sqrt(qq), eps), cos = sq / (ns * nq);
        per[t] = 1 - cos;
        if (grad) {
            // d(1 − cos)/ds = −(q / (|s||q|) − cos · s / |s|²)
            float *g = grad + (size_t)t * dim;
            for (int i = 0; i < dim; i++) g[i] += (float)(-scale * (q[i] / (ns * nq) - cos * s[i] / (ns * ns)));
        }
    }
    double total = ordered_sum(per, n);
    free(per);
    return weight * total / n;
}

double tern_loss_mse(const float *student, const float *teacher, int n, int dim, float weight, float *grad) {
    double *per = malloc((size_t)n * sizeof(double));
    if (!per) return NAN;
    double count = (double)n * dim, scale = 2.0 * weight / count;
#pragma omp parallel for schedule(static) if ((int64_t)n * dim >= (1 << 16))
    for (int t = 0; t < n; t++) {
        const float *s = student + (size_t)t * dim, *q = teacher + (size_t)t * dim;
        double acc = 0;
        float *g = grad ? grad + (size_t)t * dim : NULL;
        for (int i = 0; i < dim; i++) {
            double d = (double)s[i] - q[i];
            acc += d * d;
            if (g) g[i] += (float)(scale * d);
        }
        per[t] = acc;
    }
    double total = ordered_sum(per, n);
    free(per);
    return weight * total / count;
}
