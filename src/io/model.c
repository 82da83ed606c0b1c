#include "io/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/mem.h"
#include "io/readers.h"

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int file_magic_is(const char *path, const char *magic) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char buf[8] = {0};
    size_t k = strlen(magic);
    int ok = fread(buf, 1, k, f) == k && memcmp(buf, magic, k) == 0;
    fclose(f);
    return ok;
}

static int load_vocab_override(tern_model *m, const char *tok_path) {
    tern_vocab v;
    memset(&v, 0, sizeof v);
    int rc;
    if (has_suffix(tok_path, ".json")) rc = tern_hf_load_vocab(&v, tok_path);
    else if (file_magic_is(tok_path, "GGUF")) rc = tern_gguf_load_vocab(&v, tok_path);
    else rc = tern_llama2c_tokenizer_load(&v, tok_path, m->cfg.vocab_size);
    if (rc) {
        tern_vocab_free(&v);
        return -1;
    }
    if (v.n_tokens != m->cfg.vocab_size) {
        int n = v.n_tokens; // read before the free clears it
        tern_vocab_free(&v);
        return tern_errorf("%s: vocabulary size mismatch: the tokenizer has %d tokens, the model %s has %d", tok_path,
                           n, m->path, m->cfg.vocab_size);
    }
    if (!v.chat_template) { // a tokenizer without a chat template keeps the model's
        v.chat_template = m->vocab.chat_template;
        m->vocab.chat_template = NULL;
    }
    tern_vocab_free(&m->vocab);
    m->vocab = v;
    return 0;
}

int tern_model_load(tern_model *m, const char *path, const char *tokenizer_path) {
    return tern_model_load_ex(m, path, tokenizer_path, TERN_LOAD_TOKENIZER);
}

int tern_model_load_ex(tern_model *m, const char *path, const char *tokenizer_path, int flags) {
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", path);
    m->packed_only = (flags & TERN_LOAD_PACKED) != 0; // the GGUF reader honours it; the others load FP32
    const int need_tokenizer = flags & TERN_LOAD_TOKENIZER;
    int rc;
    char config[sizeof m->path + 16];
    snprintf(config, sizeof config, "%s/config.json", path);
    if (tern_is_dir(path) && !tern_file_exists(config))
        return tern_errorf("%s: not a model directory (expected a Hugging Face directory with config.json, or a "
                           "GGUF file or llama2.c checkpoint)", path);
    if (tern_is_dir(path)) rc = tern_hf_load_model(m, path);
    else if (!tern_file_exists(path)) return tern_errorf("%s: no such file or directory", path);
    else if (file_magic_is(path, "GGUF")) rc = tern_gguf_load_model(m, path);
    else rc = tern_llama2c_load(m, path);
    if (rc == 0 && tokenizer_path) rc = load_vocab_override(m, tokenizer_path);
    if (rc == 0 && need_tokenizer && m->vocab.type == TERN_VOCAB_NONE)
        rc = tern_errorf("%s: the model carries no tokenizer; pass --tokenizer FILE", path);
    int dropped = 0; // packed_only says whether any tensor really has no FP32 data
    for (int i = 0; rc == 0 && i < m->n_tensors; i++) dropped |= m->tensors[i].data == NULL;
    m->packed_only = dropped;
    if (rc) {
        tern_model_free(m);
        return -1;
    }
    return 0;
}

void tern_vocab_free(tern_vocab *v) {
    if (v->tokens)
        for (int i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
    if (v->merges)
        for (int i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->token_lens);
    free(v->scores);
    free(v->token_types);
    free(v->merges);
    free(v->chat_template);
    memset(v, 0, sizeof *v);
}

int tern_vocab_find(const tern_vocab *v, const char *token) {
    for (int i = 0; i < v->n_tokens; i++)
        if (strcmp(v->tokens[i], token) == 0) return i;
    return -1;
}

uint64_t tern_vocab_fingerprint(const tern_vocab *v) {
    int32_t head[9] = {v->type, v->n_tokens, v->n_merges, v->bos_id, v->eos_id, v->unk_id,
                       v->add_bos, v->add_eos, v->add_space_prefix};
    uint64_t h = tern_hash64(head, sizeof head, 0);
    if (v->type == TERN_VOCAB_BPE) h = tern_hash64(v->pre, strlen(v->pre), h); // SPM has no pre-tokenizer
    for (int i = 0; i < v->n_tokens; i++) h = tern_hash64(v->tokens[i], (size_t)v->token_lens[i], h);
    if (v->scores) h = tern_hash64(v->scores, (size_t)v->n_tokens * sizeof(float), h);
    if (v->token_types) h = tern_hash64(v->token_types, (size_t)v->n_tokens * sizeof(int), h);
    for (int i = 0; i < v->n_merges; i++) h = tern_hash64(v->merges[i], strlen(v->merges[i]), h);
    return h;
}

void tern_model_free(tern_model *m) {
    for (int i = 0; i < m->n_tensors; i++) {
        tern_free(m->tensors[i].data);
        tern_row_source_free(m->tensors[i].rows);
        if (m->tensors[i].packed_copy != m->tensors[i].packed) tern_free(m->tensors[i].packed_copy);
        tern_free((void *)m->tensors[i].packed);
    }
    free(m->tensors);
    tern_vocab_free(&m->vocab);
    memset(m, 0, sizeof *m);
}

int tern_model_require_llama(const tern_model *m, const char *what) {
    const tern_config *c = &m->cfg;
    if (!c->sub_norms && !c->act_int8 && c->ffn_act == TERN_FFN_SILU) return 0;
    return tern_errorf("%s: %s supports the LLaMA architecture, not %s (sub-norms, relu² FFN or int8 activations)",
                       m->path, what, c->act_int8 ? "BitNet b1.58 checkpoints" : c->arch);
}

tern_tensor *tern_model_find(const tern_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

tern_tensor *tern_model_add_tensor(tern_model *m, const char *name, int ndim, const int64_t *shape,
                                   const char *src_type) {
    return tern_model_add_tensor_ex(m, name, ndim, shape, src_type, 1);
}

tern_tensor *tern_model_add_tensor_ex(tern_model *m, const char *name, int ndim, const int64_t *shape,
                                      const char *src_type, int zero) {
    if (ndim < 1 || ndim > TERN_MAX_DIMS) {
        tern_errorf("%s: tensor %s has %d dimensions", m->path, name, ndim);
        return NULL;
    }
    if (strlen(name) >= TERN_NAME_MAX) {
        tern_errorf("%s: tensor name too long: %.40s...", m->path, name);
        return NULL;
    }
    if (tern_model_find(m, name)) {
        tern_errorf("%s: duplicate tensor %s", m->path, name);
        return NULL;
    }
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0 || shape[d] > (int64_t)1 << 40 ||
            tern_mul_size(numel, (size_t)shape[d], &numel)) {
            tern_errorf("%s: tensor %s has an invalid shape", m->path, name);
            return NULL;
        }
    }
    size_t bytes;
    if (numel > ((size_t)1 << 36) || tern_mul_size(numel, sizeof(float), &bytes)) {
        tern_errorf("%s: tensor %s is too large (%zu elements)", m->path, name, numel);
        return NULL;
    }
    if (m->n_tensors == m->cap_tensors) {
        int cap = m->cap_tensors ? 2 * m->cap_tensors : 64;
        tern_tensor *t = realloc(m->tensors, (size_t)cap * sizeof *t);
        if (!t) {
            tern_errorf("out of memory");
            return NULL;
        }
        m->tensors = t;
        m->cap_tensors = cap;
    }
    float *data = zero ? tern_calloc(bytes) : tern_alloc(bytes);
    if (!data) return NULL;
    tern_tensor *t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->numel = (int64_t)numel;
    t->data = data;
    snprintf(t->src_type, sizeof t->src_type, "%s", src_type ? src_type : "F32");
    return t;
}

int tern_tensor_rows(const tern_tensor *t, const int *ids, int n, float *out) {
    const size_t cols = (size_t)t->shape[t->ndim - 1];
    if (t->data) {
        for (int i = 0; i < n; i++) memcpy(out + (size_t)i * cols, t->data + (size_t)ids[i] * cols, cols * 4);
        return 0;
    }
    if (!t->rows) return tern_errorf("tensor %s has no values loaded", t->name);
    for (int i = 0; i < n; i++)
        if (tern_row_source_get(t->rows, ids[i], out + (size_t)i * cols)) return -1;
    return 0;
}

int64_t tern_model_param_count(const tern_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += m->tensors[i].numel;
    return n;
}

int tern_config_validate(const tern_config *c, const char *path) {
    // Bounds generous enough for any real LLaMA-family model, tight enough that
    // products of them cannot overflow 64-bit sizes.
    if (c->dim <= 0 || c->dim > 65536) return tern_errorf("%s: invalid dim %d", path, c->dim);
    if (c->n_layers <= 0 || c->n_layers > 1024)
        return tern_errorf("%s: invalid n_layers %d", path, c->n_layers);
    if (c->n_heads <= 0 || c->n_heads > 1024)
        return tern_errorf("%s: invalid n_heads %d", path, c->n_heads);
    if (c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return tern_errorf("%s: invalid n_kv_heads %d for %d heads", path, c->n_kv_heads, c->n_heads);
    if (c->head_dim <= 0 || c->head_dim > 1024 || c->head_dim % 2)
        return tern_errorf("%s: invalid head_dim %d", path, c->head_dim);
    if (c->hidden_dim <= 0 || c->hidden_dim > 1 << 20)
        return tern_errorf("%s: invalid hidden_dim %d", path, c->hidden_dim);
    if (c->vocab_size <= 0 || c->vocab_size > 1 << 22)
        return tern_errorf("%s: invalid vocab_size %d", path, c->vocab_size);
    if (c->max_seq <= 0 || c->max_seq > 1 << 24)
        return tern_errorf("%s: invalid context length %d", path, c->max_seq);
    if (!(c->rope_theta > 0)) return tern_errorf("%s: invalid rope theta %g", path, c->rope_theta);
    if (!(c->rms_eps > 0 && c->rms_eps < 1)) return tern_errorf("%s: invalid rms eps %g", path, c->rms_eps);
    if (c->rope_scaling != TERN_ROPE_SCALING_NONE && !(c->rope_factor > 0))
        return tern_errorf("%s: invalid rope scaling factor %g", path, c->rope_factor);
    return 0;
}

// Hugging Face's LLaMA applies RoPE with rotate_half, pairing element i of a
// head with element i + hd/2; Meta's original weights (and GGUF, llama2.c and
// tern) pair adjacent elements (2i, 2i+1). HF's conversion script permuted
// the q/k rows to make the two agree, so we undo it: within each head, tern row
// 2i = HF row i and tern row 2i+1 = HF row i + hd/2. This is the same mapping
// as llama.cpp's convert_hf_to_gguf.py permute(), which reshapes the rows to
// (heads, 2, hd/2) and swaps the last two axes: GGUF row h*hd + 2i + j comes
// from HF row h*hd + j*hd/2 + i. Biases (cols == 1) permute the same way.
int tern_permute_rope_rows(float *data, int heads, int hd, int64_t cols) {
    size_t row = (size_t)cols * sizeof(float);
    float *tmp = malloc((size_t)hd * row);
    if (!tmp) return tern_errorf("out of memory");
    for (int h = 0; h < heads; h++) {
        float *head = data + (size_t)h * hd * cols;
        memcpy(tmp, head, (size_t)hd * row);
        for (int i = 0; i < hd / 2; i++) {
            memcpy(head + (size_t)(2 * i) * cols, tmp + (size_t)i * cols, row);
            memcpy(head + (size_t)(2 * i + 1) * cols, tmp + (size_t)(i + hd / 2) * cols, row);
        }
    }
    free(tmp);
    return 0;
}

static const float *bind_one(const tern_model *m, const char *name, int64_t d0, int64_t d1,
                             int required, int *err) {
    const tern_tensor *t = tern_model_find(m, name);
    if (!t) {
        if (required && !*err) *err = tern_errorf("%s: missing tensor %s", m->path, name);
        return NULL;
    }
    int ok = d1 ? (t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1)
                : (t->ndim == 1 && t->shape[0] == d0);
    if (!ok && !*err) {
        char got[64] = "";
        for (int d = 0; d < t->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "x" : "",
                     (long long)t->shape[d]);
        if (d1) *err = tern_errorf("%s: tensor %s has shape %s, expected %lldx%lld", m->path, name,
                                   got, (long long)d0, (long long)d1);
        else *err = tern_errorf("%s: tensor %s has shape %s, expected %lld", m->path, name, got,
                                (long long)d0);
    }
    return ok ? t->data : NULL;
}

int tern_model_bind(const tern_model *m, tern_weights *w) {
    const tern_config *c = &m->cfg;
    memset(w, 0, sizeof *w);
    if (tern_config_validate(c, m->path)) return -1;
    int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    int err = 0;
    w->layers = calloc((size_t)c->n_layers, sizeof *w->layers);
    if (!w->layers) return tern_errorf("out of memory");
    w->tok_embd = bind_one(m, "token_embd.weight", c->vocab_size, c->dim, 1, &err);
    w->out_norm = bind_one(m, "output_norm.weight", c->dim, 0, 1, &err);
    w->output = c->tied_embeddings ? w->tok_embd
                                   : bind_one(m, "output.weight", c->vocab_size, c->dim, 1, &err);
    char name[TERN_NAME_MAX];
#define BIND(field, suffix, d0, d1, req)                                  \
    do {                                                                   \
        snprintf(name, sizeof name, "blk.%d.%s", l, suffix);               \
        L->field = bind_one(m, name, d0, d1, req, &err);                   \
    } while (0)
    for (int l = 0; l < c->n_layers && !err; l++) {
        tern_layer_weights *L = &w->layers[l];
        BIND(attn_norm, "attn_norm.weight", c->dim, 0, 1);
        BIND(wq, "attn_q.weight", q_dim, c->dim, 1);
        BIND(wk, "attn_k.weight", kv_dim, c->dim, 1);
        BIND(wv, "attn_v.weight", kv_dim, c->dim, 1);
        BIND(wo, "attn_output.weight", c->dim, q_dim, 1);
        BIND(ffn_norm, "ffn_norm.weight", c->dim, 0, 1);
        BIND(w_gate, "ffn_gate.weight", c->hidden_dim, c->dim, 1);
        BIND(w_up, "ffn_up.weight", c->hidden_dim, c->dim, 1);
        BIND(w_down, "ffn_down.weight", c->dim, c->hidden_dim, 1);
        BIND(bq, "attn_q.bias", q_dim, 0, c->attn_qkv_bias);
        BIND(bk, "attn_k.bias", kv_dim, 0, c->attn_qkv_bias);
        BIND(bv, "attn_v.bias", kv_dim, 0, c->attn_qkv_bias);
        BIND(bo, "attn_output.bias", c->dim, 0, c->attn_out_bias);
        BIND(b_gate, "ffn_gate.bias", c->hidden_dim, 0, c->ffn_bias);
        BIND(b_up, "ffn_up.bias", c->hidden_dim, 0, c->ffn_bias);
        BIND(b_down, "ffn_down.bias", c->dim, 0, c->ffn_bias);
        if (c->sub_norms) {
            BIND(attn_sub_norm, "attn_sub_norm.weight", q_dim, 0, 1);
            BIND(ffn_sub_norm, "ffn_sub_norm.weight", c->hidden_dim, 0, 1);
        }
    }
#undef BIND
    if (err) {
        tern_weights_free(w);
        return -1;
    }
    return 0;
}

void tern_weights_free(tern_weights *w) {
    free(w->layers);
    memset(w, 0, sizeof *w);
}
