// Hugging Face reader: placeholder until the safetensors/JSON reader lands.
#include "core/error.h"
#include "io/readers.h"

int tern_hf_load_model(tern_model *m, const char *dir) {
    (void)m;
    return tern_errorf("%s: Hugging Face directories not supported yet", dir);
}
int tern_hf_load_vocab(tern_vocab *v, const char *path) {
    (void)v;
    return tern_errorf("%s: tokenizer.json not supported yet", path);
}
