// Mixed precision (--keep, --target-bits): storage bits of each linear, the
// measured sensitivity of each linear, and the allocation of b-bit linears
// under an average-bits budget.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/progress.h"
#include "core/threads.h"
#include "kernels/formats.h"
#include "quant/quant.h"
#include "train/loss.h"

// Ternary as tern-t1.6 (the densest packing; with DLT's shifts), b-bit as q{b}g.
static double linear_bits(const tern_quant_linear *L) {
    int ng = L->n_groups;
    if (L->m->ternary) {
        int shift = L->m->grid == TERN_GRID_SHIFT;
        size_t b = tern_kformat_row_bytes(tern_kformat_get(TERN_KFMT_T1_6), L->in, L->G, shift);
        return b ? 8.0 * (double)b / L->in : 1.6 + (16.0 + 16.0 * shift) * ng / L->in;
    }
    int bits = L->bits;
    if (bits >= 2 && bits <= 4) {
        tern_kfmt_id f = bits == 4 ? TERN_KFMT_Q4G : bits == 3 ? TERN_KFMT_Q3G : TERN_KFMT_Q2G;
        size_t b = tern_kformat_row_bytes(tern_kformat_get(f), L->in, L->G, 0);
        if (b) return 8.0 * (double)b / L->in;
    }
    return bits + 24.0 * ng / L->in; // fp16 scale and u8 zero point per group
}

double tern_quant_linear_bits(const tern_quant *q, int id) { return linear_bits(&q->lin[id]); }

// Linear L's bits if it were kept at `bits` on the uniform grid.
static double kept_bits(const tern_quant_linear *L, int bits) {
    tern_quant_linear k = *L;
    k.m = &tern_quant_uniform, k.bits = bits;
    return linear_bits(&k);
}

double tern_quant_avg_bits(const tern_quant *q) {
    double bits = 0, n = 0;
    for (int id = 0; id < q->n_lin; id++) {
        double k = (double)q->lin[id].out * q->lin[id].in;
        bits += k * tern_quant_linear_bits(q, id), n += k;
    }
    return n > 0 ? bits / n : 0;
}

// Index of parameter `name` in tm, or -1.
static int param_index(tern_train_model *tm, const char *name) {
    for (int i = 0; i < tern_train_n_params(tm); i++)
        if (!strcmp(tern_train_param_name(tm, i), name)) return i;
    return -1;
}

int tern_quant_sensitivity(tern_quant *q, const tern_model *m, const int *tokens, int n_seqs, int T, double *kl,
                           double *kl_all) {
    const tern_config *c = &m->cfg;
    int N = n_seqs * T, D = c->dim, V = c->vocab_size, L = c->n_layers;
    tern_train_model *tm = NULL;
    size_t max_w = 1;
    for (int id = 0; id < q->n_lin; id++)
        if ((size_t)q->lin[id].out * q->lin[id].in > max_w) max_w = (size_t)q->lin[id].out * q->lin[id].in;
    float *ref = tern_alloc((size_t)N * V * 4), *hid = tern_alloc((size_t)L * N * D * 4);
    float *save = tern_alloc(max_w * 4), *extra = tern_alloc(max_w * 4);
    int rc = ref && hid && save && extra ? 0 : tern_errorf("sensitivity: out of memory for %d tokens", N);
    if (rc == 0) rc = tern_train_model_init(&tm, m);
    if (rc == 0) rc = tern_train_forward(tm, tokens, n_seqs, T);
    if (rc == 0) memcpy(ref, tern_train_logits(tm), (size_t)N * V * 4); // the FP model's logits
    char name[TERN_NAME_MAX];
    // Every linear quantized: its effective weight from the latent weights
    // (GPTQ's when installed, else the FP ones); a constant term (Tequila's) is left out.
    for (int id = 0; id < q->n_lin && rc == 0; id++) {
        tern_quant_linear_name(id, name, sizeof name);
        float *w = tern_train_param(tm, param_index(tm, name), NULL);
        size_t n = (size_t)q->lin[id].out * q->lin[id].in;
        int has_extra = 0;
        memcpy(save, q->latent && q->latent[id] ? q->latent[id] : w, n * 4);
        rc = q->lin[id].m->effective(q, id, save, w, extra, &has_extra);
    }
    if (rc == 0) rc = tern_train_forward(tm, tokens, n_seqs, T);
    double base = NAN;
    if (rc == 0) { // its KL, and every block's input in it (block 0's: the embeddings)
        base = tern_loss_kl(tern_train_logits(tm), ref, N, V, 1.0f, 1.0f, NULL);
        const float *table = tern_model_find(m, "token_embd.weight")->data;
        for (int i = 0; i < N; i++) memcpy(hid + (size_t)i * D, table + (size_t)tokens[i] * D, (size_t)D * 4);
        for (int l = 1; l < L; l++) memcpy(hid + (size_t)l * N * D, tern_train_hidden(tm, l - 1), (size_t)N * D * 4);
    }
    if (kl_all) *kl_all = base;
    tern_progress bar;
    tern_progress_begin(&bar, "sensitivity", "linear", q->n_lin);
    for (int id = 0; id < q->n_lin && rc == 0; id++) {
        tern_quant_linear_name(id, name, sizeof name);
        const tern_tensor *fp = tern_model_find(m, name);
        float *w = tern_train_param(tm, param_index(tm, name), NULL);
        size_t n = (size_t)q->lin[id].out * q->lin[id].in;
        memcpy(save, w, n * 4);
        memcpy(w, fp->data, n * 4); // this one linear back to FP
        int l = id / TERN_LIN_COUNT;
        rc = tern_train_forward_from(tm, l, hid + (size_t)l * N * D, n_seqs, T);
        if (rc == 0) kl[id] = base - tern_loss_kl(tern_train_logits(tm), ref, N, V, 1.0f, 1.0f, NULL);
        memcpy(w, save, n * 4);
        char line[160];
        snprintf(line, sizeof line, "KL %.3f; %s gains %.4f", base, name, rc == 0 ? kl[id] : NAN);
        tern_progress_update(&bar, id + 1, line);
    }
    tern_progress_end(&bar);
    tern_train_model_free(tm);
    tern_free(ref), tern_free(hid), tern_free(save), tern_free(extra);
    return rc;
}

typedef struct {
    double value; // KL saved per extra bit
    int id;
} candidate;

static int by_value_desc(const void *a, const void *b) {
    double x = ((const candidate *)a)->value, y = ((const candidate *)b)->value;
    return (x < y) - (x > y);
}

int tern_quant_plan_bits(const tern_quant *q, const double *kl, double target, int keep_bits, uint8_t *keep,
                         double *avg_out) {
    int n = q->n_lin;
    candidate *c = malloc((size_t)n * sizeof *c);
    double *low = malloc((size_t)n * sizeof *low), *numel = malloc((size_t)n * sizeof *numel);
    if (!c || !low || !numel) {
        free(c), free(low), free(numel);
        return tern_errorf("out of memory");
    }
    double total = 0, bits = 0;
    for (int id = 0; id < n; id++) {
        numel[id] = (double)q->lin[id].out * q->lin[id].in;
        low[id] = linear_bits(&q->lin[id]);
        total += numel[id], bits += numel[id] * low[id];
    }
    if (bits / total > target) {
        free(c), free(low), free(numel);
        return tern_errorf("--target-bits %.3g is below the %.3f bits per weight of the method alone", target,
                           bits / total);
    }
    for (int id = 0; id < n; id++) {
        double extra = numel[id] * (kept_bits(&q->lin[id], keep_bits) - low[id]);
        c[id] = (candidate){(kl[id] > 0 ? kl[id] : 0) / (extra > 0 ? extra : 1e-9), id};
        keep[id] = 0;
    }
    // Greedy by KL saved per added bit; a linear that would overshoot is
    // skipped, as a smaller one later may still fit.
    qsort(c, (size_t)n, sizeof *c, by_value_desc);
    for (int k = 0; k < n; k++) {
        int id = c[k].id;
        double add = numel[id] * (kept_bits(&q->lin[id], keep_bits) - low[id]);
        if ((bits + add) / total > target) continue;
        bits += add, keep[id] = (uint8_t)keep_bits;
    }
    *avg_out = bits / total;
    free(c), free(low), free(numel);
    return 0;
}
