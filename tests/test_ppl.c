// Perplexity protocol vs a float64 PyTorch reference of llama.cpp's method
// (tests/ref/tiny_llama_ref.py): chunking, BOS substitution, second-half
// scoring and the standard error.
#include "core/error.h"
#include "core/file.h"
#include "eval/ppl.h"
#include "io/readers.h"
#include "test.h"

int main(void) {
    char *data;
    size_t size;
    if (tern_read_file(test_src_path("tests/fixtures/tiny_llama.ppl.bin"), &data, &size)) {
        fprintf(stderr, "%s\n", tern_last_error());
        return 1;
    }
    int hdr[3];
    memcpy(hdr, data, sizeof hdr);
    int ctx = hdr[0], bos = hdr[1], n = hdr[2];
    int *tokens = malloc((size_t)n * sizeof(int));
    memcpy(tokens, data + 12, (size_t)n * 4);
    double ref[3];
    int64_t ref_count;
    memcpy(ref, data + 12 + (size_t)n * 4, sizeof ref);
    memcpy(&ref_count, data + 12 + (size_t)n * 4 + sizeof ref, 8);
    free(data);

    tern_model m = {0};
    CHECK_OK(tern_llama2c_load(&m, test_src_path("tests/fixtures/tiny_llama.bin")));
    tern_ppl_result r;
    CHECK_OK(tern_perplexity_tokens(&m, tokens, n, bos, ctx, 0, NULL, &r));
    CHECK(r.tokens == ref_count && r.chunks == n / ctx);
    CHECK_NEAR(r.ppl / ref[0], 1.0, 1e-5);
    CHECK_NEAR(r.ppl_se / ref[1], 1.0, 1e-4);
    CHECK_NEAR(r.nll, ref[2], 1e-5);
    // Without BOS substitution the first token of each chunk changes: a different answer.
    CHECK_OK(tern_perplexity_tokens(&m, tokens, n, -1, ctx, 0, NULL, &r));
    CHECK(fabs(r.ppl / ref[0] - 1.0) > 1e-4);
    // --chunks limits the work; too little text is an error, not a NaN.
    CHECK_OK(tern_perplexity_tokens(&m, tokens, n, bos, ctx, 1, NULL, &r));
    CHECK(r.chunks == 1 && r.tokens == ctx / 2 - 1);
    CHECK_FAILS(tern_perplexity_tokens(&m, tokens, ctx - 1, bos, ctx, 0, NULL, &r), "fewer than one chunk");
    tern_model_free(&m);
    free(tokens);
    return test_report();
}
