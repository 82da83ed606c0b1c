// llama.cpp's ternary types and `tern export --format gguf-tq2|gguf-tq1`:
// - TQ1_0 / TQ2_0 dequantization by tern's GGUF reader equals gguf-py's numpy
//   dequantize bit for bit (tests/fixtures/tq_blocks.gguf, tests/ref/gen_tq.py),
//   also on byte values no encoder writes;
// - tern's block encoders write the bytes gguf-py's quantize writes;
// - export of a synthetic llama (dims multiples of 256, FFN 288: the Q4_0
//   fallback) decodes, through tern's reader, to exactly d * T for the
//   intended codes and the least-squares d per block; metadata; idempotent
//   re-export of the written file; the perplexity check and its refusal;
// - stories260K (rows of 64) is refused cleanly; a truncated export fails
//   with one line.
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/file.h"
#include "core/half.h"
#include "infer/export.h"
#include "infer/packed.h"
#include "io/gguf_write.h"
#include "io/readers.h"
#include "quant/quant.h"
#include "test.h"

#define DIM 256
#define HIDDEN 288 // not a multiple of 256: ffn_down needs the fallback
#define LAYERS 2
#define G 128

static const char *lin[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

// No staging file (OUT.check.PID) may survive in the temp dir.
static int staging_left(void) {
    DIR *d = opendir(test_tmp_dir());
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".check.")) n++;
    if (d) closedir(d);
    return n;
}

// ---------------------------------------------------------------------------
// Fixture: decoding and encoding against gguf-py.

static int same_bits(const float *a, const float *b, int n, const char *what) {
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (tern_f32_to_bits(a[i]) != tern_f32_to_bits(b[i]) && bad++ == 0)
            fprintf(stderr, "%s[%d] = %.9g (0x%08x), gguf-py %.9g (0x%08x)\n", what, i, a[i], tern_f32_to_bits(a[i]),
                    b[i], tern_f32_to_bits(b[i]));
    return bad == 0;
}

static void check_fixture(void) {
    tern_gguf g;
    CHECK_OK(tern_gguf_open(&g, test_src_path("tests/fixtures/tq_blocks.gguf")));
    const char *types[2] = {"TQ1_0", "TQ2_0"};
    uint32_t ids[2] = {TERN_GGML_TQ1_0, TERN_GGML_TQ2_0};
    for (int k = 0; k < 2; k++) {
        for (int part = 0; part < 2; part++) {
            char name[64], exp_name[80];
            snprintf(name, sizeof name, "%s.%s", types[k], part ? "raw" : "quant");
            snprintf(exp_name, sizeof exp_name, "%s.expected", name);
            const tern_gguf_tensor *t = tern_gguf_find_tensor(&g, name), *e = tern_gguf_find_tensor(&g, exp_name);
            CHECK_MSG(t && e, "missing %s", name);
            if (!t || !e) continue;
            CHECK(t->type == ids[k] && !strcmp(tern_gguf_type_name(t->type), types[k]) && tern_gguf_type_supported(t->type));
            CHECK(t->ne[0] == 256 && t->ne[1] == 3 && e->type == TERN_GGML_F32 && e->numel == t->numel);
            float *out = malloc((size_t)t->numel * sizeof(float)), *want = malloc((size_t)t->numel * sizeof(float));
            memset(out, 0xff, (size_t)t->numel * sizeof(float));
            CHECK_OK(tern_gguf_dequantize(&g, t, out));
            memcpy(want, e->data, (size_t)t->numel * sizeof(float));
            CHECK_MSG(same_bits(out, want, (int)t->numel, name), "%s differs from gguf-py", name);
            int nonzero = 0, edge = 0;
            for (int i = 0; i < t->numel; i++) nonzero += want[i] != 0;
            // The raw blocks' first row holds bytes >= 243 (TQ1_0) / fields of 3 (TQ2_0, decoded as 2d).
            if (part && k == 0)
                for (int i = 0; i < 48; i++) edge += t->data[i] >= 243;
            if (part && k == 1) {
                float d = tern_f16_to_f32((uint16_t)(t->data[64] | t->data[65] << 8));
                for (int i = 0; i < 256; i++) edge += want[i] == 2 * d;
            }
            CHECK_MSG(!part || edge > 0, "%s: the edge-case bytes are not in the fixture", name);
            CHECK(nonzero > 100);
            free(out), free(want);
        }
        // Encoding the intended codes with the intended scales gives gguf-py's bytes.
        char cn[64], sn[64], qn[64];
        snprintf(cn, sizeof cn, "%s.codes", types[k]);
        snprintf(sn, sizeof sn, "%s.scales", types[k]);
        snprintf(qn, sizeof qn, "%s.quant", types[k]);
        const tern_gguf_tensor *c = tern_gguf_find_tensor(&g, cn), *s = tern_gguf_find_tensor(&g, sn),
                               *q = tern_gguf_find_tensor(&g, qn);
        CHECK(c && s && q && c->numel == 768 && s->numel == 3);
        if (!c || !s || !q) continue;
        size_t bs = k ? TERN_GGUF_TQ2_0_BYTES : TERN_GGUF_TQ1_0_BYTES;
        for (int r = 0; r < 3; r++) {
            uint8_t blk[TERN_GGUF_TQ2_0_BYTES];
            float d = tern_f16_to_f32((uint16_t)(s->data[2 * r] | s->data[2 * r + 1] << 8));
            const int8_t *T = (const int8_t *)c->data + 256 * r;
            if (k) tern_gguf_encode_tq2_0(T, d, blk);
            else tern_gguf_encode_tq1_0(T, d, blk);
            CHECK_MSG(memcmp(blk, q->data + r * bs, bs) == 0, "%s block %d: encoder differs from gguf-py", types[k], r);
        }
    }
    tern_gguf_close(&g);
}

// Q4_0 encoder against the reader (whose Q4_0 decoding is checked against
// numpy in test_gguf): every code in [-8, 7] round-trips.
static void check_q4_0_roundtrip(void) {
    int8_t q[32];
    for (int i = 0; i < 32; i++) q[i] = (int8_t)(i % 16 - 8);
    uint8_t blk[TERN_GGUF_Q4_0_BYTES];
    tern_gguf_encode_q4_0(q, 0.75f, blk);
    tern_gguf_writer *w = tern_gguf_writer_new();
    int64_t shape[1] = {32};
    CHECK_OK(tern_gguf_add_tensor(w, "q4", TERN_GGUF_TYPE_Q4_0, 1, shape, blk, sizeof blk));
    const char *p = test_tmp_path("q4.gguf");
    CHECK_OK(tern_gguf_write(w, p));
    tern_gguf_writer_free(w);
    tern_gguf g;
    CHECK_OK(tern_gguf_open(&g, p));
    float out[32];
    CHECK_OK(tern_gguf_dequantize(&g, tern_gguf_find_tensor(&g, "q4"), out));
    int ok = 1;
    for (int i = 0; i < 32; i++) ok &= out[i] == 0.75f * q[i];
    CHECK(ok);
    tern_gguf_close(&g);
}

// ---------------------------------------------------------------------------
// A synthetic llama with tern's own writer.

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { // uniform in [-1, 1)
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (1.0 / (1 << 23))) - 1.0f;
}

static void add(tern_model *m, const char *name, int64_t rows, int64_t cols, float scale, float offset) {
    int64_t shape[2] = {rows, cols};
    tern_tensor *t = tern_model_add_tensor(m, name, cols ? 2 : 1, cols ? shape : &shape[0], "F32");
    CHECK(t != NULL);
    for (int64_t i = 0; t && i < t->numel; i++) t->data[i] = offset + scale * frand();
}

static void make_model(const char *path) {
    tern_model voc;
    CHECK_OK(tern_model_load(&voc, test_data_path("models/stories260K/stories260K.bin"),
                             test_data_path("models/stories260K/tok512.bin")));
    tern_model m = {0};
    snprintf(m.path, sizeof m.path, "synthetic");
    tern_config *c = &m.cfg;
    snprintf(c->arch, sizeof c->arch, "llama");
    snprintf(c->name, sizeof c->name, "tq test llama");
    c->dim = DIM, c->n_layers = LAYERS, c->n_heads = 4, c->n_kv_heads = 2, c->head_dim = 64;
    c->hidden_dim = HIDDEN, c->vocab_size = 512, c->max_seq = 256, c->rope_theta = 10000, c->rms_eps = 1e-5f;
    c->ffn_bias = 1;
    m.vocab = voc.vocab; // moved
    memset(&voc.vocab, 0, sizeof voc.vocab);
    tern_model_free(&voc);
    add(&m, "token_embd.weight", 512, DIM, 1.0f, 0);
    for (int l = 0; l < LAYERS; l++) {
        char n[96];
        int64_t out[7] = {256, 128, 128, DIM, HIDDEN, HIDDEN, DIM}, in[7] = {DIM, DIM, DIM, 256, DIM, DIM, HIDDEN};
        snprintf(n, sizeof n, "blk.%d.attn_norm.weight", l), add(&m, n, DIM, 0, 0.1f, 1.0f);
        snprintf(n, sizeof n, "blk.%d.ffn_norm.weight", l), add(&m, n, DIM, 0, 0.1f, 1.0f);
        for (int k = 0; k < 7; k++) {
            snprintf(n, sizeof n, "blk.%d.%s.weight", l, lin[k]);
            add(&m, n, out[k], in[k], 0.08f, 0);
        }
        snprintf(n, sizeof n, "blk.%d.ffn_gate.bias", l), add(&m, n, HIDDEN, 0, 0.02f, 0);
        snprintf(n, sizeof n, "blk.%d.ffn_up.bias", l), add(&m, n, HIDDEN, 0, 0.02f, 0);
        snprintf(n, sizeof n, "blk.%d.ffn_down.bias", l), add(&m, n, DIM, 0, 0.02f, 0);
    }
    add(&m, "output_norm.weight", DIM, 0, 0.1f, 1.0f);
    add(&m, "output.weight", 512, DIM, 0.05f, 0);
    CHECK_OK(tern_gguf_write_model(&m, path));
    tern_model_free(&m);
}

// What the export must hold for one linear of the FP model: absmean codes per
// group of G, alpha rounded to fp16, and per block of `blk` d =
// fp16(sum_g alpha_g n_g / sum_g n_g) (n_g: nonzero codes of group g in the block).
static void expected_linear(const tern_tensor *t, int blk, float *want) {
    int rows = (int)t->shape[0], cols = (int)t->shape[1], ng = (cols + G - 1) / G;
    int8_t *T = malloc((size_t)rows * cols);
    float *a = malloc((size_t)rows * ng * sizeof(float));
    tern_absmean_ternary(t->data, rows, cols, G, T, a);
    for (int r = 0; r < rows; r++)
        for (int b0 = 0; b0 < cols; b0 += blk) {
            double num = 0;
            int nnz = 0;
            for (int g = b0 / G; g * G < b0 + blk && g < ng; g++) {
                int lo = g * G > b0 ? g * G : b0, hi = (g + 1) * G < b0 + blk ? (g + 1) * G : b0 + blk, n = 0;
                for (int c = lo; c < hi && c < cols; c++) n += T[(size_t)r * cols + c] != 0;
                num += (double)tern_f16_to_f32(tern_f32_to_f16(a[(size_t)r * ng + g])) * n, nnz += n;
            }
            float d = tern_f16_to_f32(tern_f32_to_f16(nnz ? (float)(num / nnz) : 0.0f));
            for (int c = b0; c < b0 + blk; c++) want[(size_t)r * cols + c] = d * (float)T[(size_t)r * cols + c];
        }
    free(T), free(a);
}

static void check_export(const char *fp_path) {
    tern_model fp, t2, t1;
    CHECK_OK(tern_model_load(&fp, fp_path, NULL));
    const char *o2 = test_tmp_path("m.tq2.gguf"), *o1 = test_tmp_path("m.tq1.gguf");

    // Rows of 288 are refused without the fallback, and nothing is written.
    tern_export_tq_opts o = {.format = "gguf-tq2"};
    CHECK_FAILS(tern_export_gguf_tq(&fp, fp_path, &o, o2, NULL),
                "blk.0.ffn_down.weight has rows of 288 values, not a multiple of 256 (llama.cpp's TQ2_0 block); "
                "--fallback q4_0");
    CHECK(!file_exists(o2));
    o.fallback = "q8";
    CHECK_FAILS(tern_export_gguf_tq(&fp, fp_path, &o, o2, NULL), "unknown fallback 'q8'");
    o = (tern_export_tq_opts){.format = "gguf-tq3"};
    CHECK_FAILS(tern_export_gguf_tq(&fp, fp_path, &o, o2, NULL), "unknown format 'gguf-tq3'");

    tern_export_tq_info info;
    o = (tern_export_tq_opts){.format = "gguf-tq2", .fallback = "q4_0"};
    CHECK_OK(tern_export_gguf_tq(&fp, fp_path, &o, o2, &info));
    CHECK(info.linears == 7 * LAYERS && info.fallback_linears == LAYERS && info.biases == 3 * LAYERS);
    CHECK(info.group == G && !info.check.checked && !info.dropped_shift && !strcmp(info.source, "by absmean PTQ"));
    CHECK(info.weight_rel_rmse > 0 && info.weight_rel_rmse < 0.2 && info.fallback_rel_rmse == 0);
    // Groups of 256: every block lies in one group, so d = alpha and the file
    // holds the source exactly.
    tern_export_tq_info i256;
    o.group = 256;
    CHECK_OK(tern_export_gguf_tq(&fp, fp_path, &o, o1, &i256));
    CHECK(i256.group == 256 && i256.weight_rel_rmse == 0 && i256.fallback_rel_rmse == 0);
    o.group = 0;
    o.format = "gguf-tq1";
    CHECK_OK(tern_export_gguf_tq(&fp, fp_path, &o, o1, NULL));
    struct stat st;
    CHECK(stat(o1, &st) == 0);
    printf("exported: gguf-tq2 %lld bytes, gguf-tq1 %lld bytes; weight rel. RMSE %.4f\n", (long long)info.bytes,
           (long long)st.st_size, info.weight_rel_rmse);

    // Metadata and tensor types as llama.cpp expects them.
    tern_gguf g;
    CHECK_OK(tern_gguf_open(&g, o2));
    const tern_gguf_kv *kv = tern_gguf_find_kv(&g, "general.architecture");
    CHECK(kv && kv->type == TERN_GGUF_STRING && kv->str_len == 5 && !memcmp(kv->str, "llama", 5));
    CHECK((kv = tern_gguf_find_kv(&g, "general.file_type")) && kv->u == 37);
    CHECK((kv = tern_gguf_find_kv(&g, "general.quantization_version")) && kv->u == 2);
    CHECK((kv = tern_gguf_find_kv(&g, "llama.feed_forward_length")) && kv->u == HIDDEN);
    CHECK((kv = tern_gguf_find_kv(&g, "tokenizer.ggml.tokens")) && kv->arr_n == 512);
    CHECK(tern_gguf_find_kv(&g, "tern.method") == NULL); // not a .tern file
    CHECK(tern_gguf_find_tensor(&g, "blk.1.attn_q.weight")->type == TERN_GGML_TQ2_0);
    CHECK(tern_gguf_find_tensor(&g, "blk.1.ffn_down.weight")->type == TERN_GGML_Q4_0);
    CHECK(tern_gguf_find_tensor(&g, "token_embd.weight")->type == TERN_GGML_Q8_0);
    CHECK(tern_gguf_find_tensor(&g, "output.weight")->type == TERN_GGML_Q8_0);
    CHECK(tern_gguf_find_tensor(&g, "blk.0.ffn_up.bias")->type == TERN_GGML_F32);
    CHECK(tern_gguf_find_tensor(&g, "output_norm.weight")->type == TERN_GGML_F32);
    tern_gguf_close(&g);
    CHECK_OK(tern_gguf_open(&g, o1));
    CHECK((kv = tern_gguf_find_kv(&g, "general.file_type")) && kv->u == 36);
    CHECK(tern_gguf_find_tensor(&g, "blk.0.ffn_gate.weight")->type == TERN_GGML_TQ1_0);
    tern_gguf_close(&g);

    // Through tern's reader every ternary linear is exactly d * T.
    CHECK_OK(tern_model_load(&t2, o2, NULL));
    CHECK_OK(tern_model_load(&t1, o1, NULL));
    CHECK(t2.cfg.ffn_bias && !t2.cfg.tied_embeddings && t2.vocab.n_tokens == 512);
    for (int l = 0; l < LAYERS; l++)
        for (int k = 0; k < 7; k++) {
            char n[96];
            snprintf(n, sizeof n, "blk.%d.%s.weight", l, lin[k]);
            const tern_tensor *src = tern_model_find(&fp, n), *a = tern_model_find(&t2, n), *b = tern_model_find(&t1, n);
            int fb = k == 6;
            CHECK_MSG(!strcmp(a->src_type, fb ? "Q4_0" : "TQ2_0") && !strcmp(b->src_type, fb ? "Q4_0" : "TQ1_0"),
                      "%s: %s / %s", n, a->src_type, b->src_type);
            float *want = malloc((size_t)src->numel * sizeof(float));
            expected_linear(src, fb ? 32 : 256, want);
            CHECK_MSG(same_bits(a->data, want, (int)src->numel, n), "%s (gguf-tq2) is not d * T", n);
            CHECK_MSG(memcmp(a->data, b->data, (size_t)src->numel * sizeof(float)) == 0, "%s: TQ1_0 != TQ2_0", n);
            free(want);
        }
    // Biases and norms unchanged; the Q8_0 tables are absmax per block of 32.
    CHECK(!memcmp(tern_model_find(&t2, "blk.1.ffn_down.bias")->data, tern_model_find(&fp, "blk.1.ffn_down.bias")->data,
                  DIM * sizeof(float)));
    CHECK(!memcmp(tern_model_find(&t2, "blk.0.attn_norm.weight")->data,
                  tern_model_find(&fp, "blk.0.attn_norm.weight")->data, DIM * sizeof(float)));
    const tern_tensor *e = tern_model_find(&fp, "output.weight");
    int8_t *q = malloc((size_t)e->numel);
    float *sc = malloc((size_t)e->numel / 32 * sizeof(float));
    tern_absmax_q8(e->data, 512, DIM, 32, q, sc, NULL, NULL);
    int ok = 1;
    for (int64_t i = 0; i < e->numel; i++)
        ok &= tern_model_find(&t2, "output.weight")->data[i] == tern_f16_to_f32(tern_f32_to_f16(sc[i / 32])) * q[i];
    CHECK_MSG(ok, "output.weight is not the Q8_0 absmax values");
    free(q), free(sc);

    // Re-exporting the written file keeps codes and scales (exact blocks).
    const char *o3 = test_tmp_path("m.tq1.again.gguf");
    tern_export_tq_info info3;
    o = (tern_export_tq_opts){.format = "gguf-tq1", .fallback = "q4_0"};
    CHECK_OK(tern_export_gguf_tq(&t2, o2, &o, o3, &info3));
    CHECK(!strcmp(info3.source, "from exact ternary blocks") && info3.weight_rel_rmse == 0 &&
          info3.fallback_rel_rmse == 0);
    tern_model t3;
    CHECK_OK(tern_model_load(&t3, o3, NULL));
    ok = 1;
    for (int i = 0; i < t1.n_tensors; i++) {
        const tern_tensor *x = &t1.tensors[i], *y = tern_model_find(&t3, x->name);
        ok &= y && y->numel == x->numel && !memcmp(x->data, y->data, (size_t)x->numel * sizeof(float));
    }
    CHECK_MSG(ok, "re-export changed the model");
    tern_model_free(&t3);

    // Perplexity check: both measured, the file kept, no staging file left.
    char *text;
    size_t len;
    CHECK_OK(tern_read_file(test_data_path("data/tinystories/valid-sample.txt"), &text, &len));
    free(text);
    const char *o4 = test_tmp_path("m.checked.gguf");
    o = (tern_export_tq_opts){.format = "gguf-tq2", .fallback = "q4_0",
                              .check = {.text = test_data_path("data/tinystories/valid-sample.txt"),
                                        .ctx = 128, .chunks = 2, .max_change = 1000}};
    CHECK_OK(tern_export_gguf_tq(&fp, fp_path, &o, o4, &info));
    printf("check: ppl source %.4f, gguf-tq2 %.4f (%+.3f%%), %d chunks of %d\n", info.check.ppl_source, info.check.ppl_export,
           info.check.change_pct, info.check.chunks, info.check.ctx);
    CHECK(info.check.checked && info.check.chunks == 2 && info.check.ctx == 128 && !info.check.forced);
    CHECK(isfinite(info.check.ppl_source) && isfinite(info.check.ppl_export) && info.check.ppl_source > 1 && info.check.ppl_export > 1);
    CHECK_NEAR(info.check.change_pct, 100 * (info.check.ppl_export / info.check.ppl_source - 1), 1e-9);
    CHECK(file_exists(o4) && staging_left() == 0);
    // A bound the change exceeds: refused, nothing written; --force writes it.
    const char *o5 = test_tmp_path("m.refused.gguf");
    o.check.max_change = -100; // any finite perplexity "rises" by more than -100%
    CHECK_FAILS(tern_export_gguf_tq(&fp, fp_path, &o, o5, &info), "more than --max-ppl-change -100%; nothing written");
    CHECK(!file_exists(o5) && staging_left() == 0 && !strchr(tern_last_error(), '\n'));
    o.check.force = 1;
    CHECK_OK(tern_export_gguf_tq(&fp, fp_path, &o, o5, &info));
    CHECK(info.check.forced && file_exists(o5) && staging_left() == 0);
    // A text shorter than one chunk fails before anything is written.
    const char *o6 = test_tmp_path("m.short.gguf"), *short_text = test_tmp_path("short.txt");
    FILE *f = fopen(short_text, "w");
    fputs("Once upon a time.", f);
    fclose(f);
    o = (tern_export_tq_opts){.fallback = "q4_0", .check = {.text = short_text}};
    CHECK_FAILS(tern_export_gguf_tq(&fp, fp_path, &o, o6, NULL), "fewer than one chunk");
    CHECK(!file_exists(o6) && staging_left() == 0);

    // Truncated copies of an export fail with one line naming the file.
    tern_blob b;
    CHECK_OK(tern_blob_open(&b, o2));
    size_t cuts[4] = {b.size - 1, b.size - 100, b.size / 2, 1000};
    for (int i = 0; i < 4; i++) {
        tern_model m = {0};
        CHECK_FAILS(tern_gguf_parse_model(&m, b.data, cuts[i], "cut.gguf"), "cut.gguf: ");
        CHECK(!strchr(tern_last_error(), '\n'));
        tern_model_free(&m);
    }
    tern_blob_close(&b);
    tern_model_free(&fp), tern_model_free(&t2), tern_model_free(&t1);
    remove(o1), remove(o2), remove(o3), remove(o4), remove(o5), remove(short_text);
}

// Ternary inputs: a .tern file (its packed codes) gives the same linears as
// the direct absmean export; `tern quantize` outputs keep their codes
// (Tequila's biases stay, DLT's shifts are dropped).
// Logits of every token of toks in format `format` (f32, t2, ...).
static int run_logits(const tern_model *m, const char *format, const int *toks, int n, float *out) {
    tern_session s;
    tern_packed *p = NULL;
    if (tern_session_init(&s, m, 64, n)) return -1;
    int rc = tern_session_set_format(&s, format, G, &p);
    if (rc == 0) rc = tern_forward(&s, toks, n, 0, out);
    tern_session_free(&s);
    tern_packed_free(p);
    return rc;
}

static void check_ternary_inputs(const char *fp_path) {
    tern_model fp, a, b;
    CHECK_OK(tern_model_load(&fp, fp_path, NULL));
    const char *pt = test_tmp_path("m.tern"), *direct = test_tmp_path("direct.gguf"), *via = test_tmp_path("via.gguf");
    tern_export_opts eo = {.pack = "1.6"};
    CHECK_OK(tern_export_tern(&fp, fp_path, &eo, pt, NULL));
    tern_model tm;
    CHECK_OK(tern_model_load(&tm, pt, NULL));
    tern_export_tq_opts o = {.format = "gguf-tq2", .fallback = "q4_0"};
    tern_export_tq_info info;
    CHECK_OK(tern_export_gguf_tq(&fp, fp_path, &o, direct, NULL));
    CHECK_OK(tern_export_gguf_tq(&tm, pt, &o, via, &info));
    CHECK(!strcmp(info.source, "from the .tern packing") && info.group == G);
    CHECK_OK(tern_model_load(&a, direct, NULL));
    CHECK_OK(tern_model_load(&b, via, NULL));
    int same = 1;
    for (int l = 0; l < LAYERS; l++)
        for (int k = 0; k < 7; k++) {
            char n[96];
            snprintf(n, sizeof n, "blk.%d.%s.weight", l, lin[k]);
            const tern_tensor *x = tern_model_find(&a, n), *y = tern_model_find(&b, n);
            same &= !memcmp(x->data, y->data, (size_t)x->numel * sizeof(float));
        }
    CHECK_MSG(same, ".tern input and FP input give different linears");
    tern_model_free(&a), tern_model_free(&b), tern_model_free(&tm);

    static const char *methods[2] = {"tequila", "dlt"};
    for (int k = 0; k < 2; k++) {
        tern_quant_opts qo;
        tern_quant_opts_defaults(&qo);
        qo.group = G;
        qo.lambda = 0.1f;
        tern_quant *q;
        tern_model fake;
        CHECK_OK(tern_model_load(&fake, fp_path, NULL));
        CHECK_OK(tern_quant_create(&q, tern_quant_find(methods[k]), &qo, &fp));
        double frac[3];
        CHECK_OK(tern_quant_export(q, &fake, frac));
        const char *pq = test_tmp_path("q.gguf"), *out = test_tmp_path("q.tq2.gguf");
        CHECK_OK(tern_quant_write_gguf(q, &fake, frac, pq));
        tern_model in;
        CHECK_OK(tern_model_load(&in, pq, NULL));
        tern_export_tq_opts qo2 = {.format = "gguf-tq2", .fallback = "q4_0",
                                   .check = {.text = test_data_path("data/tinystories/valid-sample.txt"),
                                             .ctx = 128, .chunks = 2, .max_change = 1000}};
        if (k == 1) { // dropping DLT shifts is refused, measured, unless allow_lossy
            CHECK_FAILS(tern_export_gguf_tq(&in, pq, &qo2, out, &info),
                        "drops the DLT shifts of");
            CHECK(strstr(tern_last_error(), "weight rel. RMSE 0.") && strstr(tern_last_error(), "--allow-lossy"));
            CHECK(!file_exists(out));
            qo2.allow_lossy = 1;
        }
        CHECK_OK(tern_export_gguf_tq(&in, pq, &qo2, out, &info));
        printf("%s: codes %s, G=%d, shift dropped %d, %d biases; weight rel. RMSE %.4f (TQ) %.4f (Q4_0); "
               "ppl %.4f -> %.4f (%+.3f%%)\n", methods[k], info.source, info.group, info.dropped_shift, info.biases,
               info.weight_rel_rmse, info.fallback_rel_rmse, info.check.ppl_source, info.check.ppl_export, info.check.change_pct);
        CHECK(!strcmp(info.source, "recovered") && !strcmp(info.method, methods[k]) && info.group == G);
        CHECK(info.dropped_shift == (k == 1) && info.check.checked && isfinite(info.check.ppl_export));
        // The synthetic model has FFN biases; Tequila adds its own to every linear.
        if (k == 0) CHECK(info.biases == 7 * LAYERS && tern_model_find(&in, "blk.0.attn_q.bias"));
        // Symmetric codes in a Q4_0 block of one group: exact up to the fp16
        // rounding of alpha (a quantize output keeps alpha in FP32).
        if (k == 0) CHECK(info.fallback_rel_rmse > 0 && info.fallback_rel_rmse < 1e-3);
        if (k == 1) CHECK(info.fallback_rel_rmse > 0); // the shift is gone
        // --format t2 at run time keeps the codes, scales and (DLT) shifts: its
        // logits differ from FP32 only by the int8 activations. (Absmean
        // re-ternarization, the old behaviour, is checked to be far off.)
        {
            int V = in.cfg.vocab_size, toks[32];
            for (int i = 0; i < 32; i++) toks[i] = (7 * i + 3) % V;
            float *lf = malloc((size_t)32 * V * 4), *lt = malloc((size_t)32 * V * 4), *la = malloc((size_t)32 * V * 4);
            CHECK_OK(run_logits(&in, "f32", toks, 32, lf));
            CHECK_OK(run_logits(&in, "t2", toks, 32, lt));
            tern_model old;
            CHECK_OK(tern_model_load(&old, pq, NULL));
            CHECK_OK(tern_model_fake_quant_absmean(&old, G));
            CHECK_OK(run_logits(&old, "f32", toks, 32, la));
            double et = test_max_rel_err(lt, lf, (size_t)32 * V, 1.0), ea = test_max_rel_err(la, lf, (size_t)32 * V, 1.0);
            printf("%s: logits vs f32: --format t2 %.2e, absmean re-ternarized %.2e\n", methods[k], et, ea);
            CHECK(et < 0.03 && ea > 3 * et);
            tern_model_free(&old);
            free(lf), free(lt), free(la);
        }
        tern_model back;
        CHECK_OK(tern_model_load(&back, out, NULL));
        if (k == 0) {
            const tern_tensor *x = tern_model_find(&in, "blk.1.attn_v.bias"), *y = tern_model_find(&back, "blk.1.attn_v.bias");
            CHECK(x && y && !memcmp(x->data, y->data, (size_t)x->numel * sizeof(float)));
        }
        tern_model_free(&back), tern_model_free(&in), tern_model_free(&fake);
        tern_quant_free(q);
        remove(pq), remove(out);
    }
    tern_model_free(&fp);
    remove(pt), remove(direct), remove(via);
}

// The CLI: exit status 1 with one line naming the problem, 2 for usage errors.
static int run_tern(const char *args, const char *err) {
    const char *bin = getenv("TERN_BIN");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive '%s' %s > /dev/null 2> '%s'", bin && *bin ? bin : "build/tern",
             args, err);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int err_has(const char *err, const char *needle, int *lines) {
    char *t;
    size_t n;
    if (tern_read_file(err, &t, &n)) return 0;
    int found = strstr(t, needle) != NULL;
    *lines = 0;
    for (size_t i = 0; i < n; i++) *lines += t[i] == '\n';
    if (!found) fprintf(stderr, "stderr was: %s\n", t);
    free(t);
    return found;
}

static void check_cli(const char *fp) {
    const char *err = test_tmp_path("cli.err"), *out = test_tmp_path("cli.gguf");
    char args[2048];
    int lines;
    snprintf(args, sizeof args, "export --model '%s' --format gguf-tq2 --threads 1 --out '%s'", fp, out);
    CHECK(run_tern(args, err) == 1 && err_has(err, "--fallback q4_0", &lines) && lines == 1 && !file_exists(out));
    snprintf(args, sizeof args, "export --model '%s' --format gguf-tq2 --fallback q4_0 --threads 1 --out '%s'", fp, out);
    CHECK(run_tern(args, err) == 0 && err_has(err, "note: no --check-text", &lines) && file_exists(out));
    remove(out);
    snprintf(args, sizeof args,
             "export --model '%s' --format gguf-tq1 --fallback q4_0 --threads 1 --check-text '%s' --check-chunks 1 "
             "--check-ctx 64 --max-ppl-change 1000 --out '%s'",
             fp, test_data_path("data/tinystories/valid-sample.txt"), out);
    CHECK(run_tern(args, err) == 0 && err_has(err, "(1 chunks of 64): source ", &lines) && file_exists(out));
    remove(out);
    snprintf(args, sizeof args, "export --model '%s' --format gguf-tq3 --out '%s'", fp, out);
    CHECK(run_tern(args, err) == 2 && err_has(err, "unknown --format gguf-tq3", &lines) && lines == 1);
    snprintf(args, sizeof args, "export --model '%s' --format gguf-tq2 --check-chunks 2 --out '%s'", fp, out);
    CHECK(run_tern(args, err) == 2 && err_has(err, "need --check-text", &lines));
    snprintf(args, sizeof args, "export --model '%s' --fallback q4_0 --out '%s'", fp, out);
    CHECK(run_tern(args, err) == 2 && err_has(err, "go with --format gguf-tq2/gguf-tq1/gguf-q2_0", &lines));
    snprintf(args, sizeof args, "export --model '%s' --allow-lossy --out '%s'", fp, out);
    CHECK(run_tern(args, err) == 2 && err_has(err, "--fallback and --allow-lossy go with", &lines) && lines == 1);
    // gguf-q2_0: blocks of 64; the FFN rows of 288 are not whole blocks.
    snprintf(args, sizeof args, "export --model '%s' --format gguf-q2_0 --threads 1 --out '%s'", fp, out);
    CHECK(run_tern(args, err) == 1 && err_has(err, "not a multiple of 64 (llama.cpp's Q2_0 block)", &lines) &&
          lines == 1 && !file_exists(out));
    snprintf(args, sizeof args, "export --model '%s' --format gguf-q2_0 --fallback q4_0 --threads 1 --out '%s'", fp,
             out);
    CHECK(run_tern(args, err) == 0 && err_has(err, "linears as Q2_0", &lines) && file_exists(out));
    remove(out);
    CHECK(!file_exists(out) && staging_left() == 0);
    remove(err);
}

// stories260K's rows are 64 wide: no TQ block fits, and its FFN (172) is not
// even a Q4_0 multiple.
static void check_stories_refused(void) {
    tern_model m;
    CHECK_OK(tern_model_load(&m, test_data_path("models/stories260K/stories260K.bin"),
                             test_data_path("models/stories260K/tok512.bin")));
    const char *out = test_tmp_path("stories.gguf");
    tern_export_tq_opts o = {.format = "gguf-tq1"};
    CHECK_FAILS(tern_export_gguf_tq(&m, m.path, &o, out, NULL),
                "export: gguf-tq1: blk.0.attn_q.weight has rows of 64 values, not a multiple of 256 (llama.cpp's "
                "TQ1_0 block)");
    o.fallback = "q4_0";
    CHECK_FAILS(tern_export_gguf_tq(&m, m.path, &o, out, NULL),
                "blk.0.ffn_down.weight has rows of 172 values, a multiple of neither 256 (TQ1_0) nor 32 (Q4_0)");
    CHECK(!file_exists(out) && staging_left() == 0);
    tern_model_free(&m);
}

int main(void) {
    check_fixture();
    check_q4_0_roundtrip();
    const char *fp = test_tmp_path("synthetic.gguf");
    make_model(fp);
    check_export(fp);
    check_ternary_inputs(fp);
    check_cli(fp);
    check_stories_refused();
    remove(fp), remove(test_tmp_path("q4.gguf"));
    rmdir(test_tmp_dir());
    return test_report();
}
