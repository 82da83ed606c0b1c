// Aligned allocation and overflow-checked size arithmetic.
#ifndef TERN_CORE_MEM_H
#define TERN_CORE_MEM_H

#include <stddef.h>
#include <stdint.h>

#define TERN_ALIGN 64

// 64-byte aligned; NULL (with the error set) on failure or when n == 0 overflowed.
void *tern_alloc(size_t n);
void *tern_calloc(size_t n); // zero-filled
void tern_free(void *p);
char *tern_strdup(const char *s);
char *tern_strndup(const char *s, size_t n);

// a*b (and a*b*c) without overflow; returns 0 on success, -1 (error set) on overflow.
int tern_mul_size(size_t a, size_t b, size_t *out);
int tern_mul3_size(size_t a, size_t b, size_t c, size_t *out);

#endif
