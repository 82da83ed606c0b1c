// Hugging Face model directory: config.json, model.safetensors (or shards
// listed by model.safetensors.index.json), tokenizer.json and
// tokenizer_config.json. The LLaMA family (llama, mistral) and BitNet b1.58
// (BitNetForCausalLM, or LLaMA with a "bitnet" quantization_config: ternary
// linears packed 4 per byte with a per-tensor weight_scale, io/bitnet.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "core/mem.h"
#include "io/bitnet.h"
#include "io/json.h"
#include "io/readers.h"
#include "io/safetensors.h"

static void path_join(char *dst, size_t cap, const char *dir, const char *name) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--; // "dir/" and "dir" name the same files
    snprintf(dst, cap, "%.*s/%s", (int)n, dir, name);
}

// ---- config.json ------------------------------------------------------------

// Reads an integer field; absent or null gives `def`, or an error when required.
static int cfg_int(const tern_json *root, const char *key, int def, int required, const char *path, int *out) {
    const tern_json *v = tern_json_get(root, key);
    if (!v || v->type == TERN_JSON_NULL) {
        if (required) return tern_errorf("%s: missing %s", path, key);
        *out = def;
        return 0;
    }
    if (v->type != TERN_JSON_NUMBER || !v->is_int || v->i < INT32_MIN || v->i > INT32_MAX)
        return tern_errorf("%s: %s must be an integer", path, key);
    *out = (int)v->i;
    return 0;
}

static int cfg_float(const tern_json *root, const char *key, float def, const char *path, float *out) {
    const tern_json *v = tern_json_get(root, key);
    if (!v || v->type == TERN_JSON_NULL) {
        *out = def;
        return 0;
    }
    if (v->type != TERN_JSON_NUMBER) return tern_errorf("%s: %s must be a number", path, key);
    *out = (float)v->num;
    return 0;
}

static int cfg_bool(const tern_json *root, const char *key, int def, const char *path, int *out) {
    int b = tern_json_bool(tern_json_get(root, key), def);
    if (b < 0) return tern_errorf("%s: %s must be true or false", path, key);
    *out = b;
    return 0;
}

// model_type, or the architectures[0] class name when model_type is absent.
// BitNet is LLaMA plus sub-norms and a relu² FFN (hidden_act, checked by the caller).
static int check_arch(const tern_json *root, const char *path, tern_config *c) {
    const char *mt = tern_json_str(tern_json_get(root, "model_type"));
    const char *arch = tern_json_str(tern_json_at(tern_json_get(root, "architectures"), 0));
    const char *name = mt ? mt : arch;
    if (!name) return tern_errorf("%s: no model_type or architectures", path);
    // Mistral is LLaMA with an optional sliding window (handled by the caller).
    static const struct {
        const char *name, *arch;
        int sub_norms;
    } known[] = {
        {"llama", "llama", 0}, {"mistral", "llama", 0}, {"LlamaForCausalLM", "llama", 0},
        {"MistralForCausalLM", "llama", 0}, {"bitnet", "bitnet", 1}, {"BitNetForCausalLM", "bitnet", 1},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i].name) == 0) {
            snprintf(c->arch, sizeof c->arch, "%s", known[i].arch);
            c->sub_norms = known[i].sub_norms;
            return 0;
        }
    return tern_errorf("%s: unsupported architecture '%.64s' (tern supports the LLaMA family and BitNet)", path,
                       name);
}

// hidden_act: silu (LLaMA's default) or relu2 (BitNet's default).
static int parse_act(const tern_json *root, const char *path, tern_config *c) {
    const tern_json *v = tern_json_get(root, "hidden_act");
    const char *act = tern_json_str(v);
    if (!v || v->type == TERN_JSON_NULL) act = c->sub_norms ? "relu2" : "silu";
    if (act && strcmp(act, "silu") == 0) c->ffn_act = TERN_FFN_SILU;
    else if (act && strcmp(act, "relu2") == 0) c->ffn_act = TERN_FFN_RELU2;
    else return tern_errorf("%s: unsupported hidden_act '%.32s' (tern supports silu and relu2)", path, act ? act : "?");
    return 0;
}

// How BitNet-quantized linears are stored (quantization_config with quant_method "bitnet").
typedef struct {
    int on;
    int divide; // linear_class "bitlinear" (the default): W = T / weight_scale; "autobitlinear": T * weight_scale
    int online; // quantization_mode "online": float master weights, ternarized at load
} hf_bitnet;

static int str_option(const tern_json *q, const char *key, const char *a, const char *b, const char *path) {
    const tern_json *v = tern_json_get(q, key);
    if (!v || v->type == TERN_JSON_NULL || tern_json_str_eq(v, a)) return 0;
    if (tern_json_str_eq(v, b)) return 1;
    return tern_errorf("%s: quantization_config.%s must be \"%s\" or \"%s\"", path, key, a, b);
}

static int parse_bitnet(const tern_json *root, const char *path, tern_config *c, hf_bitnet *b) {
    const tern_json *q = tern_json_get(root, "quantization_config");
    memset(b, 0, sizeof *b);
    if (!q || q->type == TERN_JSON_NULL) {
        if (c->sub_norms) // BitNetForCausalLM without it is the plain float model HF would run
            return tern_errorf("%s: BitNet model without a bitnet quantization_config (tern runs BitNet b1.58 "
                               "checkpoints)", path);
        return 0;
    }
    const char *method = tern_json_str(tern_json_get(q, "quant_method"));
    if (!method || strcmp(method, "bitnet") != 0)
        return tern_errorf("%s: unsupported quantization_config quant_method '%.32s' (tern reads bitnet)", path,
                           method ? method : "?");
    int lc = str_option(q, "linear_class", "bitlinear", "autobitlinear", path);
    int mode = str_option(q, "quantization_mode", "offline", "online", path);
    if (lc < 0 || mode < 0) return -1;
    if (tern_json_bool(tern_json_get(q, "use_rms_norm"), 0) != 0)
        return tern_errorf("%s: quantization_config.use_rms_norm is not supported", path);
    const tern_json *skip = tern_json_get(q, "modules_to_not_convert");
    for (size_t i = 0; skip && skip->type == TERN_JSON_ARRAY && i < skip->len; i++) {
        const char *mod = tern_json_str(&skip->items[i]);
        if (!mod || strncmp(mod, "lm_head", 7) != 0)
            return tern_errorf("%s: quantization_config.modules_to_not_convert may only name lm_head", path);
    }
    b->on = 1;
    b->divide = !lc;
    b->online = mode;
    c->act_int8 = 1;
    snprintf(c->quant, sizeof c->quant, "BitNet b1.58 ternary (%s, per-tensor scale), int8 per-token activations",
             b->online ? "float master weights ternarized at load" : "2-bit packed");
    return 0;
}

// rope_parameters (transformers 5) when it is an object, else the config itself.
static const tern_json *rope_params(const tern_json *root) {
    const tern_json *rp = tern_json_get(root, "rope_parameters");
    return rp && rp->type == TERN_JSON_OBJECT ? rp : root;
}

static int parse_rope_scaling(const tern_json *root, const char *path, tern_config *c) {
    const tern_json *rs = tern_json_get(root, "rope_scaling");
    // transformers 5 writes rope_parameters (rope_type "default" when unscaled) instead.
    if (!rs || rs->type == TERN_JSON_NULL) rs = tern_json_get(root, "rope_parameters");
    c->rope_scaling = TERN_ROPE_SCALING_NONE;
    if (!rs || rs->type == TERN_JSON_NULL) return 0;
    if (rs->type != TERN_JSON_OBJECT) return tern_errorf("%s: rope_scaling must be an object or null", path);
    const tern_json *t = tern_json_get(rs, "rope_type");
    if (!t) t = tern_json_get(rs, "type"); // older transformers spelled it "type"
    const char *type = tern_json_str(t);
    if (!type) return tern_errorf("%s: rope_scaling has no rope_type", path);
    if (strcmp(type, "default") == 0) return 0;
    if (strcmp(type, "linear") == 0) {
        c->rope_scaling = TERN_ROPE_SCALING_LINEAR;
        return cfg_float(rs, "factor", 0, path, &c->rope_factor);
    }
    if (strcmp(type, "llama3") == 0) {
        c->rope_scaling = TERN_ROPE_SCALING_LLAMA3;
        if (cfg_float(rs, "factor", 0, path, &c->rope_factor) ||
            cfg_float(rs, "low_freq_factor", 1, path, &c->rope_low_freq_factor) ||
            cfg_float(rs, "high_freq_factor", 4, path, &c->rope_high_freq_factor) ||
            cfg_int(rs, "original_max_position_embeddings", 8192, 0, path, &c->rope_orig_max_seq))
            return -1;
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_orig_max_seq <= 0)
            return tern_errorf("%s: invalid llama3 rope_scaling parameters", path);
        return 0;
    }
    return tern_errorf("%s: unsupported rope_scaling type '%.32s' (tern supports linear and llama3)", path, type);
}

// config.json's document `r` (errors name `path`); `dir` names the model when
// the config does not.
static int parse_config_doc(tern_model *m, const tern_json *r, const char *path, const char *dir, hf_bitnet *bq) {
    tern_config *c = &m->cfg;
    int mlp_bias = 0, bias = 0, window = 0;
    if (r->type != TERN_JSON_OBJECT) return tern_errorf("%s: not a JSON object", path);
    if (check_arch(r, path, c) || parse_act(r, path, c) || parse_bitnet(r, path, c, bq) ||
        cfg_int(r, "hidden_size", 0, 1, path, &c->dim) ||
        cfg_int(r, "num_hidden_layers", 0, 1, path, &c->n_layers) ||
        cfg_int(r, "num_attention_heads", 0, 1, path, &c->n_heads) ||
        cfg_int(r, "num_key_value_heads", c->n_heads, 0, path, &c->n_kv_heads) ||
        cfg_int(r, "head_dim", c->n_heads > 0 ? c->dim / c->n_heads : 0, 0, path, &c->head_dim) ||
        cfg_int(r, "intermediate_size", 0, 1, path, &c->hidden_dim) ||
        cfg_int(r, "vocab_size", 0, 1, path, &c->vocab_size) ||
        cfg_int(r, "max_position_embeddings", 2048, 0, path, &c->max_seq) ||
        cfg_int(r, "sliding_window", 0, 0, path, &window) ||
        cfg_float(tern_json_get(r, "rope_theta") ? r : rope_params(r), "rope_theta", 10000.0f, path,
                  &c->rope_theta) ||
        cfg_float(r, "rms_norm_eps", 1e-6f, path, &c->rms_eps) ||
        cfg_bool(r, "tie_word_embeddings", 0, path, &c->tied_embeddings) ||
        cfg_bool(r, "attention_bias", 0, path, &bias) || cfg_bool(r, "mlp_bias", 0, path, &mlp_bias) ||
        parse_rope_scaling(r, path, c))
        return -1;
    const tern_json *hd = tern_json_get(r, "head_dim");
    if (c->n_heads > 0 && c->dim % c->n_heads && (!hd || hd->type == TERN_JSON_NULL))
        return tern_errorf("%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->dim,
                           c->n_heads);
    if (mlp_bias) return tern_errorf("%s: mlp_bias is not supported (the LLaMA MLP has no biases)", path);
    // A sliding window only changes attention beyond `window` positions, so
    // capping the context there makes full attention exact (Mistral).
    if (window > 0 && window < c->max_seq) c->max_seq = window;
    // LLaMA's attention_bias adds biases to all four projections.
    c->attn_qkv_bias = c->attn_out_bias = bias;
    const char *name = tern_json_str(tern_json_get(r, "_name_or_path"));
    if (!name || !*name) {
        name = strrchr(dir, '/');
        name = name && name[1] ? name + 1 : dir;
    }
    snprintf(c->name, sizeof c->name, "%s", name);
    return tern_config_validate(c, path);
}

static int parse_config(tern_model *m, const char *dir, hf_bitnet *bq) {
    char path[1024];
    path_join(path, sizeof path, dir, "config.json");
    tern_json_doc doc;
    if (tern_json_load(&doc, path)) return -1;
    int rc = parse_config_doc(m, doc.root, path, dir, bq);
    tern_json_free(&doc);
    return rc;
}

// ---- weights ----------------------------------------------------------------

typedef struct {
    tern_model *m;
    const char *dir;
    const tern_json *weight_map; // sharded: tensor name -> shard file (NULL otherwise)
    hf_bitnet bitnet;
} hf_loader;

// A decoder linear's dimensions, in units of the config (its shape is {rows, cols}).
typedef enum { DIM_NONE, DIM_D, DIM_Q, DIM_KV, DIM_H } dim_kind;

static int64_t dim_of(const tern_config *c, dim_kind k) {
    return k == DIM_D ? c->dim : k == DIM_Q ? (int64_t)c->n_heads * c->head_dim
         : k == DIM_KV ? (int64_t)c->n_kv_heads * c->head_dim : k == DIM_H ? c->hidden_dim : 0;
}

typedef struct {
    int rope_heads;     // > 0: q/k rows need the RoPE permutation (this many heads)
    int64_t rows, cols; // > 0 for a decoder linear's weight
} hf_map;

// HF tensor name -> tern name. Returns 1 when mapped (filling *map), 0 for
// tensors tern does not use.
static int map_name(const tern_config *c, const char *hf, char *out, size_t cap, hf_map *map) {
    static const struct {
        const char *hf, *tern;
        int rope; // 1: q (n_heads), 2: k (n_kv_heads)
        dim_kind rows, cols; // decoder linears' weights
    } global[] = {
        {"model.embed_tokens.weight", "token_embd.weight", 0, DIM_NONE, DIM_NONE},
        {"model.norm.weight", "output_norm.weight", 0, DIM_NONE, DIM_NONE},
        {"lm_head.weight", "output.weight", 0, DIM_NONE, DIM_NONE},
    }, layer[] = {
        {"self_attn.q_proj.weight", "attn_q.weight", 1, DIM_Q, DIM_D},
        {"self_attn.k_proj.weight", "attn_k.weight", 2, DIM_KV, DIM_D},
        {"self_attn.v_proj.weight", "attn_v.weight", 0, DIM_KV, DIM_D},
        {"self_attn.o_proj.weight", "attn_output.weight", 0, DIM_D, DIM_Q},
        {"self_attn.q_proj.bias", "attn_q.bias", 1, DIM_NONE, DIM_NONE},
        {"self_attn.k_proj.bias", "attn_k.bias", 2, DIM_NONE, DIM_NONE},
        {"self_attn.v_proj.bias", "attn_v.bias", 0, DIM_NONE, DIM_NONE},
        {"self_attn.o_proj.bias", "attn_output.bias", 0, DIM_NONE, DIM_NONE},
        {"mlp.gate_proj.weight", "ffn_gate.weight", 0, DIM_H, DIM_D},
        {"mlp.up_proj.weight", "ffn_up.weight", 0, DIM_H, DIM_D},
        {"mlp.down_proj.weight", "ffn_down.weight", 0, DIM_D, DIM_H},
        {"input_layernorm.weight", "attn_norm.weight", 0, DIM_NONE, DIM_NONE},
        {"post_attention_layernorm.weight", "ffn_norm.weight", 0, DIM_NONE, DIM_NONE},
        {"self_attn.attn_sub_norm.weight", "attn_sub_norm.weight", 0, DIM_NONE, DIM_NONE},
        {"mlp.ffn_sub_norm.weight", "ffn_sub_norm.weight", 0, DIM_NONE, DIM_NONE},
    };
    memset(map, 0, sizeof *map);
    for (size_t i = 0; i < sizeof global / sizeof global[0]; i++)
        if (strcmp(hf, global[i].hf) == 0) {
            snprintf(out, cap, "%s", global[i].tern);
            return 1;
        }
    static const char prefix[] = "model.layers.";
    if (strncmp(hf, prefix, sizeof prefix - 1) != 0) return 0;
    const char *p = hf + sizeof prefix - 1;
    long l = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 6; p++, digits++) l = l * 10 + (*p - '0');
    if (!digits || *p != '.' || l >= c->n_layers) return 0;
    p++;
    for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++)
        if (strcmp(p, layer[i].hf) == 0) {
            snprintf(out, cap, "blk.%ld.%s", l, layer[i].tern);
            map->rope_heads = layer[i].rope == 1 ? c->n_heads : layer[i].rope == 2 ? c->n_kv_heads : 0;
            map->rows = dim_of(c, layer[i].rows);
            map->cols = dim_of(c, layer[i].cols);
            return 1;
        }
    return 0;
}

// The per-tensor weight_scale of packed linear `t` (in the same file, or in
// the shard the index names).
static int bitnet_scale(hf_loader *L, const tern_st_file *st, const tern_st_tensor *t, float *scale) {
    char name[TERN_NAME_MAX + 16];
    size_t n = strlen(t->name);
    snprintf(name, sizeof name, "%.*s.weight_scale", (int)(n - 7), t->name); // t->name ends in ".weight"
    const tern_st_tensor *s = tern_st_find(st, name);
    tern_st_file other;
    int opened = 0, rc = 0;
    if (!s && L->weight_map) {
        const tern_json *file = tern_json_get(L->weight_map, name);
        char path[1024];
        if (file && file->type == TERN_JSON_STRING && !strchr(file->str, '/')) {
            path_join(path, sizeof path, L->dir, file->str);
            if (tern_st_open(&other, path)) return -1;
            opened = 1;
            s = tern_st_find(&other, name);
        }
    }
    if (!s) rc = tern_errorf("%s: tensor %s: missing %s (a BitNet packed linear needs its weight_scale)", st->path,
                             t->name, name);
    else if (s->numel != 1) rc = tern_errorf("%s: tensor %s has %lld elements, expected 1", st->path, name,
                                            (long long)s->numel);
    else rc = tern_st_read_f32(opened ? &other : st, s, scale);
    if (opened) tern_st_close(&other);
    return rc;
}

// A BitNet-quantized decoder linear: packed uint8 codes + weight_scale
// (offline), or float master weights ternarized here (online).
static int load_bitnet_linear(hf_loader *L, const tern_st_file *st, const tern_st_tensor *t, const char *name,
                              const hf_map *map) {
    const hf_bitnet *b = &L->bitnet;
    char what[700];
    snprintf(what, sizeof what, "%s: tensor %s", st->path, t->name);
    int64_t shape[2] = {map->rows, map->cols};
    if (!b->online) {
        if (strcmp(t->dtype, "U8") != 0)
            return tern_errorf("%s has dtype %s; BitNet offline linears are packed U8", what, t->dtype);
        if (t->ndim != 2 || t->shape[0] * 4 != map->rows || t->shape[1] != map->cols)
            return tern_errorf("%s: packed bytes [%lld, %lld] do not match its %lld x %lld weights (4 rows per byte)",
                               what, (long long)t->shape[0], (long long)(t->ndim == 2 ? t->shape[1] : 0),
                               (long long)map->rows, (long long)map->cols);
    } else if (t->ndim != 2 || t->shape[0] != map->rows || t->shape[1] != map->cols) {
        return tern_errorf("%s does not have shape %lld x %lld", what, (long long)map->rows, (long long)map->cols);
    }
    float scale = 1;
    int divide = b->divide;
    if (!b->online && bitnet_scale(L, st, t, &scale)) return -1;
    tern_tensor *tt = tern_model_add_tensor(L->m, name, 2, shape, b->online ? t->dtype : "BITNET_I2");
    if (!tt) return -1;
    if (b->online) {
        if (tern_st_read_f32(st, t, tt->data)) return -1;
        scale = tern_bitnet_ternarize(tt->data, tt->numel);
        divide = 1; // WeightQuant: T / s
    } else if (tern_bitnet_unpack_hf(t->data, map->rows, map->cols, tt->data, what)) {
        return -1;
    }
    if (map->rope_heads && tern_permute_rope_rows(tt->data, map->rope_heads, L->m->cfg.head_dim, map->cols))
        return -1;
    return tern_bitnet_attach(tt, scale, divide, what);
}

static int load_tensor(hf_loader *L, const tern_st_file *st, const tern_st_tensor *t) {
    const tern_config *c = &L->m->cfg;
    char name[TERN_NAME_MAX];
    hf_map map;
    if (!map_name(c, t->name, name, sizeof name, &map)) return 0; // e.g. rotary_emb.inv_freq
    int rope_heads = map.rope_heads;
    if (L->bitnet.on && map.rows) return load_bitnet_linear(L, st, t, name, &map);
    // Tied models reuse the embedding; a stray lm_head is ignored.
    if (c->tied_embeddings && strcmp(name, "output.weight") == 0) return 0;
    if (t->ndim < 1 || t->ndim > TERN_MAX_DIMS)
        return tern_errorf("%s: tensor %s has %d dimensions", st->path, t->name, t->ndim);
    if (rope_heads && t->shape[0] != (int64_t)rope_heads * c->head_dim)
        return tern_errorf("%s: tensor %s has %lld rows, expected %d heads x %d", st->path, t->name,
                           (long long)t->shape[0], rope_heads, c->head_dim);
    tern_tensor *tt = tern_model_add_tensor(L->m, name, t->ndim, t->shape, t->dtype);
    if (!tt) return -1;
    if (tern_st_read_f32(st, t, tt->data)) return -1;
    if (rope_heads) return tern_permute_rope_rows(tt->data, rope_heads, c->head_dim, tt->numel / t->shape[0]);
    return 0;
}

// Loads every tensor of one safetensors file. With an index, only the
// tensors the index assigns to this file count, and each must be present.
static int load_st(hf_loader *L, const tern_st_file *st, const char *file) {
    int rc = 0;
    for (int i = 0; rc == 0 && i < st->n_tensors; i++) {
        const tern_st_tensor *t = &st->tensors[i];
        if (L->weight_map && !tern_json_str_eq(tern_json_get(L->weight_map, t->name), file)) continue;
        rc = load_tensor(L, st, t);
    }
    for (size_t i = 0; rc == 0 && L->weight_map && i < L->weight_map->len; i++) {
        const tern_json *k = tern_json_key(L->weight_map, i);
        if (tern_json_str_eq(tern_json_value(L->weight_map, i), file) && !tern_st_find(st, k->str))
            rc = tern_errorf("%s: tensor %s (listed in the index) is missing", st->path, k->str);
    }
    return rc;
}

static int load_file(hf_loader *L, const char *file) {
    char path[1024];
    path_join(path, sizeof path, L->dir, file);
    tern_st_file st;
    int rc = tern_st_open(&st, path);
    if (rc == 0) rc = load_st(L, &st, file);
    tern_st_close(&st);
    return rc;
}

// A shard name from the index must be a plain file name inside the directory.
static int valid_shard_name(const tern_json *v) {
    return v && v->type == TERN_JSON_STRING && v->len > 0 && v->len == strlen(v->str) && !strchr(v->str, '/') &&
           v->str[0] != '.';
}

static int load_sharded(hf_loader *L, const char *index_path) {
    tern_json_doc doc;
    if (tern_json_load(&doc, index_path)) return -1;
    const tern_json *wm = tern_json_get(doc.root, "weight_map");
    int rc = 0;
    if (!wm || wm->type != TERN_JSON_OBJECT || wm->len == 0)
        rc = tern_errorf("%s: no weight_map object", index_path);
    for (size_t i = 0; rc == 0 && i < wm->len; i++)
        if (!valid_shard_name(tern_json_value(wm, i)))
            rc = tern_errorf("%s: tensor %s: invalid shard file name", index_path, tern_json_key(wm, i)->str);
    L->weight_map = wm;
    // Each distinct shard once, in order of first mention.
    for (size_t i = 0; rc == 0 && i < wm->len; i++) {
        const tern_json *file = tern_json_value(wm, i);
        size_t j = 0;
        while (j < i && !tern_json_str_eq(tern_json_value(wm, j), file->str)) j++;
        if (j == i) rc = load_file(L, file->str);
    }
    L->weight_map = NULL;
    tern_json_free(&doc);
    return rc;
}

// ---- model ------------------------------------------------------------------

// Config vocab sizes are often padded past the tokenizer (to a multiple of 64
// or so); the extra rows get placeholder tokens, as llama.cpp does.
static int pad_vocab(tern_vocab *v, int n, const char *path) {
    if (v->n_tokens == n) return 0;
    if (v->n_tokens > n)
        return tern_errorf("%s: tokenizer has %d tokens but vocab_size is %d", path, v->n_tokens, n);
    char **tokens = realloc(v->tokens, (size_t)n * sizeof *tokens);
    if (tokens) v->tokens = tokens;
    int *lens = realloc(v->token_lens, (size_t)n * sizeof *lens);
    if (lens) v->token_lens = lens;
    int *types = realloc(v->token_types, (size_t)n * sizeof *types);
    if (types) v->token_types = types;
    float *scores = v->scores ? realloc(v->scores, (size_t)n * sizeof *scores) : NULL;
    if (scores) v->scores = scores;
    if (!tokens || !lens || !types || (v->scores && !scores)) return tern_errorf("out of memory");
    for (int i = v->n_tokens; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%d]", i);
        v->tokens[i] = tern_strdup(buf);
        if (!v->tokens[i]) return -1;
        v->n_tokens = i + 1;
        v->token_lens[i] = (int)strlen(buf);
        v->token_types[i] = TERN_TOKEN_UNUSED;
        if (v->scores) v->scores[i] = -1e9f;
    }
    return 0;
}

int tern_hf_load_model(tern_model *m, const char *dir) {
    snprintf(m->format, sizeof m->format, "hf");
    if (!m->path[0]) snprintf(m->path, sizeof m->path, "%s", dir);
    hf_loader L = {.m = m, .dir = dir};
    if (parse_config(m, dir, &L.bitnet)) return -1;
    char path[1024];
    path_join(path, sizeof path, dir, "model.safetensors.index.json");
    int rc;
    if (tern_file_exists(path)) {
        rc = load_sharded(&L, path);
    } else {
        path_join(path, sizeof path, dir, "model.safetensors");
        if (!tern_file_exists(path))
            return tern_errorf("%s: no model.safetensors or model.safetensors.index.json", dir);
        rc = load_file(&L, "model.safetensors");
    }
    if (rc) return -1;
    // Check now that every tensor the forward needs is present with its shape,
    // so a broken checkpoint fails at load rather than at first use.
    tern_weights w;
    if (tern_model_bind(m, &w)) return -1;
    tern_weights_free(&w);
    path_join(path, sizeof path, dir, "tokenizer.json");
    if (tern_file_exists(path)) {
        if (tern_hf_load_vocab(&m->vocab, path) || pad_vocab(&m->vocab, m->cfg.vocab_size, path)) return -1;
    }
    return 0;
}

int tern_hf_parse_model(tern_model *m, const char *config, size_t config_len, const void *st_data, size_t st_size,
                        const char *path) {
    snprintf(m->format, sizeof m->format, "hf");
    if (!m->path[0]) snprintf(m->path, sizeof m->path, "%s", path);
    hf_loader L = {.m = m, .dir = path};
    tern_json_doc doc;
    if (tern_json_parse(&doc, config, config_len, path)) return -1;
    int rc = parse_config_doc(m, doc.root, path, path, &L.bitnet);
    tern_json_free(&doc);
    if (rc == 0) {
        tern_st_file st;
        rc = tern_st_parse(&st, st_data, st_size, path);
        if (rc == 0) rc = load_st(&L, &st, "model.safetensors");
        tern_st_close(&st);
    }
    tern_weights w;
    if (rc == 0 && (rc = tern_model_bind(m, &w)) == 0) tern_weights_free(&w);
    return rc;
}

// ---- tokenizer.json ---------------------------------------------------------

// Token -> id hash table (open addressing) for merges and special-token lookups.
typedef struct {
    int *slots; // id + 1, 0 = empty
    size_t mask;
    const tern_vocab *v;
} tok_index;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int index_build(tok_index *ix, const tern_vocab *v) {
    size_t cap = 16;
    while (cap < (size_t)v->n_tokens * 2) cap *= 2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots) return tern_errorf("out of memory");
    ix->mask = cap - 1;
    ix->v = v;
    for (int id = 0; id < v->n_tokens; id++) {
        size_t h = hash_bytes(v->tokens[id], (size_t)v->token_lens[id]) & ix->mask;
        while (ix->slots[h]) h = (h + 1) & ix->mask;
        ix->slots[h] = id + 1;
    }
    return 0;
}

static int index_find(const tok_index *ix, const char *s, size_t n) {
    for (size_t h = hash_bytes(s, n) & ix->mask; ix->slots[h]; h = (h + 1) & ix->mask) {
        int id = ix->slots[h] - 1;
        if ((size_t)ix->v->token_lens[id] == n && memcmp(ix->v->tokens[id], s, n) == 0) return id;
    }
    return -1;
}

// Places token `s` at `id`; the same content twice at one id is fine (added
// tokens usually repeat vocab entries), different content is an error.
static int put_token(tern_vocab *v, int id, const tern_json *s, int type, const char *path) {
    if (v->tokens[id]) {
        if ((size_t)v->token_lens[id] == s->len && memcmp(v->tokens[id], s->str, s->len) == 0) {
            if (type) v->token_types[id] = type;
            return 0;
        }
        return tern_errorf("%s: id %d is used by both '%.40s' and '%.40s'", path, id, v->tokens[id], s->str);
    }
    v->tokens[id] = tern_strndup(s->str, s->len);
    if (!v->tokens[id]) return -1;
    v->token_lens[id] = (int)s->len;
    v->token_types[id] = type ? type : TERN_TOKEN_NORMAL;
    return 0;
}

#define HF_MAX_VOCAB (1 << 22)

static int token_id(const tern_json *v, const char *what, const char *path) {
    if (!v || v->type != TERN_JSON_NUMBER || !v->is_int || v->i < 0 || v->i >= HF_MAX_VOCAB)
        return tern_errorf("%s: %s has an invalid id", path, what);
    return (int)v->i;
}

static int read_tokens(tern_vocab *v, const tern_json *vocab, const tern_json *added, const char *path) {
    if (!vocab || vocab->type != TERN_JSON_OBJECT) return tern_errorf("%s: model.vocab is not an object", path);
    if (added && added->type != TERN_JSON_ARRAY) return tern_errorf("%s: added_tokens is not an array", path);
    int n = 0;
    for (size_t i = 0; i < vocab->len; i++) {
        int id = token_id(tern_json_value(vocab, i), "a vocab entry", path);
        if (id < 0) return -1;
        if (id + 1 > n) n = id + 1;
    }
    for (size_t i = 0; added && i < added->len; i++) {
        int id = token_id(tern_json_get(tern_json_at(added, i), "id"), "an added token", path);
        if (id < 0) return -1;
        if (id + 1 > n) n = id + 1;
    }
    if (n == 0) return tern_errorf("%s: empty vocabulary", path);
    v->tokens = calloc((size_t)n, sizeof *v->tokens);
    v->token_lens = calloc((size_t)n, sizeof *v->token_lens);
    v->token_types = calloc((size_t)n, sizeof *v->token_types);
    if (!v->tokens || !v->token_lens || !v->token_types) return tern_errorf("out of memory");
    v->n_tokens = n;
    for (size_t i = 0; i < vocab->len; i++)
        if (put_token(v, (int)tern_json_value(vocab, i)->i, tern_json_key(vocab, i), 0, path)) return -1;
    for (size_t i = 0; added && i < added->len; i++) {
        const tern_json *a = tern_json_at(added, i), *content = tern_json_get(a, "content");
        if (!content || content->type != TERN_JSON_STRING)
            return tern_errorf("%s: added token %zu has no content", path, i);
        int special = tern_json_bool(tern_json_get(a, "special"), 0) == 1;
        int type = special ? TERN_TOKEN_CONTROL : TERN_TOKEN_USER_DEFINED;
        if (put_token(v, (int)tern_json_get(a, "id")->i, content, type, path)) return -1;
    }
    for (int id = 0; id < n; id++)
        if (!v->tokens[id]) return tern_errorf("%s: no token has id %d (ids must cover 0..%d)", path, id, n - 1);
    return 0;
}

// merges: "left right" strings (older files) or ["left", "right"] pairs.
static int read_merges(tern_vocab *v, const tern_json *merges, const char *path) {
    if (!merges || merges->type == TERN_JSON_NULL) return 0;
    if (merges->type != TERN_JSON_ARRAY) return tern_errorf("%s: model.merges is not an array", path);
    v->merges = calloc(merges->len ? merges->len : 1, sizeof *v->merges);
    if (!v->merges) return tern_errorf("out of memory");
    for (size_t i = 0; i < merges->len; i++) {
        const tern_json *e = &merges->items[i];
        char *s = NULL;
        if (e->type == TERN_JSON_STRING && memchr(e->str, ' ', e->len)) {
            s = tern_strndup(e->str, e->len);
        } else if (e->type == TERN_JSON_ARRAY && e->len == 2 && e->items[0].type == TERN_JSON_STRING &&
                   e->items[1].type == TERN_JSON_STRING) {
            size_t a = e->items[0].len, b = e->items[1].len;
            s = malloc(a + b + 2);
            if (s) {
                memcpy(s, e->items[0].str, a);
                s[a] = ' ';
                memcpy(s + a + 1, e->items[1].str, b);
                s[a + b + 1] = 0;
            }
        } else {
            return tern_errorf("%s: merge %zu is neither \"a b\" nor [\"a\", \"b\"]", path, i);
        }
        if (!s) return tern_errorf("out of memory");
        v->merges[v->n_merges++] = s;
    }
    return 0;
}

static const char LLAMA3_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int is_type(const tern_json *pt, const char *type) { return tern_json_str_eq(tern_json_get(pt, "type"), type); }

static int is_llama3_split(const tern_json *pt) {
    return is_type(pt, "Split") && tern_json_str_eq(tern_json_get(tern_json_get(pt, "pattern"), "Regex"), LLAMA3_PATTERN);
}

// Names the byte-level BPE pre-tokenizer family the tokenizer module implements.
static int detect_pre(const tern_json *pt, char *out, size_t cap, const char *path) {
    const tern_json *seq = tern_json_get(pt, "pretokenizers");
    const tern_json *a = tern_json_at(seq, 0), *b = tern_json_at(seq, 1);
    const char *fam = NULL;
    if (is_type(pt, "ByteLevel") && tern_json_bool(tern_json_get(pt, "use_regex"), 1) == 1) {
        fam = "gpt2";
    } else if (is_llama3_split(pt)) {
        fam = "llama3";
    } else if (is_type(pt, "Sequence") && seq && seq->len == 2) {
        if (is_type(a, "Digits") && tern_json_bool(tern_json_get(a, "individual_digits"), 0) == 1 &&
            is_type(b, "ByteLevel") && tern_json_bool(tern_json_get(b, "use_regex"), 1) == 1)
            fam = "smollm";
        else if (is_llama3_split(a) && is_type(b, "ByteLevel") &&
                 tern_json_bool(tern_json_get(b, "use_regex"), 1) == 0)
            fam = "llama3";
    }
    if (fam) {
        snprintf(out, cap, "%s", fam);
        return 0;
    }
    // Name what we found: "Sequence[Split, ByteLevel]", "Metaspace", ...
    char desc[160] = "none";
    const char *t = tern_json_str(tern_json_get(pt, "type"));
    if (t) snprintf(desc, sizeof desc, "%.40s", t);
    if (seq && seq->type == TERN_JSON_ARRAY) {
        size_t k = strlen(desc);
        for (size_t i = 0; i < seq->len && k + 48 < sizeof desc; i++) {
            const char *st = tern_json_str(tern_json_get(&seq->items[i], "type"));
            k += (size_t)snprintf(desc + k, sizeof desc - k, "%s%.40s", i ? ", " : "[", st ? st : "?");
        }
        if (seq->len && k + 2 < sizeof desc) snprintf(desc + k, sizeof desc - k, "]");
    }
    return tern_errorf("%s: unsupported pre-tokenizer %s (tern supports GPT-2, SmolLM and Llama 3 byte-level BPE)",
                       path, desc);
}

static int is_byte_token(const char *s, int len) {
    return len == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>';
}

// SentencePiece-style tokenizer.json: scores rank tokens by the merge that
// makes them (earlier merge = higher score), the order SPM merging follows.
static int spm_scores(tern_vocab *v, const tok_index *ix, const tern_json *normalizer, const tern_json *pre) {
    v->scores = malloc((size_t)v->n_tokens * sizeof *v->scores);
    if (!v->scores) return tern_errorf("out of memory");
    for (int i = 0; i < v->n_tokens; i++) v->scores[i] = -1e9f;
    for (int r = 0; r < v->n_merges; r++) {
        const char *sp = strchr(v->merges[r], ' ');
        char *joined = malloc(strlen(v->merges[r]) + 1);
        if (!joined) return tern_errorf("out of memory");
        size_t a = (size_t)(sp - v->merges[r]);
        memcpy(joined, v->merges[r], a);
        strcpy(joined + a, sp + 1);
        int id = index_find(ix, joined, strlen(joined));
        free(joined);
        if (id >= 0 && v->scores[id] == -1e9f) v->scores[id] = (float)-r;
    }
    for (int i = 0; i < v->n_tokens; i++)
        if (is_byte_token(v->tokens[i], v->token_lens[i])) v->token_types[i] = TERN_TOKEN_BYTE;
    // A leading space is added by a Prepend("▁") normalizer (Llama 2 style) or
    // a Metaspace pre-tokenizer that prepends.
    int prefix = 0;
    const tern_json *norms = tern_json_get(normalizer, "normalizers");
    for (size_t i = 0; norms && i < norms->len; i++)
        if (is_type(&norms->items[i], "Prepend")) prefix = 1;
    if (is_type(normalizer, "Prepend")) prefix = 1;
    if (is_type(pre, "Metaspace")) {
        const tern_json *scheme = tern_json_get(pre, "prepend_scheme");
        prefix = scheme ? !tern_json_str_eq(scheme, "never") : tern_json_bool(tern_json_get(pre, "add_prefix_space"), 1) == 1;
    }
    v->add_space_prefix = prefix;
    return 0;
}

// bos_token / eos_token in tokenizer_config.json: "<s>" or {"content": "<s>", ...}.
static int special_from_config(const tern_json *cfg, const char *key, const tok_index *ix) {
    const tern_json *t = tern_json_get(cfg, key);
    if (t && t->type == TERN_JSON_OBJECT) t = tern_json_get(t, "content");
    if (!t || t->type != TERN_JSON_STRING) return -1;
    return index_find(ix, t->str, t->len);
}

static int id_from_config(const tern_json *cfg, const char *key, int n) {
    const tern_json *t = tern_json_get(cfg, key);
    if (t && t->type == TERN_JSON_ARRAY) t = tern_json_at(t, 0); // eos_token_id may be a list
    return t && t->type == TERN_JSON_NUMBER && t->is_int && t->i >= 0 && t->i < n ? (int)t->i : -1;
}

// Does the post-processor's single-sequence template start with BOS?
static int template_adds_bos(const tern_json *pp, const tern_vocab *v, const tok_index *ix) {
    if (is_type(pp, "Sequence")) {
        const tern_json *list = tern_json_get(pp, "processors");
        for (size_t i = 0; list && i < list->len; i++)
            if (template_adds_bos(&list->items[i], v, ix)) return 1;
        return 0;
    }
    if (!is_type(pp, "TemplateProcessing") || v->bos_id < 0) return 0;
    const tern_json *first = tern_json_at(tern_json_get(pp, "single"), 0);
    const tern_json *id = tern_json_get(tern_json_get(first, "SpecialToken"), "id");
    return id && id->type == TERN_JSON_STRING && index_find(ix, id->str, id->len) == v->bos_id;
}

// tokenizer_config.json's chat_template: a string, or a list of {"name",
// "template"} of which "default" is the chat template. Absent: none.
static int read_chat_template(tern_vocab *v, const tern_json *t, const char *path) {
    for (size_t i = 0; t && t->type == TERN_JSON_ARRAY && i < t->len; i++)
        if (tern_json_str_eq(tern_json_get(tern_json_at(t, i), "name"), "default"))
            t = tern_json_get(tern_json_at(t, i), "template");
    if (!t || t->type == TERN_JSON_ARRAY || t->type == TERN_JSON_NULL) return 0;
    if (t->type != TERN_JSON_STRING || strlen(t->str) != t->len)
        return tern_errorf("%s: chat_template must be a string without NUL", path);
    v->chat_template = strdup(t->str);
    return v->chat_template ? 0 : tern_errorf("out of memory");
}

// BOS/EOS/PAD and add_bos from tokenizer_config.json, then config.json (ids),
// then the tokenizer.json post-processor.
static int read_specials(tern_vocab *v, const tok_index *ix, const tern_json *root, const char *path) {
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    v->bos_id = v->eos_id = v->pad_id = -1;
    int add_bos = -1, add_eos = 0;
    tern_json_doc tc = {0}, mc = {0};
    path_join(p, sizeof p, dir, "tokenizer_config.json");
    if (tern_file_exists(p)) {
        if (tern_json_load(&tc, p)) return -1;
        v->bos_id = special_from_config(tc.root, "bos_token", ix);
        v->eos_id = special_from_config(tc.root, "eos_token", ix);
        v->pad_id = special_from_config(tc.root, "pad_token", ix);
        int unk = special_from_config(tc.root, "unk_token", ix);
        if (unk >= 0) v->unk_id = unk;
        const tern_json *ab = tern_json_get(tc.root, "add_bos_token");
        if (ab && (ab->type == TERN_JSON_TRUE || ab->type == TERN_JSON_FALSE)) add_bos = ab->type == TERN_JSON_TRUE;
        add_eos = tern_json_bool(tern_json_get(tc.root, "add_eos_token"), 0) == 1;
        int rc = read_chat_template(v, tern_json_get(tc.root, "chat_template"), p);
        tern_json_free(&tc);
        if (rc) return -1;
    }
    path_join(p, sizeof p, dir, "chat_template.jinja"); // newer transformers keep it beside
    if (!v->chat_template && tern_file_exists(p)) {
        size_t len;
        if (tern_read_file(p, &v->chat_template, &len)) return -1;
        if (memchr(v->chat_template, 0, len)) return tern_errorf("%s: contains a NUL byte", p);
    }
    path_join(p, sizeof p, dir, "config.json");
    if ((v->bos_id < 0 || v->eos_id < 0) && tern_file_exists(p)) {
        if (tern_json_load(&mc, p)) return -1;
        if (v->bos_id < 0) v->bos_id = id_from_config(mc.root, "bos_token_id", v->n_tokens);
        if (v->eos_id < 0) v->eos_id = id_from_config(mc.root, "eos_token_id", v->n_tokens);
        tern_json_free(&mc);
    }
    if (add_bos < 0) {
        // Without an explicit flag: SentencePiece models add BOS (as
        // LlamaTokenizer does); byte-level ones do when their template says so.
        add_bos = v->type == TERN_VOCAB_SPM ? v->bos_id >= 0
                                            : template_adds_bos(tern_json_get(root, "post_processor"), v, ix);
    }
    v->add_bos = add_bos && v->bos_id >= 0;
    v->add_eos = add_eos && v->eos_id >= 0;
    return 0;
}

static int parse_tokenizer(tern_vocab *v, const tern_json *root, const char *path) {
    const tern_json *model = tern_json_get(root, "model");
    if (!model || model->type != TERN_JSON_OBJECT) return tern_errorf("%s: no \"model\" object", path);
    const tern_json *type = tern_json_get(model, "type");
    // Old files omit model.type; a merges list identifies BPE.
    if (type ? !tern_json_str_eq(type, "BPE") : !tern_json_get(model, "merges"))
        return tern_errorf("%s: unsupported tokenizer model '%.32s' (tern reads BPE tokenizers)", path,
                           tern_json_str(type) ? tern_json_str(type) : "?");
    v->unk_id = -1;
    if (read_tokens(v, tern_json_get(model, "vocab"), tern_json_get(root, "added_tokens"), path) ||
        read_merges(v, tern_json_get(model, "merges"), path))
        return -1;
    tok_index ix;
    if (index_build(&ix, v)) return -1;
    int rc = 0;
    const tern_json *unk = tern_json_get(model, "unk_token");
    if (unk && unk->type == TERN_JSON_STRING) v->unk_id = index_find(&ix, unk->str, unk->len);
    const tern_json *pre = tern_json_get(root, "pre_tokenizer");
    if (tern_json_bool(tern_json_get(model, "byte_fallback"), 0) == 1) {
        v->type = TERN_VOCAB_SPM; // Llama 2 / TinyLlama / Mistral style
        rc = spm_scores(v, &ix, tern_json_get(root, "normalizer"), pre);
    } else {
        v->type = TERN_VOCAB_BPE;
        rc = detect_pre(pre, v->pre, sizeof v->pre, path);
    }
    if (rc == 0 && v->unk_id >= 0) v->token_types[v->unk_id] = TERN_TOKEN_UNKNOWN;
    if (rc == 0) rc = read_specials(v, &ix, root, path);
    free(ix.slots);
    return rc;
}

int tern_hf_load_vocab(tern_vocab *v, const char *path) {
    memset(v, 0, sizeof *v);
    tern_json_doc doc;
    if (tern_json_load(&doc, path)) return -1;
    int rc = parse_tokenizer(v, doc.root, path);
    tern_json_free(&doc);
    return rc;
}
