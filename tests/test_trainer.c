// The training loop with a toy quantizer hook (w_eff = w / 2): block-wise
// reconstruction lowers each block's MSE; an interrupted run (SIGINT raised
// mid-training) continued with resume ends bit-identical to an uninterrupted
// one, in e2e and block-wise modes (inside a block, at a block's end, and in
// the e2e / E2E-QP phase after block-wise).
#include <signal.h>
#include <unistd.h>

#include "train/trainer.h"
#include "test.h"

static int halve_effective(void *ctx, int id, const float *w, int out_dim, int in_dim, float *w_eff, float *extra,
                           int *has_extra) {
    (void)ctx, (void)id, (void)extra;
    for (size_t i = 0; i < (size_t)out_dim * in_dim; i++) w_eff[i] = 0.5f * w[i];
    *has_extra = 0;
    return 0;
}

static int halve_backward(void *ctx, int id, const float *w, int out_dim, int in_dim, const float *d_w_eff,
                          const float *d_extra, float *d_w) {
    (void)ctx, (void)id, (void)w, (void)d_extra;
    for (size_t i = 0; i < (size_t)out_dim * in_dim; i++) d_w[i] += 0.5f * d_w_eff[i];
    return 0;
}

static const tern_weight_hook halve_hook = {.effective = halve_effective, .backward = halve_backward};
static int interrupt_at = -1;

static void maybe_interrupt(void *ctx, tern_train_model *tm, int step, char *log_json, size_t cap) {
    (void)ctx, (void)tm;
    snprintf(log_json, cap, ", \"toy\": %d", step);
    if (step == interrupt_at) raise(SIGINT);
}

static const tern_train_method halve = {.name = "halve", .hook = &halve_hook, .after_step = maybe_interrupt};

static tern_train_opts options(tern_train_mode mode, const char *tag) {
    static char ckpt[2][128], log[2][128];
    int k = mode == TERN_TRAIN_BLOCKWISE;
    snprintf(ckpt[k], sizeof ckpt[k], "/tmp/tern_trainer_%s_%d.ckpt", tag, (int)getpid());
    snprintf(log[k], sizeof log[k], "/tmp/tern_trainer_%s_%d.jsonl", tag, (int)getpid());
    tern_train_opts o;
    tern_train_opts_defaults(&o);
    o.mode = mode;
    o.steps = 25;
    o.batch = 4;
    o.seq_len = 32;
    o.lr = 1e-2f;
    o.calib_seqs = 16;
    o.val_every = 10;
    o.data_path = test_data_path("data/tinystories/valid-sample.txt");
    o.checkpoint_path = ckpt[k];
    o.checkpoint_every = 3;
    o.log_path = log[k];
    return o;
}

// Trains a fresh copy of stories260K; returns the model (caller frees).
static int train(tern_model *m, const tern_train_opts *o, tern_train_report *rep) {
    if (tern_model_load(m, test_data_path("models/stories260K/stories260K.bin"),
                        test_data_path("models/stories260K/tok512.bin")))
        return -1;
    tern_tokenizer *tok;
    if (tern_tokenizer_init(&tok, &m->vocab)) return -1;
    int rc = tern_train_run(m, tok, o, &halve, rep);
    tern_tokenizer_free(tok);
    return rc;
}

static int same_weights(const tern_model *a, const tern_model *b) {
    for (int i = 0; i < a->n_tensors; i++)
        if (memcmp(a->tensors[i].data, b->tensors[i].data, (size_t)a->tensors[i].numel * 4)) return 0;
    return a->n_tensors == b->n_tensors;
}

// First and last "mse" of block 0 in a block-wise log.
static void block0_mse(const char *log, double *first, double *last) {
    FILE *f = fopen(log, "r");
    char line[4096];
    *first = *last = -1;
    while (f && fgets(line, sizeof line, f)) {
        int block;
        double mse;
        const char *b = strstr(line, "\"block\": "), *m = strstr(line, "\"mse\": ");
        if (!b || !m || sscanf(b, "\"block\": %d", &block) != 1 || sscanf(m, "\"mse\": %lf", &mse) != 1) continue;
        if (block != 0) continue;
        if (*first < 0) *first = mse;
        *last = mse;
    }
    if (f) fclose(f);
}

// Trains uninterrupted, then interrupted after step `stop` (0-based) and
// resumed: the weights must be bit-identical. Block-wise has 5 steps per
// block; final > 0 adds that many steps of a phase after it (qp: E2E-QP, else e2e).
static void check_mode(tern_train_mode mode, int stop, int final, int qp) {
    const char *name = mode == TERN_TRAIN_BLOCKWISE ? "blockwise" : "e2e";
    tern_train_opts o = options(mode, name);
    if (qp) o.qp_steps = final;
    else o.e2e_steps = final;
    tern_train_report rep;
    tern_model full, part;
    interrupt_at = -1;
    CHECK_OK(train(&full, &o, &rep));
    CHECK(rep.steps_done == 25 + final);
    if (mode == TERN_TRAIN_BLOCKWISE) {
        double first, last;
        block0_mse(o.log_path, &first, &last);
        CHECK_MSG(first > 0 && last < 0.5 * first, "block 0 mse %g -> %g", first, last);
    }
    interrupt_at = stop;
    char msg[64];
    snprintf(msg, sizeof msg, "interrupted at step %d", stop + 1);
    CHECK_FAILS(train(&part, &o, &rep), msg);
    tern_model_free(&part);
    interrupt_at = -1;
    o.resume = 1;
    CHECK_OK(train(&part, &o, &rep));
    CHECK_MSG(same_weights(&full, &part), "%s, stopped after step %d of 25+%d: resumed weights differ", name, stop,
              final);
    tern_model_free(&full);
    tern_model_free(&part);
    unlink(o.checkpoint_path);
    unlink(o.log_path);
}

int main(void) {
    check_mode(TERN_TRAIN_E2E, 10, 0, 0);
    check_mode(TERN_TRAIN_BLOCKWISE, 10, 0, 0); // inside block 2
    check_mode(TERN_TRAIN_BLOCKWISE, 9, 0, 0);  // at the end of block 1
    check_mode(TERN_TRAIN_BLOCKWISE, 24, 6, 0); // at the end of the last block, e2e after
    check_mode(TERN_TRAIN_BLOCKWISE, 27, 6, 0); // inside the e2e phase
    check_mode(TERN_TRAIN_BLOCKWISE, 27, 6, 1); // inside E2E-QP (the norms train)
    return test_report();
}
