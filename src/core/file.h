// Files: read-only mapped blobs with bounds-checked cursors for parsers,
// whole-file reads, and atomic writes (temp file, fsync, rename).
#ifndef TERN_CORE_FILE_H
#define TERN_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// A whole file mapped read-only (or read into memory when mapping fails).
typedef struct {
    const uint8_t *data;
    size_t size;
    int mapped;
    char path[512];
} tern_blob;

int tern_blob_open(tern_blob *b, const char *path);
void tern_blob_close(tern_blob *b);
// Wraps caller-owned memory (fuzzers, tests); close does not free it.
void tern_blob_wrap(tern_blob *b, const void *data, size_t size, const char *name);

// Sequential little-endian reader over a byte range. Every read checks bounds
// and reports "PATH: truncated ... at offset N" instead of reading past the end.
typedef struct {
    const uint8_t *base;
    size_t size;
    size_t pos;
    const char *path;
} tern_cursor;

void tern_cursor_init(tern_cursor *c, const void *base, size_t size, const char *path);
int tern_cur_bytes(tern_cursor *c, void *dst, size_t n, const char *what);
int tern_cur_skip(tern_cursor *c, size_t n, const char *what);
int tern_cur_u8(tern_cursor *c, uint8_t *v, const char *what);
int tern_cur_u16(tern_cursor *c, uint16_t *v, const char *what);
int tern_cur_u32(tern_cursor *c, uint32_t *v, const char *what);
int tern_cur_u64(tern_cursor *c, uint64_t *v, const char *what);
int tern_cur_i32(tern_cursor *c, int32_t *v, const char *what);
int tern_cur_f32(tern_cursor *c, float *v, const char *what);
// Pointer to the next n bytes without copying (NULL + error when out of range).
const uint8_t *tern_cur_view(tern_cursor *c, size_t n, const char *what);

// Reads a whole file into a NUL-terminated heap buffer.
int tern_read_file(const char *path, char **data, size_t *size);
int tern_file_exists(const char *path);
int tern_is_dir(const char *path);
// 1 when both paths name the same existing file (device and inode, so hard
// links, symlinks and other spellings of one file count), 0 otherwise.
int tern_same_file(const char *a, const char *b);

// Atomic output: write to PATH.tmp.PID, then fsync + rename on commit.
// abort (or a crash) leaves PATH untouched.
typedef struct {
    FILE *f;
    char tmp_path[600];
    char path[512];
} tern_atomic_file;

int tern_atomic_open(tern_atomic_file *af, const char *path);
int tern_atomic_commit(tern_atomic_file *af);
void tern_atomic_abort(tern_atomic_file *af);

#endif
