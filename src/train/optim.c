#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"

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

void tern_adamw_step(tern_adamw *o, float lr_factor) {
    o->step++;
    for (int k = 0; k < o->n_slots; k++) {
        tern_adamw_slot *s = &o->slots[k];
        const tern_adamw_hparams *h = &o->groups[s->group];
        float lr = h->lr * lr_factor, b1 = h->beta1, b2 = h->beta2;
        float bc1 = 1.0f - powf(b1, (float)o->step), bc2 = 1.0f - powf(b2, (float)o->step);
        float decay = 1.0f - lr * h->weight_decay;
        float step_size = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < s->n; i++) {
            float g = s->grad[i];
            float m = b1 * s->m[i] + (1 - b1) * g;
            float v = b2 * s->v[i] + (1 - b2) * g * g;
            s->m[i] = m;
            s->v[i] = v;
            float p = s->param[i] * decay;
            s->param[i] = p - step_size * m / (sqrtf(v) * inv_sqrt_bc2 + h->eps);
        }
    }
}

double tern_grad_norm(const tern_adamw *o) {
    double total = 0;
    for (int k = 0; k < o->n_slots; k++) {
        const tern_adamw_slot *s = &o->slots[k];
        double acc = 0;
        for (int64_t i = 0; i < s->n; i++) acc += (double)s->grad[i] * s->grad[i];
        total += acc;
    }
    return sqrt(total);
}

double tern_clip_grad_norm(tern_adamw *o, double max_norm) {
    double norm = tern_grad_norm(o);
    if (max_norm > 0 && norm > max_norm) {
        float scale = (float)(max_norm / (norm + 1e-6));
        for (int k = 0; k < o->n_slots; k++) {
            float *g = (float *)o->slots[k].grad;
            for (int64_t i = 0; i < o->slots[k].n; i++) g[i] *= scale;
        }
    }
    return norm;
}
