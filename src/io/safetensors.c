// safetensors reader (format: github.com/huggingface/safetensors, "Format").
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/half.h"

// Every dtype the format defines that has a whole-byte element size. Knowing
// them all lets a file with, say, an I64 buffer parse (the HF reader skips
// such tensors) while an unknown spelling is refused at parse time.
static const struct {
    const char *name;
    int size;
} dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2},
    {"F16", 2},  {"BF16", 2}, {"I32", 4}, {"U32", 4},     {"F32", 4},     {"F64", 8}, {"I64", 8},
    {"U64", 8},
};

// Largest element count accepted: far beyond any real tensor, small enough
// that numel * itemsize cannot overflow.
#define ST_MAX_NUMEL ((uint64_t)1 << 50)

static int dtype_size(const tern_json *v) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (tern_json_str_eq(v, dtypes[i].name)) return dtypes[i].size;
    return 0;
}

// Reads a non-negative integer JSON number into *out.
static int get_u64(const tern_json *v, uint64_t *out) {
    if (!v || v->type != TERN_JSON_NUMBER || !v->is_int || v->i < 0) return -1;
    *out = (uint64_t)v->i;
    return 0;
}

static int parse_entry(tern_st_file *f, const tern_json *key, const tern_json *v, tern_st_tensor *t) {
    const char *name = key->str;
    memset(t, 0, sizeof *t);
    t->name = name;
    if (v->type != TERN_JSON_OBJECT)
        return tern_errorf("%s: tensor %s: entry must be an object, not %s", f->path, name,
                           tern_json_type_name(v->type));
    const tern_json *dt = tern_json_get(v, "dtype"), *sh = tern_json_get(v, "shape"),
                    *off = tern_json_get(v, "data_offsets");
    if (!dt || dt->type != TERN_JSON_STRING) return tern_errorf("%s: tensor %s has no dtype", f->path, name);
    t->itemsize = dtype_size(dt);
    if (!t->itemsize)
        return tern_errorf("%s: tensor %s has unknown dtype '%.32s'", f->path, name, dt->str);
    snprintf(t->dtype, sizeof t->dtype, "%s", dt->str);
    if (!sh || sh->type != TERN_JSON_ARRAY) return tern_errorf("%s: tensor %s has no shape array", f->path, name);
    if (sh->len > TERN_ST_MAX_DIMS)
        return tern_errorf("%s: tensor %s has %zu dimensions (max %d)", f->path, name, sh->len, TERN_ST_MAX_DIMS);
    t->ndim = (int)sh->len;
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t dim;
        if (get_u64(tern_json_at(sh, (size_t)d), &dim))
            return tern_errorf("%s: tensor %s: dimension %d is not a non-negative integer", f->path, name, d);
        if (dim > ST_MAX_NUMEL || (dim && numel > ST_MAX_NUMEL / dim))
            return tern_errorf("%s: tensor %s: shape overflows", f->path, name);
        numel *= dim;
        t->shape[d] = (int64_t)dim;
    }
    t->numel = (int64_t)numel;
    if (!off || off->type != TERN_JSON_ARRAY || off->len != 2 || get_u64(&off->items[0], &t->begin) ||
        get_u64(&off->items[1], &t->end))
        return tern_errorf("%s: tensor %s: data_offsets must be two non-negative integers", f->path, name);
    if (t->begin > t->end || t->end > f->data_size)
        return tern_errorf("%s: tensor %s: data_offsets [%llu, %llu] outside the %llu-byte data section",
                           f->path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                           (unsigned long long)f->data_size);
    if (t->end - t->begin != numel * (uint64_t)t->itemsize)
        return tern_errorf("%s: tensor %s: %llu bytes of data for %llu elements of %s", f->path, name,
                           (unsigned long long)(t->end - t->begin), (unsigned long long)numel, t->dtype);
    t->data = f->data + t->begin;
    return 0;
}

int tern_st_parse(tern_st_file *f, const void *data, size_t size, const char *path) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path ? path : "(memory)");
    const uint8_t *bytes = data;
    if (size < 8) return tern_errorf("%s: not a safetensors file (only %zu bytes)", f->path, size);
    uint64_t hlen;
    memcpy(&hlen, bytes, 8); // little-endian, as is every target tern builds for
    if (hlen > size - 8)
        return tern_errorf("%s: not a safetensors file: header length %llu exceeds the file (%zu bytes)",
                           f->path, (unsigned long long)hlen, size);
    if (hlen < 2 || bytes[8] != '{')
        return tern_errorf("%s: not a safetensors file: header is not a JSON object", f->path);
    f->data = bytes + 8 + hlen;
    f->data_size = size - 8 - hlen;
    // JSON errors read "PATH: header:LINE:COL: ..." (positions within the header).
    char name[540];
    snprintf(name, sizeof name, "%s: header", f->path);
    if (tern_json_parse(&f->header, bytes + 8, (size_t)hlen, name)) return -1;
    const tern_json *root = f->header.root;
    if (root->type != TERN_JSON_OBJECT)
        return tern_errorf("%s: safetensors header is not a JSON object", f->path);
    f->tensors = calloc(root->len ? root->len : 1, sizeof *f->tensors);
    if (!f->tensors) return tern_errorf("%s: out of memory", f->path);
    for (size_t i = 0; i < root->len; i++) {
        const tern_json *k = tern_json_key(root, i), *v = tern_json_value(root, i);
        if (strcmp(k->str, "__metadata__") == 0) {
            if (v->type != TERN_JSON_OBJECT)
                return tern_errorf("%s: __metadata__ must be an object, not %s", f->path,
                                   tern_json_type_name(v->type));
            f->metadata = v;
            continue;
        }
        if (strlen(k->str) != k->len) return tern_errorf("%s: tensor name contains a NUL", f->path);
        if (parse_entry(f, k, v, &f->tensors[f->n_tensors])) return -1;
        f->n_tensors++;
    }
    return 0;
}

int tern_st_open(tern_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    tern_blob b;
    if (tern_blob_open(&b, path)) return -1;
    int rc = tern_st_parse(f, b.data, b.size, path);
    f->blob = b; // kept (even on failure) so tern_st_close unmaps it
    return rc;
}

void tern_st_close(tern_st_file *f) {
    tern_json_free(&f->header);
    free(f->tensors);
    tern_blob_close(&f->blob);
    memset(f, 0, sizeof *f);
}

const tern_st_tensor *tern_st_find(const tern_st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

int tern_st_read_f32(const tern_st_file *f, const tern_st_tensor *t, float *dst) {
    size_t n = (size_t)t->numel;
    const uint8_t *src = t->data;
    // Tensor data need not be aligned, so elements are read with memcpy.
    if (strcmp(t->dtype, "F32") == 0) {
        if (n) memcpy(dst, src, n * 4);
    } else if (strcmp(t->dtype, "BF16") == 0 || strcmp(t->dtype, "F16") == 0) {
        int bf = t->dtype[0] == 'B';
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = bf ? tern_bf16_to_f32(h) : tern_f16_to_f32(h);
        }
    } else {
        return tern_errorf("%s: tensor %s has dtype %s; tern reads F32, F16 and BF16", f->path, t->name,
                           t->dtype);
    }
    return 0;
}
