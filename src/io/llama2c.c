// llama2.c checkpoints (legacy "v0" float32 export) and tokenizer.bin.
//
// Checkpoint: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len; a negative vocab_size means a separate classifier), then
// float32 arrays: token embedding, attention norms, wq, wk, wv, wo, ffn norms,
// w1 (gate), w2 (down), w3 (up), final norm, two RoPE tables (unused: tern
// recomputes them), and the classifier when not shared.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "core/mem.h"
#include "io/readers.h"

typedef struct {
    tern_cursor cur;
    tern_model *m;
} l2c_reader;

// Reads `layers` stacked copies of a {d0, d1} matrix (d1 == 0: a vector) into
// per-layer tensors named blk.L.<suffix>, or one tensor when layers == 0.
static int read_stacked(l2c_reader *r, const char *suffix, int layers, int64_t d0, int64_t d1) {
    int n = layers ? layers : 1;
    for (int l = 0; l < n; l++) {
        char name[TERN_NAME_MAX];
        if (layers) snprintf(name, sizeof name, "blk.%d.%s", l, suffix);
        else snprintf(name, sizeof name, "%s", suffix);
        int64_t shape[2] = {d0, d1};
        tern_tensor *t = tern_model_add_tensor(r->m, name, d1 ? 2 : 1, shape, "F32");
        if (!t) return -1;
        if (tern_cur_bytes(&r->cur, t->data, (size_t)t->numel * sizeof(float), name)) return -1;
    }
    return 0;
}

int tern_llama2c_parse(tern_model *m, const void *data, size_t size, const char *path) {
    l2c_reader r = {.m = m};
    tern_cursor_init(&r.cur, data, size, path);
    int32_t h[7];
    for (int i = 0; i < 7; i++)
        if (tern_cur_i32(&r.cur, &h[i], "llama2.c header")) return -1;
    tern_config *c = &m->cfg;
    snprintf(m->format, sizeof m->format, "llama2c");
    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->tied_embeddings = h[5] > 0;
    c->vocab_size = h[5] == INT32_MIN ? 0 : abs(h[5]);
    c->max_seq = h[6];
    c->head_dim = c->n_heads > 0 && c->dim % c->n_heads == 0 ? c->dim / c->n_heads : 0;
    c->rope_theta = 10000.0f;
    c->rms_eps = 1e-5f;
    if (tern_config_validate(c, path)) {
        // Any file without GGUF magic lands here: say what it is not, then why.
        char why[TERN_ERR_MAX];
        size_t skip = strlen(path) + 2; // the validator's "PATH: " prefix
        snprintf(why, sizeof why, "%s", strlen(tern_last_error()) > skip ? tern_last_error() + skip : tern_last_error());
        return tern_errorf("%s: not a model file (expected GGUF, a llama2.c checkpoint, or a Hugging Face "
                           "directory with config.json; as llama2.c: %s)", path, why);
    }
    // The header fixes the file size exactly; check before allocating anything.
    int64_t D = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    int64_t kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t floats = V * D + L * (2 * D + D * D * 2 + kv * D * 2 + 3 * D * H) + D +
                     (int64_t)c->max_seq * c->head_dim + (c->tied_embeddings ? 0 : V * D);
    if ((uint64_t)floats * 4 + 28 != size)
        return tern_errorf("%s: not a llama2.c checkpoint: header (dim %d, layers %d, vocab %d) implies "
                           "%lld bytes but the file has %zu",
                           path, c->dim, c->n_layers, c->vocab_size, (long long)(floats * 4 + 28), size);
    if (read_stacked(&r, "token_embd.weight", 0, V, D) ||
        read_stacked(&r, "attn_norm.weight", c->n_layers, D, 0) ||
        read_stacked(&r, "attn_q.weight", c->n_layers, D, D) ||
        read_stacked(&r, "attn_k.weight", c->n_layers, kv, D) ||
        read_stacked(&r, "attn_v.weight", c->n_layers, kv, D) ||
        read_stacked(&r, "attn_output.weight", c->n_layers, D, D) ||
        read_stacked(&r, "ffn_norm.weight", c->n_layers, D, 0) ||
        read_stacked(&r, "ffn_gate.weight", c->n_layers, H, D) ||
        read_stacked(&r, "ffn_down.weight", c->n_layers, D, H) ||
        read_stacked(&r, "ffn_up.weight", c->n_layers, H, D) ||
        read_stacked(&r, "output_norm.weight", 0, D, 0))
        return -1;
    if (tern_cur_skip(&r.cur, (size_t)c->max_seq * (size_t)c->head_dim * 4, "RoPE tables")) return -1;
    if (!c->tied_embeddings && read_stacked(&r, "output.weight", 0, V, D)) return -1;
    return 0;
}

int tern_llama2c_load(tern_model *m, const char *path) {
    tern_blob b;
    if (tern_blob_open(&b, path)) return -1;
    int rc = tern_llama2c_parse(m, b.data, b.size, path);
    tern_blob_close(&b);
    return rc;
}

// Replaces literal spaces with U+2581 so every SentencePiece vocabulary spells
// spaces the same way (llama2.c's exporter had turned them back into ' ').
static char *spm_piece(const uint8_t *s, int len, int *out_len) {
    int spaces = 0;
    for (int i = 0; i < len; i++) spaces += s[i] == ' ';
    char *d = malloc((size_t)len + 2 * (size_t)spaces + 1);
    if (!d) return NULL;
    int k = 0;
    for (int i = 0; i < len; i++) {
        if (s[i] == ' ') {
            d[k++] = (char)0xE2;
            d[k++] = (char)0x96;
            d[k++] = (char)0x81;
        } else {
            d[k++] = (char)s[i];
        }
    }
    d[k] = 0;
    *out_len = k;
    return d;
}

static int is_byte_piece(const char *s, int len) {
    return len == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>';
}

int tern_llama2c_tokenizer_parse(tern_vocab *v, const void *data, size_t size, int n_tokens,
                                 const char *path) {
    tern_cursor cur;
    tern_cursor_init(&cur, data, size, path);
    int32_t max_len;
    if (tern_cur_i32(&cur, &max_len, "tokenizer header")) return -1;
    if (max_len <= 0 || max_len > 1 << 16)
        return tern_errorf("%s: not a llama2.c tokenizer (max token length %d)", path, max_len);
    if (n_tokens <= 0 || (size_t)n_tokens > size / 8)
        return tern_errorf("%s: tokenizer too short for %d tokens", path, n_tokens);
    memset(v, 0, sizeof *v);
    v->type = TERN_VOCAB_SPM;
    v->tokens = calloc((size_t)n_tokens, sizeof *v->tokens);
    v->token_lens = calloc((size_t)n_tokens, sizeof *v->token_lens);
    v->scores = calloc((size_t)n_tokens, sizeof *v->scores);
    v->token_types = calloc((size_t)n_tokens, sizeof *v->token_types);
    if (!v->tokens || !v->token_lens || !v->scores || !v->token_types) return tern_errorf("out of memory");
    v->n_tokens = n_tokens;
    for (int i = 0; i < n_tokens; i++) {
        int32_t len;
        if (tern_cur_f32(&cur, &v->scores[i], "token score") || tern_cur_i32(&cur, &len, "token length"))
            return -1;
        if (len < 0 || len > max_len)
            return tern_errorf("%s: token %d has length %d (max %d)", path, i, len, max_len);
        const uint8_t *s = tern_cur_view(&cur, (size_t)len, "token bytes");
        if (!s) return -1;
        v->tokens[i] = spm_piece(s, len, &v->token_lens[i]);
        if (!v->tokens[i]) return tern_errorf("out of memory");
        v->token_types[i] = is_byte_piece(v->tokens[i], v->token_lens[i]) ? TERN_TOKEN_BYTE : TERN_TOKEN_NORMAL;
    }
    // llama2.c's SentencePiece convention: 0 <unk>, 1 <s>, 2 </s>; BOS is added.
    v->unk_id = 0;
    v->bos_id = n_tokens > 1 ? 1 : -1;
    v->eos_id = n_tokens > 2 ? 2 : -1;
    v->pad_id = -1;
    if (n_tokens > 0) v->token_types[0] = TERN_TOKEN_UNKNOWN;
    if (n_tokens > 2) v->token_types[1] = v->token_types[2] = TERN_TOKEN_CONTROL;
    v->add_bos = 1;
    v->add_space_prefix = 1;
    return 0;
}

int tern_llama2c_tokenizer_load(tern_vocab *v, const char *path, int n_tokens) {
    tern_blob b;
    if (tern_blob_open(&b, path)) return -1;
    int rc = tern_llama2c_tokenizer_parse(v, b.data, b.size, n_tokens, path);
    tern_blob_close(&b);
    return rc;
}
