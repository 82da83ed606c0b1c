// Reading an export input's tern.* metadata (separate from export.c, which
// uses the GGUF writer: io/gguf.h and io/gguf_write.h cannot share a unit).
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "infer/export.h"
#include "io/gguf.h"

_Static_assert(TERN_EXPORT_PACKED_BASE == TERN_GGUF_PACKED_BASE, "packed type ids (io/gguf.h)");
_Static_assert(TERN_EXPORT_SHIFT_BASE == TERN_GGUF_PACKED_SHIFT_BASE, "packed type ids (io/gguf.h)");

// String value of a tern.* key into dst ("" when absent or not a string).
static void meta_str(const tern_gguf *g, const char *key, char *dst, size_t cap) {
    const tern_gguf_kv *kv = tern_gguf_find_kv(g, key);
    dst[0] = 0;
    if (!kv || kv->type != TERN_GGUF_STRING) return;
    size_t n = kv->str_len < cap - 1 ? (size_t)kv->str_len : cap - 1;
    memcpy(dst, kv->str, n);
    dst[n] = 0;
}

// Integer value of a tern.* key, or def when absent or not a number.
static int64_t meta_int(const tern_gguf *g, const char *key, int64_t def) {
    const tern_gguf_kv *kv = tern_gguf_find_kv(g, key);
    return kv && kv->type != TERN_GGUF_STRING && kv->type != TERN_GGUF_ARRAY ? kv->i : def;
}

// The input's tern.* metadata when it is a GGUF file (method "" otherwise).
int tern_export_input_meta(const char *path, tern_export_meta *meta) {
    memset(meta, 0, sizeof *meta);
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
        meta_str(&g, "tern.method", meta->method, sizeof meta->method);
        meta_str(&g, "tern.teq_inner", meta->inner, sizeof meta->inner);
        int64_t group = meta_int(&g, "tern.group_size", 0);
        meta->group = group < 0 ? -1 : (int)group;
        meta->bits = (int)meta_int(&g, "tern.bits", 0);
        meta->sym = meta_int(&g, "tern.sym", 0) != 0;
        const tern_gguf_kv *kv = tern_gguf_find_kv(&g, "tern.linear_bits");
        if (kv && kv->type == TERN_GGUF_ARRAY && kv->arr_type == TERN_GGUF_I32 &&
            kv->arr_n <= TERN_EXPORT_MAX_LINEARS && kv->arr_bytes >= kv->arr_n * 4) {
            meta->n_linear = (int)kv->arr_n;
            for (int i = 0; i < meta->n_linear; i++) {
                int32_t b;
                memcpy(&b, kv->arr_data + (size_t)i * 4, 4);
                meta->linear_bits[i] = (uint8_t)(b > 0 && b <= 8 ? b : 0);
            }
        } else if (kv)
            rc = tern_errorf("%s: tern.linear_bits is not an array of at most %d int32", path, TERN_EXPORT_MAX_LINEARS);
    }
    tern_gguf_close(&g);
    return rc;
}
