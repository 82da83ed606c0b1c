// Reading an export input's tern.* metadata (separate from export.c, which
// uses the GGUF writer: io/gguf.h and io/gguf_write.h cannot share a unit).
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "infer/export.h"
#include "io/gguf.h"

_Static_assert(TERN_EXPORT_PACKED_BASE == TERN_GGUF_PACKED_BASE, "packed type ids (io/gguf.h)");
_Static_assert(TERN_EXPORT_SHIFT_BASE == TERN_GGUF_PACKED_SHIFT_BASE, "packed type ids (io/gguf.h)");

// The input's tern.* metadata when it is a GGUF file (method "" otherwise).
int tern_export_input_meta(const char *path, char *method, size_t cap, int *group) {
    method[0] = 0;
    *group = 0;
    struct stat st;
    if (!path || stat(path, &st) != 0 || S_ISDIR(st.st_mode)) return 0;
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    size_t got = f ? fread(magic, 1, 4, f) : 0;
    if (f) fclose(f);
    if (got != 4 || memcmp(magic, "GGUF", 4)) return 0;
    tern_gguf g;
    int rc = tern_gguf_open(&g, path);
    if (rc == 0) {
        const tern_gguf_kv *kv = tern_gguf_find_kv(&g, "tern.method");
        if (kv && kv->type == TERN_GGUF_STRING) {
            size_t n = kv->str_len < cap - 1 ? (size_t)kv->str_len : cap - 1;
            memcpy(method, kv->str, n);
            method[n] = 0;
        }
        kv = tern_gguf_find_kv(&g, "tern.group_size");
        if (kv && kv->type != TERN_GGUF_STRING && kv->type != TERN_GGUF_ARRAY) *group = kv->i < 0 ? -1 : (int)kv->i;
    }
    tern_gguf_close(&g);
    return rc;
}

