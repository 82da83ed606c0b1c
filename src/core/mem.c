#include "core/mem.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void *tern_alloc(size_t n) {
    if (n == 0) n = 1;
    size_t rounded = (n + TERN_ALIGN - 1) & ~(size_t)(TERN_ALIGN - 1);
    if (rounded < n) {
        tern_errorf("allocation of %zu bytes overflows", n);
        return NULL;
    }
    void *p = aligned_alloc(TERN_ALIGN, rounded);
    if (!p) tern_errorf("out of memory allocating %zu bytes", n);
    return p;
}

void *tern_calloc(size_t n) {
    void *p = tern_alloc(n);
    if (p) memset(p, 0, n);
    return p;
}

void tern_free(void *p) { free(p); }

char *tern_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) {
        tern_errorf("out of memory");
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *tern_strdup(const char *s) { return tern_strndup(s, strlen(s)); }

int tern_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return tern_errorf("size %zu x %zu overflows", a, b);
    *out = a * b;
    return 0;
}

int tern_mul3_size(size_t a, size_t b, size_t c, size_t *out) {
    size_t ab = 0;
    if (tern_mul_size(a, b, &ab)) return -1;
    return tern_mul_size(ab, c, out);
}
