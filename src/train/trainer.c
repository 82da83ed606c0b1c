#include "train/trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/dist.h"
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
    o->qp_lr = 1e-4f;
    o->block_frac = 0.5f;
}

static volatile sig_atomic_t stop_requested;
// First Ctrl-C (or SIGTERM): finish the step, checkpoint, stop; said at once.
// A second one aborts on the spot, writing nothing more (the last checkpoint
// written stays intact: checkpoints are atomic).
// Under mpirun the ranks agree on a stop at the end of the step; a SIGTERM
// from mpirun itself means a rank was lost and the job is being torn down.
static void on_signal(int sig) {
    static const char first_alone[] = "\ntern: stopping after this step (then a checkpoint); Ctrl-C again to abort\n";
    static const char first_job[] = "\ntern: stop requested: every rank stops after this step, then a checkpoint (if "
                                    "mpirun is ending the job, the last checkpoint stays intact: --resume)\n";
    const char *first = tern_dist_size() > 1 ? first_job : first_alone;
    static const char second[] = "\ntern: aborted\n";
    if (stop_requested) {
        ssize_t w = write(2, second, sizeof second - 1);
        (void)w;
        _exit(128 + sig);
    }
    stop_requested = 1;
    ssize_t w = write(2, first, strlen(first));
    (void)w;
}

// Everything that must match for a checkpoint to continue this run.
typedef struct {
    uint64_t model_key, method_key;
    int64_t n_params;
    int32_t seq_len, batch, grad_accum, mode;
    uint64_t seed;
} run_identity;

// Sizes of the phases as chosen at the start (by the options or the budget);
// 0 = not chosen yet. Checkpointed, so a resumed run keeps them.
typedef struct {
    int32_t steps, steps_per_block, final_steps, pad; // final: E2E-QP or e2e after block-wise
} run_plan;

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
    run_plan plan;
    double deadline; // tern_now_sec() at which the budget ends (0: no budget)
    FILE *log;
    int ckpt_announced; // the checkpoint's path and size were printed
    // Data parallelism: this rank's share [first, first + local_batch) of
    // every global batch of o->batch sequences; the staging buffer the
    // gradients are summed in; a stop request every rank agreed on.
    int rank, ranks, first, local_batch;
    float *grad_sum;
    int64_t grad_sum_cap;
    int stop;
    int in_setup; // setup builds the optimizer before the ranks agree the setup worked
} trainer;

// The checkpoint's record of how the run was split (informational: the data
// position and everything else are global, so any rank count resumes it).
typedef struct {
    int32_t ranks, local_batch;
} run_split;

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
    run_split split = {t->ranks, t->local_batch};
    tern_ckpt_section secs[TERN_CKPT_MAX_SECTIONS] = {
        {"identity", &t->id, sizeof t->id},
        {"position", &t->pos, sizeof t->pos},
        {"params", params, (uint64_t)n_params * 4},
        {"adam_m", m, (uint64_t)n_mom * 4},
        {"adam_v", v, (uint64_t)n_mom * 4},
        {"plan", &t->plan, sizeof t->plan},
        {"split", &split, sizeof split},
    };
    int n = 7;
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
    if (rc == 0 && !t->ckpt_announced) { // a checkpoint can be large: say where it is and how large
        uint64_t bytes = 0;
        for (int i = 0; i < n; i++) bytes += secs[i].size;
        fprintf(stderr, "%scheckpoint: %s (%.1f MB)\n", isatty(2) ? "\n" : "", t->o->checkpoint_path, bytes / 1e6);
        t->ckpt_announced = 1;
    }
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
    uint64_t split_size = 0;
    const run_split *split = tern_ckpt_get(&ck, "split", 0, &split_size);
    if (!split) tern_clear_error(); // a checkpoint from before data parallelism: one process
    int saved_ranks = split && split_size == sizeof *split ? split->ranks : 1;
    if (saved_ranks != t->ranks && !t->ckpt_announced)
        fprintf(stderr, "resuming a checkpoint of %d rank%s with %d: the global batch of %d sequences is kept "
                        "(results equal up to float summation order)\n",
                saved_ranks, saved_ranks == 1 ? "" : "s", t->ranks, t->o->batch);
    if (tern_dataset_seek(&t->data, p->data_epoch, p->data_cursor)) goto done;
    if (t->method && t->method->load_state && t->method->load_state(t->method->ctx, &ck)) goto done;
    rc = 0;
done:
    tern_ckpt_close(&ck);
    return rc;
}

// Decoder block of a parameter name ("blk.12.attn_q.weight" -> 12), or -1.
static int layer_of(const char *name) { return strncmp(name, "blk.", 4) ? -1 : atoi(name + 4); }

static int is_norm(const char *name) {
    size_t n = strlen(name);
    return n >= 11 && !strcmp(name + n - 11, "norm.weight");
}

// What trains: every tensor the method allows (QAT, layer < 0); block `layer`'s
// tensors the method allows and its norms (block-wise); or only the norms
// and the method's own parameters (E2E-QP). Everything else is frozen.
typedef enum { PHASE_ALL = -1, PHASE_QP = -2 } train_phase; // >= 0: block-wise, that block

// Every rank starts a phase from rank 0's trainable tensors (identical already
// when every rank computed the same initialization; this makes it so even
// where machines differ, e.g. GPTQ on another thread count or ISA).
static int share_trainable(trainer *t) {
    for (int i = 0; i < t->opt.n_slots && t->ranks > 1; i++)
        if (tern_dist_bcast(t->opt.slots[i].param, t->opt.slots[i].n * (int64_t)sizeof(float))) return -1;
    return 0;
}

// (Re)builds the optimizer for `phase`; a fresh one per block and phase.
static int build_optimizer(trainer *t, int phase) {
    const tern_train_opts *o = t->o;
    const tern_train_method *me = t->method;
    tern_adamw_free(&t->opt);
    tern_adamw_init(&t->opt);
    float lr = phase == PHASE_QP ? o->qp_lr : o->lr;
    int g_weights = tern_adamw_add_group(&t->opt, (tern_adamw_hparams){lr, o->beta1, o->beta2, o->eps, o->weight_decay});
    for (int i = 0; i < tern_train_n_params(t->student); i++) {
        const char *name = tern_train_param_name(t->student, i);
        int allowed = !me || !me->is_trainable || me->is_trainable(me->ctx, name);
        int trainable = phase == PHASE_ALL ? allowed
                        : phase == PHASE_QP ? is_norm(name)
                                            : layer_of(name) == phase && (allowed || is_norm(name));
        tern_train_set_frozen(t->student, i, !trainable);
        if (!trainable) continue;
        int64_t n;
        float *p = tern_train_param(t->student, i, &n);
        if (tern_adamw_add(&t->opt, p, tern_train_grad(t->student, i), n, g_weights)) return -1;
    }
    if (me && me->add_params) {
        int g_method = tern_adamw_add_group(&t->opt, (tern_adamw_hparams){o->lr_method, o->beta1, o->beta2, o->eps, 0});
        if (g_method < 0 || me->add_params(me->ctx, &t->opt, g_method, phase >= 0 ? phase : -1)) return -1;
    }
    // With frozen latent weights the method's own parameters still need the
    // hook's backward (TEQ asks for that anyway).
    if (me && me->hook && me->add_params && phase == PHASE_QP && !me->hook->backward_when_frozen) {
        tern_weight_hook h = *me->hook;
        h.backward_when_frozen = 1;
        if (tern_train_set_hook(t->student, &h)) return -1;
    }
    return t->in_setup ? 0 : share_trainable(t);
}

// On --resume, the phase sizes the run chose at its start (absent in a
// checkpoint of a run that chose none: the options' sizes then apply).
static int read_plan(trainer *t) {
    tern_ckpt ck;
    if (tern_ckpt_load(&ck, t->o->checkpoint_path)) return -1;
    uint64_t size = 0;
    const run_plan *p = tern_ckpt_get(&ck, "plan", 0, &size);
    int rc = 0;
    if (p && size == sizeof *p) t->plan = *p;
    else if (p) rc = tern_errorf("%s: the checkpoint's plan section has %llu bytes", t->o->checkpoint_path,
                                 (unsigned long long)size);
    else tern_clear_error(); // absent: a run without chosen sizes
    tern_ckpt_close(&ck);
    return rc;
}

int tern_train_check(const tern_train_opts *o, const tern_model *m) {
    if (o->qp_steps > 0 && o->e2e_steps > 0)
        return tern_errorf("--qp-steps and --e2e-steps both name the phase after block-wise; give one");
    if ((o->qp_steps > 0 || o->e2e_steps > 0 || o->epochs > 0) && o->mode != TERN_TRAIN_BLOCKWISE)
        return tern_errorf("--epochs, --qp-steps and --e2e-steps belong to --mode blockwise");
    if (o->steps < 0 || o->batch < 1 || o->seq_len < 2 || o->grad_accum < 1)
        return tern_errorf("invalid training shape: steps %d, batch %d, seq %d, accumulation %d", o->steps, o->batch,
                           o->seq_len, o->grad_accum);
    if (m->cfg.ffn_bias)
        return tern_errorf("%s: the model has FFN biases (exported by tern quantize --method tequila?); "
                           "the training engine does not train them", m->path);
    if (o->seq_len > m->cfg.max_seq)
        return tern_errorf("--seq %d exceeds the model's context of %d", o->seq_len, m->cfg.max_seq);
    int ranks = tern_dist_size();
    if (o->batch < ranks)
        return tern_errorf("%d ranks but a global batch of %d sequences (--batch): every rank needs at least one; "
                           "run at most %d ranks or give --batch %d or more",
                           ranks, o->batch, o->batch, ranks);
    if (o->batch % ranks)
        return tern_errorf("--batch %d does not split evenly over %d ranks: give a multiple of %d (--batch %d or %d) "
                           "or a rank count that divides %d",
                           o->batch, ranks, ranks, o->batch / ranks * ranks, (o->batch / ranks + 1) * ranks, o->batch);
    return 0;
}

static int setup(trainer *t, tern_model *m, const tern_tokenizer *tok) {
    const tern_train_opts *o = t->o;
    if (o->resume && read_plan(t)) return -1;
    if (tern_train_check(o, m)) return -1;
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
    if (me && me->init_params && !o->resume && me->init_params(me->ctx, t->student)) return -1;
    // Inputs hold a global batch (the block-wise pool and the budget probe
    // read whole ones); what runs forward and backward is this rank's share.
    size_t BT = (size_t)t->local_batch * o->seq_len, V = (size_t)m->cfg.vocab_size, D = (size_t)m->cfg.dim;
    t->inputs = malloc((size_t)o->batch * o->seq_len * sizeof(int));
    t->targets = malloc((size_t)o->batch * o->seq_len * sizeof(int));
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
    if (!blockwise && build_optimizer(t, PHASE_ALL)) return -1;
    if (!blockwise && o->resume && load_checkpoint(t)) return -1;
    if (o->log_path && t->rank == 0) {
        t->log = fopen(o->log_path, o->resume ? "a" : "w");
        if (!t->log) return tern_errorf("%s: cannot open the training log", o->log_path);
    }
    return 0;
}

typedef struct {
    double loss, ce, kd, off;
} step_losses;

typedef struct {
    float ce_weight, kd_weight, off_weight;
} loss_weights;

// One micro-batch (this rank's share of it): forward, losses scaled by
// 1/(grad_accum x ranks) so that the sum over micro-batches and ranks is the
// mean over the global batch, backward.
static int micro_step(trainer *t, const loss_weights *o, step_losses *acc) {
    const tern_train_opts *to = t->o;
    const tern_config *c = &t->m->cfg;
    int B = t->local_batch, T = to->seq_len, BT = B * T, L = c->n_layers;
    float scale = 1.0f / ((float)to->grad_accum * (float)t->ranks);
    tern_dataset_next_share(&t->data, to->batch, t->first, B, t->inputs, t->targets);
    if (t->teacher && tern_train_forward(t->teacher, t->inputs, B, T)) return -1;
    if (tern_train_forward(t->student, t->inputs, B, T)) return -1;
    const float *logits = tern_train_logits(t->student);
    memset(t->d_logits, 0, (size_t)BT * c->vocab_size * 4);
    double ce = tern_loss_cross_entropy(logits, t->targets, BT, c->vocab_size, o->ce_weight * scale, t->d_logits);
    double kd = 0, off = 0;
    if (o->kd_weight > 0)
        kd = tern_loss_kl(logits, tern_train_logits(t->teacher), BT, c->vocab_size, to->kd_tau, o->kd_weight * scale,
                          t->d_logits);
    if (o->off_weight > 0)
        for (int l = 0; l < L; l++) {
            memset(t->d_hidden[l], 0, (size_t)BT * c->dim * 4);
            // Averaged over layers so the weight does not grow with depth.
            off += tern_loss_cosine(tern_train_hidden(t->student, l), tern_train_hidden(t->teacher, l), BT, c->dim,
                                    o->off_weight * scale / L, t->d_hidden[l]);
        }
    if (tern_train_backward(t->student, t->d_logits, (const float *const *)t->d_hidden)) return -1;
    // Losses come back weighted and scaled; report them unweighted per
    // component (still scaled: their sum over micro-batches and ranks is the mean).
    acc->ce += o->ce_weight > 0 ? ce / o->ce_weight : 0;
    acc->kd += o->kd_weight > 0 ? kd / o->kd_weight : 0;
    acc->off += o->off_weight > 0 ? off / o->off_weight : 0;
    acc->loss += (ce + kd + off);
    return 0;
}

// Mean loss of the first validation sequences. Ranks score every ranks-th
// one; the per-sequence losses are exchanged (each slot is one rank's value
// plus exact zeros) and added in sequence order, so the result has the same
// bits with any rank count.
static double validation_loss(trainer *t) {
    const tern_train_opts *o = t->o;
    int T = o->seq_len, n = (int)(t->data.n_val < o->val_batches * o->batch ? t->data.n_val : o->val_batches * o->batch);
    if (n <= 0) return NAN;
    double *each = calloc((size_t)n, sizeof *each), total = 0;
    if (!each) return NAN;
    for (int i = t->rank; i < n; i += t->ranks) {
        tern_dataset_val(&t->data, i, t->inputs, t->targets);
        each[i] = tern_train_forward(t->student, t->inputs, 1, T)
                      ? NAN
                      : tern_loss_cross_entropy(tern_train_logits(t->student), t->targets, T, t->m->cfg.vocab_size,
                                                1.0f, NULL);
    }
    if (tern_dist_sum_f64(each, n)) total = NAN;
    for (int i = 0; i < n; i++) total += each[i];
    free(each);
    return total / n;
}

// The data-parallel end of a step: every trainable gradient and the step's
// losses summed over the ranks (fixed order, the same bits on every rank),
// and a stop request (Ctrl-C, SIGTERM) seen by any rank agreed by all.
static int sync_step(trainer *t, step_losses *sl) {
    t->stop = stop_requested;
    if (t->ranks == 1) return 0;
    int64_t n = moments_count(&t->opt);
    if (n > t->grad_sum_cap) {
        tern_free(t->grad_sum);
        if (!(t->grad_sum = tern_alloc((size_t)n * sizeof(float)))) return tern_errorf("out of memory");
        t->grad_sum_cap = n;
    }
    int64_t off = 0;
    for (int i = 0; i < t->opt.n_slots; i++) {
        memcpy(t->grad_sum + off, t->opt.slots[i].grad, (size_t)t->opt.slots[i].n * sizeof(float));
        off += t->opt.slots[i].n;
    }
    double v[5] = {sl->loss, sl->ce, sl->kd, sl->off, t->stop ? 1.0 : 0.0};
    if (tern_dist_sum_f32(t->grad_sum, n) || tern_dist_sum_f64(v, 5)) return -1;
    off = 0;
    for (int i = 0; i < t->opt.n_slots; i++) {
        memcpy((float *)t->opt.slots[i].grad, t->grad_sum + off, (size_t)t->opt.slots[i].n * sizeof(float));
        off += t->opt.slots[i].n;
    }
    *sl = (step_losses){v[0], v[1], v[2], v[3]};
    t->stop = v[4] > 0;
    return 0;
}

// --check-sync K: every K steps the ranks compare a checksum of everything
// the optimizer updates. TERN_TEST_DESYNC_STEP=S (tests only) moves one
// parameter of the last rank at step S, to show the check fails.
static int check_sync(trainer *t) {
    int every = t->o->sync_check_every;
    if (every <= 0 || t->pos.step % every) return 0;
    const char *desync = getenv("TERN_TEST_DESYNC_STEP");
    if (desync && atoll(desync) == t->pos.step && t->rank == t->ranks - 1 && t->opt.n_slots)
        t->opt.slots[0].param[0] += 1.0f;
    uint64_t h = 0;
    for (int i = 0; i < t->opt.n_slots; i++)
        h = tern_hash64(t->opt.slots[i].param, (size_t)t->opt.slots[i].n * sizeof(float), h);
    char what[80];
    snprintf(what, sizeof what, "the parameter checksum at step %lld", (long long)t->pos.step);
    return tern_dist_check_same(h, what);
}

// An int chosen on rank 0 (a step count sized from its clock), for every rank.
static int from_rank0(int v) {
    tern_dist_bcast(&v, sizeof v);
    return v;
}

static void trainer_free(trainer *t) {
    if (t->d_hidden)
        for (int l = 0; l < t->m->cfg.n_layers; l++) tern_free(t->d_hidden[l]);
    free(t->d_hidden);
    free(t->inputs);
    free(t->targets);
    tern_free(t->d_logits);
    tern_free(t->grad_sum);
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

// A stop request: one process sees its own at once; the ranks of a job act
// on the one they agreed at the step's exchange (sync_step).
static int stopping(trainer *t) {
    if (t->ranks == 1) t->stop = stop_requested;
    return t->stop;
}

// Rank 0 writes the checkpoint; the ranks agree it was written (a failure
// stops every rank).
static int maybe_checkpoint(trainer *t, int at_end) {
    const tern_train_opts *o = t->o;
    int rc = 0;
    if (o->checkpoint_path && ((o->checkpoint_every > 0 && t->pos.step % o->checkpoint_every == 0) || at_end))
        rc = tern_dist_agree(t->rank == 0 ? save_checkpoint(t) : 0);
    if (stopping(t) && rc == 0)
        rc = tern_errorf("interrupted at step %lld; checkpoint %s; continue with --resume", (long long)t->pos.step,
                         o->checkpoint_path ? o->checkpoint_path : "(none)");
    return rc;
}

// ---- Budget: phase sizes from probes timed on the fly ----

// Zeroes every gradient the optimizer reads (the model's and the method's).
static void zero_all_grads(trainer *t) {
    tern_train_zero_grad(t->student);
    for (int i = 0; i < t->opt.n_slots; i++)
        memset((float *)t->opt.slots[i].grad, 0, (size_t)t->opt.slots[i].n * sizeof(float));
}

// Seconds of one end-to-end optimizer step (forward and backward of every
// micro-batch, the teacher's forward, the ranks' exchange): two micro-steps
// and an exchange timed, their gradients dropped and the data position restored.
static double probe_e2e(trainer *t, const loss_weights *lw) {
    int64_t epoch = t->data.epoch, cursor = t->data.cursor;
    step_losses sl = {0};
    double best = INFINITY;
    for (int k = 0; k < 2; k++) {
        double t0 = tern_now_sec();
        if (micro_step(t, lw, &sl)) return NAN;
        double dt = tern_now_sec() - t0;
        if (dt < best) best = dt;
    }
    double t0 = tern_now_sec(); // and the ranks' exchange (none for one process)
    if (sync_step(t, &sl)) return NAN;
    double exchange = tern_now_sec() - t0;
    zero_all_grads(t);
    tern_dataset_seek(&t->data, epoch, cursor);
    return best * t->o->grad_accum + exchange;
}

// Steps of `step_s` seconds that fit before the deadline (5% kept for the
// final validation and writing), at least 1.
static int steps_left(const trainer *t, double step_s) {
    double left = 0.95 * (t->deadline - tern_now_sec());
    double n = step_s > 0 ? left / step_s : 1;
    return n < 1 ? 1 : n > 1e9 ? 1000000000 : (int)n;
}

// The log's data-parallel fields: ranks, and rank 0's cumulative time and
// bytes sent in the exchanges ("" for one process).
static const char *comm_fields(const trainer *t, char *buf, size_t cap) {
    if (t->ranks == 1) return "";
    snprintf(buf, cap, ", \"ranks\": %d, \"comm_s\": %.3f, \"comm_bytes\": %lld", t->ranks, tern_dist_comm_seconds(),
             (long long)tern_dist_bytes_sent());
    return buf;
}

// End-to-end steps [first, first + n) of the run (the whole run, or the
// E2E-QP phase after block-wise), with their own schedule.
// With a budget (plan != NULL: the plan entry that holds n_steps), the step
// count is re-planned from the measured pace, validation included, every 10
// steps in the first half of the run: the probe before training sees one
// moment of a machine whose speed drifts. The schedule stretches or shrinks
// with it (a small jump in the learning rate); the second half keeps its plan.
static int run_e2e(trainer *t, tern_train_report *report, double *val, int64_t first, int n_steps, int *plan,
                   const loss_weights *lw, float lr0, const char *label) {
    const tern_train_opts *o = t->o;
    const tern_train_method *method = t->method;
    tern_schedule sched = o->sched;
    sched.total_steps = n_steps;
    int64_t tokens_per_step = (int64_t)o->batch * o->seq_len * o->grad_accum, end = first + n_steps;
    double t0 = tern_now_sec();
    int64_t start_step = t->pos.step;
    int rc = 0;
    tern_progress bar;
    tern_progress_begin(&bar, label, "step", n_steps);
    if (t->pos.step > first) tern_progress_update(&bar, t->pos.step - first, "resumed");
    while (t->pos.step < end && rc == 0) {
        int step = (int)(t->pos.step - first);
        tern_train_zero_grad(t->student);
        step_losses sl = {0};
        for (int k = 0; k < o->grad_accum && rc == 0; k++) rc = micro_step(t, lw, &sl);
        if (rc || (rc = sync_step(t, &sl))) break;
        double gnorm = tern_clip_grad_norm(&t->opt, o->clip);
        float lr_factor = tern_schedule_factor(&sched, step);
        tern_adamw_step(&t->opt, lr_factor);
        t->pos.step++;
        t->pos.tokens += tokens_per_step;
        if ((rc = check_sync(t))) break;
        char extra[1024] = "";
        if (method && method->after_step) method->after_step(method->ctx, t->student, (int)t->pos.step - 1, extra, sizeof extra);
        int do_val = o->val_every > 0 && ((t->pos.step - first) % o->val_every == 0 || t->pos.step == end);
        if (do_val) *val = validation_loss(t);
        double elapsed = tern_now_sec() - t0;
        double tok_s = (double)(t->pos.step - start_step) * tokens_per_step / (elapsed + 1e-9);
        char fields[2048];
        int n = snprintf(fields, sizeof fields,
                         "\"step\": %lld, \"loss\": %.6f, \"ce\": %.6f, \"kd\": %.6f, \"off\": %.6f, \"lr\": %.6g, "
                         "\"grad_norm\": %.6g, \"tokens\": %lld, \"tok_s\": %.1f, \"elapsed\": %.2f%s",
                         (long long)t->pos.step, sl.loss, sl.ce, sl.kd, sl.off, lr0 * lr_factor, gnorm,
                         (long long)t->pos.tokens, tok_s, elapsed, comm_fields(t, (char[160]){0}, 160));
        if (do_val && *val == *val) n += snprintf(fields + n, sizeof fields - (size_t)n, ", \"val_loss\": %.6f", *val);
        snprintf(fields + n, sizeof fields - (size_t)n, "%s", extra);
        log_line(t, fields);
        char line[160];
        snprintf(line, sizeof line, "loss %.4f val %.4f lr %.2e %.0f tok/s", sl.loss, *val, lr0 * lr_factor, tok_s);
        tern_progress_update(&bar, t->pos.step - first, line);
        report->final_loss = sl.loss;
        int64_t done = t->pos.step - start_step;
        if (plan && t->deadline > 0 && done >= 10 && done % 10 == 0 && 2 * (t->pos.step - first) < n_steps) {
            int planned = from_rank0((int)(t->pos.step - first) + steps_left(t, (tern_now_sec() - t0) / (double)done));
            if (abs(planned - n_steps) > n_steps / 20) {
                fprintf(stderr, "%sbudget: %.1f s per step measured, %d steps instead of %d\n", bar.tty ? "\n" : "",
                        (tern_now_sec() - t0) / (double)done, planned, n_steps);
                n_steps = *plan = planned;
                sched.total_steps = n_steps;
                end = first + n_steps;
                bar.total = n_steps;
            }
        }
        rc = maybe_checkpoint(t, t->pos.step == end || stopping(t));
    }
    tern_progress_end(&bar);
    return rc;
}

// Runs block `layer` of `tm` over all P sequences of x (in place). With a
// target, *mse receives the mean squared error of the outputs against it.
static int advance_stream(tern_train_model *tm, int layer, float *x, int P, int B, int T, int D, float *tmp,
                          const float *target, double *mse) {
    double e = 0;
    for (int p = 0; p < P; p += B) {
        float *xp = x + (size_t)p * T * D;
        size_t n = (size_t)B * T * D;
        if (tern_train_block_forward(tm, layer, xp, B, T, tmp)) return -1;
        if (target) e += tern_loss_mse(tmp, target + (size_t)p * T * D, B * T, D, 1.0f, NULL) * (double)n;
        memcpy(xp, tmp, n * sizeof(float));
    }
    if (mse) *mse = e / ((double)P * T * D);
    return 0;
}

// Mean squared error of block `layer` of `tm` on x against target (x unchanged).
static int block_error(tern_train_model *tm, int layer, const float *x, const float *target, int P, int B, int T,
                       int D, float *tmp, double *mse) {
    double e = 0;
    for (int p = 0; p < P; p += B) {
        size_t o = (size_t)p * T * D;
        if (tern_train_block_forward(tm, layer, x + o, B, T, tmp)) return -1;
        e += tern_loss_mse(tmp, target + o, B * T, D, 1.0f, NULL) * (double)B * T * D;
    }
    *mse = e / ((double)P * T * D);
    return 0;
}

// Steps per block: --epochs passes over the pool, or --steps split evenly.
static int block_steps(const tern_train_opts *o, int P, int L) {
    return o->epochs > 0 ? (int)(((int64_t)o->epochs * P + o->batch - 1) / o->batch) : (o->steps + L - 1) / L;
}

// The calibration pool size the block-wise phase uses.
static int pool_size(const trainer *t) {
    const tern_train_opts *o = t->o;
    int P = o->calib_seqs > 0 ? o->calib_seqs : 128;
    if (P > t->data.n_train) P = (int)t->data.n_train;
    return P / o->batch * o->batch;
}

// Block-wise reconstruction (EfficientQAT's Block-AP): a fixed calibration
// pool; for each block, the FP teacher's output on the teacher stream is the
// target, the student block (quantized through the hook; its linears, norms
// and method parameters train) learns it from the student stream, the output
// of the blocks already quantized, then both streams advance one block. Each
// block gets a fresh optimizer and its own schedule; its error on the pool is
// logged before and after.
static int run_blockwise(trainer *t, tern_train_report *report, int64_t *steps_total) {
    const tern_train_opts *o = t->o;
    const tern_config *c = &t->m->cfg;
    int B = o->batch, Bl = t->local_batch, T = o->seq_len, D = c->dim, L = c->n_layers, P = pool_size(t);
    if (P < B) return tern_errorf("block-wise: the data has %lld training sequences, fewer than one batch of %d",
                                  (long long)t->data.n_train, B);
    int steps_per_block = t->plan.steps_per_block;
    if (!steps_per_block && t->deadline > 0) { // the budget: time a step of block 0 on the pool
        float *xb = tern_alloc((size_t)B * T * D * 4), *gb = tern_alloc((size_t)B * T * D * 4);
        int *tk = malloc((size_t)B * T * sizeof(int)), *un = malloc((size_t)B * T * sizeof(int));
        double best = INFINITY;
        int rc = xb && gb && tk && un && build_optimizer(t, 0) == 0 ? 0 : -1;
        if (rc == 0) {
            int64_t epoch = t->data.epoch, cursor = t->data.cursor;
            tern_dataset_seek(&t->data, 0, 0);
            tern_dataset_next(&t->data, B, tk, un);
            tern_dataset_seek(&t->data, epoch, cursor);
            const float *table = tern_train_param(t->teacher, 0, NULL); // token_embd comes first
            for (int i = 0; i < B * T; i++) memcpy(xb + (size_t)i * D, table + (size_t)tk[i] * D, (size_t)D * 4);
            for (int k = 0; k < 2 && rc == 0; k++) {
                double t0 = tern_now_sec();
                rc = tern_train_block_forward(t->student, 0, xb, Bl, T, gb);
                for (size_t i = 0; rc == 0 && i < (size_t)Bl * T * D; i++) gb[i] = 1e-3f;
                if (rc == 0) rc = tern_train_block_backward(t->student, 0, gb, gb);
                step_losses sl = {0};
                if (rc == 0) rc = sync_step(t, &sl); // the ranks' exchange (none for one process)
                double dt = tern_now_sec() - t0;
                if (dt < best) best = dt;
            }
            zero_all_grads(t);
        }
        tern_free(xb), tern_free(gb), free(tk), free(un);
        if (rc) return -1;
        // A block costs its steps plus three forwards of the pool (teacher
        // stream, error before, student stream): about P/B steps' worth.
        double share = (o->qp_steps > 0 || o->e2e_steps > 0 ? o->block_frac : 1.0) * (t->deadline - tern_now_sec());
        double n = share / ((double)L * best) - (double)P / B;
        steps_per_block = from_rank0(n < 1 ? 1 : n > 1e7 ? 10000000 : (int)n);
        fprintf(stderr, "budget: %.1f s per block step, %d steps per block (%.2f epochs of %d sequences)\n", best,
                steps_per_block, (double)steps_per_block * B / P, P);
    }
    if (!steps_per_block) steps_per_block = block_steps(o, P, L);
    t->plan.steps_per_block = steps_per_block;
    report->steps_per_block = steps_per_block;
    *steps_total = (int64_t)steps_per_block * L;
    int64_t done_steps = 0;
    if (o->resume) { // where the checkpoint stands (loaded in full below, once its optimizer exists)
        tern_ckpt ck;
        if (tern_ckpt_load(&ck, o->checkpoint_path)) return -1;
        const run_position *p = tern_ckpt_get(&ck, "position", sizeof *p, NULL);
        done_steps = p ? p->step : -1;
        if (p) t->pos = *p;
        tern_ckpt_close(&ck);
        if (done_steps < 0) return -1;
    }
    // Resumed after the last block: its weights now (its checkpoint holds
    // block L-1's optimizer); inside the phase after it, that phase loads them.
    if (done_steps == *steps_total) return build_optimizer(t, L - 1) || load_checkpoint(t) ? -1 : 0;
    if (done_steps > *steps_total) return 0;
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
    int64_t epoch = t->data.epoch, cursor = t->data.cursor;
    tern_dataset_seek(&t->data, 0, 0);
    tern_dataset_next(&t->data, P, pool, unused);
    tern_dataset_seek(&t->data, epoch, cursor);
    int embd = -1;
    for (int i = 0; i < tern_train_n_params(t->teacher); i++)
        if (!strcmp(tern_train_param_name(t->teacher, i), "token_embd.weight")) embd = i;
    const float *table = tern_train_param(t->teacher, embd, NULL);
    for (size_t i = 0; i < (size_t)P * T; i++) memcpy(xs + i * D, table + (size_t)pool[i] * D, (size_t)D * 4);
    memcpy(xt, xs, stream * 4);

    int start_block = (int)(done_steps / steps_per_block), start_k = (int)(done_steps % steps_per_block);
    // Resumed: the checkpoint's weights first, then both streams rebuilt up
    // to the current block through them (deterministic).
    // A checkpoint at a block's end holds that block's optimizer; the next
    // block then starts afresh (new optimizer, error measured), as uninterrupted.
    int mid_block = start_k > 0;
    rc = 0;
    if (o->resume && done_steps > 0)
        rc = build_optimizer(t, mid_block ? start_block : start_block - 1) || load_checkpoint(t) ? -1 : 0;
    for (int l = 0; l < start_block && rc == 0; l++)
        if (advance_stream(t->student, l, xs, P, B, T, D, out, NULL, NULL) ||
            advance_stream(t->teacher, l, xt, P, B, T, D, out, NULL, NULL))
            rc = -1;
    tern_progress bar;
    tern_progress_begin(&bar, t->method ? t->method->name : "blockwise", "step", *steps_total);
    double t0 = tern_now_sec();
    int64_t first = t->pos.step;
    for (int l = start_block; l < L && rc == 0; l++) {
        memcpy(yt, xt, stream * 4);
        if ((rc = advance_stream(t->teacher, l, yt, P, B, T, D, out, NULL, NULL))) break;
        int resumed = l == start_block && o->resume && mid_block;
        if (!resumed && (rc = build_optimizer(t, l))) break;
        double mse_init = NAN, mse_final = NAN;
        if (!resumed && (rc = block_error(t->student, l, xs, yt, P, B, T, D, out, &mse_init))) break;
        tern_schedule sched = o->sched;
        sched.total_steps = steps_per_block;
        for (int k = (l == start_block ? start_k : 0); k < steps_per_block && rc == 0; k++) {
            // This rank's share of the step's B pool sequences; its loss
            // weighted 1/ranks, so the sum over the ranks is the batch mean.
            size_t b0 = (size_t)((int64_t)k * B % P + t->first) * T * D;
            float w = 1.0f / (float)t->ranks;
            tern_train_zero_grad(t->student);
            if ((rc = tern_train_block_forward(t->student, l, xs + b0, Bl, T, out))) break;
            memset(dout, 0, batch * 4);
            step_losses sl = {0};
            sl.loss = o->block_loss == TERN_BLOCK_LOSS_COS ? tern_loss_cosine(out, yt + b0, Bl * T, D, w, dout)
                                                           : tern_loss_mse(out, yt + b0, Bl * T, D, w, dout);
            if ((rc = tern_train_block_backward(t->student, l, dout, din)) || (rc = sync_step(t, &sl))) break;
            double loss = sl.loss;
            double gnorm = tern_clip_grad_norm(&t->opt, o->clip);
            float lr_factor = tern_schedule_factor(&sched, k);
            tern_adamw_step(&t->opt, lr_factor);
            t->pos.step++;
            t->pos.tokens += (int64_t)B * T;
            if ((rc = check_sync(t))) break;
            char extra[1024] = "";
            if (t->method && t->method->after_step)
                t->method->after_step(t->method->ctx, t->student, (int)t->pos.step - 1, extra, sizeof extra);
            double elapsed = tern_now_sec() - t0;
            char fields[2000];
            snprintf(fields, sizeof fields,
                     "\"step\": %lld, \"block\": %d, \"%s\": %.8g, \"lr\": %.6g, \"grad_norm\": %.6g, "
                     "\"tokens\": %lld, \"tok_s\": %.1f, \"elapsed\": %.2f%s%s",
                     (long long)t->pos.step, l, o->block_loss == TERN_BLOCK_LOSS_COS ? "cos" : "mse", loss,
                     o->lr * lr_factor, gnorm, (long long)t->pos.tokens,
                     (double)(t->pos.step - first) * B * T / (elapsed + 1e-9), elapsed,
                     comm_fields(t, (char[160]){0}, 160), extra);
            log_line(t, fields);
            char line[120];
            snprintf(line, sizeof line, "block %d/%d %s %.3g", l + 1, L,
                     o->block_loss == TERN_BLOCK_LOSS_COS ? "cos" : "mse", loss);
            tern_progress_update(&bar, t->pos.step, line);
            report->final_loss = loss;
            rc = maybe_checkpoint(t, k + 1 == steps_per_block || stopping(t));
        }
        // The student stream passes through the trained (quantized) block.
        if (rc == 0) rc = advance_stream(t->student, l, xs, P, B, T, D, out, yt, &mse_final);
        if (rc == 0) {
            char fields[256];
            snprintf(fields, sizeof fields, "\"block\": %d, \"block_mse_init\": %.8g, \"block_mse_final\": %.8g",
                     l, mse_init, mse_final);
            log_line(t, fields);
        }
        memcpy(xt, yt, stream * 4);
    }
    tern_progress_end(&bar);
done:
    tern_free(xs), tern_free(xt), tern_free(yt), tern_free(out), tern_free(dout), tern_free(din);
    free(pool), free(unused);
    return rc;
}

// The last "loss" and "val_loss" values in a JSONL log (left as they are
// when absent).
static void last_logged(const char *path, double *loss, double *val) {
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return;
    char line[1 << 14];
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"loss\": "), *v = strstr(line, "\"val_loss\": ");
        if (p) *loss = atof(p + 8);
        if (v) *val = atof(v + 12);
    }
    fclose(f);
}

int tern_train_run(tern_model *m, const tern_tokenizer *tok, const tern_train_opts *o,
                   const tern_train_method *method, tern_train_report *report) {
    trainer t = {.o = o, .method = method, .m = m, .rank = tern_dist_rank(), .ranks = tern_dist_size()};
    t.local_batch = o->batch / t.ranks;
    t.first = t.rank * t.local_batch;
    memset(report, 0, sizeof *report);
    double t0 = tern_now_sec(), val = NAN;
    t.deadline = o->budget_s > 0 ? t0 + o->budget_s : 0;
    // Every rank sets up alike; a failure on any one (a file missing on its
    // machine) stops them all here, with its message on rank 0.
    t.in_setup = 1;
    int rc = tern_dist_agree(setup(&t, m, tok));
    t.in_setup = 0;
    if (rc == 0) rc = share_trainable(&t);
    if (rc == 0) {
        stop_requested = 0;
        void (*old_int)(int) = signal(SIGINT, on_signal), (*old_term)(int) = signal(SIGTERM, on_signal);
        if (o->mode == TERN_TRAIN_BLOCKWISE) {
            int64_t block_total = 0;
            rc = run_blockwise(&t, report, &block_total);
            int qp = o->qp_steps > 0;
            if (rc == 0 && (qp || o->e2e_steps > 0)) { // E2E-QP, or end-to-end QAT of everything
                train_phase ph = qp ? PHASE_QP : PHASE_ALL;
                float kd = o->kd_weight > 0 ? o->kd_weight : 1.0f;
                loss_weights lw = {qp ? 0.0f : o->ce_weight, kd, 0.0f};
                const char *label = qp ? "e2e-qp" : "e2e";
                int resumed = o->resume && t.pos.step > block_total;
                rc = build_optimizer(&t, ph);
                if (rc == 0 && resumed) rc = load_checkpoint(&t);
                if (rc == 0 && !t.plan.final_steps) {
                    t.plan.final_steps = qp ? o->qp_steps : o->e2e_steps;
                    if (t.deadline > 0) {
                        double step_s = probe_e2e(&t, &lw);
                        t.plan.final_steps = from_rank0(steps_left(&t, step_s));
                        fprintf(stderr, "budget: %.1f s per %s step, %d steps\n", step_s, label, t.plan.final_steps);
                    }
                }
                report->final_steps = t.plan.final_steps;
                if (rc == 0)
                    rc = run_e2e(&t, report, &val, block_total, t.plan.final_steps, &t.plan.final_steps, &lw,
                                 qp ? o->qp_lr : o->lr, label);
                report->final_steps = t.plan.final_steps;
            }
            if (rc == 0) val = validation_loss(&t); // the whole quantized model on held-out data
        } else {
            loss_weights lw = {o->ce_weight, o->kd_weight, o->off_weight};
            if (!t.plan.steps) {
                t.plan.steps = o->steps;
                if (t.deadline > 0) {
                    double step_s = probe_e2e(&t, &lw);
                    t.plan.steps = from_rank0(steps_left(&t, step_s));
                    fprintf(stderr, "budget: %.1f s per step, %d steps\n", step_s, t.plan.steps);
                }
            }
            rc = run_e2e(&t, report, &val, 0, t.plan.steps, &t.plan.steps, &lw, o->lr, method ? method->name : "train");
        }
        signal(SIGINT, old_int);
        signal(SIGTERM, old_term);
    }
    // A resumed run that was already finished trains nothing: its figures are
    // the last ones its log recorded (and a fresh validation when it had none).
    if (rc == 0 && o->resume && report->final_loss == 0) {
        last_logged(o->log_path, &report->final_loss, &val);
        tern_dist_bcast(&val, sizeof val); // rank 0 has the log
        tern_dist_bcast(&report->final_loss, sizeof report->final_loss);
        if (val != val) val = validation_loss(&t);
    }
    if (rc == 0) rc = tern_train_export(t.student, m);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    report->steps_done = (int)t.pos.step;
    report->final_val_loss = val;
    report->tokens = t.pos.tokens;
    report->seconds = tern_now_sec() - t0;
    report->peak_rss_kb = ru.ru_maxrss;
    report->ranks = t.ranks;
    report->comm_seconds = tern_dist_comm_seconds();
    report->comm_bytes = tern_dist_bytes_sent();
    trainer_free(&t);
    return rc;
}
