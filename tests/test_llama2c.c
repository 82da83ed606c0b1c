// llama2.c reader on the real stories260K checkpoint and its tokenizer, plus
// malformed inputs derived from it.
#include "core/error.h"
#include "core/file.h"
#include "io/model.h"
#include "io/readers.h"
#include "test.h"

static void test_real_model(void) {
    tern_model m;
    CHECK_OK(tern_model_load(&m, test_data_path("models/stories260K/stories260K.bin"),
                             test_data_path("models/stories260K/tok512.bin")));
    const tern_config *c = &m.cfg;
    CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5 && c->n_heads == 8);
    CHECK(c->n_kv_heads == 4 && c->vocab_size == 512 && c->max_seq == 512 && c->head_dim == 8);
    CHECK(c->tied_embeddings);
    CHECK(m.n_tensors == 2 + 9 * 5);
    tern_weights w;
    CHECK_OK(tern_model_bind(&m, &w));
    CHECK(w.output == w.tok_embd);
    // The final norm's weights are real trained values, not zeros or ones.
    const tern_tensor *norm = tern_model_find(&m, "output_norm.weight");
    CHECK(norm && norm->data[0] != 0 && norm->data[0] != 1);
    tern_weights_free(&w);
    CHECK(m.vocab.type == TERN_VOCAB_SPM && m.vocab.n_tokens == 512);
    CHECK(m.vocab.bos_id == 1 && m.vocab.eos_id == 2);
    CHECK(strcmp(m.vocab.tokens[3], "<0x00>") == 0 && m.vocab.token_types[3] == TERN_TOKEN_BYTE);
    CHECK(strcmp(m.vocab.tokens[258], "<0xFF>") == 0);
    // Spaces are spelled U+2581 whatever the source format used.
    int spaced = 0;
    for (int i = 259; i < 512; i++) spaced += strstr(m.vocab.tokens[i], " ") != NULL;
    CHECK(spaced == 0);
    CHECK(tern_vocab_find(&m.vocab, "\xe2\x96\x81the") > 258);
    tern_model_free(&m);
}

static void test_bad_inputs(void) {
    tern_blob b;
    CHECK_OK(tern_blob_open(&b, test_data_path("models/stories260K/stories260K.bin")));
    tern_model m = {0};
    // Truncated file (header intact): size mismatch error.
    CHECK_FAILS(tern_llama2c_parse(&m, b.data, b.size - 4, "cut.bin"), "cut.bin: not a llama2.c checkpoint");
    tern_model_free(&m);
    // Truncated header.
    CHECK_FAILS(tern_llama2c_parse(&m, b.data, 10, "tiny.bin"), "tiny.bin: truncated");
    tern_model_free(&m);
    // Absurd dimensions in the header.
    uint8_t hdr[28];
    memcpy(hdr, b.data, 28);
    int32_t huge = 0x7fffffff;
    memcpy(hdr, &huge, 4);
    CHECK_FAILS(tern_llama2c_parse(&m, hdr, 28, "dim.bin"), "invalid dim");
    tern_model_free(&m);
    memcpy(hdr, b.data, 28);
    int32_t heads = 7; // 64 is not divisible by 7, and 4 kv heads do not divide 7
    memcpy(hdr + 12, &heads, 4);
    CHECK_FAILS(tern_llama2c_parse(&m, hdr, 28, "heads.bin"), "heads.bin");
    tern_model_free(&m);
    tern_blob_close(&b);

    tern_vocab v = {0};
    CHECK_OK(tern_blob_open(&b, test_data_path("models/stories260K/tok512.bin")));
    CHECK_FAILS(tern_llama2c_tokenizer_parse(&v, b.data, b.size - 10, 512, "tok.bin"), "tok.bin: truncated");
    tern_vocab_free(&v);
    uint8_t bad[16] = {0xff, 0xff, 0xff, 0x7f};
    CHECK_FAILS(tern_llama2c_tokenizer_parse(&v, bad, sizeof bad, 512, "bad.bin"), "bad.bin");
    tern_vocab_free(&v);
    tern_blob_close(&b);
    // Tokenizer with a different vocabulary size than the model.
    CHECK_FAILS(tern_model_load(&m, test_data_path("models/stories260K/stories260K.bin"),
                                test_data_path("data/tinystories/valid-sample.txt")),
                "valid-sample.txt");
    CHECK_FAILS(tern_model_load(&m, "/nonexistent.bin", NULL), "/nonexistent.bin: no such file");
    // A llama2.c checkpoint without --tokenizer.
    CHECK_FAILS(tern_model_load(&m, test_data_path("models/stories260K/stories260K.bin"), NULL),
                "carries no tokenizer");
}

int main(void) {
    test_real_model();
    test_bad_inputs();
    return test_report();
}
