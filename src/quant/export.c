// Export of a quantized model as a fake-quant GGUF: every block linear holds
// its effective (dequantized) FP32 weight, so `tern ppl`/`tern eval` run it
// unchanged; tern.* metadata records the method and its settings.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/gguf_write.h"
#include "quant/quant.h"

// Bias tensor names by linear kind; the inference forward applies all seven.
static const char *const bias_names[TERN_LIN_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                       "ffn_gate", "ffn_up", "ffn_down"};

static int add_bias(tern_model *m, int id, const float *extra, int out) {
    char name[TERN_NAME_MAX];
    snprintf(name, sizeof name, "blk.%d.%s.bias", id / TERN_LIN_COUNT, bias_names[id % TERN_LIN_COUNT]);
    tern_tensor *b = tern_model_find(m, name);
    int64_t shape[1] = {out};
    if (!b && !(b = tern_model_add_tensor(m, name, 1, shape, "F32"))) return -1;
    if (b->numel != out) return tern_errorf("export: %s has %lld elements, expected %d", name, (long long)b->numel, out);
    for (int j = 0; j < out; j++) b->data[j] += extra[j];
    return 0;
}

static void count_codes(tern_quant *q, int id, const float *w, int8_t *T, double counts[3]) {
    q->lin[id].m->codes(q, id, w, T, q->diag.delta);
    size_t n = (size_t)q->lin[id].out * q->lin[id].in;
    for (size_t i = 0; i < n; i++) counts[T[i] + 1]++;
}

int tern_quant_export(tern_quant *q, tern_model *m, double code_frac[3]) {
    double counts[3] = {0, 0, 0};
    size_t max_w = 1, max_out = 1;
    for (int id = 0; id < q->n_lin; id++) {
        if ((size_t)q->lin[id].out * q->lin[id].in > max_w) max_w = (size_t)q->lin[id].out * q->lin[id].in;
        if ((size_t)q->lin[id].out > max_out) max_out = (size_t)q->lin[id].out;
    }
    float *w_eff = tern_alloc(max_w * 4), *extra = tern_alloc(max_out * 4);
    int8_t *T = malloc(max_w);
    int rc = w_eff && extra && T ? 0 : tern_errorf("out of memory for the export");
    int attn_extra = 0, out_extra = 0, ffn_extra = 0;
    char name[TERN_NAME_MAX];
    for (int id = 0; id < q->n_lin && rc == 0; id++) {
        tern_quant_linear_name(id, name, sizeof name);
        tern_tensor *t = tern_model_find(m, name);
        if (!t) {
            rc = tern_errorf("export: %s missing", name);
            break;
        }
        if (q->lin[id].m->codes) count_codes(q, id, t->data, T, counts);
        if (q->method->export_model) continue; // the method rewrites the model itself below
        int has_extra = 0;
        if ((rc = tern_quant_effective(q, id, t->data, w_eff, extra, &has_extra))) break;
        memcpy(t->data, w_eff, (size_t)t->numel * 4);
        if (has_extra) {
            rc = add_bias(m, id, extra, q->lin[id].out);
            int k = id % TERN_LIN_COUNT;
            attn_extra |= k <= TERN_LIN_V, out_extra |= k == TERN_LIN_O, ffn_extra |= k >= TERN_LIN_GATE;
        }
    }
    if (rc == 0 && q->method->export_model) rc = q->method->export_model(q, m);
    if (rc == 0) {
        // Every layer got the biases of each kind that has them, so the forward uses them.
        if (attn_extra) m->cfg.attn_qkv_bias = 1;
        if (out_extra) m->cfg.attn_out_bias = 1;
        if (ffn_extra) m->cfg.ffn_bias = 1;
    }
    double total = counts[0] + counts[1] + counts[2];
    for (int k = 0; k < 3; k++) code_frac[k] = total > 0 ? counts[k] / total : 0.0;
    tern_free(w_eff), tern_free(extra);
    free(T);
    return rc;
}

int tern_quant_write_gguf(const tern_quant *q, const tern_model *m, const double code_frac[3], const char *path) {
    tern_gguf_writer *w = tern_gguf_writer_new();
    if (!w) return tern_errorf("out of memory");
    const tern_quant_opts *o = &q->opt;
    float frac[3] = {(float)code_frac[0], (float)code_frac[1], (float)code_frac[2]};
    int rc = tern_gguf_add_model_metadata(w, m);
    if (rc == 0) rc = tern_gguf_set_str(w, "tern.method", q->method->name);
    if (rc == 0) rc = tern_gguf_set_i32(w, "tern.group_size", o->group);
    // Ternary codes need log2(3) bits; recorded as 2 (their packed width).
    if (rc == 0) rc = tern_gguf_set_i32(w, "tern.bits", q->method->ternary ? 2 : o->bits);
    if (rc == 0) rc = tern_gguf_set_f32(w, "tern.lambda", !strcmp(q->method->name, "tequila") ? o->lambda : 0.0f);
    if (rc == 0) rc = tern_gguf_set_bool(w, "tern.sym", o->sym);
    if (rc == 0 && !strcmp(q->method->name, "teq")) rc = tern_gguf_set_str(w, "tern.teq_inner", o->inner ? o->inner : "rtn");
    if (rc == 0) rc = tern_gguf_set_str(w, "tern.settings", q->key);
    // Mixed precision: the bits of each linear --keep holds on a b-bit grid (0: the run's method).
    int32_t *kb = calloc((size_t)q->n_lin, sizeof *kb);
    int any = 0;
    for (int id = 0; kb && id < q->n_lin; id++)
        if (tern_quant_is_kept(q, id)) kb[id] = q->lin[id].bits, any = 1;
    if (rc == 0 && !kb) rc = tern_errorf("out of memory");
    if (rc == 0 && any) rc = tern_gguf_set_array(w, "tern.linear_bits", TERN_GGUF_I32, kb, (uint64_t)q->n_lin, NULL);
    // Fractions of the ternary codes -1, 0, +1 over all quantized weights.
    if (rc == 0 && q->method->ternary) rc = tern_gguf_set_array(w, "tern.code_frac", TERN_GGUF_F32, frac, 3, NULL);
    for (int i = 0; i < m->n_tensors && rc == 0; i++) {
        const tern_tensor *t = &m->tensors[i];
        rc = tern_gguf_add_tensor(w, t->name, 0 /* GGML_TYPE_F32 */, t->ndim, t->shape, t->data,
                                  (uint64_t)t->numel * sizeof(float));
    }
    if (rc == 0) rc = tern_gguf_write(w, path);
    tern_gguf_writer_free(w);
    free(kb); // after the write: the writer only kept a pointer
    return rc;
}
