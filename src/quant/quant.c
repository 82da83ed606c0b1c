// Method registry, per-model state, and the adapter from a tern_quant_method to
// the trainer's tern_train_method (weight hook, trainable set, optimizer
// parameters, checkpoint state, after-step diagnostics).
#include "quant/quant.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/mem.h"

static const tern_quant_method *const methods[] = {&tern_quant_absmean, &tern_quant_twn, &tern_quant_tequila,
                                                   &tern_quant_dlt,     &tern_quant_teq, &tern_quant_rtn,
                                                   &tern_quant_uniform};

const tern_quant_method *tern_quant_find(const char *name) {
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (name && !strcmp(methods[i]->name, name)) return methods[i];
    return NULL;
}

const char *tern_quant_names(void) { return "absmean, twn, tequila, dlt, teq, rtn, uniform"; }

void tern_quant_opts_defaults(tern_quant_opts *o) {
    memset(o, 0, sizeof *o);
    o->bits = 4;
    o->group = 128;
    o->lambda = 1e-3f;
    o->lsq_scale = 0; // off by default: the ablation in docs/methods.md measured it slower to train
    o->inner = "rtn";
    o->diag_window = 20;
    o->diag_every = 50;
    o->damp = 0.01f;
}

static const char *const lin_names[TERN_LIN_COUNT] = {"attn_q",  "attn_k", "attn_v",  "attn_output",
                                                      "ffn_gate", "ffn_up", "ffn_down"};

void tern_quant_linear_name(int id, char *buf, size_t cap) {
    snprintf(buf, cap, "blk.%d.%s.weight", id / TERN_LIN_COUNT, lin_names[id % TERN_LIN_COUNT]);
}

// Linear id of a parameter name, or -1 when it is not a block linear weight.
static int linear_id_of(const char *name, int n_layers) {
    int layer, len = 0;
    char kind[32];
    if (sscanf(name, "blk.%d.%31[a-z_].weight%n", &layer, kind, &len) != 2 || name[len] || layer < 0 ||
        layer >= n_layers)
        return -1;
    for (int k = 0; k < TERN_LIN_COUNT; k++)
        if (!strcmp(kind, lin_names[k])) return layer * TERN_LIN_COUNT + k;
    return -1;
}

// ---- Hook and trainer adapter ----

int tern_quant_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra) {
    if (id < 0 || id >= q->n_lin) return tern_errorf("quant: linear %d out of range", id);
    *has_extra = 0;
    return q->lin[id].m->effective(q, id, w, w_eff, extra, has_extra);
}

int tern_quant_backward(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra,
                        float *d_w) {
    if (id < 0 || id >= q->n_lin) return tern_errorf("quant: linear %d out of range", id);
    return q->lin[id].m->backward(q, id, w, d_w_eff, d_extra, d_w);
}

static int hook_effective(void *ctx, int id, const float *w, int out, int in, float *w_eff, float *extra,
                          int *has_extra) {
    tern_quant *q = ctx;
    if (id < 0 || id >= q->n_lin || q->lin[id].out != out || q->lin[id].in != in)
        return tern_errorf("quant: linear %d is %dx%d, the method was set up for another shape", id, out, in);
    return tern_quant_effective(q, id, w, w_eff, extra, has_extra);
}

static int hook_backward(void *ctx, int id, const float *w, int out, int in, const float *d_w_eff,
                         const float *d_extra, float *d_w) {
    tern_quant *q = ctx;
    if (id < 0 || id >= q->n_lin || q->lin[id].out != out || q->lin[id].in != in)
        return tern_errorf("quant: linear %d is %dx%d, the method was set up for another shape", id, out, in);
    return tern_quant_backward(q, id, w, d_w_eff, d_extra, d_w);
}

// Only block linears train, and only for methods that train latent weights.
// TEQ keeps its weights frozen; its hook sets backward_when_frozen so the
// engine still hands it dL/dw_eff for its scales.
static int train_is_trainable(void *ctx, const char *name) {
    tern_quant *q = ctx;
    int id = linear_id_of(name, q->cfg.n_layers);
    return id >= 0 && q->lin[id].m->trains && q->lin[id].m->trains_weights;
}

// Parameters are laid out in linear-id order, so one block's are contiguous.
static void layer_param_range(const tern_quant *q, int layer, int64_t *begin, int64_t *end) {
    *begin = q->n_params, *end = 0;
    for (int id = layer * TERN_LIN_COUNT; id < (layer + 1) * TERN_LIN_COUNT; id++)
        if (q->lin[id].p) {
            int64_t b = q->lin[id].p - q->params;
            if (b < *begin) *begin = b;
            if (b > *end) *end = b;
        }
    if (*begin > *end) {
        *begin = *end = 0;
        return;
    }
    // The last owner's block ends where the next layer's begins (or at the end).
    int64_t next = q->n_params;
    for (int id = (layer + 1) * TERN_LIN_COUNT; id < q->n_lin; id++)
        if (q->lin[id].p) {
            next = q->lin[id].p - q->params;
            break;
        }
    *end = next;
}

static int train_add_params(void *ctx, tern_adamw *opt, int group, int layer) {
    tern_quant *q = ctx;
    if (!q->method->trains_weights) {
        // TEQ: only s trains, with its own betas (0.9, 0.9).
        tern_adamw_hparams h = opt->groups[group];
        h.beta1 = 0.9f, h.beta2 = 0.9f, h.weight_decay = 0.0f;
        group = tern_adamw_add_group(opt, h);
        if (group < 0) return tern_errorf("quant: no optimizer group left");
    }
    int64_t b = 0, e = q->n_params;
    if (layer >= 0 && layer < q->cfg.n_layers) layer_param_range(q, layer, &b, &e);
    if (e <= b) return 0;
    return tern_adamw_add(opt, q->params + b, q->grads + b, e - b, group);
}

static int train_save_state(void *ctx, tern_ckpt_section *secs, int max) {
    tern_quant *q = ctx;
    int n = 0;
    if (max < 4) return tern_errorf("quant: no checkpoint sections left");
    if (q->n_params) secs[n++] = (tern_ckpt_section){"quant_params", q->params, (uint64_t)q->n_params * 4};
    if (q->diag.T) {
        secs[n++] = (tern_ckpt_section){"quant_codes", q->diag.T, (uint64_t)q->diag.n};
        secs[n++] = (tern_ckpt_section){"quant_age", q->diag.age, (uint64_t)q->diag.n * 2};
        secs[n++] = (tern_ckpt_section){"quant_observed", &q->diag.observed, 8};
    }
    return n;
}

static int train_load_state(void *ctx, const tern_ckpt *ck) {
    tern_quant *q = ctx;
    const void *p;
    if (q->n_params) {
        if (!(p = tern_ckpt_get(ck, "quant_params", (uint64_t)q->n_params * 4, NULL))) return -1;
        memcpy(q->params, p, (size_t)q->n_params * 4);
    }
    if (q->diag.T) {
        if (!(p = tern_ckpt_get(ck, "quant_codes", (uint64_t)q->diag.n, NULL))) return -1;
        memcpy(q->diag.T, p, (size_t)q->diag.n);
        if (!(p = tern_ckpt_get(ck, "quant_age", (uint64_t)q->diag.n * 2, NULL))) return -1;
        memcpy(q->diag.age, p, (size_t)q->diag.n * 2);
        if (!(p = tern_ckpt_get(ck, "quant_observed", 8, NULL))) return -1;
        memcpy(&q->diag.observed, p, 8);
    }
    return 0;
}

typedef struct {
    tern_quant *q;
    tern_train_model *tm;
} tm_weights;

static const float *weights_from_tm(void *ctx, int id) {
    tm_weights *c = ctx;
    int *idx = c->q->diag.param_idx;
    if (idx[id] < 0) {
        char name[TERN_NAME_MAX];
        tern_quant_linear_name(id, name, sizeof name);
        for (int i = 0; i < tern_train_n_params(c->tm); i++)
            if (!strcmp(tern_train_param_name(c->tm, i), name)) idx[id] = i;
        if (idx[id] < 0) return NULL;
    }
    int64_t n;
    return tern_train_param(c->tm, idx[id], &n);
}

static int train_init_params(void *ctx, tern_train_model *tm) {
    tern_quant *q = ctx;
    if (!q->latent) return 0;
    char name[TERN_NAME_MAX];
    for (int id = 0; id < q->n_lin; id++) {
        if (!q->latent[id]) continue;
        tern_quant_linear_name(id, name, sizeof name);
        int64_t n = 0;
        float *p = NULL;
        for (int i = 0; i < tern_train_n_params(tm) && !p; i++)
            if (!strcmp(tern_train_param_name(tm, i), name)) p = tern_train_param(tm, i, &n);
        if (!p || n != (int64_t)q->lin[id].out * q->lin[id].in)
            return tern_errorf("quant: the training model has no %s of the method's shape", name);
        memcpy(p, q->latent[id], (size_t)n * 4);
    }
    return 0;
}

static void train_after_step(void *ctx, tern_train_model *tm, int step, char *log_json, size_t cap) {
    tern_quant *q = ctx;
    // The optimizer has consumed the method gradients: start the next step at 0.
    if (q->n_params) memset(q->grads, 0, (size_t)q->n_params * 4);
    if (q->diag.T) {
        tm_weights c = {q, tm};
        tern_quant_diag_update(q, weights_from_tm, &c, step, log_json, cap);
    }
}

// ---- Creation ----

static int check_opts(const tern_quant_method *me, const tern_quant_opts *o) {
    if (o->group != -1 && (o->group < 1 || o->group > (1 << 20)))
        return tern_errorf("--group must be -1 (per row) or in [1, %d], got %d", 1 << 20, o->group);
    if (o->diag_window < 1 || o->diag_window > 65535)
        return tern_errorf("diagnostics window must be in [1, 65535], got %d", o->diag_window);
    return me->check ? me->check(o) : 0;
}

// --keep "PATTERN[:BITS],...": linears whose tensor name matches a glob
// pattern are held at BITS (default 4) with the uniform method. Every pattern
// must match some linear.
static int apply_keep(tern_quant *q, const tern_model *m) {
    const char *spec = q->opt.keep;
    if ((!spec || !*spec) && !q->opt.keep_bits) return 0;
    if (!q->method->ternary && q->method != &tern_quant_uniform && q->method != &tern_quant_rtn)
        return tern_errorf("--keep does not combine with %s (its scales are shared by linears that read one input)",
                           q->method->name);
    if (q->opt.keep_bits)
        for (int id = 0; id < q->n_lin; id++)
            if (q->opt.keep_bits[id]) q->lin[id].m = &tern_quant_uniform, q->lin[id].bits = q->opt.keep_bits[id];
    char name[TERN_NAME_MAX];
    for (const char *p = spec ? spec : ""; *p;) {
        const char *end = strchr(p, ','), *stop = end ? end : p + strlen(p);
        char pat[256];
        if ((size_t)(stop - p) >= sizeof pat || stop == p)
            return tern_errorf("--keep: empty or too long pattern in '%s'", spec);
        memcpy(pat, p, (size_t)(stop - p));
        pat[stop - p] = 0;
        int bits = 4;
        char *colon = strrchr(pat, ':');
        if (colon) {
            char *e;
            long b = strtol(colon + 1, &e, 10);
            if (*e || colon[1] == 0 || b < 2 || b > 8)
                return tern_errorf("--keep %s: bits must be an integer in [2, 8]", pat);
            bits = (int)b, *colon = 0;
        }
        int hits = 0;
        for (int id = 0; id < q->n_lin; id++) {
            tern_quant_linear_name(id, name, sizeof name);
            if (fnmatch(pat, name, 0) == 0) q->lin[id].m = &tern_quant_uniform, q->lin[id].bits = bits, hits++;
        }
        if (!hits)
            return tern_errorf("--keep %s matches no linear of %s (names look like blk.0.ffn_down.weight)", pat,
                               m->path);
        p = end ? end + 1 : stop;
    }
    return 0;
}

// Lays out every linear's shape and parameters (owners first, sharers point at them).
static int layout(tern_quant *q, const tern_model *m) {
    int64_t total = 0, *off = calloc((size_t)q->n_lin, sizeof *off);
    if (!off) return tern_errorf("out of memory");
    char name[TERN_NAME_MAX];
    for (int id = 0; id < q->n_lin; id++) {
        tern_quant_linear_name(id, name, sizeof name);
        const tern_tensor *t = tern_model_find(m, name);
        if (!t || t->ndim != 2) {
            free(off);
            return tern_errorf("quant: the model has no 2-D tensor %s", name);
        }
        tern_quant_linear *L = &q->lin[id];
        L->out = (int)t->shape[0], L->in = (int)t->shape[1];
        L->G = q->opt.group < 0 ? L->in : q->opt.group;
        // A row narrower than G is one (short) group, as the last group of
        // any row is (docs/format.md); said once per model.
        if (L->G > L->in && !q->narrow_note++)
            fprintf(stderr, "quant: note: %s has %d columns, fewer than --group %d: such rows are one group each\n",
                    name, L->in, q->opt.group);
        L->n_groups = (L->in + L->G - 1) / L->G;
        int share = -1;
        int64_t n = L->m->n_params ? L->m->n_params(q, id, &share) : 0;
        off[id] = n < 0 ? -2 - share : n > 0 ? total : -1; // -2-k: shares linear k's
        if (n > 0) total += n;
    }
    q->n_params = total;
    q->params = tern_alloc((size_t)(total ? total : 1) * 4);
    q->grads = tern_alloc((size_t)(total ? total : 1) * 4);
    if (!q->params || !q->grads) {
        free(off);
        return tern_errorf("out of memory for %lld quantizer parameters", (long long)total);
    }
    memset(q->grads, 0, (size_t)(total ? total : 1) * 4);
    for (int id = 0; id < q->n_lin; id++)
        if (off[id] >= 0) q->lin[id].p = q->params + off[id], q->lin[id].g = q->grads + off[id];
    for (int id = 0; id < q->n_lin; id++)
        if (off[id] <= -2) q->lin[id].p = q->lin[-2 - off[id]].p, q->lin[id].g = q->lin[-2 - off[id]].g;
    for (int id = 0; id < q->n_lin; id++)
        if (off[id] >= 0 && q->lin[id].m->init) {
            tern_quant_linear_name(id, name, sizeof name);
            q->lin[id].m->init(q, id, tern_model_find(m, name)->data);
        }
    free(off);
    return 0;
}

// Codes of the initial weights (so step 0 can count crossings) and ages "long ago".
static int diag_init(tern_quant *q, const tern_model *m) {
    tern_quant_diag *d = &q->diag;
    int64_t n = 0, nd = 0;
    for (int id = 0; id < q->n_lin; id++) {
        q->w_off[id] = n;
        n += (int64_t)q->lin[id].out * q->lin[id].in;
        int64_t g = (int64_t)q->lin[id].out * q->lin[id].n_groups;
        if (g > nd) nd = g;
    }
    d->n = n, d->n_delta = nd;
    d->T = tern_alloc((size_t)n);
    d->age = tern_alloc((size_t)n * 2);
    d->delta = tern_alloc((size_t)nd * 4);
    d->param_idx = malloc((size_t)q->n_lin * sizeof(int));
    if (!d->T || !d->age || !d->delta || !d->param_idx) return tern_errorf("out of memory for the diagnostics");
    char name[TERN_NAME_MAX];
    memset(d->T, 0, (size_t)n);
    for (int id = 0; id < q->n_lin; id++) {
        d->param_idx[id] = -1;
        tern_quant_linear_name(id, name, sizeof name);
        if (q->lin[id].m->codes)
            q->lin[id].m->codes(q, id, tern_model_find(m, name)->data, d->T + q->w_off[id], d->delta);
    }
    for (int64_t i = 0; i < n; i++) d->age[i] = UINT16_MAX;
    return 0;
}

void tern_quant_set_latent(tern_quant *q, float **latent) {
    if (q->latent)
        for (int id = 0; id < q->n_lin; id++) tern_free(q->latent[id]);
    free(q->latent);
    q->latent = latent;
    if (!q->diag.T || !latent) return;
    for (int id = 0; id < q->n_lin; id++)
        if (latent[id] && q->lin[id].m->codes)
            q->lin[id].m->codes(q, id, latent[id], q->diag.T + q->w_off[id], q->diag.delta);
}

static void set_key(tern_quant *q) {
    const tern_quant_opts *o = &q->opt;
    const char *me = q->method->name;
    if (!strcmp(me, "rtn")) snprintf(q->key, sizeof q->key, "rtn b%d g%d %s", o->bits, o->group, o->sym ? "sym" : "asym");
    else if (!strcmp(me, "teq"))
        snprintf(q->key, sizeof q->key, "teq %s b%d g%d %s", o->inner ? o->inner : "rtn", o->bits, o->group,
                 o->sym ? "sym" : "asym");
    else if (!strcmp(me, "tequila")) snprintf(q->key, sizeof q->key, "tequila g%d l%g", o->group, o->lambda);
    else if (!strcmp(me, "dlt")) snprintf(q->key, sizeof q->key, "dlt g%d lsq%d", o->group, o->lsq_scale);
    else if (!strcmp(me, "uniform")) snprintf(q->key, sizeof q->key, "uniform b%d g%d", o->bits, o->group);
    else snprintf(q->key, sizeof q->key, "%s g%d", me, o->group);
    uint64_t kh = 0; // the kept set, as a hash (the spec itself may be long)
    for (int id = 0; id < q->n_lin; id++)
        if (tern_quant_is_kept(q, id)) kh = tern_hash64(&q->lin[id].bits, sizeof(int), tern_hash64(&id, sizeof id, kh));
    if (kh) {
        size_t n = strlen(q->key);
        snprintf(q->key + n, sizeof q->key - n, " keep %016llx", (unsigned long long)kh);
    }
    if (o->init_gptq) {
        size_t n = strlen(q->key);
        snprintf(q->key + n, sizeof q->key - n, " gptq d%g", o->damp);
    }
}

int tern_quant_create(tern_quant **out, const tern_quant_method *method, const tern_quant_opts *o,
                      const tern_model *m) {
    *out = NULL;
    if (!method) return tern_errorf("unknown quantization method (known: %s)", tern_quant_names());
    if (check_opts(method, o)) return -1;
    tern_quant *q = calloc(1, sizeof *q);
    if (!q) return tern_errorf("out of memory");
    q->method = method, q->opt = *o, q->cfg = m->cfg;
    q->n_lin = m->cfg.n_layers * TERN_LIN_COUNT;
    q->lin = calloc((size_t)q->n_lin, sizeof *q->lin);
    q->w_off = calloc((size_t)q->n_lin, sizeof *q->w_off);
    if (!q->lin || !q->w_off) {
        tern_quant_free(q);
        return tern_errorf("out of memory");
    }
    for (int id = 0; id < q->n_lin; id++) q->lin[id].m = method, q->lin[id].bits = o->bits;
    if (apply_keep(q, m) || layout(q, m)) {
        tern_quant_free(q);
        return -1;
    }
    int max_in = 1;
    for (int id = 0; id < q->n_lin; id++)
        if (q->lin[id].in > max_in) max_in = q->lin[id].in;
    q->scratch = tern_alloc((size_t)max_in * 4);
    int rc = q->scratch ? 0 : tern_errorf("out of memory");
    if (rc == 0 && method->codes) rc = diag_init(q, m);
    if (rc) {
        tern_quant_free(q);
        return -1;
    }
    set_key(q);
    q->hook = (tern_weight_hook){.ctx = q,
                                 .effective = hook_effective,
                                 .backward = hook_backward,
                                 .backward_when_frozen = q->method->trains && !q->method->trains_weights};
    q->train = (tern_train_method){.name = q->key,
                                   .ctx = q,
                                   .hook = &q->hook,
                                   .add_params = train_add_params,
                                   .init_params = train_init_params,
                                   .is_trainable = train_is_trainable,
                                   .save_state = train_save_state,
                                   .load_state = train_load_state,
                                   .after_step = train_after_step};
    *out = q;
    return 0;
}

void tern_quant_free(tern_quant *q) {
    if (!q) return;
    tern_free(q->params);
    tern_free(q->grads);
    tern_free(q->scratch);
    tern_free(q->diag.T);
    tern_free(q->diag.age);
    tern_free(q->diag.delta);
    if (q->latent)
        for (int id = 0; id < q->n_lin; id++) tern_free(q->latent[id]);
    free(q->latent);
    free(q->diag.param_idx);
    free(q->w_off);
    free(q->lin);
    free(q);
}

const tern_train_method *tern_quant_train_method(tern_quant *q) { return &q->train; }

// ---- Input check ----

#include "io/gguf.h"

int tern_quant_check_unquantized(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    size_t got = f ? fread(magic, 1, 4, f) : 0;
    if (f) fclose(f);
    if (got != 4 || memcmp(magic, "GGUF", 4)) return 0; // not a GGUF: cannot carry tern.method
    tern_gguf g;
    int rc = tern_gguf_open(&g, path);
    if (rc == 0 && tern_gguf_find_kv(&g, "tern.method"))
        rc = tern_errorf("%s: the model is already quantized (it has a tern.method key)", path);
    tern_gguf_close(&g);
    return rc;
}
