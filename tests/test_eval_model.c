// Zero-shot on the real SmolLM2-135M (byte-level BPE, 49152-token vocabulary):
// the first 10 items of the shared ARC-Easy, scored with the shared KV cache, must
// agree with scoring each choice from scratch, and accuracy must be clearly
// above chance. Also checks how the byte-level tokenizer splits context and
// continuation.
#include "core/threads.h"
#include "eval/zeroshot.h"
#include "test.h"

int main(void) {
    tern_model m = {0};
    tern_tokenizer *tok = NULL;
    // One thread: on a busy shared machine spinning OpenMP workers slow this test threefold.
    tern_set_threads(1);
    CHECK_OK(tern_model_load(&m, test_smollm2_path(), NULL));
    CHECK_OK(tern_tokenizer_init(&tok, &m.vocab));
    if (!tok) return test_report();

    tern_zs_task t;
    tern_zs_opts o = {.limit = 10};
    CHECK_OK(tern_zs_task_read(&t, test_data_path("data/tasks/arc_easy.jsonl"), &o));
    CHECK(t.n_items == 10 && !strcmp(t.name, "arc_easy"));
    CHECK_OK(tern_zs_task_tokenize(&t, tok));
    // Byte-level BPE: the joining space belongs to the continuation's first token,
    // and the context tokens are a prefix of the whole sequence's tokens.
    const tern_zs_item *it = &t.items[0];
    char piece[64];
    size_t n = tern_token_to_bytes(tok, -1, it->cont[0][0], piece, sizeof piece - 1);
    piece[n < sizeof piece ? n : sizeof piece - 1] = 0;
    CHECK_MSG(piece[0] == ' ', "first continuation token '%s'", piece);
    CHECK(it->n_ctx[0] == it->n_ctx[1] && !memcmp(it->ctx[0], it->ctx[1], (size_t)it->n_ctx[0] * sizeof(int)));
    if (tern_tokenizer_add_bos(tok)) CHECK(it->ctx[0][0] == tern_tokenizer_bos(tok));

    tern_zs_result r;
    CHECK_OK(tern_zs_evaluate(&m, &t, &r));
    printf("arc_easy[:10]: acc %.4f ± %.4f, acc_norm %.4f ± %.4f, %.1f s (%.2f items/s), %lld tokens\n", r.acc,
           r.acc_se, r.acc_norm, r.acc_norm_se, r.seconds, r.items_per_s, (long long)r.tokens);
    CHECK(r.n == 10 && r.acc >= 0.35 && r.acc <= 1.0 && r.acc_norm >= 0.3);
    // The cache sharing saved work: fewer tokens run than contexts + continuations.
    int64_t plain = 0;
    for (int i = 0; i < t.n_items; i++)
        for (int c = 0; c < t.items[i].n_choices; c++) plain += t.items[i].n_ctx[c] + t.items[i].n_cont[c] - 1;
    CHECK_MSG(r.tokens < plain * 6 / 10, "%lld tokens run vs %lld without sharing", (long long)r.tokens,
              (long long)plain);
    // Shared-cache scores equal scoring from scratch (batching differs: small tolerance).
    for (int i = 0; i < 1; i++)
        for (int c = 0; c < t.items[i].n_choices; c++) {
            double ll;
            const tern_zs_item *x = &t.items[i];
            CHECK_OK(tern_zs_loglik(&m, x->ctx[c], x->n_ctx[c], x->cont[c], x->n_cont[c], &ll, NULL));
            CHECK_NEAR(x->ll[c], ll, 2e-3 + 1e-4 * fabs(ll));
        }
    tern_zs_task_free(&t);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    return test_report();
}
