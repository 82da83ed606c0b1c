// Export is exact: for each method, the training graph running the method's
// hook (effective weights + Tequila's per-output term) gives the same logits
// as the exported model in the inference forward, on the real stories260K.
#include "nn/llama_train.h"
#include "nn/transformer.h"
#include "quant/quant.h"
#include "test.h"

static void check_method(const char *name, float lambda) {
    tern_model m, exported;
    const char *ck = test_data_path("models/stories260K/stories260K.bin"), *tk = test_data_path("models/stories260K/tok512.bin");
    CHECK_OK(tern_model_load(&m, ck, tk));
    CHECK_OK(tern_model_load(&exported, ck, tk));
    tern_quant_opts o;
    tern_quant_opts_defaults(&o);
    o.group = 32;
    o.lambda = lambda;
    tern_quant *q;
    CHECK_OK(tern_quant_create(&q, tern_quant_find(name), &o, &m));
    tern_train_model *tm;
    CHECK_OK(tern_train_model_init(&tm, &m));
    CHECK_OK(tern_train_set_hook(tm, tern_quant_train_method(q)->hook));
    int tokens[48];
    for (int i = 0; i < 48; i++) tokens[i] = (i * 37 + 11) % m.cfg.vocab_size;
    CHECK_OK(tern_train_forward(tm, tokens, 1, 48));
    double code_frac[3];
    CHECK_OK(tern_quant_export(q, &exported, code_frac));
    tern_session s;
    CHECK_OK(tern_session_init(&s, &exported, 64, 64));
    float *logits = malloc((size_t)48 * m.cfg.vocab_size * 4);
    CHECK_OK(tern_forward(&s, tokens, 48, 0, logits));
    double err = test_max_rel_err(logits, tern_train_logits(tm), (size_t)48 * m.cfg.vocab_size, 1e-3);
    printf("%s: exported vs hooked logits, max rel err %.3g (ffn bias %d)\n", name, err, exported.cfg.ffn_bias);
    CHECK_MSG(err < 1e-4, "%s: %.3g", name, err);
    if (!strcmp(name, "tequila")) CHECK(exported.cfg.ffn_bias && exported.cfg.attn_qkv_bias && exported.cfg.attn_out_bias);
    free(logits);
    tern_session_free(&s);
    tern_train_model_free(tm);
    tern_quant_free(q);
    tern_model_free(&m);
    tern_model_free(&exported);
}

int main(void) {
    check_method("tequila", 0.1f); // a large lambda so the bias term matters
    check_method("absmean", 0);
    check_method("dlt", 0);
    check_method("teq", 0); // at initialization (s = 1); test_quant checks the folding with trained s
    return test_report();
}
