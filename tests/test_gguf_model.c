// The real SmolLM2-135M-Instruct (Q4_1 GGUF, Q8_0 embedding): config, BPE
// vocabulary, and dequantized weights against values read independently with
// numpy by tests/ref/gguf_model_ref.py.
#include <time.h>

#include "core/error.h"
#include "core/half.h"
#include "io/model.h"
#include "io/readers.h"
#include "test.h"

typedef struct {
    int row, col;
    float value;
} ref_value;

// From `/usr/bin/python3 tests/ref/gguf_model_ref.py`.
static const ref_value embd_ref[] = { // token_embd.weight, Q8_0, 49152x576
    {0, 0, -0.10654449462890625f},   {0, 1, 0.032978057861328125f},  {1, 31, 1.0076904296875f},
    {2, 575, -0.15042686462402344f}, {100, 300, -0.14966964721679688f}, {1234, 77, -0.09266853332519531f},
    {49151, 0, 0.011505126953125f},  {49151, 575, -0.0417022705078125f},
};
static const ref_value attn_q_ref[] = { // blk.0.attn_q.weight, Q4_1, 576x576
    {0, 0, -0.0963134765625f}, {5, 17, 0.076171875f}, {63, 32, 0.1558837890625f}, {575, 575, -0.255859375f},
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void check_values(const tern_model *m, const char *name, const ref_value *ref, int n, int max_ulps) {
    const tern_tensor *t = tern_model_find(m, name);
    CHECK_MSG(t && t->ndim == 2, "%s missing or not 2-D", name);
    if (!t) return;
    for (int i = 0; i < n; i++) {
        float got = t->data[(size_t)ref[i].row * (size_t)t->shape[1] + (size_t)ref[i].col];
        // Q8_0 is a single product (exact); Q4_1's d*q + m may be fused into an
        // FMA by the compiler, 1 ulp away from numpy's two roundings.
        int64_t diff = (int64_t)tern_f32_to_bits(got) - (int64_t)tern_f32_to_bits(ref[i].value);
        CHECK_MSG(diff >= -max_ulps && diff <= max_ulps, "%s[%d][%d] = %.9g, numpy %.9g", name, ref[i].row,
                  ref[i].col, got, ref[i].value);
    }
}

int main(void) {
    const char *path = test_smollm2_path();
    tern_model m;
    double t0 = now();
    int rc = tern_model_load(&m, path, NULL);
    CHECK_MSG(rc == 0, "%s", tern_last_error());
    if (rc) return test_report();
    printf("loaded %s in %.2f s\n", path, now() - t0);
    const tern_config *c = &m.cfg;
    CHECK(strcmp(m.format, "gguf") == 0 && strcmp(c->arch, "llama") == 0);
    CHECK(c->n_layers == 30 && c->dim == 576 && c->n_heads == 9 && c->n_kv_heads == 3 && c->head_dim == 64);
    CHECK(c->hidden_dim == 1536 && c->vocab_size == 49152 && c->max_seq == 8192);
    CHECK(c->tied_embeddings && !c->attn_qkv_bias && c->rope_scaling == TERN_ROPE_SCALING_NONE);
    CHECK(c->rope_theta == 100000.0f);
    CHECK_NEAR(c->rms_eps, 1e-5, 1e-12);
    CHECK(m.n_tensors == 2 + 30 * 9);
    tern_weights w;
    CHECK_OK(tern_model_bind(&m, &w));
    tern_weights_free(&w);
    const tern_tensor *e = tern_model_find(&m, "token_embd.weight");
    CHECK(e && strcmp(e->src_type, "Q8_0") == 0 && e->shape[0] == 49152 && e->shape[1] == 576);
    const tern_tensor *q = tern_model_find(&m, "blk.29.ffn_down.weight");
    CHECK(q && strcmp(q->src_type, "Q4_1") == 0 && q->shape[0] == 576 && q->shape[1] == 1536);
    check_values(&m, "token_embd.weight", embd_ref, (int)(sizeof embd_ref / sizeof embd_ref[0]), 0);
    check_values(&m, "blk.0.attn_q.weight", attn_q_ref, (int)(sizeof attn_q_ref / sizeof attn_q_ref[0]), 1);

    const tern_vocab *v = &m.vocab;
    printf("vocab: type %d, %d tokens, %d merges, pre '%s', bos %d eos %d unk %d pad %d, add_bos %d "
           "add_eos %d add_space_prefix %d\n",
           v->type, v->n_tokens, v->n_merges, v->pre, v->bos_id, v->eos_id, v->unk_id, v->pad_id, v->add_bos,
           v->add_eos, v->add_space_prefix);
    CHECK(v->type == TERN_VOCAB_BPE && v->n_tokens == 49152 && v->n_merges == 48900);
    CHECK(strcmp(v->pre, "smollm") == 0);
    CHECK(v->bos_id == 1 && v->eos_id == 2 && v->unk_id == 0 && v->pad_id == 2);
    CHECK(v->add_bos == 0 && v->add_eos == 0 && v->add_space_prefix == 0);
    CHECK(strcmp(v->tokens[0], "<|endoftext|>") == 0 && strcmp(v->tokens[1], "<|im_start|>") == 0 &&
          strcmp(v->tokens[2], "<|im_end|>") == 0);
    CHECK(v->token_types && v->token_types[1] == TERN_TOKEN_CONTROL && v->scores == NULL);
    CHECK(strcmp(v->merges[0], "\xc4\xa0 t") == 0); // "Ġ t"
    CHECK(v->token_lens[1] == 12);
    tern_model_free(&m);
    return test_report();
}
