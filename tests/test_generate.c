// stories260K (real llama2.c checkpoint) at temperature 0 from BOS writes the
// story documented in $TERN_DATA/README.md; perplexity on TinyStories is sane.
#include "core/file.h"
#include "eval/ppl.h"
#include "infer/generate.h"
#include "test.h"

int main(void) {
    tern_model m;
    CHECK_OK(tern_model_load(&m, test_data_path("models/stories260K/stories260K.bin"),
                             test_data_path("models/stories260K/tok512.bin")));
    tern_tokenizer *tok;
    CHECK_OK(tern_tokenizer_init(&tok, &m.vocab));
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    tern_gen_opts o = {.n_predict = 40, .temp = 0, .top_p = 1, .seed = 1};
    tern_gen_stats st;
    CHECK_OK(tern_generate(&m, tok, "", &o, out, &st));
    fclose(out);
    const char *expected = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
    CHECK_MSG(strncmp(text, expected, strlen(expected)) == 0, "generated: '%s'", text);
    CHECK(st.prompt_tokens == 1 && st.generated == 40);
    free(text);

    // A prompt continues the text; sampling with a seed is repeatable.
    char *a = NULL, *b = NULL;
    size_t la, lb;
    tern_gen_opts s = {.n_predict = 30, .temp = 0.9f, .top_p = 0.9f, .seed = 5};
    out = open_memstream(&a, &la);
    CHECK_OK(tern_generate(&m, tok, "Tom had a red ball", &s, out, &st));
    fclose(out);
    out = open_memstream(&b, &lb);
    CHECK_OK(tern_generate(&m, tok, "Tom had a red ball", &s, out, &st));
    fclose(out);
    CHECK(la > 0 && la == lb && memcmp(a, b, la) == 0);
    free(a), free(b);

    // The context bounds generation as llama2.c's run.c does: positions
    // 0..ctx-1 exist, so BOS alone yields ctx tokens and a prompt of exactly
    // ctx tokens still yields one; a longer prompt is refused.
    tern_gen_opts c = {.n_predict = 100, .temp = 0, .top_p = 1, .seed = 1, .ctx = 16};
    out = open_memstream(&a, &la);
    CHECK_OK(tern_generate(&m, tok, "", &c, out, &st));
    fclose(out);
    CHECK_MSG(st.generated == 16 && st.stopped_ctx && !st.stopped_eog, "generated %d, stopped_ctx %d", st.generated,
              st.stopped_ctx);
    free(a);
    c.n_predict = 16; // exactly what fits: not a stop at the limit
    out = open_memstream(&a, &la);
    CHECK_OK(tern_generate(&m, tok, "", &c, out, &st));
    fclose(out);
    CHECK(st.generated == 16 && !st.stopped_ctx);
    free(a);
    out = open_memstream(&a, &la);
    CHECK_OK(tern_generate(&m, tok, "Tom had a red ball", &s, out, &st));
    fclose(out);
    free(a);
    c.ctx = st.prompt_tokens;
    out = open_memstream(&a, &la);
    CHECK_OK(tern_generate(&m, tok, "Tom had a red ball", &c, out, &st));
    fclose(out);
    CHECK_MSG(st.generated == 1 && st.stopped_ctx, "prompt of ctx tokens: generated %d", st.generated);
    free(a);
    c.ctx = st.prompt_tokens - 1;
    out = open_memstream(&a, &la);
    CHECK_FAILS(tern_generate(&m, tok, "Tom had a red ball", &c, out, &st), "does not fit the context");
    fclose(out);
    free(a);

    // Perplexity on the first 20 chunks of the in-domain validation sample
    // (docs/RESULTS.md has the whole file).
    char *story;
    size_t n;
    CHECK_OK(tern_read_file(test_data_path("data/tinystories/valid-sample.txt"), &story, &n));
    tern_ppl_result r;
    CHECK_OK(tern_perplexity_text(&m, tok, story, n, 256, 20, NULL, &r));
    printf("stories260K ppl(valid-sample, 20 chunks of 256) = %.4f +/- %.4f over %lld tokens\n", r.ppl, r.ppl_se,
           (long long)r.tokens);
    CHECK(r.chunks == 20 && r.ppl > 1.5 && r.ppl < 20); // a 260K-parameter TinyStories model: single digits
    free(story);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    return test_report();
}
