// Training losses. Each returns the loss value (mean over tokens, times
// `weight`) and, when `grad` is non-NULL, ADDS d(weight * loss)/d(input) into it.
// Per-token work runs in parallel; sums are taken in a fixed order so results
// are bit-identical run to run for a given thread count.
#ifndef TERN_TRAIN_LOSS_H
#define TERN_TRAIN_LOSS_H

// Next-token cross-entropy: logits[n, vocab], targets[n] (negative = ignored;
// the mean is over the counted tokens).
double tern_loss_cross_entropy(const float *logits, const int *targets, int n, int vocab, float weight,
                               float *grad);

// Logit distillation: tau² · KL(softmax(teacher/tau) ‖ softmax(student/tau)),
// mean over tokens. The tau² factor keeps gradient magnitudes independent of tau.
double tern_loss_kl(const float *student, const float *teacher, int n, int vocab, float tau, float weight,
                    float *grad);

// Feature distillation (TernaryLLM's OFF): mean over tokens of
// 1 − cos(student[t], teacher[t]); student/teacher are [n, dim].
double tern_loss_cosine(const float *student, const float *teacher, int n, int dim, float weight, float *grad);

// Mean squared error over all n*dim elements (block-wise reconstruction).
double tern_loss_mse(const float *student, const float *teacher, int n, int dim, float weight, float *grad);

#endif
