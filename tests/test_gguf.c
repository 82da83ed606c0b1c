// GGUF reader: dequantization of every supported tensor type against values
// computed independently in numpy (tests/ref/gguf_fixtures.py), every metadata
// value type, v2/v1 headers, a tiny complete LLaMA with its BPE vocabulary,
// and every truncation of a valid file.
#include "core/error.h"
#include "core/file.h"
#include "core/half.h"
#include "infer/packed.h"
#include "io/gguf.h"
#include "io/gguf_write.h"
#include "io/info.h"
#include "kernels/formats.h"
#include "io/model.h"
#include "io/readers.h"
#include "test.h"

#define ROW 256
#define ROWS 2

// Same order as TYPES in tests/ref/gguf_fixtures.py (and the expected file).
static const struct {
    const char *name;
    // Types whose formula is x = a*q + b may differ from numpy's separately
    // rounded multiply-then-add by 1 ulp when the compiler fuses them into an
    // FMA (GCC does under -std=gnu11). Pure products are bit-exact.
    int max_ulps;
} types[] = {
    {"F32", 0}, {"F16", 0}, {"BF16", 0}, {"Q8_0", 0}, {"Q4_0", 0}, {"Q4_1", 1},
    {"Q5_0", 0}, {"Q5_1", 1}, {"Q4_K", 1}, {"Q5_K", 1}, {"Q6_K", 0},
    {"Q2_K", 1}, {"Q3_K", 0}, {"IQ4_NL", 0}, {"IQ4_XS", 0},
};
#define N_TYPES (int)(sizeof types / sizeof types[0])

// Distance in units in the last place (same-sign floats map to ordered ints).
static int64_t ulps(float a, float b) {
    int32_t ia = (int32_t)tern_f32_to_bits(a), ib = (int32_t)tern_f32_to_bits(b);
    if (ia < 0) ia = INT32_MIN - ia;
    if (ib < 0) ib = INT32_MIN - ib;
    return ia > ib ? (int64_t)ia - ib : (int64_t)ib - ia;
}

static void check_metadata(const tern_gguf *g) {
    const tern_gguf_kv *kv;
    CHECK((kv = tern_gguf_find_kv(g, "test.u8")) && kv->type == TERN_GGUF_U8 && kv->u == 200);
    CHECK((kv = tern_gguf_find_kv(g, "test.i8")) && kv->type == TERN_GGUF_I8 && kv->i == -100);
    CHECK((kv = tern_gguf_find_kv(g, "test.u16")) && kv->type == TERN_GGUF_U16 && kv->u == 60000);
    CHECK((kv = tern_gguf_find_kv(g, "test.i16")) && kv->type == TERN_GGUF_I16 && kv->i == -30000);
    CHECK((kv = tern_gguf_find_kv(g, "test.u32")) && kv->type == TERN_GGUF_U32 && kv->u == 4000000000u);
    CHECK((kv = tern_gguf_find_kv(g, "test.i32")) && kv->type == TERN_GGUF_I32 && kv->i == -2000000000);
    CHECK((kv = tern_gguf_find_kv(g, "test.f32")) && kv->type == TERN_GGUF_F32 && kv->f == 1.5);
    CHECK((kv = tern_gguf_find_kv(g, "test.bool")) && kv->type == TERN_GGUF_BOOL && kv->u == 1);
    CHECK((kv = tern_gguf_find_kv(g, "test.u64")) && kv->type == TERN_GGUF_U64 &&
          kv->u == (1ull << 63) + 5);
    CHECK((kv = tern_gguf_find_kv(g, "test.i64")) && kv->type == TERN_GGUF_I64 && kv->i == -(1ll << 62));
    CHECK((kv = tern_gguf_find_kv(g, "test.f64")) && kv->type == TERN_GGUF_F64 && kv->f == 0.1);
    CHECK((kv = tern_gguf_find_kv(g, "test.string")) && kv->type == TERN_GGUF_STRING &&
          kv->str_len == 6 && memcmp(kv->str, "h\xc3\xa9llo", 6) == 0);
    CHECK((kv = tern_gguf_find_kv(g, "test.array_i32")) && kv->type == TERN_GGUF_ARRAY &&
          kv->arr_type == TERN_GGUF_I32 && kv->arr_n == 3 && kv->arr_bytes == 12);
    if (kv && kv->arr_bytes == 12) {
        int32_t v[3];
        memcpy(v, kv->arr_data, 12);
        CHECK(v[0] == 1 && v[1] == -2 && v[2] == 3);
    }
    // 3 strings: 8-byte lengths + "a" "bc" "".
    CHECK((kv = tern_gguf_find_kv(g, "test.array_str")) && kv->arr_type == TERN_GGUF_STRING &&
          kv->arr_n == 3 && kv->arr_bytes == 3 * 8 + 3);
    // [[u8 1, 2], [string "x"], [[f32]]]: 3 nested headers + contents.
    CHECK((kv = tern_gguf_find_kv(g, "test.nested")) && kv->arr_type == TERN_GGUF_ARRAY &&
          kv->arr_n == 3 && kv->arr_bytes == (12 + 2) + (12 + 9) + (12 + 12));
    CHECK((kv = tern_gguf_find_kv(g, "test.empty")) && kv->arr_type == TERN_GGUF_U64 && kv->arr_n == 0);
    CHECK(tern_gguf_find_kv(g, "test.absent") == NULL);
}

// Dequantizes every tensor of quant_types.gguf and compares with numpy.
static void check_types(const tern_gguf *g, const float *expected) {
    float *out = malloc(ROW * ROWS * sizeof *out);
    for (int k = 0; k < N_TYPES; k++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", types[k].name);
        const tern_gguf_tensor *t = tern_gguf_find_tensor(g, name);
        CHECK_MSG(t != NULL, "missing %s", name);
        if (!t) continue;
        CHECK(t->n_dims == 2 && t->ne[0] == ROW && t->ne[1] == ROWS && t->numel == ROW * ROWS);
        CHECK(strcmp(tern_gguf_type_name(t->type), types[k].name) == 0);
        CHECK(t->offset % 64 == 0);
        memset(out, 0xff, ROW * ROWS * sizeof *out);
        CHECK_OK(tern_gguf_dequantize(g, t, out));
        const float *want = expected + (size_t)k * ROW * ROWS;
        int bad = 0, nonzero = 0;
        int64_t worst = 0;
        for (int i = 0; i < ROW * ROWS; i++) {
            int64_t u = ulps(out[i], want[i]);
            if (u > worst) worst = u;
            if (u > types[k].max_ulps && bad++ == 0)
                fprintf(stderr, "%s[%d] = %.9g (0x%08x), numpy %.9g (0x%08x)\n", name, i, out[i],
                        tern_f32_to_bits(out[i]), want[i], tern_f32_to_bits(want[i]));
            nonzero += want[i] != 0;
        }
        CHECK_MSG(bad == 0, "%s: %d of %d values differ (worst %lld ulps)", name, bad, ROW * ROWS,
                  (long long)worst);
        CHECK(nonzero > ROW); // the oracle really produced data
    }
    free(out);
}

// Patches the u32 type field of tensor `name` in a copy of the file.
static int tensor_type_offset(const uint8_t *buf, size_t size, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 8; i + n + 4 + 16 + 4 <= size; i++) {
        uint64_t len;
        memcpy(&len, buf + i - 8, 8);
        if (len == n && memcmp(buf + i, name, n) == 0) return (int)(i + n + 4 + 2 * 8);
    }
    return -1;
}

static void test_quant_types(void) {
    tern_gguf g;
    CHECK_OK(tern_gguf_open(&g, test_src_path("tests/fixtures/quant_types.gguf")));
    char *exp_data;
    size_t exp_size;
    CHECK_OK(tern_read_file(test_src_path("tests/fixtures/quant_types.expected.bin"), &exp_data, &exp_size));
    CHECK(exp_size == (size_t)N_TYPES * ROW * ROWS * 4);
    CHECK(g.version == 3 && g.alignment == 64 && g.n_tensors == N_TYPES && g.data_offset % 64 == 0);
    check_metadata(&g);
    if (exp_size == (size_t)N_TYPES * ROW * ROWS * 4) check_types(&g, (const float *)exp_data);

    // The same bytes as GGUF v2 (same layout: v3 only added big-endian files).
    uint8_t *copy = malloc(g.size);
    memcpy(copy, g.data, g.size);
    size_t size = g.size;
    tern_gguf_close(&g);
    copy[4] = 2;
    CHECK_OK(tern_gguf_parse(&g, copy, size, "v2.gguf"));
    CHECK(g.version == 2);
    check_metadata(&g);
    if (exp_size == (size_t)N_TYPES * ROW * ROWS * 4) check_types(&g, (const float *)exp_data);
    tern_gguf_close(&g);

    copy[4] = 1;
    CHECK_FAILS(tern_gguf_parse(&g, copy, size, "v1.gguf"), "v1.gguf: GGUF v1 is not supported");
    tern_gguf_close(&g);
    copy[4] = 4;
    CHECK_FAILS(tern_gguf_parse(&g, copy, size, "v4.gguf"), "v4.gguf: unsupported GGUF version 4");
    tern_gguf_close(&g);
    copy[4] = 3;

    // A type tern knows by size but cannot dequantize: parse works, loading
    // the tensor names it and the type id.
    int off = tensor_type_offset(copy, size, "t.F32");
    CHECK(off > 0);
    if (off > 0) {
        uint32_t q8k = 15; // Q8_K: llama.cpp's activation type, never a model's weights
        memcpy(copy + off, &q8k, 4);
        CHECK_OK(tern_gguf_parse(&g, copy, size, "q8k.gguf"));
        const tern_gguf_tensor *t = tern_gguf_find_tensor(&g, "t.F32");
        float *out = malloc(ROW * ROWS * 4);
        CHECK_FAILS(tern_gguf_dequantize(&g, t, out), "q8k.gguf: tensor t.F32 has type Q8_K (id 15)");
        free(out);
        tern_gguf_close(&g);
        uint32_t unknown = 99;
        memcpy(copy + off, &unknown, 4);
        CHECK_FAILS(tern_gguf_parse(&g, copy, size, "u99.gguf"), "u99.gguf: tensor t.F32 has unknown type id 99");
        tern_gguf_close(&g);
    }
    // The fixture is not a llama model: the model reader refuses it clearly.
    tern_model m = {0};
    copy[4] = 3;
    if (off > 0) {
        uint32_t f32 = 0;
        memcpy(copy + off, &f32, 4);
    }
    CHECK_FAILS(tern_gguf_parse_model(&m, copy, size, "qt.gguf"),
                "qt.gguf: unsupported architecture 'test' (tern supports the LLaMA family and bitnet)");
    tern_model_free(&m);
    tern_vocab v = {0};
    CHECK_FAILS(tern_gguf_load_vocab(&v, test_src_path("tests/fixtures/quant_types.gguf")),
                "quant_types.gguf: the file carries no tokenizer");
    tern_vocab_free(&v);
    free(copy);
    free(exp_data);
}

// A matrix the loader requantized (no exact packing): q8-row at G = 32, its
// recorded error the RMS error of the packed values against the FP32 ones.
static void check_requantized(const tern_tensor *t) {
    int ok = t && t->packed && t->packed_fmt == TERN_KFMT_Q8 && t->packed_group == 32 && !t->packed_shift;
    CHECK_MSG(ok, "%s (%s) not requantized to q8-row", t ? t->name : "?", t ? t->src_type : "?");
    if (!ok) return;
    int rows = (int)t->shape[0], cols = (int)t->shape[1], ng = cols / 32;
    tern_kmatrix km;
    CHECK_OK(tern_kmatrix_init(&km, tern_kformat_get(TERN_KFMT_Q8), rows, cols, 32, 0, t->packed));
    int8_t *c = malloc((size_t)t->numel);
    float *sc = malloc((size_t)rows * ng * sizeof(float));
    tern_kunpack(&km, c, sc, NULL, NULL);
    double e2 = 0, n2 = 0;
    for (size_t i = 0; i < (size_t)t->numel; i++) {
        double d = (double)sc[i / 32] * c[i] - t->data[i];
        e2 += d * d, n2 += (double)t->data[i] * t->data[i];
    }
    double rms = sqrt(e2 / n2);
    CHECK_MSG(t->packed_err > 0 && t->packed_err < 1e-2 && fabs(rms / t->packed_err - 1) < 1e-4,
              "%s: recorded error %.4g, measured %.4g", t->name, (double)t->packed_err, rms);
    free(c), free(sc);
}

// A file holding Q4_0 matrices runs them packed as q4g (G = 32, c = q + 8,
// zero point 8: the values bit for bit), its Q8_0 and Q5_0 matrices (ffn_down,
// ffn_up and the embedding, the tied head) as q8-row (Q5_0: c = q - 16), its
// Q4_1 matrix as q4g with shifts (c = q, zero point 0, m the shift) and its
// Q5_1 matrix as q8-row with shifts, all at G = 32 and lossless; F16 stays
// FP32. The native session's logits (int8 activations per 32 columns in the
// packed matrices) stay near FP32's.
static void test_tiny_llama_packed(const tern_model *m) {
    static const struct {
        const char *name, *type;
        tern_kfmt_id fmt;
        int shift, lo, hi;
    } packed[] = {
        {"blk.0.attn_v.weight", "Q4_0", TERN_KFMT_Q4G, 0, 0, 15},
        {"blk.0.ffn_gate.weight", "Q4_1", TERN_KFMT_Q4G, 1, 0, 15},
        {"blk.0.ffn_up.weight", "Q5_0", TERN_KFMT_Q8, 0, -16, 15},
        {"blk.0.attn_output.weight", "Q5_1", TERN_KFMT_Q8, 1, 0, 31},
        {"token_embd.weight", "Q8_0", TERN_KFMT_Q8, 0, -127, 127},
    };
    for (size_t i = 0; i < sizeof packed / sizeof packed[0]; i++) {
        const tern_tensor *t = tern_model_find(m, packed[i].name);
        int ok = t && !strcmp(t->src_type, packed[i].type) && t->packed && t->packed_fmt == (int)packed[i].fmt &&
                 t->packed_group == 32 && t->packed_shift == packed[i].shift;
        CHECK_MSG(ok, "%s (%s) not packed as expected", packed[i].name, packed[i].type);
        int lo = 0, hi = 0;
        if (ok)
            CHECK_MSG(test_packed_lossless(t, &lo, &hi) && lo >= packed[i].lo && hi <= packed[i].hi,
                      "%s as %s: not lossless (codes %d..%d)", packed[i].type, tern_kformat_get(packed[i].fmt)->name,
                      lo, hi);
    }
    // ffn_down's random Q8_0 blocks hold code -128, which q8-row cannot keep:
    // requantized (llama.cpp's quantizer writes -127..127; test_q8_0_linear
    // packs one exactly). F16 stays FP32.
    check_requantized(tern_model_find(m, "blk.0.ffn_down.weight"));
    const tern_tensor *q = tern_model_find(m, "blk.0.attn_q.weight");
    CHECK(q && !q->packed);
    static const int tokens[] = {1, 4, 9, 2, 7, 11, 3};
    const int n = 7, vocab = m->cfg.vocab_size;
    float *a = malloc((size_t)n * vocab * 4), *b = malloc((size_t)n * vocab * 4);
    for (int k = 0; k < 2; k++) {
        tern_session s;
        tern_packed *p = NULL;
        CHECK_OK(tern_session_init(&s, m, 16, 8));
        CHECK_OK(tern_session_set_format(&s, k ? "native" : "f32", 0, &p));
        CHECK_OK(tern_forward(&s, tokens, n, 0, k ? b : a));
        if (k) CHECK(p && tern_packed_format_name(p) && !strcmp(tern_packed_format_name(p), "q4g"));
        tern_session_free(&s);
        tern_packed_free(p);
    }
    double err = test_max_rel_err(b, a, (size_t)n * vocab, 1.0);
    printf("Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 matrices: native (q4g, q8-row) logits vs FP32 %.2e\n", err);
    CHECK(err > 0 && err < 3e-2);
    free(a), free(b);
}

// The tiny llama's ffn_down with its -128 codes made -127: a Q8_0 layer
// matrix, packed as q8-row at G = 32 with the values bit for bit.
static void test_q8_0_linear(void) {
    tern_blob b;
    CHECK_OK(tern_blob_open(&b, test_src_path("tests/fixtures/quant_types_llama.gguf")));
    uint8_t *buf = malloc(b.size);
    memcpy(buf, b.data, b.size);
    tern_gguf g;
    CHECK_OK(tern_gguf_parse(&g, buf, b.size, "q8.gguf"));
    const tern_gguf_tensor *gt = tern_gguf_find_tensor(&g, "blk.0.ffn_down.weight");
    CHECK(gt && gt->type == TERN_GGML_Q8_0); // fp16 d, then 32 int8 codes
    int fixed = 0;
    for (size_t blk = 0; gt && blk < (size_t)gt->numel / 32; blk++)
        for (int j = 0; j < 32; j++) {
            uint8_t *c = buf + (gt->data - buf) + 34 * blk + 2 + j;
            if (*c == 0x80) *c = 0x81, fixed++;
        }
    tern_gguf_close(&g);
    CHECK(fixed > 0);
    tern_model m = {0};
    CHECK_OK(tern_gguf_parse_model(&m, buf, b.size, "q8.gguf"));
    const tern_tensor *d = tern_model_find(&m, "blk.0.ffn_down.weight");
    CHECK_MSG(d && d->packed && d->packed_fmt == TERN_KFMT_Q8 && d->packed_group == 32, "Q8_0 layer matrix not q8-row");
    int lo, hi;
    if (d && d->packed) CHECK_MSG(test_packed_lossless(d, &lo, &hi) && lo >= -127, "Q8_0 as q8-row: not lossless");
    tern_model_free(&m);
    free(buf);
    tern_blob_close(&b);
}

static void test_tiny_llama(void) {
    const char *path = test_src_path("tests/fixtures/quant_types_llama.gguf");
    tern_model m;
    int rc = tern_model_load(&m, path, NULL);
    CHECK_MSG(rc == 0, "%s", tern_last_error());
    if (rc) return;
    const tern_config *c = &m.cfg;
    CHECK(strcmp(m.format, "gguf") == 0 && strcmp(c->arch, "llama") == 0 && strcmp(c->name, "tiny llama") == 0);
    CHECK(c->dim == 32 && c->n_layers == 1 && c->n_heads == 4 && c->n_kv_heads == 2 && c->head_dim == 8);
    CHECK(c->hidden_dim == 64 && c->vocab_size == 12 && c->max_seq == 128);
    CHECK(c->rope_theta == 10000.0f && c->rms_eps == 1e-6f); // theta defaulted
    CHECK(c->rope_scaling == TERN_ROPE_SCALING_LINEAR && c->rope_factor == 2.0f);
    CHECK(c->tied_embeddings && c->attn_qkv_bias && !c->attn_out_bias);
    CHECK(m.n_tensors == 14);
    // GGUF ne {32, 16} is tern shape {16, 32} with row r, column c at r*32 + c.
    const tern_tensor *k = tern_model_find(&m, "blk.0.attn_k.weight");
    CHECK(k && k->ndim == 2 && k->shape[0] == 16 && k->shape[1] == 32 && strcmp(k->src_type, "F32") == 0);
    if (k) CHECK(k->data[0] == 0 && k->data[1] == 1 && k->data[32] == 1000 && k->data[15 * 32 + 31] == 15031);
    const tern_tensor *e = tern_model_find(&m, "token_embd.weight");
    CHECK(e && e->shape[0] == 12 && e->shape[1] == 32 && strcmp(e->src_type, "Q8_0") == 0);
    const tern_tensor *bv = tern_model_find(&m, "blk.0.attn_v.bias");
    CHECK(bv && bv->ndim == 1 && bv->shape[0] == 16 && strcmp(bv->src_type, "BF16") == 0);
    tern_weights w;
    CHECK_OK(tern_model_bind(&m, &w));
    CHECK(w.output == w.tok_embd && w.layers[0].bq && w.layers[0].bk && w.layers[0].bv && !w.layers[0].bo);
    tern_weights_free(&w);

    const tern_vocab *v = &m.vocab;
    CHECK(v->type == TERN_VOCAB_BPE && v->n_tokens == 12 && v->n_merges == 4);
    CHECK(v->bos_id == 1 && v->eos_id == 0 && v->unk_id == -1 && v->pad_id == -1);
    CHECK(v->add_bos == 0 && v->add_eos == 0 && v->add_space_prefix == 0);
    CHECK(strcmp(v->pre, "tiny-pre") == 0);
    CHECK(v->scores == NULL && v->token_types && v->token_types[0] == TERN_TOKEN_CONTROL &&
          v->token_types[2] == TERN_TOKEN_NORMAL);
    CHECK(strcmp(v->tokens[10], "\xc3\xa9") == 0 && v->token_lens[10] == 2 && v->token_lens[11] == 3);
    CHECK(strcmp(v->merges[1], "\xc4\xa0 a") == 0);
    CHECK(tern_vocab_find(v, "abc") == 9);

    test_tiny_llama_packed(&m);
    tern_model_free(&m);

    tern_vocab voc = {0};
    CHECK_OK(tern_gguf_load_vocab(&voc, path));
    CHECK(voc.n_tokens == 12 && voc.type == TERN_VOCAB_BPE);
    tern_vocab_free(&voc);
    // The embedded tokenizer of a GGUF also serves as a --tokenizer override.
    CHECK_OK(tern_model_load(&m, path, path));
    tern_model_free(&m);
}

// Every proper prefix of a valid model must fail cleanly, naming the file.
static void test_truncations(void) {
    tern_blob b;
    CHECK_OK(tern_blob_open(&b, test_src_path("tests/fixtures/quant_types_llama.gguf")));
    int failed_ok = 0;
    for (size_t n = 0; n < b.size; n++) {
        uint8_t *p = malloc(n ? n : 1); // exact size so ASan catches any over-read
        memcpy(p, b.data, n);
        tern_model m = {0};
        tern_clear_error();
        int rc = tern_gguf_parse_model(&m, p, n, "cut.gguf");
        failed_ok += rc != 0 && strncmp(tern_last_error(), "cut.gguf: ", 10) == 0;
        tern_model_free(&m);
        free(p);
    }
    CHECK_MSG(failed_ok == (int)b.size, "%d of %zu truncations failed cleanly", failed_ok, b.size);
    tern_model m = {0};
    CHECK_OK(tern_gguf_parse_model(&m, b.data, b.size, "whole.gguf"));
    tern_model_free(&m);
    tern_blob_close(&b);
}

// Largest |packed value - FP32 value| of a loaded tensor's packed copy, over
// the largest |FP32 value|.
static double packed_rel_err(const tern_tensor *t) {
    const tern_kformat *f = tern_kformat_get((tern_kfmt_id)t->packed_fmt);
    int rows = (int)t->shape[0], cols = (int)t->shape[1], g = t->packed_group, ng = (cols + g - 1) / g;
    tern_kmatrix km;
    if (tern_kmatrix_init(&km, f, rows, cols, g, t->packed_shift, t->packed)) return INFINITY;
    int8_t *codes = malloc((size_t)t->numel);
    float *sc = malloc((size_t)rows * ng * sizeof(float)), *sh = malloc((size_t)rows * ng * sizeof(float));
    uint8_t *z = malloc((size_t)rows * ng);
    tern_kunpack(&km, codes, sc, sh, z);
    double err = 0, ref = 0;
    for (size_t i = 0; i < (size_t)t->numel; i++) {
        size_t k = i / (size_t)cols * ng + i % (size_t)cols / g;
        double v = (double)sc[k] * (f->kind == TERN_KKIND_RTN ? codes[i] - z[k] : codes[i]) + (t->packed_shift ? sh[k] : 0);
        err = fmax(err, fabs(v - t->data[i])), ref = fmax(ref, fabs(t->data[i]));
    }
    free(codes), free(sc), free(sh), free(z);
    return err / ref;
}

// Deterministic pseudo-random 32-bit values (xorshift).
static uint32_t rnd(void) {
    static uint32_t x = 2463534242u;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    return x;
}

// The logits of a fixed 9-token sequence in `format`: a 4-token prompt, then
// one token at a time (the GEMM and the GEMV paths); *name (may be NULL) gets
// the packed body format's name.
#define SEQ_N 9
static void run_seq(const tern_model *m, const char *format, float *out, char name[32]) {
    static const int tokens[SEQ_N] = {1, 4, 9, 2, 7, 11, 3, 5, 8};
    tern_session s;
    tern_packed *p = NULL;
    CHECK_OK(tern_session_init(&s, m, 16, 16));
    CHECK_OK(tern_session_set_format(&s, format, 0, &p));
    CHECK_OK(tern_forward(&s, tokens, 4, 0, out));
    for (int t = 4; t < SEQ_N; t++) CHECK_OK(tern_forward(&s, tokens + t, 1, t, out + (size_t)t * m->cfg.vocab_size));
    if (name) snprintf(name, 32, "%s", tern_packed_format_name(p) ? tern_packed_format_name(p) : "none");
    tern_session_free(&s);
    tern_packed_free(p);
}

// Block geometry of the llama.cpp types below: values and bytes per block,
// and the byte offsets of the fp16 d and dmin (-1: none).
static void block_geom(uint32_t type, size_t *values, size_t *bytes, int *d_at, int *dmin_at) {
    *values = 256, *dmin_at = -1;
    switch (type) {
    case TERN_GGML_Q4_K: *bytes = 144, *d_at = 0, *dmin_at = 2; break;
    case TERN_GGML_Q5_K: *bytes = 176, *d_at = 0, *dmin_at = 2; break;
    case TERN_GGML_Q6_K: *bytes = 210, *d_at = 208; break;
    case TERN_GGML_Q3_K: *bytes = 110, *d_at = 108; break;
    case TERN_GGML_Q2_K: *bytes = 84, *d_at = 80, *dmin_at = 82; break;
    case TERN_GGML_IQ4_XS: *bytes = 136, *d_at = 0; break;
    default: *values = 32, *bytes = 18, *d_at = 0; break; // IQ4_NL
    }
}

// Random blocks of `type` for n values (sane fp16 scales, random codes, sub-block scales and mins).
static void *quant_blocks(uint32_t type, size_t n, size_t *nbytes) {
    size_t values, size;
    int d_at, dmin_at;
    block_geom(type, &values, &size, &d_at, &dmin_at);
    *nbytes = n / values * size;
    uint8_t *b = malloc(*nbytes);
    for (size_t i = 0; i < *nbytes; i++) b[i] = (uint8_t)(rnd() >> 24);
    for (size_t k = 0; k < n / values; k++) {
        uint16_t d = tern_f32_to_f16(0.0005f + 0.001f * (float)(rnd() % 1000) / 1000), dmin = tern_f32_to_f16(0.0007f);
        memcpy(b + k * size + d_at, &d, 2);
        if (dmin_at >= 0) memcpy(b + k * size + dmin_at, &dmin, 2);
    }
    return b;
}

// A one-layer LLaMA (dim 256: K-quant rows are 256-blocks) of llama.cpp's
// block types, written here. Q4_K and Q5_K matrices run as q4g / q8-row with
// shifts at G = 32 (d * scale and dmin * min rounded to fp16: relative element
// error <= 2^-11), IQ4_NL as q8-row (its levels are int8 codes: lossless); the
// types with no exact packing (Q6_K, Q3_K and Q2_K with scales per 16 values,
// IQ4_XS's non-uniform levels under a 6-bit scale) are requantized to q8-row
// per 32 at load; the native logits stay near FP32's.
static const struct {
    const char *name;
    uint32_t type;
    int rows;
} kq_mats[] = {{"blk.0.attn_q.weight", TERN_GGML_Q4_K, 256}, {"blk.0.attn_k.weight", TERN_GGML_Q5_K, 128},
               {"blk.0.attn_v.weight", TERN_GGML_Q3_K, 128}, {"blk.0.attn_output.weight", TERN_GGML_IQ4_XS, 256},
               {"blk.0.ffn_gate.weight", TERN_GGML_Q2_K, 256}, {"blk.0.ffn_up.weight", TERN_GGML_IQ4_NL, 256},
               {"blk.0.ffn_down.weight", TERN_GGML_Q6_K, 256}};
#define N_KQ (sizeof kq_mats / sizeof kq_mats[0])

// Writes that model to path: tied, its embedding / head in Q6_K (as
// llama-quantize writes a head), or untied with a Q4_K embedding and a Q6_K
// output (1b's Q4_K_M mix).
static void write_kquant_llama(const char *path, int untied) {
    tern_model base;
    CHECK_OK(tern_model_load(&base, test_src_path("tests/fixtures/quant_types_llama.gguf"), NULL));
    base.cfg.dim = 256, base.cfg.hidden_dim = 256, base.cfg.n_heads = 2, base.cfg.n_kv_heads = 1, base.cfg.head_dim = 128;
    tern_gguf_writer *w = tern_gguf_writer_new();
    CHECK_OK(tern_gguf_add_model_metadata(w, &base));
    void *keep[16];
    int nk = 0;
    float *ones = malloc(256 * sizeof(float));
    for (int i = 0; i < 256; i++) ones[i] = 1.0f;
    const int64_t vec[1] = {256};
    CHECK_OK(tern_gguf_add_tensor(w, "output_norm.weight", TERN_GGML_F32, 1, vec, ones, 1024));
    CHECK_OK(tern_gguf_add_tensor(w, "blk.0.attn_norm.weight", TERN_GGML_F32, 1, vec, ones, 1024));
    CHECK_OK(tern_gguf_add_tensor(w, "blk.0.ffn_norm.weight", TERN_GGML_F32, 1, vec, ones, 1024));
    size_t nbytes;
    const uint32_t embd_type = untied ? TERN_GGML_Q4_K : TERN_GGML_Q6_K;
    keep[nk] = quant_blocks(embd_type, 12 * 256, &nbytes);
    CHECK_OK(tern_gguf_add_tensor(w, "token_embd.weight", embd_type, 2, (const int64_t[]){12, 256}, keep[nk++], nbytes));
    if (untied) {
        keep[nk] = quant_blocks(TERN_GGML_Q6_K, 12 * 256, &nbytes);
        CHECK_OK(tern_gguf_add_tensor(w, "output.weight", TERN_GGML_Q6_K, 2, (const int64_t[]){12, 256}, keep[nk++], nbytes));
    }
    for (size_t i = 0; i < N_KQ; i++) {
        keep[nk] = quant_blocks(kq_mats[i].type, (size_t)kq_mats[i].rows * 256, &nbytes);
        CHECK_OK(tern_gguf_add_tensor(w, kq_mats[i].name, kq_mats[i].type, 2, (const int64_t[]){kq_mats[i].rows, 256},
                                      keep[nk], nbytes));
        nk++;
    }
    CHECK_OK(tern_gguf_write(w, path));
    tern_gguf_writer_free(w);
    for (int i = 0; i < nk; i++) free(keep[i]);
    free(ones);
    tern_model_free(&base);
}

static void test_kquant_llama(void) {
    const char *path = test_tmp_path("kquant_llama.gguf");
    write_kquant_llama(path, 0);
    tern_model m;
    int rc = tern_model_load(&m, path, NULL);
    CHECK_MSG(rc == 0, "%s", tern_last_error());
    if (rc) return;
    for (size_t i = 0; i < N_KQ; i++) {
        const tern_tensor *t = tern_model_find(&m, kq_mats[i].name);
        uint32_t type = kq_mats[i].type;
        if (type == TERN_GGML_IQ4_NL) {
            int lo = 0, hi = 0, ok = t && t->packed && t->packed_fmt == TERN_KFMT_Q8 && t->packed_group == 32;
            CHECK_MSG(ok && test_packed_lossless(t, &lo, &hi) && lo >= -127 && hi <= 113, "IQ4_NL not q8-row, lossless");
            continue;
        }
        if (type != TERN_GGML_Q4_K && type != TERN_GGML_Q5_K) {
            check_requantized(t);
            continue;
        }
        tern_kfmt_id want = type == TERN_GGML_Q4_K ? TERN_KFMT_Q4G : TERN_KFMT_Q8;
        int ok = t && t->packed && t->packed_fmt == (int)want && t->packed_group == 32 && t->packed_shift;
        CHECK_MSG(ok, "%s not packed as %s with shifts", kq_mats[i].name, tern_kformat_get(want)->name);
        double err = ok ? packed_rel_err(t) : INFINITY;
        // > 0: the fp16 rounding is real (random 6-bit scales need 17 bits).
        CHECK_MSG(err > 0 && err <= ldexp(1, -11), "%s: packed vs FP32 relative error %.3g", kq_mats[i].name, err);
    }
    check_requantized(tern_model_find(&m, "token_embd.weight"));
    // tern info says which linears are packed and which run requantized.
    FILE *f = tmpfile();
    char info[8192] = {0};
    if (f) {
        tern_model_print_info(&m, f, 0, NULL);
        rewind(f);
        info[fread(info, 1, sizeof info - 1, f)] = 0;
        fclose(f);
    }
    CHECK_MSG(strstr(info, "packed:       7 decoder linears") &&
                  strstr(info, " (4 requantized to int8 per 32: no exact packing)\n"),
              "%s", info);
    const size_t n = (size_t)SEQ_N * m.cfg.vocab_size;
    float *a = malloc(n * 4), *b = malloc(n * 4);
    run_seq(&m, "f32", a, NULL);
    char name[32] = "";
    run_seq(&m, "native", b, name);
    CHECK_MSG(!strcmp(name, "q4g"), "native format %s", name);
    double err = test_max_rel_err(b, a, n, 1.0);
    printf("K-quant / IQ4 matrices: native (q4g, q8-row; Q2_K, Q3_K, Q6_K, IQ4_XS requantized) logits vs FP32 %.2e\n",
           err);
    CHECK(err > 0 && err < 3e-2);
    free(a), free(b);
    tern_model_free(&m);
}

// TERN_LOAD_PACKED: the packed linears (here all but the F16 attn_q and the
// Q8_0 ffn_down holding -128) keep no FP32 copy, the embedding does, and the
// native session gives the same logits bit for bit as after a full load;
// another format is refused with a clear error.
static void test_packed_only(const char *path) {
    tern_model full, lean;
    CHECK_OK(tern_model_load(&full, path, NULL));
    CHECK_OK(tern_model_load_ex(&lean, path, NULL, TERN_LOAD_TOKENIZER | TERN_LOAD_PACKED));
    CHECK(lean.packed_only && !full.packed_only);
    int dropped = 0, bad = 0;
    for (int i = 0; i < lean.n_tensors; i++) {
        const tern_tensor *t = &lean.tensors[i];
        if (!strcmp(t->name, "token_embd.weight")) { // packed (the tied head): rows from the file's bytes
            bad += t->data != NULL || t->rows == NULL;
            continue;
        }
        dropped += t->packed != NULL;
        bad += t->packed ? t->data != NULL : t->data == NULL;
    }
    CHECK_MSG(dropped > 0 && bad == 0, "%s: %d dropped, %d wrong", path, dropped, bad);
    // Embedding rows dequantized from the file's bytes equal a full load's.
    const tern_tensor *ef = tern_model_find(&full, "token_embd.weight"), *el = tern_model_find(&lean, "token_embd.weight");
    int ids[3] = {0, 5, (int)ef->shape[0] - 1};
    float *rows = malloc(3 * (size_t)ef->shape[1] * 4);
    CHECK_OK(tern_tensor_rows(el, ids, 3, rows));
    for (int k = 0; k < 3; k++)
        CHECK(!memcmp(rows + k * ef->shape[1], ef->data + (size_t)ids[k] * ef->shape[1], (size_t)ef->shape[1] * 4));
    int past = (int)ef->shape[0];
    CHECK_FAILS(tern_tensor_rows(el, &past, 1, rows), "has no row");
    free(rows);
    const size_t n = (size_t)SEQ_N * full.cfg.vocab_size;
    float *a = malloc(n * 4), *b = malloc(n * 4);
    run_seq(&full, "native", a, NULL);
    run_seq(&lean, "native", b, NULL);
    CHECK_MSG(memcmp(a, b, n * 4) == 0, "%s: packed-only logits differ", path);
    tern_session s;
    tern_packed *p = NULL;
    CHECK_OK(tern_session_init(&s, &lean, 16, 16));
    CHECK_FAILS(tern_session_set_format(&s, "f32", 0, &p), "--format f32 needs the FP32 weights");
    CHECK(p == NULL);
    tern_session_free(&s);
    free(a), free(b);
    tern_model_free(&full), tern_model_free(&lean);
}

int main(void) {
    test_quant_types();
    test_tiny_llama();
    test_q8_0_linear();
    test_kquant_llama();
    test_packed_only(test_src_path("tests/fixtures/quant_types_llama.gguf"));
    test_packed_only(test_tmp_path("kquant_llama.gguf"));
    write_kquant_llama(test_tmp_path("kquant_llama_untied.gguf"), 1);
    test_packed_only(test_tmp_path("kquant_llama_untied.gguf"));
    test_truncations();
    return test_report();
}
