// AdamW with parameter groups, learning-rate schedules and global-norm
// gradient clipping (PyTorch semantics: decoupled weight decay p -= lr·wd·p,
// bias-corrected moments, eps added outside the square root).
#ifndef TERN_TRAIN_OPTIM_H
#define TERN_TRAIN_OPTIM_H

#include <stdint.h>

typedef enum {
    TERN_SCHED_CONSTANT = 0,
    TERN_SCHED_COSINE,  // warmup, then cosine from lr to min_lr
    TERN_SCHED_LINEAR,  // warmup, then linear from lr to min_lr
    TERN_SCHED_WSD,     // warmup, stable at lr, then linear decay to min_lr over the last decay_frac of steps
} tern_sched_kind;

typedef struct {
    tern_sched_kind kind;
    int total_steps, warmup_steps;
    float min_lr_ratio; // min_lr = lr * ratio
    float decay_frac;   // WSD only
} tern_schedule;

// Multiplier in [0, 1] applied to a group's base lr at `step` (0-based).
float tern_schedule_factor(const tern_schedule *s, int step);
int tern_schedule_parse(tern_schedule *s, const char *name); // "constant", "cosine", "linear", "wsd"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} tern_adamw_hparams;

// One tensor the optimizer updates; moments are owned by the optimizer.
typedef struct {
    float *param;
    const float *grad;
    int64_t n;
    int group;
    float *m, *v;
} tern_adamw_slot;

typedef struct {
    int n_groups;
    tern_adamw_hparams groups[4];
    int n_slots, cap_slots;
    tern_adamw_slot *slots;
    int64_t step; // updates taken so far
} tern_adamw;

void tern_adamw_init(tern_adamw *o);
void tern_adamw_free(tern_adamw *o);
int tern_adamw_add_group(tern_adamw *o, tern_adamw_hparams h); // returns the group id, or -1
int tern_adamw_add(tern_adamw *o, float *param, const float *grad, int64_t n, int group);
// One update with every group's lr multiplied by lr_factor.
void tern_adamw_step(tern_adamw *o, float lr_factor);

// Global L2 norm of the gradients of all slots (double, in a fixed order that
// does not depend on the thread count).
double tern_grad_norm(const tern_adamw *o);
// Scales all slot gradients so the global norm is at most max_norm; returns the
// norm before clipping. Gradients are modified in place (cast away const: the
// optimizer's slots point at the model's gradient buffers).
double tern_clip_grad_norm(tern_adamw *o, double max_norm);

#endif
