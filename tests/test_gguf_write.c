// GGUF writer round trip: stories260K (llama2.c + tokenizer.bin) written as one
// self-contained GGUF loads back with identical config, vocabulary and tensors.
#include <unistd.h>

#include "io/gguf_write.h"
#include "io/model.h"
#include "test.h"

int main(void) {
    tern_model a, b;
    CHECK_OK(tern_model_load(&a, test_data_path("models/stories260K/stories260K.bin"),
                             test_data_path("models/stories260K/tok512.bin")));
    const char *chat = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}";
    a.vocab.chat_template = strdup(chat); // as a GGUF or HF model would carry it
    const char *path = test_tmp_path("tern_test_roundtrip.gguf");
    CHECK_OK(tern_gguf_write_model(&a, path));
    CHECK_OK(tern_model_load(&b, path, NULL)); // no --tokenizer: it is embedded
    CHECK(memcmp(&a.cfg.dim, &b.cfg.dim, sizeof(tern_config) - offsetof(tern_config, dim)) == 0);
    CHECK(a.n_tensors == b.n_tensors);
    int same = 1;
    for (int i = 0; i < a.n_tensors; i++) {
        tern_tensor *t = tern_model_find(&b, a.tensors[i].name);
        same &= t && t->numel == a.tensors[i].numel &&
                memcmp(t->data, a.tensors[i].data, (size_t)t->numel * 4) == 0 &&
                memcmp(t->shape, a.tensors[i].shape, sizeof t->shape) == 0;
    }
    CHECK(same);
    CHECK(b.vocab.type == TERN_VOCAB_SPM && b.vocab.n_tokens == a.vocab.n_tokens);
    CHECK(tern_vocab_fingerprint(&a.vocab) == tern_vocab_fingerprint(&b.vocab));
    CHECK(b.vocab.chat_template && !strcmp(b.vocab.chat_template, chat)); // tokenizer.chat_template
    tern_model_free(&a);
    tern_model_free(&b);
    unlink(path);
    // A failed write leaves nothing behind.
    CHECK_OK(tern_model_load(&a, test_data_path("models/stories260K/stories260K.bin"),
                             test_data_path("models/stories260K/tok512.bin")));
    CHECK_FAILS(tern_gguf_write_model(&a, "/nonexistent-dir/x.gguf"), "cannot create");
    tern_model_free(&a);
    return test_report();
}
