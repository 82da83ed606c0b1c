#include "train/trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/mem.h"
#include "core/progress.h"
#include "core/threads.h"
#include "train/data.h"
#include "train/loss.h"

void tern_train_opts_defaults(tern_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 100;
    o->batch = 4;
    o->seq_len = 256;
    o->grad_accum = 1;
    o->lr = 1e-4f;
    o->lr_method = 1e-3f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->weight_decay = 0.0f;
    o->clip = 1.0f;
    o->sched = (tern_schedule){.kind = TERN_SCHED_COSINE, .warmup_steps = 0, .min_lr_ratio = 0.1f, .decay_frac = 0.2f};
    o->ce_weight = 1.0f;
    o->kd_tau = 1.0f;
    o->val_every = 50;
    o->val_batches = 4;
    o->val_frac = 0.05;
    o->seed = 1;
    o->checkpoint_every = 100;
}

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

// Everything that must match for a checkpoint to continue this run.
typedef struct {
    uint64_t model_key, method_key;
    int64_t n_params;
    int32_t seq_len, batch, grad_accum, mode;
    uint64_t seed;
} run_identity;

// Counters that move as training advances.
typedef struct {
    int64_t step, adam_step, data_epoch, data_cursor, tokens;
} run_position;

typedef struct {
    const tern_train_opts *o;
    const tern_train_method *method;
    tern_model *m;
    tern_train_model *student, *teacher;
    tern_adamw opt;
    tern_dataset data;
    int *inputs, *targets;
    float *d_logits;
    float **d_hidden; // [L] per-block gradients from the feature loss
    run_identity id;
    run_position pos;
    FILE *log;
} trainer;

static uint64_t model_key(const tern_model *m) {
    uint64_t h = tern_hash64(&m->cfg.dim, sizeof(tern_config) - offsetof(tern_config, dim), 0);
    for (int i = 0; i < m->n_tensors; i++) h = tern_hash64(m->tensors[i].name, strlen(m->tensors[i].name), h);
    return h;
}

// Moments of all optimizer slots, concatenated in slot order.
static int64_t moments_count(const tern_adamw *o) {
    int64_t n = 0;
    for (int i = 0; i < o->n_slots; i++) n += o->slots[i].n;
    return n;
}

static int save_checkpoint(trainer *t) {
    int64_t n_params, n_mom = moments_count(&t->opt);
    float *params = tern_train_params_flat(t->student, &n_params);
    float *m = tern_alloc((size_t)n_mom * 4 + 4), *v = tern_alloc((size_t)n_mom * 4 + 4);
    if (!m || !v) {
        tern_free(m), tern_free(v);
        return -1;
    }
    int64_t off = 0;
    for (int i = 0; i < t->opt.n_slots; i++) {
        memcpy(m + off, t->opt.slots[i].m, (size_t)t->opt.slots[i].n * 4);
        memcpy(v + off, t->opt.slots[i].v, (size_t)t->opt.slots[i].n * 4);
        off += t->opt.slots[i].n;
    }
    t->pos.adam_step = t->opt.step;
    t->pos.data_epoch = t->data.epoch;
    t->pos.data_cursor = t->data.cursor;
    tern_ckpt_section secs[TERN_CKPT_MAX_SECTIONS] = {
        {"identity", &t->id, sizeof t->id},
        {"position", &t->pos, sizeof t->pos},
        {"params", params, (uint64_t)n_params * 4},
        {"adam_m", m, (uint64_t)n_mom * 4},
        {"adam_v", v, (uint64_t)n_mom * 4},
    };
    int n = 5;
    if (t->method && t->method->save_state) {
        int k = t->method->save_state(t->method->ctx, secs + n, TERN_CKPT_MAX_SECTIONS - n);
        if (k < 0) {
            tern_free(m), tern_free(v);
            return -1;
        }
        n += k;
    }
    int rc = tern_ckpt_save(t->o->checkpoint_path, secs, n);
    tern_free(m), tern_free(v);
    return rc;
}

static int load_checkpoint(trainer *t) {
    const char *path = t->o->checkpoint_path;
    tern_ckpt ck;
    if (tern_ckpt_load(&ck, path)) return -1;
    int rc = -1;
    const run_identity *id = tern_ckpt_get(&ck, "identity", sizeof *id, NULL);
    if (!id) goto done;
    if (id->model_key != t->id.model_key || id->n_params != t->id.n_params) {
        tern_errorf("%s: checkpoint belongs to another model", path);
        goto done;
    }
    if (id->method_key != t->id.method_key) {
        tern_errorf("%s: checkpoint was made with another method or method settings", path);
        goto done;
    }
    if (memcmp(id, &t->id, sizeof *id)) {
        tern_errorf("%s: checkpoint was made with other training settings (seq, batch, accumulation or seed)", path);
        goto done;
    }
    const run_position *p = tern_ckpt_get(&ck, "position", sizeof *p, NULL);
    int64_t n_params, n_mom = moments_count(&t->opt);
    float *params = tern_train_params_flat(t->student, &n_params);
    const float *src = tern_ckpt_get(&ck, "params", (uint64_t)n_params * 4, NULL);
    const float *m = tern_ckpt_get(&ck, "adam_m", (uint64_t)n_mom * 4, NULL);
    const float *v = tern_ckpt_get(&ck, "adam_v", (uint64_t)n_mom * 4, NULL);
    if (!p || !src || !m || !v) goto done;
    memcpy(params, src, (size_t)n_params * 4);
    int64_t off = 0;
    for (int i = 0; i < t->opt.n_slots; i++) {
        memcpy(t->opt.slots[i].m, m + off, (size_t)t->opt.slots[i].n * 4);
        memcpy(t->opt.slots[i].v, v + off, (size_t)t->opt.slots[i].n * 4);
        off += t->opt.slots[i].n;
    }
    t->pos = *p;
    t->opt.step = p->adam_step;
    if (tern_dataset_seek(&t->data, p->data_epoch, p->data_cursor)) goto done;
    if (t->method && t->method->load_state && t->method->load_state(t->method->ctx, &ck)) goto done;
    rc = 0;
done:
    tern_ckpt_close(&ck);
    return rc;
}

// Decoder block of a parameter name ("blk.12.attn_q.weight" -> 12), or -1.
static int layer_of(const char *name) { return strncmp(name, "blk.", 4) ? -1 : atoi(name + 4); }

// (Re)builds the optimizer over the trainable tensors of block `layer` (every
// tensor when layer < 0); everything else is frozen.
static int build_optimizer(trainer *t, int layer) {
    const tern_train_opts *o = t->o;
    const tern_train_method *me = t->method;
    tern_adamw_free(&t->opt);
    tern_adamw_init(&t->opt);
    int g_weights = tern_adamw_add_group(&t->opt, (tern_adamw_hparams){o->lr, o->beta1, o->beta2, o->eps, o->weight_decay});
    for (int i = 0; i < tern_train_n_params(t->student); i++) {
        const char *name = tern_train_param_name(t->student, i);
        int trainable = (layer < 0 || layer_of(name) == layer) && (!me || !me->is_trainable || me->is_trainable(me->ctx, name));
        tern_train_set_frozen(t->student, i, !trainable);
        if (!trainable) continue;
        int64_t n;
        float *p = tern_train_param(t->student, i, &n);
        if (tern_adamw_add(&t->opt, p, tern_train_grad(t->student, i), n, g_weights)) return -1;
    }
    if (me && me->add_params) {
        int g_method = tern_adamw_add_group(&t->opt, (tern_adamw_hparams){o->lr_method, o->beta1, o->beta2, o->eps, 0});
        if (g_method < 0 || me->add_params(me->ctx, &t->opt, g_method, layer)) return -1;
    }
    return 0;
}

static int setup(trainer *t, tern_model *m, const tern_tokenizer *tok) {
    const tern_train_opts *o = t->o;
    if (o->steps < 0 || o->batch < 1 || o->seq_len < 2 || o->grad_accum < 1)
        return tern_errorf("invalid training shape: steps %d, batch %d, seq %d, accumulation %d", o->steps, o->batch,
                           o->seq_len, o->grad_accum);
    if (m->cfg.ffn_bias)
        return tern_errorf("%s: the model has FFN biases (exported by tern quantize --method tequila?); "
                           "the training engine does not train them", m->path);
    if (o->seq_len > m->cfg.max_seq)
        return tern_errorf("--seq %d exceeds the model's context of %d", o->seq_len, m->cfg.max_seq);
    if (tern_dataset_load(&t->data, o->data_path, tok, tern_vocab_fingerprint(&m->vocab), o->seq_len, o->val_frac,
                          o->seed, o->cache_dir))
        return -1;
    if (tern_train_model_init(&t->student, m)) return -1;
    int blockwise = o->mode == TERN_TRAIN_BLOCKWISE;
    if ((blockwise || o->kd_weight > 0 || o->off_weight > 0) && tern_train_model_init(&t->teacher, m)) return -1;
    if (t->teacher)
        for (int i = 0; i < tern_train_n_params(t->teacher); i++) tern_train_set_frozen(t->teacher, i, 1);
    const tern_train_method *me = t->method;
    if (me && me->hook && tern_train_set_hook(t->student, me->hook)) return -1;
    size_t BT = (size_t)o->batch * o->seq_len, V = (size_t)m->cfg.vocab_size, D = (size_t)m->cfg.dim;
    t->inputs = malloc(BT * sizeof(int));
    t->targets = malloc(BT * sizeof(int));
    t->d_logits = tern_alloc(BT * V * 4);
    if (!t->inputs || !t->targets || !t->d_logits) return tern_errorf("out of memory for a batch of %zu tokens", BT);
    if (o->off_weight > 0) {
        t->d_hidden = calloc((size_t)m->cfg.n_layers, sizeof(float *));
        if (!t->d_hidden) return tern_errorf("out of memory");
        for (int l = 0; l < m->cfg.n_layers; l++)
            if (!(t->d_hidden[l] = tern_alloc(BT * D * 4))) return -1;
    }
    int64_t n_params;
    tern_train_params_flat(t->student, &n_params);
    t->id = (run_identity){.model_key = model_key(m),
                           .method_key = tern_hash64(me ? me->name : "fp", strlen(me ? me->name : "fp"), 0),
                           .n_params = n_params,
                           .seq_len = o->seq_len,
                           .batch = o->batch,
                           .grad_accum = o->grad_accum,
                           .mode = (int32_t)o->mode,
                           .seed = o->seed};
    if (!blockwise && build_optimizer(t, -1)) return -1;
    if (!blockwise && o->resume && load_checkpoint(t)) return -1;
    if (o->log_path) {
        t->log = fopen(o->log_path, o->resume ? "a" : "w");
        if (!t->log) return tern_errorf("%s: cannot open the training log", o->log_path);
    }
    return 0;
}

typedef struct {
    double loss, ce, kd, off;
} step_losses;

// One micro-batch: forward, losses (scaled by 1/grad_accum), backward.
static int micro_step(trainer *t, step_losses *acc) {
    const tern_train_opts *o = t->o;
    const tern_config *c = &t->m->cfg;
    int B = o->batch, T = o->seq_len, BT = B * T, L = c->n_layers;
    float scale = 1.0f / (float)o->grad_accum;
    tern_dataset_next(&t->data, B, t->inputs, t->targets);
    if (t->teacher && tern_train_forward(t->teacher, t->inputs, B, T)) return -1;
    if (tern_train_forward(t->student, t->inputs, B, T)) return -1;
    const float *logits = tern_train_logits(t->student);
    memset(t->d_logits, 0, (size_t)BT * c->vocab_size * 4);
    double ce = tern_loss_cross_entropy(logits, t->targets, BT, c->vocab_size, o->ce_weight * scale, t->d_logits);
    double kd = 0, off = 0;
    if (o->kd_weight > 0)
        kd = tern_loss_kl(logits, tern_train_logits(t->teacher), BT, c->vocab_size, o->kd_tau, o->kd_weight * scale,
                          t->d_logits);
    if (o->off_weight > 0)
        for (int l = 0; l < L; l++) {
            memset(t->d_hidden[l], 0, (size_t)BT * c->dim * 4);
            // Averaged over layers so the weight does not grow with depth.
            off += tern_loss_cosine(tern_train_hidden(t->student, l), tern_train_hidden(t->teacher, l), BT, c->dim,
                                    o->off_weight * scale / L, t->d_hidden[l]);
        }
    if (tern_train_backward(t->student, t->d_logits, (const float *const *)t->d_hidden)) return -1;
    // Losses come back weighted and scaled; report them unscaled per component.
    acc->ce += o->ce_weight > 0 ? ce / (o->ce_weight * scale) / o->grad_accum : 0;
    acc->kd += o->kd_weight > 0 ? kd / (o->kd_weight * scale) / o->grad_accum : 0;
    acc->off += o->off_weight > 0 ? off / (o->off_weight * scale) / o->grad_accum : 0;
    acc->loss += (ce + kd + off);
    return 0;
}

static double validation_loss(trainer *t) {
    const tern_train_opts *o = t->o;
    int T = o->seq_len, n = (int)(t->data.n_val < o->val_batches * o->batch ? t->data.n_val : o->val_batches * o->batch);
    if (n <= 0) return NAN;
    double total = 0;
    for (int i = 0; i < n; i++) {
        tern_dataset_val(&t->data, i, t->inputs, t->targets);
        if (tern_train_forward(t->student, t->inputs, 1, T)) return NAN;
        total += tern_loss_cross_entropy(tern_train_logits(t->student), t->targets, T, t->m->cfg.vocab_size, 1.0f, NULL);
    }
    return total / n;
}

static void trainer_free(trainer *t) {
    if (t->d_hidden)
        for (int l = 0; l < t->m->cfg.n_layers; l++) tern_free(t->d_hidden[l]);
    free(t->d_hidden);
    free(t->inputs);
    free(t->targets);
    tern_free(t->d_logits);
    tern_adamw_free(&t->opt);
    tern_dataset_free(&t->data);
    tern_train_model_free(t->student);
    tern_train_model_free(t->teacher);
    if (t->log) fclose(t->log);
}

// Appends one JSONL record (fields already formatted) to the log.
static void log_line(trainer *t, const char *fields) {
    if (!t->log) return;
    fprintf(t->log, "{%s}\n", fields);
    fflush(t->log);
}

static int maybe_checkpoint(trainer *t, int at_end) {
    const tern_train_opts *o = t->o;
    int rc = 0;
    if (o->checkpoint_path && ((o->checkpoint_every > 0 && t->pos.step % o->checkpoint_every == 0) || at_end))
        rc = save_checkpoint(t);
    if (stop_requested && rc == 0)
        rc = tern_errorf("interrupted at step %lld; checkpoint %s; continue with --resume", (long long)t->pos.step,
                         o->checkpoint_path ? o->checkpoint_path : "(none)");
    return rc;
}

static int run_e2e(trainer *t, tern_train_report *report, double *val) {
    const tern_train_opts *o = t->o;
    const tern_train_method *method = t->method;
    tern_schedule sched = o->sched;
    sched.total_steps = o->steps;
    int64_t tokens_per_step = (int64_t)o->batch * o->seq_len * o->grad_accum;
    double t0 = tern_now_sec();
    int64_t start_step = t->pos.step;
    int rc = 0;
    tern_progress bar;
    tern_progress_begin(&bar, method ? method->name : "train", "step", o->steps);
    while (t->pos.step < o->steps && rc == 0) {
        int step = (int)t->pos.step;
        tern_train_zero_grad(t->student);
        step_losses sl = {0};
        for (int k = 0; k < o->grad_accum && rc == 0; k++) rc = micro_step(t, &sl);
        if (rc) break;
        double gnorm = tern_clip_grad_norm(&t->opt, o->clip);
        float lr_factor = tern_schedule_factor(&sched, step);
        tern_adamw_step(&t->opt, lr_factor);
        t->pos.step++;
        t->pos.tokens += tokens_per_step;
        char extra[1024] = "";
        if (method && method->after_step) method->after_step(method->ctx, t->student, step, extra, sizeof extra);
        int do_val = o->val_every > 0 && (t->pos.step % o->val_every == 0 || t->pos.step == o->steps);
        if (do_val) *val = validation_loss(t);
        double elapsed = tern_now_sec() - t0;
        double tok_s = (double)(t->pos.step - start_step) * tokens_per_step / (elapsed + 1e-9);
        char fields[2048];
        int n = snprintf(fields, sizeof fields,
                         "\"step\": %lld, \"loss\": %.6f, \"ce\": %.6f, \"kd\": %.6f, \"off\": %.6f, \"lr\": %.6g, "
                         "\"grad_norm\": %.6g, \"tokens\": %lld, \"tok_s\": %.1f, \"elapsed\": %.2f",
                         (long long)t->pos.step, sl.loss, sl.ce, sl.kd, sl.off, o->lr * lr_factor, gnorm,
                         (long long)t->pos.tokens, tok_s, elapsed);
        if (do_val && *val == *val) n += snprintf(fields + n, sizeof fields - (size_t)n, ", \"val_loss\": %.6f", *val);
        snprintf(fields + n, sizeof fields - (size_t)n, "%s", extra);
        log_line(t, fields);
        char line[160];
        snprintf(line, sizeof line, "loss %.4f val %.4f lr %.2e %.0f tok/s", sl.loss, *val, o->lr * lr_factor, tok_s);
        tern_progress_update(&bar, t->pos.step, line);
        report->final_loss = sl.loss;
        rc = maybe_checkpoint(t, t->pos.step == o->steps || stop_requested);
    }
    tern_progress_end(&bar);
    return rc;
}

// Runs block `layer` of `tm` over all P sequences of x (in place).
static int advance_stream(tern_train_model *tm, int layer, float *x, int P, int B, int T, int D, float *tmp) {
    for (int p = 0; p < P; p += B) {
        float *xp = x + (size_t)p * T * D;
        if (tern_train_block_forward(tm, layer, xp, B, T, tmp)) return -1;
        memcpy(xp, tmp, (size_t)B * T * D * sizeof(float));
    }
    return 0;
}

// Block-wise reconstruction: a fixed calibration pool; for each block, the FP
// teacher's output on the teacher stream is the target, the student block
// (quantized through the hook) trains on the student stream with MSE, then
// both streams advance one block. Steps are split evenly over the blocks and
// each block gets a fresh optimizer and its own schedule.
static int run_blockwise(trainer *t, tern_train_report *report) {
    const tern_train_opts *o = t->o;
    const tern_config *c = &t->m->cfg;
    int B = o->batch, T = o->seq_len, D = c->dim, L = c->n_layers;
    int P = o->calib_seqs > 0 ? o->calib_seqs : 128;
    if (P > t->data.n_train) P = (int)t->data.n_train;
    P = P / B * B;
    if (P < B) return tern_errorf("block-wise: the data has %lld training sequences, fewer than one batch of %d",
                                  (long long)t->data.n_train, B);
    int steps_per_block = (o->steps + L - 1) / L;
    size_t stream = (size_t)P * T * D, batch = (size_t)B * T * D;
    float *xs = tern_alloc(stream * 4), *xt = tern_alloc(stream * 4), *yt = tern_alloc(stream * 4);
    float *out = tern_alloc(batch * 4), *dout = tern_alloc(batch * 4), *din = tern_alloc(batch * 4);
    int *pool = malloc((size_t)P * T * sizeof(int)), *unused = malloc((size_t)P * T * sizeof(int));
    int rc = -1;
    if (!xs || !xt || !yt || !out || !dout || !din || !pool || !unused) {
        tern_errorf("block-wise: out of memory for a calibration pool of %d x %d tokens", P, T);
        goto done;
    }
    // The pool: the first P sequences of the seeded shuffle; embeddings stay FP.
    tern_dataset_seek(&t->data, 0, 0);
    tern_dataset_next(&t->data, P, pool, unused);
    int embd = -1;
    for (int i = 0; i < tern_train_n_params(t->teacher); i++)
        if (!strcmp(tern_train_param_name(t->teacher, i), "token_embd.weight")) embd = i;
    const float *table = tern_train_param(t->teacher, embd, NULL);
    for (size_t i = 0; i < (size_t)P * T; i++) memcpy(xs + i * D, table + (size_t)pool[i] * D, (size_t)D * 4);
    memcpy(xt, xs, stream * 4);

    int start_block = 0, start_k = 0;
    if (o->resume) {
        tern_ckpt ck;
        if (tern_ckpt_load(&ck, o->checkpoint_path)) goto done;
        const run_position *p = tern_ckpt_get(&ck, "position", sizeof *p, NULL);
        int64_t done_steps = p ? p->step : -1;
        tern_ckpt_close(&ck);
        if (done_steps < 0) goto done;
        start_block = (int)(done_steps / steps_per_block);
        start_k = (int)(done_steps % steps_per_block);
        if (start_block < L && build_optimizer(t, start_block)) goto done;
        if (load_checkpoint(t)) goto done;
        // Rebuild both streams up to the current block (deterministic).
        for (int l = 0; l < start_block && l < L; l++)
            if (advance_stream(t->student, l, xs, P, B, T, D, out) || advance_stream(t->teacher, l, xt, P, B, T, D, out))
                goto done;
    }
    tern_progress bar;
    tern_progress_begin(&bar, t->method ? t->method->name : "blockwise", "step", (int64_t)steps_per_block * L);
    double t0 = tern_now_sec();
    int64_t first = t->pos.step;
    rc = 0;
    for (int l = start_block; l < L && rc == 0; l++) {
        memcpy(yt, xt, stream * 4);
        if ((rc = advance_stream(t->teacher, l, yt, P, B, T, D, out))) break;
        if (l != start_block || !o->resume) {
            if ((rc = build_optimizer(t, l))) break;
        }
        tern_schedule sched = o->sched;
        sched.total_steps = steps_per_block;
        for (int k = (l == start_block ? start_k : 0); k < steps_per_block && rc == 0; k++) {
            size_t b0 = (size_t)((int64_t)k * B % P) * T * D;
            tern_train_zero_grad(t->student);
            if ((rc = tern_train_block_forward(t->student, l, xs + b0, B, T, out))) break;
            memset(dout, 0, batch * 4);
            double mse = tern_loss_mse(out, yt + b0, B * T, D, 1.0f, dout);
            if ((rc = tern_train_block_backward(t->student, l, dout, din))) break;
            double gnorm = tern_clip_grad_norm(&t->opt, o->clip);
            float lr_factor = tern_schedule_factor(&sched, k);
            tern_adamw_step(&t->opt, lr_factor);
            t->pos.step++;
            t->pos.tokens += (int64_t)B * T;
            char extra[1024] = "";
            if (t->method && t->method->after_step)
                t->method->after_step(t->method->ctx, t->student, (int)t->pos.step - 1, extra, sizeof extra);
            double elapsed = tern_now_sec() - t0;
            char fields[1600];
            snprintf(fields, sizeof fields,
                     "\"step\": %lld, \"block\": %d, \"mse\": %.8g, \"lr\": %.6g, \"grad_norm\": %.6g, \"tokens\": %lld, "
                     "\"tok_s\": %.1f, \"elapsed\": %.2f%s",
                     (long long)t->pos.step, l, mse, o->lr * lr_factor, gnorm, (long long)t->pos.tokens,
                     (double)(t->pos.step - first) * B * T / (elapsed + 1e-9), elapsed, extra);
            log_line(t, fields);
            char line[120];
            snprintf(line, sizeof line, "block %d/%d mse %.3g", l + 1, L, mse);
            tern_progress_update(&bar, t->pos.step, line);
            report->final_loss = mse;
            rc = maybe_checkpoint(t, k + 1 == steps_per_block || stop_requested);
        }
        // The student stream passes through the trained (quantized) block.
        if (rc == 0) rc = advance_stream(t->student, l, xs, P, B, T, D, out);
        memcpy(xt, yt, stream * 4);
    }
    tern_progress_end(&bar);
done:
    tern_free(xs), tern_free(xt), tern_free(yt), tern_free(out), tern_free(dout), tern_free(din);
    free(pool), free(unused);
    return rc;
}

int tern_train_run(tern_model *m, const tern_tokenizer *tok, const tern_train_opts *o,
                   const tern_train_method *method, tern_train_report *report) {
    trainer t = {.o = o, .method = method, .m = m};
    memset(report, 0, sizeof *report);
    double t0 = tern_now_sec(), val = NAN;
    int rc = setup(&t, m, tok);
    if (rc == 0) {
        stop_requested = 0;
        void (*old_int)(int) = signal(SIGINT, on_signal), (*old_term)(int) = signal(SIGTERM, on_signal);
        if (o->mode == TERN_TRAIN_BLOCKWISE) {
            rc = run_blockwise(&t, report);
            if (rc == 0) val = validation_loss(&t); // the whole quantized model on held-out data
        } else {
            rc = run_e2e(&t, report, &val);
        }
        signal(SIGINT, old_int);
        signal(SIGTERM, old_term);
    }
    if (rc == 0) rc = tern_train_export(t.student, m);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    report->steps_done = (int)t.pos.step;
    report->final_val_loss = val;
    report->tokens = t.pos.tokens;
    report->seconds = tern_now_sec() - t0;
    report->peak_rss_kb = ru.ru_maxrss;
    trainer_free(&t);
    return rc;
}
