#include "io/gguf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "core/half.h"
#include "core/mem.h"

#define GGUF_ALIGN 32

typedef struct {
    char *key;
    int type;
    uint64_t scalar;     // numeric scalar bits (little-endian, low bytes used)
    char *str;           // STRING
    int arr_type;        // ARRAY
    const void *arr;
    uint64_t arr_n;
    const int *arr_lens;
} kv_entry;

typedef struct {
    char *name;
    uint32_t type;
    int ndim;
    int64_t shape[TERN_MAX_DIMS];
    const void *data;
    uint64_t nbytes;
} tensor_entry;

struct tern_gguf_writer {
    kv_entry *kv;
    int n_kv, cap_kv;
    tensor_entry *tensors;
    int n_tensors, cap_tensors;
};

static int grow(void **arr, int *cap, int n, size_t elem) {
    if (n < *cap) return 0;
    int c = *cap ? 2 * *cap : 32;
    void *p = realloc(*arr, (size_t)c * elem);
    if (!p) return tern_errorf("out of memory");
    *arr = p;
    *cap = c;
    return 0;
}

tern_gguf_writer *tern_gguf_writer_new(void) {
    tern_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) tern_errorf("out of memory");
    return w;
}

void tern_gguf_writer_free(tern_gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].str);
    }
    for (int i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kv);
    free(w->tensors);
    free(w);
}

static kv_entry *new_kv(tern_gguf_writer *w, const char *key, int type) {
    if (grow((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof *w->kv)) return NULL;
    kv_entry *e = &w->kv[w->n_kv];
    memset(e, 0, sizeof *e);
    e->key = tern_strdup(key);
    if (!e->key) return NULL;
    e->type = type;
    w->n_kv++;
    return e;
}

static int set_scalar(tern_gguf_writer *w, const char *key, int type, const void *v, size_t size) {
    kv_entry *e = new_kv(w, key, type);
    if (!e) return -1;
    memcpy(&e->scalar, v, size);
    return 0;
}

int tern_gguf_set_u32(tern_gguf_writer *w, const char *k, uint32_t v) { return set_scalar(w, k, TERN_GGUF_U32, &v, 4); }
int tern_gguf_set_i32(tern_gguf_writer *w, const char *k, int32_t v) { return set_scalar(w, k, TERN_GGUF_I32, &v, 4); }
int tern_gguf_set_f32(tern_gguf_writer *w, const char *k, float v) { return set_scalar(w, k, TERN_GGUF_F32, &v, 4); }
int tern_gguf_set_bool(tern_gguf_writer *w, const char *k, int v) {
    uint8_t b = v != 0;
    return set_scalar(w, k, TERN_GGUF_BOOL, &b, 1);
}

int tern_gguf_set_str(tern_gguf_writer *w, const char *key, const char *v) {
    kv_entry *e = new_kv(w, key, TERN_GGUF_STRING);
    if (!e) return -1;
    e->str = tern_strdup(v);
    return e->str ? 0 : -1;
}

int tern_gguf_set_array(tern_gguf_writer *w, const char *key, int type, const void *data, uint64_t n,
                        const int *lens) {
    kv_entry *e = new_kv(w, key, TERN_GGUF_ARRAY);
    if (!e) return -1;
    e->arr_type = type;
    e->arr = data;
    e->arr_n = n;
    e->arr_lens = lens;
    return 0;
}

int tern_gguf_add_tensor(tern_gguf_writer *w, const char *name, uint32_t ggml_type, int ndim,
                         const int64_t *shape, const void *data, uint64_t nbytes) {
    if (ndim < 1 || ndim > TERN_MAX_DIMS) return tern_errorf("gguf: tensor %s has %d dims", name, ndim);
    if (grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors, sizeof *w->tensors)) return -1;
    tensor_entry *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = tern_strdup(name);
    if (!t->name) return -1;
    t->type = ggml_type;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof(int64_t));
    t->data = data;
    t->nbytes = nbytes;
    w->n_tensors++;
    return 0;
}

static void put_string(FILE *f, const char *s, uint64_t len) {
    fwrite(&len, 8, 1, f);
    fwrite(s, 1, (size_t)len, f);
}

static size_t type_size(int type) {
    switch (type) {
    case TERN_GGUF_U8: case TERN_GGUF_I8: case TERN_GGUF_BOOL: return 1;
    case TERN_GGUF_U16: case TERN_GGUF_I16: return 2;
    case TERN_GGUF_U32: case TERN_GGUF_I32: case TERN_GGUF_F32: return 4;
    default: return 8;
    }
}

static void put_kv(FILE *f, const kv_entry *e) {
    put_string(f, e->key, strlen(e->key));
    uint32_t type = (uint32_t)e->type;
    fwrite(&type, 4, 1, f);
    if (e->type == TERN_GGUF_STRING) {
        put_string(f, e->str, strlen(e->str));
    } else if (e->type == TERN_GGUF_ARRAY) {
        uint32_t at = (uint32_t)e->arr_type;
        fwrite(&at, 4, 1, f);
        fwrite(&e->arr_n, 8, 1, f);
        if (e->arr_type == TERN_GGUF_STRING) {
            const char *const *strs = e->arr;
            for (uint64_t i = 0; i < e->arr_n; i++)
                put_string(f, strs[i], e->arr_lens ? (uint64_t)e->arr_lens[i] : strlen(strs[i]));
        } else {
            fwrite(e->arr, type_size(e->arr_type), (size_t)e->arr_n, f);
        }
    } else {
        fwrite(&e->scalar, type_size(e->type), 1, f);
    }
}

static uint64_t align_up(uint64_t x) { return (x + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN; }

int tern_gguf_write(tern_gguf_writer *w, const char *path) {
    tern_atomic_file af;
    if (tern_atomic_open(&af, path)) return -1;
    FILE *f = af.f;
    uint32_t version = 3;
    uint64_t counts[2] = {(uint64_t)w->n_tensors, (uint64_t)w->n_kv};
    fwrite("GGUF", 1, 4, f);
    fwrite(&version, 4, 1, f);
    fwrite(counts, 8, 2, f);
    for (int i = 0; i < w->n_kv; i++) put_kv(f, &w->kv[i]);
    uint64_t offset = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        const tensor_entry *t = &w->tensors[i];
        put_string(f, t->name, strlen(t->name));
        uint32_t nd = (uint32_t)t->ndim;
        fwrite(&nd, 4, 1, f);
        for (int d = t->ndim - 1; d >= 0; d--) { // GGUF lists the innermost dimension first
            uint64_t ne = (uint64_t)t->shape[d];
            fwrite(&ne, 8, 1, f);
        }
        fwrite(&t->type, 4, 1, f);
        fwrite(&offset, 8, 1, f);
        offset = align_up(offset + t->nbytes);
    }
    static const char zeros[GGUF_ALIGN];
    long pos = ftell(f);
    fwrite(zeros, 1, (size_t)(align_up((uint64_t)pos) - (uint64_t)pos), f);
    for (int i = 0; i < w->n_tensors; i++) {
        const tensor_entry *t = &w->tensors[i];
        fwrite(t->data, 1, (size_t)t->nbytes, f);
        fwrite(zeros, 1, (size_t)(align_up(t->nbytes) - t->nbytes), f);
    }
    return tern_atomic_commit(&af);
}

// ---------------------------------------------------------------------------
// Block encoders (ggml's TQ1_0, TQ2_0, Q8_0, Q4_0 layouts; written from the block
// descriptions in docs/format.md).

static void put_f16(uint8_t *p, float d) {
    uint16_t h = tern_f32_to_f16(d);
    p[0] = (uint8_t)h, p[1] = (uint8_t)(h >> 8);
}

// n trits (t = T + 1) as one TQ1_0 byte: v = sum t_k 3^(4-k) over five digit
// places (a 4-trit byte leaves the last place 0), stored as ceil(v * 256 / 243).
static uint8_t tq1_byte(const int8_t *T, int stride, int n) {
    int v = 0;
    for (int k = 0; k < 5; k++) v = 3 * v + (k < n ? T[k * stride] + 1 : 0);
    return (uint8_t)((v * 256 + 242) / 243);
}

void tern_gguf_encode_tq1_0(const int8_t *T, float d, uint8_t *out) {
    for (int j = 0; j < 32; j++) out[j] = tq1_byte(T + j, 32, 5);             // values 0..159
    for (int j = 0; j < 16; j++) out[32 + j] = tq1_byte(T + 160 + j, 16, 5);  // values 160..239
    for (int j = 0; j < 4; j++) out[48 + j] = tq1_byte(T + 240 + j, 4, 4);    // values 240..255
    put_f16(out + 52, d);
}

void tern_gguf_encode_tq2_0(const int8_t *T, float d, uint8_t *out) {
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 32; j++) {
            int b = 0;
            for (int k = 0; k < 4; k++) b |= (T[128 * h + 32 * k + j] + 1) << (2 * k);
            out[32 * h + j] = (uint8_t)b;
        }
    put_f16(out + 64, d);
}

void tern_gguf_encode_q8_0(const int8_t *q, float d, uint8_t *out) {
    put_f16(out, d);
    memcpy(out + 2, q, 32);
}

// Q4_0: fp16 d, then byte j holds value j + 8 in its low nibble and value
// j + 16 (+ 8) in its high nibble.
void tern_gguf_encode_q4_0(const int8_t *q, float d, uint8_t *out) {
    put_f16(out, d);
    for (int j = 0; j < 16; j++) out[2 + j] = (uint8_t)((q[j] + 8) | (q[j + 16] + 8) << 4);
}

int tern_gguf_add_model_metadata(tern_gguf_writer *w, const tern_model *m) {
    const tern_config *c = &m->cfg;
    const tern_vocab *v = &m->vocab;
    int rc = 0;
    rc |= tern_gguf_set_str(w, "general.architecture", "llama");
    rc |= tern_gguf_set_str(w, "general.name", c->name[0] ? c->name : "tern model");
    rc |= tern_gguf_set_u32(w, "general.alignment", GGUF_ALIGN);
    rc |= tern_gguf_set_u32(w, "llama.context_length", (uint32_t)c->max_seq);
    rc |= tern_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    rc |= tern_gguf_set_u32(w, "llama.block_count", (uint32_t)c->n_layers);
    rc |= tern_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim);
    rc |= tern_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads);
    rc |= tern_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    rc |= tern_gguf_set_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim);
    rc |= tern_gguf_set_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim);
    rc |= tern_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim);
    rc |= tern_gguf_set_f32(w, "llama.rope.freq_base", c->rope_theta);
    rc |= tern_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->rms_eps);
    rc |= tern_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size);
    if (c->rope_scaling == TERN_ROPE_SCALING_LINEAR) {
        rc |= tern_gguf_set_str(w, "llama.rope.scaling.type", "linear");
        rc |= tern_gguf_set_f32(w, "llama.rope.scaling.factor", c->rope_factor);
    }
    if (v->type != TERN_VOCAB_NONE) {
        rc |= tern_gguf_set_str(w, "tokenizer.ggml.model", v->type == TERN_VOCAB_SPM ? "llama" : "gpt2");
        if (v->pre[0]) rc |= tern_gguf_set_str(w, "tokenizer.ggml.pre", v->pre);
        rc |= tern_gguf_set_array(w, "tokenizer.ggml.tokens", TERN_GGUF_STRING, v->tokens, (uint64_t)v->n_tokens,
                                  v->token_lens);
        if (v->scores)
            rc |= tern_gguf_set_array(w, "tokenizer.ggml.scores", TERN_GGUF_F32, v->scores, (uint64_t)v->n_tokens, NULL);
        if (v->token_types)
            rc |= tern_gguf_set_array(w, "tokenizer.ggml.token_type", TERN_GGUF_I32, v->token_types,
                                      (uint64_t)v->n_tokens, NULL);
        if (v->n_merges)
            rc |= tern_gguf_set_array(w, "tokenizer.ggml.merges", TERN_GGUF_STRING, v->merges, (uint64_t)v->n_merges,
                                      NULL);
        if (v->bos_id >= 0) rc |= tern_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos_id);
        if (v->eos_id >= 0) rc |= tern_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos_id);
        if (v->unk_id >= 0) rc |= tern_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk_id);
        if (v->pad_id >= 0) rc |= tern_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad_id);
        rc |= tern_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos);
        rc |= tern_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos);
        rc |= tern_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix);
        if (v->chat_template) rc |= tern_gguf_set_str(w, "tokenizer.chat_template", v->chat_template);
    }
    return rc ? -1 : 0;
}

int tern_gguf_write_model(const tern_model *m, const char *path) {
    tern_gguf_writer *w = tern_gguf_writer_new();
    if (!w) return -1;
    int rc = tern_gguf_add_model_metadata(w, m);
    for (int i = 0; i < m->n_tensors && rc == 0; i++) {
        const tern_tensor *t = &m->tensors[i];
        rc = tern_gguf_add_tensor(w, t->name, 0 /* GGML_TYPE_F32 */, t->ndim, t->shape, t->data,
                                  (uint64_t)t->numel * sizeof(float));
    }
    if (rc == 0) rc = tern_gguf_write(w, path);
    tern_gguf_writer_free(w);
    return rc;
}
