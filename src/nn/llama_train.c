// Training graph of the LLaMA stack (see llama_train.h). Layout follows llm.c's
// train_gpt2.c: one buffer for all parameters, one for their gradients (same
// layout), one for the activations the backward needs, one for backward scratch.
//
// Parameter order (fixed; the gradient fixture of tests/ref/train_grad_ref.py
// uses the same): token_embd.weight, then per layer l
//   blk.l.attn_norm.weight, blk.l.attn_q.weight, [blk.l.attn_q.bias],
//   blk.l.attn_k.weight, [blk.l.attn_k.bias], blk.l.attn_v.weight, [blk.l.attn_v.bias],
//   blk.l.attn_output.weight, [blk.l.attn_output.bias], blk.l.ffn_norm.weight,
//   blk.l.ffn_gate.weight, blk.l.ffn_up.weight, blk.l.ffn_down.weight,
// then output_norm.weight and, unless tied, output.weight. Biases appear only
// when the config has them. A tied head reads token_embd, so its gradient adds
// into token_embd's.
//
// Shapes below: N = B*T tokens, D = dim, QD = n_heads*head_dim,
// KVD = n_kv_heads*head_dim, F = hidden_dim (SwiGLU width), V = vocab.
#include "nn/llama_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "nn/matmul.h"
#include "nn/ops.h"

typedef struct {
    char name[TERN_NAME_MAX];
    int64_t numel, offset; // offset into params / grads
} param_info;

// One linear layer: parameter indices (bias -1 when absent) and dimensions.
typedef struct {
    int w, b;
    int in_dim, out_dim;
} linear_info;

typedef struct {
    int attn_norm, ffn_norm;
    linear_info lin[TERN_LIN_COUNT];
    int first_param; // index of this layer's first parameter
} layer_info;

// What one block keeps for its backward (pointers into tm->acts).
typedef struct {
    float *ln1, *rstd1;    // [N, D], [N]: attention-norm output and 1/rms
    float *q;              // [N, QD] after RoPE
    float *k, *v;          // [N, KVD] (k after RoPE)
    float *att;            // [B, H, T, T] softmax probabilities
    float *atty;           // [N, QD] attention output (input of attn_output)
    float *mid;            // [N, D] residual stream after the attention block
    float *ln2, *rstd2;    // [N, D], [N]: ffn-norm output and 1/rms
    float *gate, *up;      // [N, F] pre-activations
    float *hb;             // [N, F] silu(gate) * up (input of ffn_down)
} block_acts;

struct tern_train_model {
    tern_config cfg;
    int n_params;
    param_info *pinfo;
    float *params, *grads;
    int64_t total;
    int *frozen;
    int tok, out_norm, output; // output == tok when tied
    layer_info *layers;

    // Weight hook: a copy of the caller's struct; per linear, the effective
    // weight and extra term of the last forward (kept for the backward).
    tern_weight_hook hook_val;
    const tern_weight_hook *hook;
    float *weff_buf, *extra_buf; // all linears' w_eff / extra, one allocation each
    float **weff, **extra;       // [n_layers * 7] pointers into the buffers
    int *has_extra;              // [n_layers * 7]
    float *d_weff, *d_extra;     // scratch: the largest linear's dL/dw_eff, dL/dextra

    // Activations, sized for cap_n tokens and cap_att attention entries per layer.
    int B, T;            // shape of the last forward (full or block-wise); 0 before any
    int full_forward;    // the last forward was tern_train_forward (backward allowed)
    int logits_valid;    // the last forward computed logits (full, or tern_train_forward_from)
    int64_t cap_n, cap_att;
    float *acts;
    float *res;          // [L+1, N, D]: res[0] embeddings, res[l+1] output of block l
    block_acts *blk;     // [L]
    float *lnf, *rstdf;  // [N, D], [N]: final norm
    float *logits;       // [N, V]
    int *tokens, *pos;   // [N] (pos = t within its sequence)
    // Backward scratch (one set, reused by every layer).
    float *scratch;
    float *dres;         // [N, D] gradient of the residual stream
    float *dln;          // [N, D] gradient of a norm's output
    float *dhb, *dup;    // [N, F]
    float *datty, *dq;   // [N, QD]
    float *dk, *dv;      // [N, KVD]
    float *datt;         // [B, H, T, T]
    tern_rope rope;
};

static int qdim(const tern_config *c) { return c->n_heads * c->head_dim; }
static int kvdim(const tern_config *c) { return c->n_kv_heads * c->head_dim; }
static float *P(tern_train_model *tm, int i) { return tm->params + tm->pinfo[i].offset; }
static float *G(tern_train_model *tm, int i) { return tm->grads + tm->pinfo[i].offset; }
// Gradient buffer of parameter i, or NULL when it is frozen (skip the work).
static float *G_live(tern_train_model *tm, int i) { return i >= 0 && !tm->frozen[i] ? G(tm, i) : NULL; }

// ---- Parameters ----

static int add_param(tern_train_model *tm, const tern_model *m, const char *name, int64_t *offset) {
    const tern_tensor *t = tern_model_find(m, name);
    if (!t) return tern_errorf("%s: missing tensor %s", m->path, name);
    param_info *p = &tm->pinfo[tm->n_params];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->numel = t->numel;
    p->offset = *offset;
    *offset += t->numel;
    return tm->n_params++;
}

// Registers every parameter in the fixed order; returns -1 on a missing tensor.
static int build_params(tern_train_model *tm, const tern_model *m) {
    const tern_config *c = &tm->cfg;
    int64_t off = 0;
    char name[TERN_NAME_MAX];
#define ADD(dst, fmt)                                        \
    do {                                                     \
        snprintf(name, sizeof name, fmt, l);                 \
        if (((dst) = add_param(tm, m, name, &off)) < 0) return -1; \
    } while (0)
    int l = 0;
    if ((tm->tok = add_param(tm, m, "token_embd.weight", &off)) < 0) return -1;
    for (l = 0; l < c->n_layers; l++) {
        layer_info *L = &tm->layers[l];
        linear_info *lin = L->lin;
        L->first_param = tm->n_params;
        for (int k = 0; k < TERN_LIN_COUNT; k++) lin[k].b = -1;
        ADD(L->attn_norm, "blk.%d.attn_norm.weight");
        ADD(lin[TERN_LIN_Q].w, "blk.%d.attn_q.weight");
        if (c->attn_qkv_bias) ADD(lin[TERN_LIN_Q].b, "blk.%d.attn_q.bias");
        ADD(lin[TERN_LIN_K].w, "blk.%d.attn_k.weight");
        if (c->attn_qkv_bias) ADD(lin[TERN_LIN_K].b, "blk.%d.attn_k.bias");
        ADD(lin[TERN_LIN_V].w, "blk.%d.attn_v.weight");
        if (c->attn_qkv_bias) ADD(lin[TERN_LIN_V].b, "blk.%d.attn_v.bias");
        ADD(lin[TERN_LIN_O].w, "blk.%d.attn_output.weight");
        if (c->attn_out_bias) ADD(lin[TERN_LIN_O].b, "blk.%d.attn_output.bias");
        ADD(L->ffn_norm, "blk.%d.ffn_norm.weight");
        ADD(lin[TERN_LIN_GATE].w, "blk.%d.ffn_gate.weight");
        ADD(lin[TERN_LIN_UP].w, "blk.%d.ffn_up.weight");
        ADD(lin[TERN_LIN_DOWN].w, "blk.%d.ffn_down.weight");
        int D = c->dim, QD = qdim(c), KVD = kvdim(c), F = c->hidden_dim;
        int dims[TERN_LIN_COUNT][2] = {{D, QD}, {D, KVD}, {D, KVD}, {QD, D}, {D, F}, {D, F}, {F, D}};
        for (int k = 0; k < TERN_LIN_COUNT; k++) {
            lin[k].in_dim = dims[k][0];
            lin[k].out_dim = dims[k][1];
        }
    }
#undef ADD
    if ((tm->out_norm = add_param(tm, m, "output_norm.weight", &off)) < 0) return -1;
    if (c->tied_embeddings) tm->output = tm->tok;
    else if ((tm->output = add_param(tm, m, "output.weight", &off)) < 0) return -1;
    tm->total = off;
    return 0;
}

int tern_train_model_init(tern_train_model **out, const tern_model *m) {
    *out = NULL;
    tern_weights w; // validates the config and every tensor's shape
    if (tern_model_require_llama(m, "training") || tern_model_bind(m, &w)) return -1;
    tern_weights_free(&w);
    tern_train_model *tm = calloc(1, sizeof *tm);
    if (!tm) return tern_errorf("out of memory");
    tm->cfg = m->cfg;
    const tern_config *c = &tm->cfg;
    int max_params = 3 + c->n_layers * 13;
    tm->pinfo = calloc((size_t)max_params, sizeof *tm->pinfo);
    tm->layers = calloc((size_t)c->n_layers, sizeof *tm->layers);
    tm->frozen = calloc((size_t)max_params, sizeof *tm->frozen);
    if (!tm->pinfo || !tm->layers || !tm->frozen) {
        tern_train_model_free(tm);
        return tern_errorf("out of memory");
    }
    if (build_params(tm, m)) {
        tern_train_model_free(tm);
        return -1;
    }
    size_t bytes;
    // Gradients come from calloc, not tern_calloc's memset: a large calloc maps
    // zero pages lazily, so a model that never computes gradients (a frozen
    // distillation teacher) does not pay their memory.
    if (tern_mul_size((size_t)tm->total, sizeof(float), &bytes) || !(tm->params = tern_alloc(bytes)) ||
        !(tm->grads = calloc((size_t)tm->total, sizeof(float)))) {
        tern_train_model_free(tm);
        return tern_errorf("%s: cannot allocate %lld training parameters", m->path, (long long)tm->total);
    }
    for (int i = 0; i < tm->n_params; i++)
        memcpy(P(tm, i), tern_model_find(m, tm->pinfo[i].name)->data, (size_t)tm->pinfo[i].numel * 4);
    *out = tm;
    return 0;
}

static void free_hook_buffers(tern_train_model *tm) {
    tern_free(tm->weff_buf);
    tern_free(tm->extra_buf);
    tern_free(tm->d_weff);
    tern_free(tm->d_extra);
    free(tm->weff);
    free(tm->extra);
    free(tm->has_extra);
    tm->weff_buf = tm->extra_buf = tm->d_weff = tm->d_extra = NULL;
    tm->weff = tm->extra = NULL;
    tm->has_extra = NULL;
}

void tern_train_model_free(tern_train_model *tm) {
    if (!tm) return;
    free_hook_buffers(tm);
    tern_free(tm->params);
    free(tm->grads);
    tern_free(tm->acts);
    tern_free(tm->scratch);
    free(tm->tokens);
    free(tm->pos);
    free(tm->blk);
    free(tm->pinfo);
    free(tm->layers);
    free(tm->frozen);
    tern_rope_free(&tm->rope);
    free(tm);
}

int tern_train_n_params(const tern_train_model *tm) { return tm->n_params; }

const char *tern_train_param_name(const tern_train_model *tm, int i) {
    return i >= 0 && i < tm->n_params ? tm->pinfo[i].name : NULL;
}

float *tern_train_param(tern_train_model *tm, int i, int64_t *numel) {
    if (i < 0 || i >= tm->n_params) return NULL;
    if (numel) *numel = tm->pinfo[i].numel;
    return P(tm, i);
}

float *tern_train_grad(tern_train_model *tm, int i) { return i >= 0 && i < tm->n_params ? G(tm, i) : NULL; }

float *tern_train_params_flat(tern_train_model *tm, int64_t *total) {
    if (total) *total = tm->total;
    return tm->params;
}

float *tern_train_grads_flat(tern_train_model *tm, int64_t *total) {
    if (total) *total = tm->total;
    return tm->grads;
}

void tern_train_set_frozen(tern_train_model *tm, int i, int frozen) {
    if (i >= 0 && i < tm->n_params) tm->frozen[i] = frozen != 0;
}

void tern_train_zero_grad(tern_train_model *tm) { memset(tm->grads, 0, (size_t)tm->total * sizeof(float)); }

int tern_train_export(const tern_train_model *tm, tern_model *m) {
    for (int i = 0; i < tm->n_params; i++) {
        tern_tensor *t = tern_model_find(m, tm->pinfo[i].name);
        if (!t || t->numel != tm->pinfo[i].numel)
            return tern_errorf("%s: cannot export %s: tensor %s in the model", m->path, tm->pinfo[i].name,
                               t ? "has another size" : "missing");
        memcpy(t->data, tm->params + tm->pinfo[i].offset, (size_t)t->numel * sizeof(float));
    }
    return 0;
}

// ---- Weight hook ----

static const linear_info *lin_of(const tern_train_model *tm, int id) {
    return &tm->layers[id / TERN_LIN_COUNT].lin[id % TERN_LIN_COUNT];
}

// With a hook, every linear keeps its effective weight from the forward to the
// backward, so the hook's quantizer runs once per step.
int tern_train_set_hook(tern_train_model *tm, const tern_weight_hook *hook) {
    free_hook_buffers(tm);
    tm->hook = NULL;
    if (!hook) return 0;
    int n_lin = tm->cfg.n_layers * TERN_LIN_COUNT;
    int64_t w_total = 0, o_total = 0, w_max = 0, o_max = 0;
    for (int id = 0; id < n_lin; id++) {
        const linear_info *L = lin_of(tm, id);
        int64_t sz = (int64_t)L->out_dim * L->in_dim;
        w_total += sz;
        o_total += L->out_dim;
        if (sz > w_max) w_max = sz;
        if (L->out_dim > o_max) o_max = L->out_dim;
    }
    tm->weff_buf = tern_alloc((size_t)w_total * 4);
    tm->extra_buf = tern_alloc((size_t)o_total * 4);
    tm->d_weff = tern_alloc((size_t)w_max * 4);
    tm->d_extra = tern_alloc((size_t)o_max * 4);
    tm->weff = calloc((size_t)n_lin, sizeof *tm->weff);
    tm->extra = calloc((size_t)n_lin, sizeof *tm->extra);
    tm->has_extra = calloc((size_t)n_lin, sizeof *tm->has_extra);
    if (!tm->weff_buf || !tm->extra_buf || !tm->d_weff || !tm->d_extra || !tm->weff || !tm->extra ||
        !tm->has_extra) {
        free_hook_buffers(tm);
        return tern_errorf("cannot allocate the weight-hook buffers (%lld floats)", (long long)w_total);
    }
    int64_t wo = 0, oo = 0;
    for (int id = 0; id < n_lin; id++) {
        const linear_info *L = lin_of(tm, id);
        tm->weff[id] = tm->weff_buf + wo;
        tm->extra[id] = tm->extra_buf + oo;
        wo += (int64_t)L->out_dim * L->in_dim;
        oo += L->out_dim;
    }
    tm->hook_val = *hook;
    tm->hook = &tm->hook_val;
    return 0;
}

// ---- Activations ----

// Lays out (base != NULL) or sizes (base == NULL) the activation buffer for
// cap_n tokens and cap_att attention entries per layer; returns its float count.
static int64_t layout_acts(tern_train_model *tm, float *base) {
    const tern_config *c = &tm->cfg;
    int64_t n = tm->cap_n, D = c->dim, QD = qdim(c), KVD = kvdim(c), F = c->hidden_dim;
    int64_t off = 0;
#define TAKE(ptr, count)                         \
    do {                                         \
        if (base) (ptr) = base + off;            \
        off += ((count) + 15) / 16 * 16;         \
    } while (0)
    TAKE(tm->res, (c->n_layers + 1) * n * D);
    for (int l = 0; l < c->n_layers; l++) {
        block_acts tmp, *a = base ? &tm->blk[l] : &tmp;
        TAKE(a->ln1, n * D);
        TAKE(a->rstd1, n);
        TAKE(a->q, n * QD);
        TAKE(a->k, n * KVD);
        TAKE(a->v, n * KVD);
        TAKE(a->att, tm->cap_att);
        TAKE(a->atty, n * QD);
        TAKE(a->mid, n * D);
        TAKE(a->ln2, n * D);
        TAKE(a->rstd2, n);
        TAKE(a->gate, n * F);
        TAKE(a->up, n * F);
        TAKE(a->hb, n * F);
    }
    TAKE(tm->lnf, n * D);
    TAKE(tm->rstdf, n);
    TAKE(tm->logits, n * c->vocab_size);
    return off;
}

// Backward scratch: shared by all layers (they run one after another).
static int64_t layout_scratch(tern_train_model *tm, float *base) {
    const tern_config *c = &tm->cfg;
    int64_t n = tm->cap_n, D = c->dim, QD = qdim(c), KVD = kvdim(c), F = c->hidden_dim;
    int64_t off = 0;
    TAKE(tm->dres, n * D);
    TAKE(tm->dln, n * D);
    TAKE(tm->dhb, n * F);
    TAKE(tm->dup, n * F);
    TAKE(tm->datty, n * QD);
    TAKE(tm->dq, n * QD);
    TAKE(tm->dk, n * KVD);
    TAKE(tm->dv, n * KVD);
    TAKE(tm->datt, tm->cap_att);
#undef TAKE
    return off;
}

// Makes the buffers hold B x T tokens (growing them drops stored activations).
static int ensure_acts(tern_train_model *tm, int B, int T) {
    const tern_config *c = &tm->cfg;
    if (B <= 0 || T <= 0 || (int64_t)B * T > (1 << 24))
        return tern_errorf("train: invalid batch %d x %d", B, T);
    int64_t n = (int64_t)B * T, att = (int64_t)B * c->n_heads * T * T;
    if (!tm->rope.cos || tm->rope.max_seq < T) {
        tern_rope_free(&tm->rope);
        if (tern_rope_init(&tm->rope, c->head_dim, T, c->rope_theta, c->rope_scaling, c->rope_factor,
                           c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_orig_max_seq))
            return tern_errorf("train: cannot allocate RoPE tables for %d positions", T);
    }
    if (tm->acts && n <= tm->cap_n && att <= tm->cap_att) return 0;
    tern_free(tm->acts);
    tern_free(tm->scratch);
    free(tm->tokens);
    free(tm->pos);
    free(tm->blk);
    tm->acts = tm->scratch = tm->res = NULL;
    tm->tokens = tm->pos = NULL;
    tm->blk = NULL;
    tm->full_forward = tm->logits_valid = 0;
    tm->B = tm->T = 0;
    tm->cap_n = n > tm->cap_n ? n : tm->cap_n;
    tm->cap_att = att > tm->cap_att ? att : tm->cap_att;
    int64_t acts = layout_acts(tm, NULL), scratch = layout_scratch(tm, NULL);
    tm->blk = calloc((size_t)c->n_layers, sizeof *tm->blk);
    tm->tokens = malloc((size_t)tm->cap_n * sizeof(int));
    tm->pos = malloc((size_t)tm->cap_n * sizeof(int));
    tm->acts = tern_alloc((size_t)acts * sizeof(float));
    tm->scratch = tern_alloc((size_t)scratch * sizeof(float));
    if (!tm->blk || !tm->tokens || !tm->pos || !tm->acts || !tm->scratch) {
        tern_free(tm->acts);
        tern_free(tm->scratch);
        tm->acts = tm->scratch = tm->res = NULL;
        tm->cap_n = tm->cap_att = 0;
        return tern_errorf("train: cannot allocate activations for %d x %d tokens (%.1f GiB)", B, T,
                           (double)(acts + scratch) * 4 / (1 << 30));
    }
    layout_acts(tm, tm->acts);
    layout_scratch(tm, tm->scratch);
    return 0;
}

static void set_shape(tern_train_model *tm, int B, int T) {
    tm->B = B;
    tm->T = T;
    for (int i = 0; i < B * T; i++) tm->pos[i] = i % T;
}

// ---- Linear layers (with the optional weight hook) ----

// y[N, out] = x[N, in] · w_effᵀ + bias + extra; w_eff = w without a hook.
static int linear_forward(tern_train_model *tm, int id, float *y, const float *x, int n) {
    const linear_info *L = lin_of(tm, id);
    const float *w = P(tm, L->w), *bias = L->b >= 0 ? P(tm, L->b) : NULL;
    if (tm->hook) {
        tm->has_extra[id] = 0;
        if (tm->hook->effective(tm->hook->ctx, id, w, L->out_dim, L->in_dim, tm->weff[id], tm->extra[id],
                                &tm->has_extra[id]))
            return tern_error_prefix("weight hook (linear %d)", id);
        w = tm->weff[id];
    }
    tern_matmul_f32(y, x, w, bias, n, L->in_dim, L->out_dim);
    if (tm->hook && tm->has_extra[id]) {
        const float *e = tm->extra[id];
        for (int t = 0; t < n; t++) tern_residual_forward(y + (size_t)t * L->out_dim, e, L->out_dim);
    }
    return 0;
}

// From dy[N, out]: dx (= or += by accumulate), bias and weight gradients. A
// frozen weight skips dW and the hook's backward (unless the hook asks for it,
// then with d_w = NULL) but still passes dx through w_eff.
static int linear_backward(tern_train_model *tm, int id, float *dx, int accumulate, const float *dy,
                           const float *x, int n) {
    const linear_info *L = lin_of(tm, id);
    const float *w = P(tm, L->w), *weff = tm->hook ? tm->weff[id] : w;
    int in = L->in_dim, out = L->out_dim;
    float *db = G_live(tm, L->b), *dw = G_live(tm, L->w);
    if (!tm->hook) {
        tern_linear_backward(dx, dw, db, dy, x, w, n, in, out, accumulate);
        return 0;
    }
    tern_linear_backward(dx, NULL, db, dy, x, weff, n, in, out, accumulate);
    if (!dw && !tm->hook->backward_when_frozen) return 0;
    memset(tm->d_weff, 0, (size_t)out * in * sizeof(float));
    tern_matmul_dw_f32(tm->d_weff, dy, x, n, in, out);
    const float *d_extra = NULL;
    if (tm->has_extra[id]) {
        // extra[out] is added to every token's output, so dL/dextra = Σ_t dy[t].
        memset(tm->d_extra, 0, (size_t)out * sizeof(float));
        tern_bias_backward(tm->d_extra, dy, n, out);
        d_extra = tm->d_extra;
    }
    if (tm->hook->backward(tm->hook->ctx, id, w, out, in, tm->d_weff, d_extra, dw))
        return tern_error_prefix("weight hook backward (linear %d)", id);
    return 0;
}

// ---- One decoder block ----

// res_out[N, D] = block_l(res_in[N, D]), keeping tm->blk[l] for the backward.
// With stop < TERN_LIN_COUNT the block stops once the input of linear kind
// `stop` is computed (q/k/v share theirs, as do gate/up); out is not written.
static int block_forward(tern_train_model *tm, int l, const float *in, float *out, int stop) {
    const tern_config *c = &tm->cfg;
    const layer_info *L = &tm->layers[l];
    block_acts *a = &tm->blk[l];
    int n = tm->B * tm->T, D = c->dim, F = c->hidden_dim, id0 = l * TERN_LIN_COUNT;
    // Attention: mid = in + o(attention(rope(q(ln1)), rope(k(ln1)), v(ln1)))
    tern_rmsnorm_forward_train(a->ln1, a->rstd1, in, P(tm, L->attn_norm), n, D, c->rms_eps);
    if (stop <= TERN_LIN_V) return 0;
    if (linear_forward(tm, id0 + TERN_LIN_Q, a->q, a->ln1, n) ||
        linear_forward(tm, id0 + TERN_LIN_K, a->k, a->ln1, n) ||
        linear_forward(tm, id0 + TERN_LIN_V, a->v, a->ln1, n))
        return -1;
    tern_rope_forward(a->q, &tm->rope, tm->pos, n, c->n_heads);
    tern_rope_forward(a->k, &tm->rope, tm->pos, n, c->n_kv_heads);
    tern_attention_forward(a->atty, a->att, a->q, a->k, a->v, tm->B, tm->T, c->n_heads, c->n_kv_heads,
                           c->head_dim);
    if (stop == TERN_LIN_O) return 0;
    if (linear_forward(tm, id0 + TERN_LIN_O, a->mid, a->atty, n)) return -1;
    tern_residual_forward(a->mid, in, (int64_t)n * D);
    // Feed-forward: out = mid + down(silu(gate(ln2)) * up(ln2))
    tern_rmsnorm_forward_train(a->ln2, a->rstd2, a->mid, P(tm, L->ffn_norm), n, D, c->rms_eps);
    if (stop == TERN_LIN_GATE || stop == TERN_LIN_UP) return 0;
    if (linear_forward(tm, id0 + TERN_LIN_GATE, a->gate, a->ln2, n) ||
        linear_forward(tm, id0 + TERN_LIN_UP, a->up, a->ln2, n))
        return -1;
    tern_swiglu_forward(a->hb, a->gate, a->up, (int64_t)n * F);
    if (stop == TERN_LIN_DOWN) return 0;
    if (linear_forward(tm, id0 + TERN_LIN_DOWN, out, a->hb, n)) return -1;
    tern_residual_forward(out, a->mid, (int64_t)n * D);
    return 0;
}

// d[N, D]: on entry dL/d(block output), on return dL/d(block input); `in` is
// the block's input (needed by the attention norm's backward).
static int block_backward(tern_train_model *tm, int l, const float *in, float *d) {
    const tern_config *c = &tm->cfg;
    const layer_info *L = &tm->layers[l];
    block_acts *a = &tm->blk[l];
    int n = tm->B * tm->T, D = c->dim, F = c->hidden_dim, id0 = l * TERN_LIN_COUNT;
    // Feed-forward. The residual passes d straight to mid; the norm adds its part.
    if (linear_backward(tm, id0 + TERN_LIN_DOWN, tm->dhb, 0, d, a->hb, n)) return -1; // dhb[N, F]
    tern_swiglu_backward(tm->dhb, tm->dup, tm->dhb, a->gate, a->up, (int64_t)n * F);  // dgate in dhb
    if (linear_backward(tm, id0 + TERN_LIN_GATE, tm->dln, 0, tm->dhb, a->ln2, n) ||
        linear_backward(tm, id0 + TERN_LIN_UP, tm->dln, 1, tm->dup, a->ln2, n)) // dln[N, D]
        return -1;
    tern_rmsnorm_backward(d, G_live(tm, L->ffn_norm), tm->dln, a->mid, P(tm, L->ffn_norm), a->rstd2, n, D);
    // Attention. d is now dL/dmid; again the residual passes it through.
    if (linear_backward(tm, id0 + TERN_LIN_O, tm->datty, 0, d, a->atty, n)) return -1; // datty[N, QD]
    tern_attention_backward(tm->dq, tm->dk, tm->dv, tm->datt, tm->datty, a->att, a->q, a->k, a->v, tm->B, tm->T,
                            c->n_heads, c->n_kv_heads, c->head_dim);
    tern_rope_backward(tm->dq, &tm->rope, tm->pos, n, c->n_heads);
    tern_rope_backward(tm->dk, &tm->rope, tm->pos, n, c->n_kv_heads);
    if (linear_backward(tm, id0 + TERN_LIN_Q, tm->dln, 0, tm->dq, a->ln1, n) ||
        linear_backward(tm, id0 + TERN_LIN_K, tm->dln, 1, tm->dk, a->ln1, n) ||
        linear_backward(tm, id0 + TERN_LIN_V, tm->dln, 1, tm->dv, a->ln1, n))
        return -1;
    tern_rmsnorm_backward(d, G_live(tm, L->attn_norm), tm->dln, in, P(tm, L->attn_norm), a->rstd1, n, D);
    return 0;
}

// ---- Full model ----

int tern_train_forward(tern_train_model *tm, const int *tokens, int B, int T) {
    const tern_config *c = &tm->cfg;
    tm->full_forward = tm->logits_valid = 0;
    if (ensure_acts(tm, B, T)) return -1;
    int n = B * T, D = c->dim;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return tern_errorf("train: token id %d outside the vocabulary (%d)", tokens[i], c->vocab_size);
    set_shape(tm, B, T);
    memcpy(tm->tokens, tokens, (size_t)n * sizeof(int));
    tern_embedding_forward(tm->res, P(tm, tm->tok), tokens, n, D);
    for (int l = 0; l < c->n_layers; l++)
        if (block_forward(tm, l, tm->res + (size_t)l * n * D, tm->res + (size_t)(l + 1) * n * D, TERN_LIN_COUNT)) return -1;
    tern_rmsnorm_forward_train(tm->lnf, tm->rstdf, tm->res + (size_t)c->n_layers * n * D, P(tm, tm->out_norm), n,
                               D, c->rms_eps);
    tern_matmul_f32(tm->logits, tm->lnf, P(tm, tm->output), NULL, n, D, c->vocab_size);
    tm->full_forward = tm->logits_valid = 1;
    return 0;
}

int tern_train_forward_from(tern_train_model *tm, int layer, const float *x_in, int B, int T) {
    const tern_config *c = &tm->cfg;
    if (layer < 0 || layer >= c->n_layers) return tern_errorf("train: no layer %d", layer);
    if (ensure_acts(tm, B, T)) return -1;
    tm->full_forward = tm->logits_valid = 0;
    set_shape(tm, B, T);
    int n = B * T, D = c->dim;
    memmove(tm->res + (size_t)layer * n * D, x_in, (size_t)n * D * sizeof(float));
    for (int l = layer; l < c->n_layers; l++)
        if (block_forward(tm, l, tm->res + (size_t)l * n * D, tm->res + (size_t)(l + 1) * n * D, TERN_LIN_COUNT))
            return -1;
    tern_rmsnorm_forward_train(tm->lnf, tm->rstdf, tm->res + (size_t)c->n_layers * n * D, P(tm, tm->out_norm), n,
                               D, c->rms_eps);
    tern_matmul_f32(tm->logits, tm->lnf, P(tm, tm->output), NULL, n, D, c->vocab_size);
    tm->logits_valid = 1;
    return 0;
}

const float *tern_train_logits(const tern_train_model *tm) { return tm->logits_valid ? tm->logits : NULL; }

const float *tern_train_hidden(const tern_train_model *tm, int layer) {
    if (!tm->res || !tm->B || layer < 0 || layer >= tm->cfg.n_layers) return NULL;
    return tm->res + (size_t)(layer + 1) * tm->B * tm->T * tm->cfg.dim;
}

// Whether any parameter before index `first` (embeddings, earlier layers) trains.
static int trainable_before(const tern_train_model *tm, int first) {
    if (tm->hook && tm->hook->backward_when_frozen && first > 0) return 1;
    for (int i = 0; i < first; i++)
        if (!tm->frozen[i]) return 1;
    return 0;
}

int tern_train_backward(tern_train_model *tm, const float *d_logits, const float *const *d_hidden) {
    const tern_config *c = &tm->cfg;
    if (!tm->full_forward) return tern_errorf("train: backward without a preceding forward");
    int n = tm->B * tm->T, D = c->dim, Lc = c->n_layers;
    float *d = tm->dres; // [N, D] dL/d(residual stream), walking down the layers
    memset(d, 0, (size_t)n * D * sizeof(float));
    if (d_logits) {
        // logits = lnf · outputᵀ (tied: output is token_embd, whose gradient this adds into).
        tern_linear_backward(tm->dln, G_live(tm, tm->output), NULL, d_logits, tm->lnf, P(tm, tm->output), n, D,
                             c->vocab_size, 0);
        tern_rmsnorm_backward(d, G_live(tm, tm->out_norm), tm->dln, tm->res + (size_t)Lc * n * D,
                              P(tm, tm->out_norm), tm->rstdf, n, D);
    }
    // Lowest layer whose input gradient still matters (stop early below it).
    int lowest_d_hidden = Lc;
    if (d_hidden)
        for (int l = 0; l < Lc; l++)
            if (d_hidden[l]) {
                lowest_d_hidden = l;
                break;
            }
    for (int l = Lc - 1; l >= 0; l--) {
        if (d_hidden && d_hidden[l]) tern_residual_forward(d, d_hidden[l], (int64_t)n * D);
        if (block_backward(tm, l, tm->res + (size_t)l * n * D, d)) return -1;
        // Nothing below trains and no gradient enters below: the rest is dead work.
        if (lowest_d_hidden >= l && !trainable_before(tm, tm->layers[l].first_param)) return 0;
    }
    if (!tm->frozen[tm->tok]) tern_embedding_backward(G(tm, tm->tok), d, tm->tokens, n, D);
    return 0;
}

// ---- Block-wise ----

int tern_train_block_forward(tern_train_model *tm, int layer, const float *x_in, int B, int T, float *x_out) {
    const tern_config *c = &tm->cfg;
    if (layer < 0 || layer >= c->n_layers) return tern_errorf("train: no layer %d", layer);
    if (ensure_acts(tm, B, T)) return -1;
    // The block's activations now belong to this call: a full backward would mix states.
    tm->full_forward = tm->logits_valid = 0;
    set_shape(tm, B, T);
    size_t nd = (size_t)B * T * c->dim;
    float *in = tm->res + (size_t)layer * nd, *out = tm->res + (size_t)(layer + 1) * nd;
    memmove(in, x_in, nd * sizeof(float)); // x_in may be tern_train_hidden(layer - 1) itself
    if (block_forward(tm, layer, in, out, TERN_LIN_COUNT)) return -1;
    if (x_out) memmove(x_out, out, nd * sizeof(float));
    return 0;
}

const float *tern_train_block_linear_input(tern_train_model *tm, int layer, const float *x_in, int B, int T,
                                           int kind) {
    const tern_config *c = &tm->cfg;
    if (layer < 0 || layer >= c->n_layers || kind < 0 || kind >= TERN_LIN_COUNT) {
        tern_errorf("train: no linear %d in layer %d", kind, layer);
        return NULL;
    }
    if (ensure_acts(tm, B, T)) return NULL;
    tm->full_forward = tm->logits_valid = 0;
    set_shape(tm, B, T);
    size_t nd = (size_t)B * T * c->dim;
    float *in = tm->res + (size_t)layer * nd;
    memmove(in, x_in, nd * sizeof(float));
    if (block_forward(tm, layer, in, NULL, kind)) return NULL;
    block_acts *a = &tm->blk[layer];
    switch (kind) {
    case TERN_LIN_O: return a->atty;
    case TERN_LIN_GATE:
    case TERN_LIN_UP: return a->ln2;
    case TERN_LIN_DOWN: return a->hb;
    default: return a->ln1;
    }
}

int tern_train_block_backward(tern_train_model *tm, int layer, const float *d_out, float *d_in) {
    const tern_config *c = &tm->cfg;
    if (layer < 0 || layer >= c->n_layers) return tern_errorf("train: no layer %d", layer);
    if (!tm->B) return tern_errorf("train: block backward without a preceding forward");
    size_t nd = (size_t)tm->B * tm->T * c->dim;
    memmove(tm->dres, d_out, nd * sizeof(float));
    if (block_backward(tm, layer, tm->res + (size_t)layer * nd, tm->dres)) return -1;
    if (d_in) memmove(d_in, tm->dres, nd * sizeof(float));
    return 0;
}
