#include "io/info.h"

#include <string.h>

#include "core/jsonw.h"

static const char *vocab_type_name(tern_vocab_type t) {
    return t == TERN_VOCAB_SPM ? "spm" : t == TERN_VOCAB_BPE ? "bpe" : "none";
}

static const char *rope_scaling_name(tern_rope_scaling s) {
    return s == TERN_ROPE_SCALING_LINEAR ? "linear" : s == TERN_ROPE_SCALING_LLAMA3 ? "llama3" : "none";
}

static void shape_string(const tern_tensor *t, char *buf, size_t cap) {
    buf[0] = 0;
    for (int d = 0; d < t->ndim; d++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%lld", d ? " x " : "", (long long)t->shape[d]);
}

// Storage bits per weight of a packed tensor (0 when it is not packed).
static double packed_bits(const tern_tensor *t) {
    return t->packed && t->numel ? 8.0 * (double)t->packed_bytes / (double)t->numel : 0.0;
}

// Average storage bits per weight over the packed decoder-block tensors
// (embedding and head excluded); 0 when there are none.
static double linear_bits(const tern_model *m, int *n_out) {
    double bits = 0, n = 0;
    *n_out = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const tern_tensor *t = &m->tensors[i];
        if (!t->packed || strncmp(t->name, "blk.", 4)) continue;
        bits += 8.0 * (double)t->packed_bytes, n += (double)t->numel, (*n_out)++;
    }
    return n > 0 ? bits / n : 0.0;
}

// Packed decoder linears the loader requantized to int8 per 32 (a llama.cpp
// block type with no exact packing: Q6_K, Q2_K, Q3_K, IQ4_XS, ...).
static int requantized_linears(const tern_model *m) {
    int n = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const tern_tensor *t = &m->tensors[i];
        n += t->packed && t->packed_err > 0 && !strncmp(t->name, "blk.", 4);
    }
    return n;
}

static void print_json(const tern_model *m, FILE *f, const char *file_type) {
    const tern_config *c = &m->cfg;
    fprintf(f, "{\"path\": ");
    tern_json_write_string(f, m->path, strlen(m->path));
    if (file_type && file_type[0]) {
        fprintf(f, ", \"file_type\": ");
        tern_json_write_string(f, file_type, strlen(file_type));
    }
    fprintf(f, ", \"format\": \"%s\", \"arch\": \"%s\", \"name\": ", m->format, c->arch);
    tern_json_write_string(f, c->name, strlen(c->name));
    fprintf(f,
            ", \"dim\": %d, \"n_layers\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, \"head_dim\": %d, "
            "\"hidden_dim\": %d, \"vocab_size\": %d, \"max_seq\": %d, \"rope_theta\": ",
            c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->hidden_dim, c->vocab_size,
            c->max_seq);
    tern_json_write_number(f, c->rope_theta);
    fprintf(f, ", \"rope_scaling\": \"%s\", \"rope_factor\": ", rope_scaling_name(c->rope_scaling));
    tern_json_write_number(f, c->rope_factor);
    fprintf(f, ", \"rms_eps\": ");
    tern_json_write_number(f, c->rms_eps);
    fprintf(f, ", \"tied_embeddings\": %s, \"attn_qkv_bias\": %s, \"tokenizer\": \"%s\", \"n_tokens\": %d",
            c->tied_embeddings ? "true" : "false", c->attn_qkv_bias ? "true" : "false",
            vocab_type_name(m->vocab.type), m->vocab.n_tokens);
    fprintf(f, ", \"ffn_act\": \"%s\", \"sub_norms\": %s, \"act_int8\": %s, \"quantization\": ",
            c->ffn_act == TERN_FFN_RELU2 ? "relu2" : "silu", c->sub_norms ? "true" : "false",
            c->act_int8 ? "true" : "false");
    tern_json_write_string(f, c->quant, strlen(c->quant));
    fprintf(f, ", \"params\": %lld, \"bytes_f32\": %lld, \"tensors\": [",
            (long long)tern_model_param_count(m), (long long)tern_model_param_count(m) * 4);
    for (int i = 0; i < m->n_tensors; i++) {
        const tern_tensor *t = &m->tensors[i];
        fprintf(f, "%s{\"name\": \"%s\", \"type\": \"%s\", \"shape\": [", i ? ", " : "", t->name, t->src_type);
        for (int d = 0; d < t->ndim; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        fprintf(f, "], \"numel\": %lld", (long long)t->numel);
        if (t->packed) fprintf(f, ", \"bits_per_weight\": %.4f", packed_bits(t));
        fprintf(f, "}");
    }
    int n_lin;
    double lb = linear_bits(m, &n_lin);
    fprintf(f, "]");
    if (n_lin) fprintf(f, ", \"linear_bits_per_weight\": %.4f", lb);
    int n_rq = requantized_linears(m);
    if (n_rq) fprintf(f, ", \"linears_requantized\": %d", n_rq);
    fprintf(f, "}\n");
}

void tern_model_print_info(const tern_model *m, FILE *f, int json, const char *file_type) {
    if (json) {
        print_json(m, f, file_type);
        return;
    }
    const tern_config *c = &m->cfg;
    int64_t params = tern_model_param_count(m);
    fprintf(f, "model:        %s (%s)\n", m->path, m->format);
    if (c->name[0]) fprintf(f, "name:         %s\n", c->name);
    fprintf(f, "architecture: %s\n", c->arch);
    if (file_type && file_type[0]) fprintf(f, "file type:    %s\n", file_type);
    fprintf(f, "dim %d, layers %d, heads %d (kv %d, head_dim %d), ffn %d, vocab %d, context %d\n", c->dim,
            c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->hidden_dim, c->vocab_size, c->max_seq);
    fprintf(f, "rope theta %g (scaling %s", c->rope_theta, rope_scaling_name(c->rope_scaling));
    if (c->rope_scaling != TERN_ROPE_SCALING_NONE) fprintf(f, ", factor %g", c->rope_factor);
    fprintf(f, "), rms eps %g, %s embeddings%s\n", c->rms_eps, c->tied_embeddings ? "tied" : "untied",
            c->attn_qkv_bias ? ", qkv bias" : "");
    if (c->sub_norms || c->ffn_act != TERN_FFN_SILU)
        fprintf(f, "blocks:       %s FFN%s\n", c->ffn_act == TERN_FFN_RELU2 ? "relu²-gated" : "SwiGLU",
                c->sub_norms ? ", RMSNorm before attn_output and ffn_down (sub-norms)" : "");
    if (c->quant[0]) fprintf(f, "quantization: %s\n", c->quant);
    if (m->vocab.type == TERN_VOCAB_NONE) fprintf(f, "tokenizer:    none (llama2.c: pass --tokenizer)\n");
    else
        fprintf(f, "tokenizer:    %s, %d tokens, bos %d, eos %d%s\n", vocab_type_name(m->vocab.type),
                m->vocab.n_tokens, m->vocab.bos_id, m->vocab.eos_id, m->vocab.add_bos ? " (adds bos)" : "");
    fprintf(f, "parameters:   %lld (%.2f M), %.1f MiB as f32\n", (long long)params, (double)params / 1e6,
            (double)params * 4 / (1024.0 * 1024.0));
    int n_lin;
    double lb = linear_bits(m, &n_lin);
    int n_rq = requantized_linears(m);
    if (n_lin) fprintf(f, "packed:       %d decoder linears, %.3f bits per weight on average", n_lin, lb);
    if (n_lin && n_rq) fprintf(f, " (%d requantized to int8 per 32: no exact packing)", n_rq);
    if (n_lin) fprintf(f, "\n");
    fprintf(f, "\n%-32s %-8s %-20s %12s%s\n", "tensor", "type", "shape", "params", n_lin ? "   bits" : "");
    for (int i = 0; i < m->n_tensors; i++) {
        const tern_tensor *t = &m->tensors[i];
        char shape[64];
        shape_string(t, shape, sizeof shape);
        fprintf(f, "%-32s %-8s %-20s %12lld", t->name, t->src_type, shape, (long long)t->numel);
        if (t->packed) fprintf(f, " %6.3f", packed_bits(t));
        fputc('\n', f);
    }
}
