// The training loop shared by `tern train` (FP fine-tuning) and `tern quantize`
// (QAT): data -> student forward (+ frozen FP teacher) -> losses -> backward ->
// clip -> AdamW, with validation, a JSONL log, checkpoints and exact resume.
// Under mpirun it is data-parallel (core/dist.h, docs/SCALING.md): each rank
// takes its share of every global batch, gradients are summed over the ranks
// in a fixed order before clipping and AdamW, and every rank applies the same
// update; rank 0 alone writes the log and checkpoints.
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
    // Optional: replaces the student's initial parameters after it is built
    // from the model (e.g. GPTQ's latent weights); not called on --resume.
    int (*init_params)(void *ctx, tern_train_model *tm);
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

typedef enum { TERN_BLOCK_LOSS_MSE = 0, TERN_BLOCK_LOSS_COS } tern_block_loss;

typedef struct {
    tern_train_mode mode;
    int calib_seqs;       // block-wise: sequences in the calibration pool
    // Block-wise (EfficientQAT's Block-AP): passes over the pool per block (0:
    // --steps split evenly over the blocks); the loss against the FP block
    // output (MSE, or OFF's 1 - cosine). Each block's linears (as the method
    // allows), norms and method parameters train.
    int epochs;
    tern_block_loss block_loss;
    // Then E2E-QP: qp_steps steps of logit KD against the FP model that train
    // only the method's parameters (lr_method) and the RMSNorm weights (qp_lr).
    int qp_steps;
    float qp_lr;
    // Or e2e_steps steps of end-to-end QAT after block-wise (what the method
    // trains, CE at ce_weight plus logit KD at kd_weight, 1 when 0).
    int e2e_steps;
    // Wall-clock budget of the training phases in seconds (0: none). Steps
    // are then sized from probes timed on the fly: block-wise gets block_frac
    // of the budget (all of it without E2E-QP), E2E-QP or e2e what is left.
    // The sizes chosen are kept in the checkpoint, so --resume repeats them.
    double budget_s;
    float block_frac;
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
    int keep_checkpoint; // for the caller: keep the checkpoint after a successful run (the CLI removes it)
    const char *log_path;
    // Data-parallel runs (mpirun): every this many steps the ranks compare a
    // checksum of the trainable parameters and stop on a mismatch (0: never).
    int sync_check_every;
} tern_train_opts;

void tern_train_opts_defaults(tern_train_opts *o);

typedef struct {
    int steps_done;
    int steps_per_block, final_steps; // as run (chosen by the budget when there is one)
    double final_loss, final_val_loss;
    int64_t tokens;
    double seconds;
    long peak_rss_kb;
    int ranks;            // MPI ranks the run was split over (1: one process)
    double comm_seconds;  // rank 0's time in gradient/loss exchanges (waiting for slower ranks included)
    int64_t comm_bytes;   // bytes rank 0 sent in them
} tern_train_report;

// Trains `m` in place (its tensors receive the trained weights).
// The options' consistency and the model's fitness for training, checked
// before anything runs (tern_train_run checks them again).
int tern_train_check(const tern_train_opts *o, const tern_model *m);

int tern_train_run(tern_model *m, const tern_tokenizer *tok, const tern_train_opts *o,
                   const tern_train_method *method, tern_train_report *report);

#endif
