// FP32 forward pass vs float64 PyTorch references, each run as one batch,
// token by token through the KV cache, and as a prompt split across positions:
// - tests/ref/tiny_llama_ref.py: tiny random LLaMA, GQA, untied head (llama2.c file);
// - tests/ref/hf_logits_ref.py: the tiny_hf directory computed as Hugging Face
//   does (rotate-half RoPE, llama3 RoPE scaling, q/k/v/o biases, BF16 shards),
//   which checks tern's Q/K permutation at load.
#include "core/error.h"
#include "core/file.h"
#include "core/mem.h"
#include "io/readers.h"
#include "nn/transformer.h"
#include "test.h"

static int n_tok, vocab;
static int *tokens;
static float *ref_logits;

static void load_reference(const char *fixture) {
    char *data;
    size_t size;
    free(tokens);
    free(ref_logits);
    if (tern_read_file(test_src_path(fixture), &data, &size)) {
        fprintf(stderr, "%s\n", tern_last_error());
        exit(1);
    }
    memcpy(&n_tok, data, 4);
    memcpy(&vocab, data + 4, 4);
    tokens = malloc((size_t)n_tok * sizeof(int));
    ref_logits = malloc((size_t)n_tok * vocab * sizeof(float));
    memcpy(tokens, data + 8, (size_t)n_tok * 4);
    memcpy(ref_logits, data + 8 + (size_t)n_tok * 4, (size_t)n_tok * vocab * 4);
    free(data);
}

// Relative error of one row of logits against the reference row.
static double row_err(const float *got, int t) {
    return test_max_rel_err(got, ref_logits + (size_t)t * vocab, (size_t)vocab, 1e-6);
}

static void run_paths(const tern_model *m, int max_batch) {
    tern_session s;
    CHECK_OK(tern_session_init(&s, m, 32, max_batch));
    float *all = malloc((size_t)n_tok * vocab * 4);
    // (a) whole prompt at once (split internally into max_batch steps)
    CHECK_OK(tern_forward(&s, tokens, n_tok, 0, all));
    double worst = 0;
    for (int t = 0; t < n_tok; t++) worst = fmax(worst, row_err(all + (size_t)t * vocab, t));
    CHECK_MSG(worst < 1e-4, "batch %d: max rel err %.3g", max_batch, worst);
    // (b) token by token, last-token logits only
    worst = 0;
    for (int t = 0; t < n_tok; t++) {
        CHECK_OK(tern_forward(&s, &tokens[t], 1, t, NULL));
        worst = fmax(worst, row_err(s.logits, t));
    }
    CHECK_MSG(worst < 1e-4, "token-by-token: max rel err %.3g", worst);
    // (c) 7 tokens, then the remaining 13 continuing from the cache
    CHECK_OK(tern_forward(&s, tokens, 7, 0, NULL));
    CHECK_OK(tern_forward(&s, tokens + 7, n_tok - 7, 7, all));
    worst = 0;
    for (int t = 7; t < n_tok; t++) worst = fmax(worst, row_err(all + (size_t)(t - 7) * vocab, t));
    CHECK_MSG(worst < 1e-4, "split prompt: max rel err %.3g", worst);
    // The test can fail: a wrong position shifts RoPE and breaks the match.
    CHECK_OK(tern_forward(&s, tokens, 1, 3, NULL));
    CHECK(row_err(s.logits, 0) > 1e-3);
    // Bad calls are refused, not executed.
    CHECK_FAILS(tern_forward(&s, tokens, n_tok, 20, NULL), "exceed the context");
    int bad = vocab;
    CHECK_FAILS(tern_forward(&s, &bad, 1, 0, NULL), "outside the vocabulary");
    free(all);
    tern_session_free(&s);
}

int main(void) {
    load_reference("tests/fixtures/tiny_llama.logits.bin");
    tern_model m = {0};
    CHECK_OK(tern_llama2c_load(&m, test_src_path("tests/fixtures/tiny_llama.bin")));
    CHECK(m.cfg.vocab_size == vocab && !m.cfg.tied_embeddings && m.cfg.n_kv_heads == 2);
    run_paths(&m, 64);
    run_paths(&m, 3); // odd step size exercises partial GEMM tiles and step boundaries
    tern_model_free(&m);

    load_reference("tests/fixtures/tiny_hf.logits.bin");
    CHECK_OK(tern_model_load(&m, test_src_path("tests/fixtures/tiny_hf"), NULL));
    CHECK(m.cfg.vocab_size == vocab && m.cfg.attn_qkv_bias && m.cfg.rope_scaling == TERN_ROPE_SCALING_LLAMA3);
    run_paths(&m, 64);
    run_paths(&m, 5);
    tern_model_free(&m);
    free(tokens);
    free(ref_logits);
    return test_report();
}
