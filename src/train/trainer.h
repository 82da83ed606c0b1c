// The training loop shared by `tern train` (FP fine-tuning) and `tern quantize`
// (QAT): data -> student forward (+ frozen FP teacher) -> losses -> backward ->
// clip -> AdamW, with validation, a JSONL log, checkpoints and exact resume.
#ifndef TERN_TRAIN_TRAINER_H
#define TERN_TRAIN_TRAINER_H

#include <stdint.h>

#include "io/model.h"
#include "nn/llama_train.h"
#include "tok/tokenizer.h"
#include "train/checkpoint.h"
#include "train/optim.h"

// A quantization method plugs into the loop through this interface (issue 4).
typedef struct {
    const char *name;
    void *ctx;
    const tern_weight_hook *hook; // effective weights; NULL for FP training
    // Registers the method's own trainable tensors with the optimizer (group
    // given): those of decoder block `layer`, or of every block when layer < 0
    // (block-wise training builds a fresh optimizer per block).
    int (*add_params)(void *ctx, tern_adamw *opt, int group, int layer);
    // Decides which model parameters train (default: all).
    int (*is_trainable)(void *ctx, const char *param_name);
    // State to checkpoint / restore (sections named by the method).
    int (*save_state)(void *ctx, tern_ckpt_section *secs, int max);
    int (*load_state)(void *ctx, const tern_ckpt *ck);
    // Called after each optimizer step (diagnostics); may append JSON fields to log_json.
    void (*after_step)(void *ctx, tern_train_model *tm, int step, char *log_json, size_t cap);
} tern_train_method;

typedef enum {
    TERN_TRAIN_E2E = 0,   // the whole model against data and/or the FP teacher
    TERN_TRAIN_BLOCKWISE, // one block at a time: MSE to the FP block output on a calibration pool
} tern_train_mode;

typedef struct {
    tern_train_mode mode;
    int calib_seqs;       // block-wise: sequences in the calibration pool
    int steps, batch, seq_len, grad_accum; // block-wise: steps are split evenly over the blocks
    float lr, lr_method, beta1, beta2, eps, weight_decay, clip;
    tern_schedule sched;
    float ce_weight, kd_weight, kd_tau, off_weight;
    int val_every, val_batches;
    double val_frac;
    uint64_t seed;
    const char *data_path, *cache_dir;
    const char *checkpoint_path;
    int checkpoint_every, resume;
    const char *log_path;
} tern_train_opts;

void tern_train_opts_defaults(tern_train_opts *o);

typedef struct {
    int steps_done;
    double final_loss, final_val_loss;
    int64_t tokens;
    double seconds;
    long peak_rss_kb;
} tern_train_report;

// Trains `m` in place (its tensors receive the trained weights).
int tern_train_run(tern_model *m, const tern_tokenizer *tok, const tern_train_opts *o,
                   const tern_train_method *method, tern_train_report *report);

#endif
