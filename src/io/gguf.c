// GGUF reader: placeholder until the GGUF reader lands.
#include "core/error.h"
#include "io/readers.h"

int tern_gguf_parse_model(tern_model *m, const void *data, size_t size, const char *path) {
    (void)m; (void)data; (void)size;
    return tern_errorf("%s: GGUF support not built yet", path);
}
int tern_gguf_load_model(tern_model *m, const char *path) { return tern_gguf_parse_model(m, 0, 0, path); }
int tern_gguf_load_vocab(tern_vocab *v, const char *path) {
    (void)v;
    return tern_errorf("%s: GGUF support not built yet", path);
}
