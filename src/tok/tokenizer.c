// Placeholder until the tokenizers land.
#include "tok/tokenizer.h"

#include "core/error.h"

int tern_tokenizer_init(tern_tokenizer **out, const tern_vocab *v) {
    (void)v;
    *out = 0;
    return tern_errorf("tokenizers not built yet");
}
void tern_tokenizer_free(tern_tokenizer *t) { (void)t; }
int tern_tokenize(const tern_tokenizer *t, const char *text, size_t len, int add_bos, int **ids, int *n_ids) {
    (void)t; (void)text; (void)len; (void)add_bos; (void)ids; (void)n_ids;
    return tern_errorf("tokenizers not built yet");
}
size_t tern_token_to_bytes(const tern_tokenizer *t, int prev, int id, char *buf, size_t cap) {
    (void)t; (void)prev; (void)id; (void)buf; (void)cap;
    return 0;
}
int tern_detokenize(const tern_tokenizer *t, const int *ids, int n_ids, char **text, size_t *len) {
    (void)t; (void)ids; (void)n_ids; (void)text; (void)len;
    return tern_errorf("tokenizers not built yet");
}
int tern_tokenizer_bos(const tern_tokenizer *t) { (void)t; return -1; }
int tern_tokenizer_eos(const tern_tokenizer *t) { (void)t; return -1; }
int tern_tokenizer_is_eog(const tern_tokenizer *t, int id) { (void)t; (void)id; return 0; }
int tern_tokenizer_add_bos(const tern_tokenizer *t) { (void)t; return 0; }
