// The public API (include/tern.h) on the real stories260K: versions, errors,
// tokenize/detokenize round trip, a context's logits against generation, the
// streaming callback's stop, perplexity against the library's own.
#include "tern.h"

#include "core/file.h"
#include "eval/ppl.h"
#include "test.h"

static int count_pieces(const char *piece, size_t len, void *user) {
    int *n = user;
    (void)piece, (void)len;
    return ++*n == 3; // stop after the third piece
}

static int collect(const char *piece, size_t len, void *user) {
    char *buf = user;
    size_t used = strlen(buf);
    if (used + len < 4096) memcpy(buf + used, piece, len), buf[used + len] = 0;
    return 0;
}

int main(void) {
    CHECK(!strcmp(tern_version(), TERN_VERSION_STRING));
    tern_llm *llm = NULL;
    CHECK(tern_llm_load(&llm, "/nonexistent/model.bin", NULL) == -1 && llm == NULL);
    CHECK(strstr(tern_error(), "/nonexistent/model.bin") != NULL);
    const char *model = test_data_path("models/stories260K/stories260K.bin");
    const char *tok = test_data_path("models/stories260K/tok512.bin");
    CHECK_OK(tern_llm_load(&llm, model, tok));
    if (!llm) return test_report();
    CHECK(tern_llm_n_vocab(llm) == 512 && tern_llm_n_ctx_train(llm) == 512 && tern_llm_bos(llm) == 1);

    // Tokens round trip.
    const char *text = "Once upon a time, there was a little dog.";
    int *ids = NULL, n = 0;
    CHECK_OK(tern_llm_tokenize(llm, text, strlen(text), 1, &ids, &n));
    CHECK(n > 5 && ids[0] == 1);
    char *back = NULL;
    CHECK_OK(tern_llm_detokenize(llm, ids, n, &back));
    CHECK_MSG(back && !strcmp(back, text), "'%s'", back ? back : "");
    free(back);
    int bad = 9999;
    CHECK(tern_llm_detokenize(llm, &bad, 1, &back) == -1 && strstr(tern_error(), "9999"));

    // A context's next-token argmax is greedy generation's first token.
    tern_ctx *ctx = NULL;
    CHECK_OK(tern_ctx_new(&ctx, llm, 64));
    const float *logits = NULL;
    CHECK_OK(tern_ctx_eval(ctx, ids, n, 0, &logits));
    int best = 0;
    for (int i = 1; logits && i < 512; i++)
        if (logits[i] > logits[best]) best = i;
    char first[4096] = "", piece[4096] = "";
    int pair[2] = {ids[n - 1], best};
    CHECK_OK(tern_llm_detokenize(llm, pair, 2, &back));
    // Greedy generation's first piece is the text of that argmax token.
    tern_gen_params p;
    tern_gen_params_default(&p);
    p.temp = 0, p.n_predict = 1;
    tern_gen_result res;
    CHECK_OK(tern_llm_generate(llm, text, &p, collect, first, &res));
    snprintf(piece, sizeof piece, "%s", back);
    CHECK_MSG(res.generated == 1 && strlen(first) > 0 && strstr(piece, first + (first[0] == ' ')), "'%s' in '%s'",
              first, piece);
    free(back);
    CHECK(tern_ctx_eval(ctx, ids, 1, 64, NULL) == -1); // beyond the context
    tern_ctx_free(ctx);
    free(ids);

    // Streaming stops when the callback says so.
    int pieces = 0;
    p.n_predict = 50;
    CHECK_OK(tern_llm_generate(llm, "", &p, count_pieces, &pieces, &res));
    CHECK(pieces == 3 && res.generated == 3 && res.stopped == 3);

    // Perplexity: the library's own number.
    char *story;
    size_t len;
    CHECK_OK(tern_read_file(test_data_path("data/tinystories/valid-sample.txt"), &story, &len));
    double ppl = 0, se = 0;
    CHECK_OK(tern_llm_perplexity(llm, story, len, 256, 10, &ppl, &se));
    tern_ppl_result r;
    tern_model m;
    tern_tokenizer *tk;
    CHECK_OK(tern_model_load(&m, model, tok));
    CHECK_OK(tern_tokenizer_init(&tk, &m.vocab));
    CHECK_OK(tern_perplexity_text(&m, tk, story, len, 256, 10, NULL, &r));
    CHECK(ppl == r.ppl && se == r.ppl_se && ppl > 1 && ppl < 20);
    tern_tokenizer_free(tk);
    tern_model_free(&m);
    free(story);
    tern_llm_free(llm);
    return test_report();
}
