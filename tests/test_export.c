// The packed .tern file (`tern export`): absmean PTQ export of stories260K,
// loading it back (packed types, packed bytes kept), the native packed run
// against the in-memory packed session, t2 vs t1.6, exact code recovery from
// `tern quantize` outputs (Tequila biases, DLT shifts), low-bit rtn / teq
// outputs as q2g/q3g/q4g, and bad inputs.
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/half.h"
#include "eval/ppl.h"
#include "infer/export.h"
#include "infer/packed.h"
#include "io/gguf.h"
#include "kernels/formats.h"
#include "kernels/kernels.h"
#include "quant/quant.h"
#include "test.h"

static const char *text;
static size_t text_len;

static double ppl(const tern_model *m, const char *format) {
    tern_tokenizer *tok;
    if (tern_tokenizer_init(&tok, &m->vocab)) return -1;
    tern_ppl_result r;
    int rc = tern_perplexity_text(m, tok, text, text_len, 256, 8, format, &r);
    tern_tokenizer_free(tok);
    if (rc) fprintf(stderr, "%s\n", tern_last_error());
    return rc ? -1 : r.ppl;
}

static long long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "/tmp/tern_test_export_%d_%s", (int)getpid(), name);
}

static void load_fp(tern_model *m) {
    CHECK_OK(tern_model_load(m, test_data_path("models/stories260K/stories260K.bin"),
                             test_data_path("models/stories260K/tok512.bin")));
}

// The token table as q8 (block 32) values, as the .tern file stores it.
static void q8_embedding(tern_model *m) {
    tern_tensor *t = tern_model_find(m, "token_embd.weight");
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    int g = TERN_KQ8_GROUP < cols ? TERN_KQ8_GROUP : cols, ng = (cols + g - 1) / g;
    int8_t *codes = malloc((size_t)rows * cols);
    float *scales = malloc((size_t)rows * ng * sizeof(float));
    tern_absmax_q8(t->data, rows, cols, g, codes, scales, NULL, NULL);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            t->data[(size_t)r * cols + c] =
                tern_f16_to_f32(tern_f32_to_f16(scales[(size_t)r * ng + c / g])) * codes[(size_t)r * cols + c];
    free(codes), free(scales);
}

// A 2-bit field 3 is no ternary code: loading must fail (the AVX2 kernel's
// int16 groups rely on fields <= 2).
static void check_field3(const char *path) {
    char *bytes;
    size_t n;
    CHECK_OK(tern_read_file(path, &bytes, &n));
    tern_gguf g;
    CHECK_OK(tern_gguf_parse(&g, bytes, n, path));
    const tern_gguf_tensor *t = tern_gguf_find_tensor(&g, "blk.1.ffn_up.weight");
    size_t at = (size_t)(t->data - (const uint8_t *)bytes) + 5;
    tern_gguf_close(&g);
    bytes[at] |= 0x0c; // one field of a code byte becomes 3
    char bad[256];
    tmp_path(bad, sizeof bad, "field3.tern");
    FILE *f = fopen(bad, "wb");
    CHECK(f && fwrite(bytes, 1, n, f) == n);
    fclose(f);
    tern_model m;
    CHECK_FAILS(tern_model_load(&m, bad, NULL), "blk.1.ffn_up.weight: row 0 holds a 2-bit field 3");
    free(bytes);
    remove(bad);
}

// The in-memory packed session (absmean t2, G=32) on a model whose token
// table is already q8: the .tern native run must equal it.
static double ppl_session_t2(const tern_model *m) {
    tern_tokenizer *tok;
    CHECK_OK(tern_tokenizer_init(&tok, &m->vocab));
    int *ids, n;
    CHECK_OK(tern_tokenize(tok, text, text_len, tern_tokenizer_add_bos(tok), &ids, &n));
    // Same chunking as tern_perplexity_text, with the session made here for G=32.
    tern_session s;
    tern_packed *p;
    CHECK_OK(tern_session_init(&s, m, 256, 256));
    CHECK_OK(tern_session_set_format(&s, "t2", 32, &p));
    float *logits = malloc((size_t)256 * m->cfg.vocab_size * sizeof(float));
    double nll = 0;
    int count = 0, bos = tern_tokenizer_bos(tok);
    for (int c = 0; c < 8 && (c + 1) * 256 <= n; c++) {
        int chunk[256];
        memcpy(chunk, ids + c * 256, sizeof chunk);
        if (tern_tokenizer_add_bos(tok)) chunk[0] = bos;
        CHECK_OK(tern_forward(&s, chunk, 256, 0, logits));
        for (int i = 128; i < 255; i++) {
            const float *l = logits + (size_t)i * m->cfg.vocab_size;
            double mx = l[0], sum = 0;
            for (int v = 1; v < m->cfg.vocab_size; v++) mx = l[v] > mx ? l[v] : mx;
            for (int v = 0; v < m->cfg.vocab_size; v++) sum += exp(l[v] - mx);
            nll += log(sum) - (l[ids[c * 256 + i + 1]] - mx);
            count++;
        }
    }
    free(logits), free(ids);
    tern_session_free(&s);
    tern_packed_free(p);
    tern_tokenizer_free(tok);
    return exp(nll / count);
}

static void check_ptq(void) {
    tern_model fp, t2, t16;
    load_fp(&fp);
    char p2[256], p16[256];
    tmp_path(p2, sizeof p2, "t2.tern");
    tmp_path(p16, sizeof p16, "t16.tern");
    tern_export_opts o = {.pack = "2", .group = 32};
    tern_export_info info;
    fp.vocab.chat_template = strdup("{{ bos_token }}<start_of_turn>user\n"); // kept by the .tern file
    CHECK_OK(tern_export_tern(&fp, fp.path, &o, p2, &info));
    CHECK(info.group == 32 && !info.has_shift && info.method[0] == 0);
    o.pack = "1.6";
    CHECK_OK(tern_export_tern(&fp, fp.path, &o, p16, NULL));
    CHECK_OK(tern_model_load(&t2, p2, NULL)); // self-contained: tokenizer embedded
    CHECK_OK(tern_model_load(&t16, p16, NULL));
    CHECK(t2.vocab.chat_template && !strcmp(t2.vocab.chat_template, fp.vocab.chat_template));
    const tern_tensor *q = tern_model_find(&t2, "blk.0.attn_q.weight"), *e = tern_model_find(&t2, "token_embd.weight");
    CHECK(q && q->packed && !strcmp(q->src_type, "tern-t2") && q->packed_group == 32);
    CHECK(e && e->packed && !strcmp(e->src_type, "q8-row"));
    CHECK(!strcmp(tern_model_find(&t16, "blk.4.ffn_down.weight")->src_type, "tern-t1.6"));
    CHECK(tern_model_find(&t2, "blk.0.attn_norm.weight")->packed == NULL);
    printf(".tern sizes: t2 %lld, t1.6 %lld bytes (f32 checkpoint 1056540)\n", (long long)info.bytes,
           (long long)file_size(p16));

    double n2 = ppl(&t2, NULL), n16 = ppl(&t16, NULL), deq = ppl(&t2, "f32");
    q8_embedding(&fp);
    double mem = ppl_session_t2(&fp);
    printf("ppl: .tern t2 native %.6f, t1.6 native %.6f, in-memory t2 session %.6f, dequantized FP32 %.6f\n", n2,
           n16, mem, deq);
    CHECK_MSG(n2 > 0 && n2 == n16, "t2 %.9g vs t1.6 %.9g", n2, n16);
    CHECK_MSG(fabs(n2 / mem - 1) < 1e-6, "native %.9g vs session %.9g", n2, mem);
    CHECK_MSG(n2 != deq && fabs(n2 / deq - 1) < 0.02, "native %.6f vs dequantized %.6f", n2, deq);

    // Logits of t2 and t1.6 agree bit for bit through the native sessions.
    tern_session s2, s16;
    tern_packed *pk2, *pk16;
    CHECK_OK(tern_session_init(&s2, &t2, 32, 32));
    CHECK_OK(tern_session_init(&s16, &t16, 32, 32));
    CHECK_OK(tern_session_use_native(&s2, &pk2));
    CHECK_OK(tern_session_use_native(&s16, &pk16));
    CHECK(pk2 && !strcmp(tern_packed_format_name(pk2), "tern-t2"));
    CHECK(pk16 && !strcmp(tern_packed_format_name(pk16), "tern-t1.6"));
    CHECK(tern_session_file_bytes(&s2, pk2) == info.bytes);
    int tokens[16];
    for (int i = 0; i < 16; i++) tokens[i] = (i * 37 + 11) % 512;
    float *l2 = malloc(16 * 512 * sizeof(float)), *l16 = malloc(16 * 512 * sizeof(float));
    CHECK_OK(tern_forward(&s2, tokens, 16, 0, l2));
    CHECK_OK(tern_forward(&s16, tokens, 16, 0, l16));
    CHECK(memcmp(l2, l16, 16 * 512 * sizeof(float)) == 0);
    // On AVX-512 the sessions run the tensors' row-interleaved copy, made once:
    // a second session on the same model shares it and gives the same logits.
    tern_kimpl impl;
    CHECK_OK(tern_kernel_default(&impl));
    void *copy = q->packed_copy;
    CHECK_MSG((copy != NULL) == (impl == TERN_KIMPL_AVX512), "interleaved copy %p with kernel %s", copy,
              tern_kernel_name(impl));
    tern_session s2b;
    tern_packed *pk2b;
    CHECK_OK(tern_session_init(&s2b, &t2, 32, 32));
    CHECK_OK(tern_session_use_native(&s2b, &pk2b));
    CHECK_OK(tern_forward(&s2b, tokens, 16, 0, l16));
    CHECK(memcmp(l2, l16, 16 * 512 * sizeof(float)) == 0);
    CHECK(q->packed_copy == copy);
    tern_session_free(&s2b);
    tern_packed_free(pk2b);
    free(l2), free(l16);
    tern_session_free(&s2), tern_session_free(&s16);
    tern_packed_free(pk2), tern_packed_free(pk16);
    tern_model_free(&t2), tern_model_free(&t16), tern_model_free(&fp);
    check_field3(p2);
    remove(p2), remove(p16);
}

// Writes stories260K quantized by `method` (no training: initial parameters;
// with teq_scales, TEQ's s set to a fixed spread instead of 1) as the
// fake-quant GGUF `tern quantize` writes, to path.
static void write_fake_quant(const char *method, const tern_quant_opts *o, int teq_scales, const char *path) {
    tern_model m, fake;
    load_fp(&m);
    load_fp(&fake);
    tern_quant *q;
    CHECK_OK(tern_quant_create(&q, tern_quant_find(method), o, &m));
    for (int id = 0; teq_scales && id < q->n_lin; id++)
        for (int i = 0; q->lin[id].p && i < q->lin[id].in; i++)
            q->lin[id].p[i] = 0.5f + (float)((i * 7919 + id * 31) % 101) / 100.0f;
    double frac[3];
    CHECK_OK(tern_quant_export(q, &fake, frac));
    CHECK_OK(tern_quant_write_gguf(q, &fake, frac, path));
    tern_quant_free(q);
    tern_model_free(&m), tern_model_free(&fake);
}

// write_fake_quant to pg, loaded into *in, exported to pt with the default
// options (*info filled) and the .tern loaded into *packed.
static void export_fake_quant(const char *method, const tern_quant_opts *o, int teq_scales, const char *pg,
                              const char *pt, tern_model *in, tern_model *packed, tern_export_info *info) {
    write_fake_quant(method, o, teq_scales, pg);
    CHECK_OK(tern_model_load(in, pg, NULL));
    tern_export_opts eo = {0};
    CHECK_OK(tern_export_tern(in, pg, &eo, pt, info));
    CHECK_OK(tern_model_load(packed, pt, NULL));
}

// `tern quantize`-style output exported to .tern reproduces the fake-quant
// model up to int8 activations and fp16 scales.
static void check_quantized(const char *method, float lambda) {
    tern_model in, packed;
    tern_quant_opts o;
    tern_quant_opts_defaults(&o);
    o.group = 32;
    o.lambda = lambda;
    char pg[256], pt[256];
    tmp_path(pg, sizeof pg, "fake.gguf");
    tmp_path(pt, sizeof pt, "q.tern");
    tern_export_info info;
    export_fake_quant(method, &o, 0, pg, pt, &in, &packed, &info);
    CHECK(info.group == 32 && !strcmp(info.method, method));
    CHECK(info.has_shift == !strcmp(method, "dlt"));
    CHECK(packed.cfg.ffn_bias == in.cfg.ffn_bias);
    if (!strcmp(method, "tequila")) CHECK(packed.cfg.ffn_bias && tern_model_find(&packed, "blk.0.ffn_up.bias"));
    if (!strcmp(method, "dlt")) CHECK(tern_model_find(&packed, "blk.0.attn_q.weight")->packed_shift == 1);
    double pf = ppl(&in, "f32"), pn = ppl(&packed, NULL);
    printf("%s: fake-quant ppl %.4f, .tern native %.4f (%.3f%%), %lld bytes\n", method, pf, pn,
           100 * (pn / pf - 1), (long long)info.bytes);
    CHECK_MSG(fabs(pn / pf - 1) < 0.01, "%s: %.4f vs %.4f", method, pn, pf);
    // The recovered weights (dequantized .tern) match the fake-quant ones up to fp16 scales.
    const tern_tensor *a = tern_model_find(&in, "blk.2.ffn_down.weight"), *b = tern_model_find(&packed, "blk.2.ffn_down.weight");
    double err = test_max_rel_err(a->data, b->data, (size_t)a->numel, 1e-2);
    CHECK_MSG(err < 2e-3, "%s: recovered weights differ by %.3g", method, err);
    tern_model_free(&in), tern_model_free(&packed);
    remove(pg), remove(pt);
}

// A b-bit rtn / teq output exports as q{b}g: every group's grid s*(c - z) is
// recovered, so the .tern weights equal the fake-quant ones up to fp16 scales
// and the perplexity up to int8 activations. TEQ runs with non-trivial scales
// s (already folded into the norms and W by tern_quant_export).
static void check_lowbit(const char *method, int bits, int sym, double max_pct) {
    tern_model in, packed;
    tern_quant_opts o;
    tern_quant_opts_defaults(&o);
    o.group = 32, o.bits = bits, o.sym = sym;
    char pg[256], pt[256], want[16];
    tmp_path(pg, sizeof pg, "lowbit.gguf");
    tmp_path(pt, sizeof pt, "lowbit.tern");
    tern_export_info info;
    export_fake_quant(method, &o, 1, pg, pt, &in, &packed, &info);
    snprintf(want, sizeof want, "q%dg", bits);
    CHECK_MSG(!strcmp(info.format, want) && info.group == 32, "%s: %s G=%d", method, info.format, info.group);
    const tern_tensor *a = tern_model_find(&in, "blk.3.attn_q.weight"), *b = tern_model_find(&packed, "blk.3.attn_q.weight");
    CHECK(b->packed && b->packed_fmt == (int)tern_kformat_find(want)->id);
    double err = test_max_rel_err(a->data, b->data, (size_t)a->numel, 1e-2);
    CHECK_MSG(err < 2e-3, "%s b%d: recovered weights differ by %.3g", method, bits, err);
    // The folded TEQ norms travel unchanged.
    a = tern_model_find(&in, "blk.1.ffn_norm.weight"), b = tern_model_find(&packed, "blk.1.ffn_norm.weight");
    CHECK(a && b && !memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)));
    double pf = ppl(&in, "f32"), pn = ppl(&packed, NULL);
    printf("%s b%d%s: fake-quant ppl %.4f, .tern native %.4f (%.3f%%), %lld bytes\n", method, bits, sym ? " sym" : "",
           pf, pn, 100 * (pn / pf - 1), (long long)info.bytes);
    CHECK_MSG(fabs(pn / pf - 1) < max_pct / 100, "%s b%d: %.4f vs %.4f", method, bits, pn, pf);
    // A .tern re-exported gives the same bytes' worth of model.
    tern_export_opts eo = {0};
    tern_export_info again;
    char pt2[256];
    tmp_path(pt2, sizeof pt2, "lowbit2.tern");
    CHECK_OK(tern_export_tern(&packed, pt, &eo, pt2, &again));
    CHECK(again.bytes == info.bytes && !strcmp(again.format, want));
    tern_model_free(&in), tern_model_free(&packed);
    remove(pg), remove(pt), remove(pt2);
}

static void check_bad_inputs(void) {
    tern_model fp;
    load_fp(&fp);
    char p[256];
    tmp_path(p, sizeof p, "bad.tern");
    remove(p);
    tern_export_opts o = {.pack = "3"};
    CHECK_FAILS(tern_export_tern(&fp, fp.path, &o, p, NULL), "unknown --pack");
    o = (tern_export_opts){.group = 48};
    CHECK_FAILS(tern_export_tern(&fp, fp.path, &o, p, NULL), "multiple of 32");
    CHECK(access(p, F_OK) != 0); // nothing written
    // A 5-bit RTN output has no packed format; --pack is for ternary models;
    // TQ holds ternary only.
    tern_quant_opts qo;
    tern_quant_opts_defaults(&qo);
    qo.group = 32;
    qo.bits = 5;
    char pg[256];
    tmp_path(pg, sizeof pg, "rtn.gguf");
    write_fake_quant("rtn", &qo, 0, pg);
    tern_model in;
    CHECK_OK(tern_model_load(&in, pg, NULL));
    o = (tern_export_opts){0};
    CHECK_FAILS(tern_export_tern(&in, pg, &o, p, NULL), "hold 2, 3 or 4 bits");
    CHECK(access(p, F_OK) != 0);
    tern_export_tq_opts tq = {.fallback = "q4_0"};
    CHECK_FAILS(tern_export_gguf_tq(&in, pg, &tq, p, NULL), "only ternary models");
    CHECK(access(p, F_OK) != 0);
    tern_model_free(&in);
    // A 4-bit one refuses --pack, and (as every quantized input) fixes the group.
    qo.bits = 4;
    write_fake_quant("rtn", &qo, 0, pg);
    CHECK_OK(tern_model_load(&in, pg, NULL));
    o = (tern_export_opts){.pack = "1.6"};
    CHECK_FAILS(tern_export_tern(&in, pg, &o, p, NULL), "--pack is for ternary models");
    o = (tern_export_opts){.group = 64};
    CHECK_FAILS(tern_export_tern(&in, pg, &o, p, NULL), "differs from the input");
    CHECK(access(p, F_OK) != 0);
    tern_model_free(&in), tern_model_free(&fp);
    remove(pg);
}

int main(void) {
    char *t;
    CHECK_OK(tern_read_file(test_data_path("data/tinystories/valid-sample.txt"), &t, &text_len));
    text = t;
    check_ptq();
    check_quantized("tequila", 0.1f);
    check_quantized("dlt", 0);
    check_lowbit("rtn", 4, 0, 1.0);
    check_lowbit("rtn", 4, 1, 1.0);
    check_lowbit("rtn", 2, 0, 1.0);
    check_lowbit("teq", 4, 0, 1.0);
    // A 3-bit model of this 260K network loses 1.1% to int8 activations (8 and
    // 32 chunks alike): the bound is the measured loss plus margin, not 1%.
    check_lowbit("teq", 3, 0, 1.5);
    check_bad_inputs();
    free(t);
    return test_report();
}
