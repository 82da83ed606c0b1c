// Issue 5's exactness criterion on the real SmolLM2-135M: a `tern quantize`
// output exported to .tern runs with the packed kernels (int8 activations)
// within 1% of the same model in FP32, on WikiText-2 (4 chunks of 512
// tokens). "The same model" is the .tern file itself run with --format f32
// (its weights dequantized, the q8 head included), so int8 activations are
// the only difference; the fake-quant GGUF it came from (FP32 head) is
// checked too. RTN 4-bit (q4g) with int8 activation groups of 64 measures
// +0.43% on 40 chunks (groups of 128: +1.20%; per-token scales: +6.7%). A
// ternary model needs training to be sane on SmolLM2 (absmean PTQ has
// perplexity ~1e7), so the ternary check on trained SmolLM2 models is in
// docs/PERFORMANCE.md and the ternary kernels' exactness in test_kernels.
#include <unistd.h>

#include "core/file.h"
#include "core/threads.h"
#include "eval/ppl.h"
#include "infer/export.h"
#include "quant/quant.h"
#include "test.h"

static double ppl(const tern_model *m, const char *format, const char *text, size_t len) {
    tern_tokenizer *tok;
    if (tern_tokenizer_init(&tok, &m->vocab)) return -1;
    tern_ppl_result r;
    int rc = tern_perplexity_text(m, tok, text, len, 512, 4, format, &r);
    tern_tokenizer_free(tok);
    if (rc) fprintf(stderr, "%s\n", tern_last_error());
    return rc ? -1 : r.ppl;
}

int main(void) {
    tern_set_threads(1);
    char *text;
    size_t len;
    CHECK_OK(tern_read_file(test_data_path("data/wikitext-2-raw/wiki.test.raw"), &text, &len));
    tern_model m, fake, in, packed;
    CHECK_OK(tern_model_load(&m, test_smollm2_path(), NULL));
    CHECK_OK(tern_model_load(&fake, test_smollm2_path(), NULL));
    tern_quant_opts o;
    tern_quant_opts_defaults(&o);
    o.bits = 4;
    tern_quant *q;
    CHECK_OK(tern_quant_create(&q, tern_quant_find("rtn"), &o, &m));
    double frac[3];
    CHECK_OK(tern_quant_export(q, &fake, frac));
    char pg[128], pt[128];
    snprintf(pg, sizeof pg, "/tmp/tern_test_export_model_%d.gguf", (int)getpid());
    snprintf(pt, sizeof pt, "/tmp/tern_test_export_model_%d.tern", (int)getpid());
    CHECK_OK(tern_quant_write_gguf(q, &fake, frac, pg));
    CHECK_OK(tern_model_load(&in, pg, NULL));
    tern_export_opts eo = {0};
    tern_export_info info;
    CHECK_OK(tern_export_tern(&in, pg, &eo, pt, &info));
    CHECK(!strcmp(info.format, "q4g") && info.group == 128);
    CHECK_OK(tern_model_load(&packed, pt, NULL));
    double p_fp = ppl(&m, "f32", text, len), p_fake = ppl(&in, "f32", text, len);
    double p_ref = ppl(&packed, "f32", text, len), p_packed = ppl(&packed, NULL, text, len);
    printf("SmolLM2 wiki.test 4x512: FP32 %.4f, rtn b4 fake-quant %.4f, .tern q4g as FP32 %.4f, packed %.4f (%+.3f%%), "
           "%.1f MB\n", p_fp, p_fake, p_ref, p_packed, 100 * (p_packed / p_ref - 1), info.bytes / 1e6);
    CHECK_MSG(fabs(p_packed / p_ref - 1) < 0.01, "packed %.4f vs the same weights in FP32 %.4f", p_packed, p_ref);
    CHECK_MSG(fabs(p_ref / p_fake - 1) < 0.002, "q8 head %.4f vs FP32 head %.4f", p_ref, p_fake);
    CHECK(p_fake > p_fp && p_fake < 1.5 * p_fp); // 4-bit RTN costs a little, not everything
    tern_quant_free(q);
    tern_model_free(&m), tern_model_free(&fake), tern_model_free(&in), tern_model_free(&packed);
    remove(pg), remove(pt);
    free(text);
    return test_report();
}
