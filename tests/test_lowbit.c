// llama.cpp's ternary / 1-2 bit GGUF types run packed (tests/ref/lowbit_gguf_ref.py):
// - the reader dequantizes TQ1_0, TQ2_0, Q2_0, Q1_0 (and the ternary Q4_0
//   fallback, the Q8_0 embedding) to exactly the values of the gguf-py /
//   ggml-port dequantized twin, and repacks each linear losslessly into a
//   kernels format (codes and fp16 scales unchanged, the block as the group);
// - logits: FP32 on the file equal float64 PyTorch's; packed (int8
//   activations) within the tolerance argued below;
// - perplexity packed vs the dequantized twin in FP32 within 1%;
// - the bytes per token `tern bench` reports are the packed sizes;
// - exact conversions: `tern export` to .tern and to gguf-q2_0, and --format
//   t2 at run time, keep every ternary matrix's codes and scales (values bit
//   for bit); the lossy ones (Q2_0's code 2, re-blocking G=32 to 64) are
//   counted and measured; tern's Q2_0 encoder reproduces the fixture's bytes;
// - llama-quantize's 4-bit Q4_0 fallback runs packed as q4g (G = 32, zero point 8);
// - bad input: a TQ2_0 code 3, a truncated packed tensor.
#include <math.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/file.h"
#include "core/half.h"
#include "eval/ppl.h"
#include "infer/export.h"
#include "infer/packed.h"
#include "io/gguf_write.h"
#include "io/gguf.h"
#include "io/readers.h"
#include "kernels/formats.h"
#include "test.h"

typedef struct {
    const char *name, *src_type, *fmt;
    int group;
    int64_t row_bytes; // worked out from docs/format.md, independently of formats.c
} expect;

// t2: 8 code bytes per 32 columns + fp16 per group; t1.6 (256 columns: one
// bundle of 5 chunks, 32 bytes, + 3 two-bit chunks, 24 bytes) + fp16; q2g: t2
// + a u8 zero point per group; q8-row: 32 bytes per chunk + fp16 per group.
static const expect EXPECT[] = {
    {"blk.0.attn_q.weight", "TQ1_0", "tern-t1.6", 256, 32 + 24 + 2},
    {"blk.0.attn_k.weight", "TQ2_0", "tern-t2", 256, 64 + 2},
    {"blk.0.ffn_gate.weight", "TQ2_0", "tern-t2", 256, 64 + 2},
    {"blk.0.attn_v.weight", "Q2_0", "tern-t2", 64, 64 + 4 * 2},       // no code 2: ternary
    {"blk.0.ffn_up.weight", "Q2_0", "q2g", 64, 64 + 4 * 3},           // code 2: 2-bit, zero point 1
    {"blk.0.ffn_down.weight", "Q1_0", "tern-t2", 128, 64 + 2 * 2},    // codes +-1
    {"blk.0.attn_output.weight", "Q4_0", "tern-t2", 32, 64 + 8 * 2},  // ternary fallback
    {"token_embd.weight", "Q8_0", "q8-row", 32, 256 + 8 * 2},
};

typedef struct {
    int n, vocab, *tokens;
    float *logits;
    int ctx, bos, m, *ppl_tokens;
} reference;

static int read_ref(reference *r) {
    char *d;
    size_t size;
    if (tern_read_file(test_src_path("tests/fixtures/lowbit_llama.ref.bin"), &d, &size)) return -1;
    memcpy(&r->n, d, 4), memcpy(&r->vocab, d + 4, 4);
    size_t o = 8;
    r->tokens = malloc((size_t)r->n * 4), r->logits = malloc((size_t)r->n * r->vocab * 4);
    memcpy(r->tokens, d + o, (size_t)r->n * 4), o += (size_t)r->n * 4;
    memcpy(r->logits, d + o, (size_t)r->n * r->vocab * 4), o += (size_t)r->n * r->vocab * 4;
    memcpy(&r->ctx, d + o, 4), memcpy(&r->bos, d + o + 4, 4), memcpy(&r->m, d + o + 8, 4), o += 12;
    r->ppl_tokens = malloc((size_t)r->m * 4);
    memcpy(r->ppl_tokens, d + o, (size_t)r->m * 4), o += (size_t)r->m * 4;
    free(d);
    return o == size ? 0 : tern_errorf("lowbit_llama.ref.bin: %zu bytes, expected %zu", size, o);
}

// The reader's values and packing: values equal the twin's bit for bit, and
// the packed codes * scales (kernels' unpack) equal the values.
static void test_load(const tern_model *m, const tern_model *twin) {
    for (size_t k = 0; k < sizeof EXPECT / sizeof EXPECT[0]; k++) {
        const expect *e = &EXPECT[k];
        const tern_tensor *t = tern_model_find(m, e->name), *u = tern_model_find(twin, e->name);
        CHECK_MSG(t && u && t->numel == u->numel, "%s missing", e->name);
        if (!t || !u) continue;
        CHECK_MSG(!memcmp(t->data, u->data, (size_t)t->numel * 4), "%s: values differ from the dequantized twin",
                  e->name);
        CHECK_MSG(!strcmp(t->src_type, e->src_type), "%s: type %s", e->name, t->src_type);
        const tern_kformat *f = t->packed ? tern_kformat_get((tern_kfmt_id)t->packed_fmt) : NULL;
        CHECK_MSG(f && !strcmp(f->name, e->fmt) && t->packed_group == e->group && !t->packed_shift,
                  "%s: packed as %s G=%d, expected %s G=%d", e->name, f ? f->name : "nothing", t->packed_group,
                  e->fmt, e->group);
        if (!f) continue;
        int rows = (int)t->shape[0];
        CHECK_MSG(t->packed_bytes == (size_t)(rows * e->row_bytes), "%s: %zu packed bytes, expected %lld", e->name,
                  t->packed_bytes, (long long)(rows * e->row_bytes));
        int lo, hi, same = test_packed_lossless(t, &lo, &hi);
        CHECK_MSG(same, "%s: packed codes * scales differ from the values (not lossless)", e->name);
    }
}

// Logits of every reference token, format "f32" or "native".
static int logits_of(const tern_model *m, const char *format, const reference *r, float *out) {
    tern_session s;
    tern_packed *p = NULL;
    if (tern_session_init(&s, m, 64, 32)) return -1;
    int rc = tern_session_set_format(&s, format, 0, &p);
    if (rc == 0) rc = tern_forward(&s, r->tokens, r->n, 0, out);
    tern_session_free(&s);
    tern_packed_free(p);
    return rc;
}

static void test_logits(const tern_model *m, const tern_model *twin, const reference *r) {
    size_t n = (size_t)r->n * r->vocab;
    float *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4);
    CHECK_OK(logits_of(m, "f32", r, a));
    CHECK_OK(logits_of(twin, "f32", r, b));
    CHECK_OK(logits_of(m, "native", r, c));
    // FP32: the same values in float32 arithmetic vs float64; rounding of sums of
    // 256 terms (~1e-6 relative each) stays far below 1e-4 of the largest logit.
    double e_f32 = test_max_rel_err(a, r->logits, n, 1.0), e_twin = test_max_rel_err(b, r->logits, n, 1.0);
    // Packed: identical weights, so the whole difference is the int8
    // activations (absmax per group, step max|x|/127): a relative rounding
    // error up to 1/254 per input of each of the 8 quantized products on the
    // path to a logit (q, k, v, o, gate, up, down, head), at most about
    // 8/254 = 3.1% of the largest logit when they all line up; measured 1.5%
    // here. A wrong code or scale changes a whole weight, not a rounding step.
    double e_native = test_max_rel_err(c, r->logits, n, 1.0);
    printf("logits vs float64 reference: f32 %.2e, twin f32 %.2e, packed (int8 activations) %.2e\n", e_f32, e_twin,
           e_native);
    CHECK(e_f32 < 1e-4 && e_twin < 1e-4);
    CHECK(e_native < 3.1e-2 && e_native > 0);
    free(a), free(b), free(c);
}

static void test_ppl(const tern_model *m, const tern_model *twin, const reference *r) {
    tern_ppl_result pn, pt;
    CHECK_OK(tern_perplexity_tokens(m, r->ppl_tokens, r->m, r->bos, r->ctx, 0, "native", &pn));
    CHECK_OK(tern_perplexity_tokens(twin, r->ppl_tokens, r->m, r->bos, r->ctx, 0, "f32", &pt));
    printf("perplexity: packed %.4f, dequantized twin (f32) %.4f (%+.3f%%)\n", pn.ppl, pt.ppl,
           100 * (pn.ppl / pt.ppl - 1));
    CHECK(fabs(pn.ppl / pt.ppl - 1) < 0.01);
}

// Bytes per generated token: the packed linears and head, norms, one embedding row.
static void test_bytes(const tern_model *m) {
    tern_session s;
    tern_packed *p = NULL;
    CHECK_OK(tern_session_init(&s, m, 64, 4));
    CHECK_OK(tern_session_use_native(&s, &p));
    int64_t want = 4LL * 256 * 3 + 4LL * 256; // norms + one FP32 embedding row
    for (size_t k = 0; k < sizeof EXPECT / sizeof EXPECT[0]; k++) {
        const tern_tensor *t = tern_model_find(m, EXPECT[k].name);
        want += t->shape[0] * EXPECT[k].row_bytes;
    }
    int64_t got = tern_session_weight_bytes(&s);
    printf("bytes per token: %lld (expected %lld; FP32 would be %lld)\n", (long long)got, (long long)want,
           (long long)(4 * (tern_model_param_count(m) + 256)));
    CHECK(got == want);
    CHECK(!strcmp(tern_packed_format_name(p), "tern-t1.6"));
    tern_session_free(&s);
    tern_packed_free(p);
}

// A head stored in a K-quant (llama-quantize's Q6_K output beside TQ2_0
// matrices) runs as int8 per 32 rather than FP32: the GGUF reader requantizes
// it (io/gguf.c requant_q8; test_gguf checks that on real K-quant blocks).
// Here the tied head's packed bytes are replaced the same way, absmax int8 per
// 32 from its values with the error recorded, and its source type named
// Q6_K. Bytes per token are the q8 size; logits stay within the int8 bound of
// test_logits.
static void test_kquant_head(tern_model *m, const reference *r) {
    tern_tensor *t = (tern_tensor *)tern_model_find(m, "token_embd.weight");
    tern_free((void *)t->packed); // the model owns it
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    tern_kmatrix km;
    CHECK_OK(tern_kmatrix_init(&km, tern_kformat_get(TERN_KFMT_Q8), rows, cols, 32, 0, NULL));
    uint8_t *packed = tern_alloc((size_t)rows * km.row_bytes);
    int8_t *codes = malloc((size_t)t->numel);
    float *scales = malloc((size_t)t->numel / 32 * sizeof(float));
    double e2 = 0, n2 = 0;
    tern_absmax_q8(t->data, rows, cols, 32, codes, scales, &e2, &n2);
    CHECK_OK(tern_kpack(&km, packed, codes, scales, NULL, NULL));
    free(codes), free(scales);
    t->packed = packed, t->packed_bytes = (size_t)rows * km.row_bytes;
    t->packed_fmt = TERN_KFMT_Q8, t->packed_group = 32, t->packed_shift = 0, t->packed_err = (float)sqrt(e2 / n2);
    snprintf(t->src_type, sizeof t->src_type, "Q6_K");
    CHECK(t->packed_err < 1e-2); // 0 here: the values were int8 per 32 already (the file's Q8_0)
    tern_session s;
    tern_packed *p = NULL;
    CHECK_OK(tern_session_init(&s, m, 64, 4));
    CHECK_OK(tern_session_use_native(&s, &p));
    int64_t q8_row = (int64_t)tern_kformat_row_bytes(tern_kformat_get(TERN_KFMT_Q8), 256, 32, 0);
    int64_t want = 4LL * 256 * 3 + 4LL * 256 + t->shape[0] * q8_row;
    for (size_t k = 0; k + 1 < sizeof EXPECT / sizeof EXPECT[0]; k++) // all but token_embd (last)
        want += tern_model_find(m, EXPECT[k].name)->shape[0] * EXPECT[k].row_bytes;
    CHECK_MSG(tern_session_weight_bytes(&s) == want, "bytes per token %lld, expected %lld",
              (long long)tern_session_weight_bytes(&s), (long long)want);
    tern_session_free(&s);
    tern_packed_free(p);
    size_t n = (size_t)r->n * r->vocab;
    float *c = malloc(n * 4);
    CHECK_OK(logits_of(m, "native", r, c));
    double e = test_max_rel_err(c, r->logits, n, 1.0);
    printf("K-quant head as q8: logits vs float64 reference %.2e\n", e);
    CHECK(e < 3.1e-2);
    free(c);
}

// Offset of tensor `name`'s data in a GGUF buffer.
static size_t data_offset(const char *buf, size_t size, const char *name) {
    tern_gguf g;
    size_t off = 0;
    if (tern_gguf_parse(&g, buf, size, "x") == 0) {
        const tern_gguf_tensor *t = tern_gguf_find_tensor(&g, name);
        if (t) off = (size_t)(t->data - (const uint8_t *)buf);
    }
    tern_gguf_close(&g);
    return off;
}

static void test_bad_input(void) {
    char *buf;
    size_t size;
    CHECK_OK(tern_read_file(test_src_path("tests/fixtures/lowbit_llama.gguf"), &buf, &size));
    size_t off = data_offset(buf, size, "blk.0.attn_k.weight");
    CHECK(off > 0);
    // Field 3 (code 2) in row 1 of a TQ2_0 tensor: refused, naming it.
    buf[off + 66 + 5] = (char)0xff;
    tern_model m = {0};
    CHECK_FAILS(tern_gguf_parse_model(&m, buf, size, "bad.gguf"),
                "bad.gguf: tensor blk.0.attn_k.weight: TQ2_0 code 3 in row 1 block 0 (ternary codes are 0..2)");
    tern_model_free(&m);
    free(buf);
}

// llama-quantize's 4-bit fallback in a ternary file (SmolLM2's TQ2_0 file
// holds 180 Q4_0 matrices): the fixture's Q4_0 matrix rewritten with nibbles
// 0..15 loads as q4g at G = 32 with zero point 8, its codes * scales equal to
// the dequantized values (lossless), and the model runs packed within the int8
// bound of test_logits.
static void test_q4_0_fallback(const reference *r) {
    char *buf;
    size_t size;
    CHECK_OK(tern_read_file(test_src_path("tests/fixtures/lowbit_llama.gguf"), &buf, &size));
    size_t off = data_offset(buf, size, "blk.0.attn_output.weight");
    CHECK(off > 0);
    if (!off) return free(buf);
    for (int b = 0; b < 256 * 256 / 32; b++) // blocks of 18 bytes: fp16 d, 16 bytes of nibbles
        for (int j = 0; j < 16; j++) buf[off + 18 * (size_t)b + 2 + j] = (char)((b * 7 + j * 5) & 0xff);
    tern_model m = {0};
    CHECK_OK(tern_gguf_parse_model(&m, buf, size, "q4.gguf"));
    const tern_tensor *t = tern_model_find(&m, "blk.0.attn_output.weight");
    const tern_kformat *f = t && t->packed ? tern_kformat_get((tern_kfmt_id)t->packed_fmt) : NULL;
    CHECK_MSG(f && !strcmp(f->name, "q4g") && t->packed_group == 32, "Q4_0 fallback packed as %s",
              f ? f->name : "nothing");
    if (f) {
        int lo, hi, same = test_packed_lossless(t, &lo, &hi);
        CHECK_MSG(same && lo == 0 && hi == 15, "q4g codes %d..%d, lossless %d", lo, hi, same);
    }
    size_t n = (size_t)r->n * r->vocab;
    float *a = malloc(n * 4), *c = malloc(n * 4);
    CHECK_OK(logits_of(&m, "f32", r, a));
    CHECK_OK(logits_of(&m, "native", r, c));
    double e = test_max_rel_err(c, a, n, 1.0);
    printf("Q4_0 fallback as q4g: packed logits vs the same file in FP32 %.2e\n", e);
    CHECK(e < 3.1e-2 && e > 0);
    free(a), free(c);
    tern_model_free(&m);
    free(buf);
}

static int same_values(const tern_model *a, const tern_model *b, const char *name) {
    const tern_tensor *x = tern_model_find(a, name), *y = tern_model_find(b, name);
    return x && y && x->numel == y->numel && !memcmp(x->data, y->data, (size_t)x->numel * 4);
}

// .tern export: every linear exactly (G = 32, the smallest block, so every
// block's d is a group scale; ffn_up, Q2_0 with code 2, as q2g), the Q8_0
// embedding at its own block of 32.
static void test_export_tern(const tern_model *m, const char *in) {
    char out[1024], text[1024]; // test_tmp_path's buffer is reused
    snprintf(out, sizeof out, "%s", test_tmp_path("lowbit.tern"));
    snprintf(text, sizeof text, "%s", test_tmp_path("lowbit.txt"));
    FILE *f = fopen(text, "w"); // characters of the fixture's vocabulary ('!'..'_'), no spaces
    for (int i = 0; f && i < 40; i++) fputs("HELLO,WORLD.THIS=IS+A[TEST]", f);
    if (f) fclose(f);
    tern_export_check check = {.text = text, .ctx = 32, .chunks = 2, .max_change = 1000};
    tern_export_opts o = {.check = check};
    tern_export_info info;
    CHECK_OK(tern_export_tern(m, in, &o, out, &info));
    printf(".tern export: %d linears exact, %d lossy, G=%d, %lld bytes\n", info.exact_linears, info.lossy_linears,
           info.group, (long long)info.bytes);
    CHECK(info.exact_linears == 7 && info.lossy_linears == 0 && info.group == 32);
    printf(".tern export check: ppl source %.4f, .tern %.4f (%+.4f%%)\n", info.check.ppl_source,
           info.check.ppl_export, info.check.change_pct);
    CHECK(info.check.checked && info.check.ppl_source > 1 && info.check.change_pct == 0); // the same values
    tern_model back = {0};
    CHECK_OK(tern_model_load(&back, out, NULL));
    for (size_t k = 0; k < sizeof EXPECT / sizeof EXPECT[0]; k++)
        CHECK_MSG(same_values(m, &back, EXPECT[k].name), "%s: values changed by the .tern export", EXPECT[k].name);
    CHECK(!strcmp(tern_model_find(&back, "blk.0.ffn_up.weight")->src_type, "q2g"));
    // A coarser --group re-blocks: lossy for ternary codes (counted, measured),
    // refused for 2-bit ones.
    char out64[1024];
    snprintf(out64, sizeof out64, "%s", test_tmp_path("lowbit.g64.tern"));
    tern_export_opts o64 = {.group = 64, .check = check}, o128 = {.group = 128};
    CHECK_OK(tern_export_tern(m, in, &o64, out64, &info));
    printf(".tern export --group 64: %d exact, %d lossy, weight rel. RMSE %.4f; ppl %.4f -> %.4f (%+.3f%%)\n",
           info.exact_linears, info.lossy_linears, info.lossy_rel_rmse, info.check.ppl_source, info.check.ppl_export,
           info.check.change_pct);
    CHECK(info.check.checked && info.check.change_pct != 0);
    CHECK(info.exact_linears == 6 && info.lossy_linears == 1 && info.lossy_rel_rmse > 0.01); // attn_output (G 32)
    CHECK_FAILS(tern_export_tern(m, in, &o128, out64, &info),
                "export: blk.0.ffn_up.weight holds 2-bit codes per block of 64 (Q2_0); G=128 cannot keep them");
    remove(out64);
    // Re-exporting the .tern keeps everything (its codes are now all ternary).
    const char *again = test_tmp_path("lowbit.again.tern");
    CHECK_OK(tern_export_tern(&back, out, &o, again, &info));
    CHECK(info.exact_linears == 7 && info.lossy_linears == 0);
    tern_model back2 = {0};
    CHECK_OK(tern_model_load(&back2, again, NULL));
    for (size_t k = 0; k < sizeof EXPECT / sizeof EXPECT[0]; k++)
        CHECK_MSG(same_values(&back, &back2, EXPECT[k].name), "%s changed on re-export", EXPECT[k].name);
    tern_model_free(&back), tern_model_free(&back2);
    remove(out), remove(again), remove(text);
}

// gguf-q2_0: every linear Q2_0 (rows of 256 are whole 64-blocks, no
// fallback); blocks of 256 / 128 / 64 keep d exactly, the Q4_0 matrix's two
// 32-blocks per 64 are re-blocked (lossy, measured), ffn_up's code 2 too.
static void test_export_q2_0(const tern_model *m, const char *in) {
    const char *out = test_tmp_path("lowbit.q2_0.gguf");
    tern_export_tq_opts o = {.format = "gguf-q2_0"};
    tern_export_tq_info info;
    CHECK_OK(tern_export_gguf_tq(m, in, &o, out, &info));
    printf("gguf-q2_0 export: %d linears, %d fallback, %d lossy; weight rel. RMSE %.4f, %lld bytes\n", info.linears,
           info.fallback_linears, info.lossy_linears, info.weight_rel_rmse, (long long)info.bytes);
    CHECK(info.linears == 7 && info.fallback_linears == 0 && info.lossy_linears == 1 && info.weight_rel_rmse > 0);
    tern_gguf g;
    CHECK_OK(tern_gguf_open(&g, out));
    for (int i = 0; i < g.n_tensors; i++)
        if (strstr(g.tensors[i].name, "blk.0.") && g.tensors[i].n_dims == 2)
            CHECK_MSG(g.tensors[i].type == TERN_GGML_Q2_0, "%s has type %u", g.tensors[i].name, g.tensors[i].type);
    tern_gguf_close(&g);
    tern_model back = {0};
    CHECK_OK(tern_model_load(&back, out, NULL));
    static const char *exact[] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_gate.weight",
                                  "blk.0.attn_v.weight", "blk.0.ffn_down.weight"};
    for (int k = 0; k < 5; k++) CHECK_MSG(same_values(m, &back, exact[k]), "%s changed in gguf-q2_0", exact[k]);
    CHECK(!same_values(m, &back, "blk.0.attn_output.weight") && !same_values(m, &back, "blk.0.ffn_up.weight"));
    tern_model_free(&back);
    remove(out);
}

// tern's Q2_0 encoder on the codes and d the reader decoded reproduces the
// fixture's bytes (written by the port of ggml's quantize_row_q2_0_ref).
static void test_q2_0_encoder(void) {
    tern_gguf g;
    CHECK_OK(tern_gguf_open(&g, test_src_path("tests/fixtures/lowbit_llama.gguf")));
    const tern_gguf_tensor *t = tern_gguf_find_tensor(&g, "blk.0.attn_v.weight");
    float *x = malloc((size_t)t->numel * 4);
    CHECK_OK(tern_gguf_dequantize(&g, t, x));
    int same = 1;
    for (int64_t b = 0; b < t->numel / 64; b++) {
        const uint8_t *src = t->data + b * 18;
        uint16_t h;
        memcpy(&h, src, 2);
        float d = tern_f16_to_f32(h);
        int8_t q[64];
        for (int j = 0; j < 64; j++) q[j] = (int8_t)(d != 0 ? lrintf(x[b * 64 + j] / d) : 0);
        uint8_t blk[TERN_GGUF_Q2_0_BYTES];
        tern_gguf_encode_q2_0(q, d, blk);
        same &= !memcmp(blk, src, sizeof blk);
    }
    CHECK_MSG(same, "tern_gguf_encode_q2_0 differs from ggml's block_q2_0 bytes");
    free(x);
    tern_gguf_close(&g);
}

// --format t2 at run time keeps the ternary codes (G=128: blocks of 256 split,
// the 64- and 32-blocks kept at their own group), so its logits are as close
// to the reference as the native run's; absmean re-ternarization (the old
// behaviour: scales d x the fraction of non-zeros) is far off.
static void test_format_t2(const tern_model *m, const reference *r) {
    size_t n = (size_t)r->n * r->vocab;
    float *a = malloc(n * 4);
    CHECK_OK(logits_of(m, "t2", r, a));
    double e = test_max_rel_err(a, r->logits, n, 1.0);
    printf("--format t2 logits vs reference: %.2e\n", e);
    CHECK(e < 3.1e-2);
    free(a);
}

int main(void) {
    reference r;
    if (read_ref(&r)) {
        fprintf(stderr, "%s\n", tern_last_error());
        return 1;
    }
    tern_model m = {0}, twin = {0};
    CHECK_OK(tern_gguf_load_model(&m, test_src_path("tests/fixtures/lowbit_llama.gguf")));
    CHECK_OK(tern_gguf_load_model(&twin, test_src_path("tests/fixtures/lowbit_llama.f16.gguf")));
    test_load(&m, &twin);
    test_logits(&m, &twin, &r);
    test_ppl(&m, &twin, &r);
    test_bytes(&m);
    test_format_t2(&m, &r);
    test_q2_0_encoder();
    const char *in = test_src_path("tests/fixtures/lowbit_llama.gguf");
    test_export_tern(&m, in);
    test_export_q2_0(&m, in);
    test_bad_input();
    test_q4_0_fallback(&r);
    test_kquant_head(&m, &r); // changes m
    tern_model_free(&m), tern_model_free(&twin);
    free(r.tokens), free(r.logits), free(r.ppl_tokens);
    return test_report();
}
