#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define OPTIM_AVX2 1
#endif

float tern_schedule_factor(const tern_schedule *s, int step) {
    if (s->warmup_steps > 0 && step < s->warmup_steps) return (float)(step + 1) / (float)s->warmup_steps;
    float lo = s->min_lr_ratio;
    int span = s->total_steps - s->warmup_steps;
    double progress = span > 0 ? (double)(step - s->warmup_steps) / span : 1.0;
    if (progress > 1) progress = 1;
    switch (s->kind) {
    case TERN_SCHED_COSINE: return (float)(lo + (1 - lo) * 0.5 * (1 + cos(M_PI * progress)));
    case TERN_SCHED_LINEAR: return (float)(1 - (1 - lo) * progress);
    case TERN_SCHED_WSD: {
        int decay_steps = (int)(s->decay_frac * s->total_steps + 0.5);
        int decay_start = s->total_steps - decay_steps;
        if (step < decay_start || decay_steps <= 0) return 1.0f;
        double p = (double)(step - decay_start + 1) / decay_steps;
        return (float)(1 - (1 - lo) * (p > 1 ? 1 : p));
    }
    case TERN_SCHED_CONSTANT:
    default: return 1.0f;
    }
}

int tern_schedule_parse(tern_schedule *s, const char *name) {
    static const char *names[] = {"constant", "cosine", "linear", "wsd"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) {
            s->kind = (tern_sched_kind)i;
            return 0;
        }
    return tern_errorf("unknown schedule '%s' (constant, cosine, linear, wsd)", name);
}

// Elementwise loops below this size stay on one thread; the gradient norm sums
// fixed chunks of this size (in order), so its value does not depend on the
// thread count.
#define NORM_CHUNK (1 << 16)

void tern_adamw_init(tern_adamw *o) { memset(o, 0, sizeof *o); }

void tern_adamw_free(tern_adamw *o) {
    for (int i = 0; i < o->n_slots; i++) {
        tern_free(o->slots[i].m);
        tern_free(o->slots[i].v);
    }
    free(o->slots);
    memset(o, 0, sizeof *o);
}

int tern_adamw_add_group(tern_adamw *o, tern_adamw_hparams h) {
    if (o->n_groups == (int)(sizeof o->groups / sizeof o->groups[0])) return tern_errorf("too many parameter groups");
    o->groups[o->n_groups] = h;
    return o->n_groups++;
}

int tern_adamw_add(tern_adamw *o, float *param, const float *grad, int64_t n, int group) {
    if (group < 0 || group >= o->n_groups) return tern_errorf("adamw: no parameter group %d", group);
    if (o->n_slots == o->cap_slots) {
        int cap = o->cap_slots ? 2 * o->cap_slots : 32;
        tern_adamw_slot *s = realloc(o->slots, (size_t)cap * sizeof *s);
        if (!s) return tern_errorf("out of memory");
        o->slots = s;
        o->cap_slots = cap;
    }
    tern_adamw_slot *s = &o->slots[o->n_slots];
    s->param = param;
    s->grad = grad;
    s->n = n;
    s->group = group;
    s->m = tern_calloc((size_t)n * sizeof(float));
    s->v = tern_calloc((size_t)n * sizeof(float));
    if (!s->m || !s->v) {
        tern_free(s->m);
        tern_free(s->v);
        return -1;
    }
    o->n_slots++;
    return 0;
}

typedef struct {
    float b1, b2, decay, step_size, inv_sqrt_bc2, eps;
} adamw_consts;

// AdamW on elements [i0, i1). With FMA hardware the multiply-adds are explicit
// fused ones and decay·param stays a rounded product (the arithmetic GCC made
// of the plain scalar loop), so the 8-lane loop and the scalar tail round alike.
static void adamw_range(float *restrict param, float *restrict mom, float *restrict var,
                        const float *restrict grad, int64_t i0, int64_t i1, const adamw_consts *c) {
    int64_t i = i0;
#ifdef OPTIM_AVX2
    const __m256 b1 = _mm256_set1_ps(c->b1), ob1 = _mm256_set1_ps(1 - c->b1), b2 = _mm256_set1_ps(c->b2);
    const __m256 ob2 = _mm256_set1_ps(1 - c->b2), decay = _mm256_set1_ps(c->decay);
    const __m256 step = _mm256_set1_ps(c->step_size), isb = _mm256_set1_ps(c->inv_sqrt_bc2);
    const __m256 eps = _mm256_set1_ps(c->eps);
    for (; i + 8 <= i1; i += 8) {
        __m256 g = _mm256_loadu_ps(grad + i);
        __m256 m = _mm256_fmadd_ps(b1, _mm256_loadu_ps(mom + i), _mm256_mul_ps(ob1, g));
        __m256 v = _mm256_fmadd_ps(b2, _mm256_loadu_ps(var + i), _mm256_mul_ps(_mm256_mul_ps(ob2, g), g));
        _mm256_storeu_ps(mom + i, m);
        _mm256_storeu_ps(var + i, v);
        __m256 p = _mm256_mul_ps(_mm256_loadu_ps(param + i), decay);
        __asm__("" : "+x"(p)); // p is rounded: keep the compiler from fusing it into p - q
        __m256 den = _mm256_fmadd_ps(_mm256_sqrt_ps(v), isb, eps);
        _mm256_storeu_ps(param + i, _mm256_sub_ps(p, _mm256_div_ps(_mm256_mul_ps(step, m), den)));
    }
#endif
    for (; i < i1; i++) {
        float g = grad[i];
#ifdef __FMA__
        float m = fmaf(c->b1, mom[i], (1 - c->b1) * g);
        float v = fmaf(c->b2, var[i], (1 - c->b2) * g * g);
        float den = fmaf(sqrtf(v), c->inv_sqrt_bc2, c->eps);
#else
        float m = c->b1 * mom[i] + (1 - c->b1) * g;
        float v = c->b2 * var[i] + (1 - c->b2) * g * g;
        float den = sqrtf(v) * c->inv_sqrt_bc2 + c->eps;
#endif
        mom[i] = m;
        var[i] = v;
        float p = param[i] * c->decay;
#ifdef __FMA__
        __asm__("" : "+x"(p));
#endif
        param[i] = p - c->step_size * m / den;
    }
}

void tern_adamw_step(tern_adamw *o, float lr_factor) {
    o->step++;
    for (int k = 0; k < o->n_slots; k++) {
        tern_adamw_slot *s = &o->slots[k];
        const tern_adamw_hparams *h = &o->groups[s->group];
        float lr = h->lr * lr_factor, b1 = h->beta1, b2 = h->beta2;
        float bc1 = 1.0f - powf(b1, (float)o->step), bc2 = 1.0f - powf(b2, (float)o->step);
        adamw_consts c = {b1, b2, 1.0f - lr * h->weight_decay, lr / bc1, 1.0f / sqrtf(bc2), h->eps};
        int64_t chunks = (s->n + NORM_CHUNK - 1) / NORM_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 1)
        for (int64_t ch = 0; ch < chunks; ch++) {
            int64_t i0 = ch * NORM_CHUNK, i1 = i0 + NORM_CHUNK < s->n ? i0 + NORM_CHUNK : s->n;
            adamw_range(s->param, s->m, s->v, s->grad, i0, i1, &c);
        }
    }
}

// Σ g² in double over 8 lanes (vectorizes).
static double sum_squares(const float *g, int64_t n) {
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)g[i + j] * g[i + j];
    for (; i < n; i++) acc[i & 7] += (double)g[i] * g[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

double tern_grad_norm(const tern_adamw *o) {
    double total = 0;
    for (int k = 0; k < o->n_slots; k++) {
        const tern_adamw_slot *s = &o->slots[k];
        int64_t chunks = (s->n + NORM_CHUNK - 1) / NORM_CHUNK;
        double *part = chunks > 1 ? malloc((size_t)chunks * sizeof(double)) : NULL;
        if (!part) { // one chunk (or no scratch): one thread, same chunks, same order
            for (int64_t c = 0; c < chunks; c++) {
                int64_t b = c * NORM_CHUNK, e = b + NORM_CHUNK < s->n ? b + NORM_CHUNK : s->n;
                total += sum_squares(s->grad + b, e - b);
            }
            continue;
        }
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < chunks; c++) {
            int64_t b = c * NORM_CHUNK, e = b + NORM_CHUNK < s->n ? b + NORM_CHUNK : s->n;
            part[c] = sum_squares(s->grad + b, e - b);
        }
        for (int64_t c = 0; c < chunks; c++) total += part[c];
        free(part);
    }
    return sqrt(total);
}

double tern_clip_grad_norm(tern_adamw *o, double max_norm) {
    double norm = tern_grad_norm(o);
    if (max_norm > 0 && norm > max_norm) {
        float scale = (float)(max_norm / (norm + 1e-6));
        for (int k = 0; k < o->n_slots; k++) {
            float *g = (float *)o->slots[k].grad;
            int64_t n = o->slots[k].n;
#pragma omp parallel for schedule(static) if (n >= NORM_CHUNK)
            for (int64_t i = 0; i < n; i++) g[i] *= scale;
        }
    }
    return norm;
}
