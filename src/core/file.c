#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

static void copy_path(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "(memory)");
}

int tern_blob_open(tern_blob *b, const char *path) {
    memset(b, 0, sizeof *b);
    copy_path(b->path, sizeof b->path, path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return tern_errorf("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return tern_errorf("%s: cannot stat: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return tern_errorf("%s: is a directory", path);
    }
    b->size = (size_t)st.st_size;
    if (b->size == 0) {
        close(fd);
        b->data = (const uint8_t *)"";
        return 0;
    }
    void *p = mmap(NULL, b->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return tern_errorf("%s: cannot map: %s", path, strerror(errno));
    b->data = p;
    b->mapped = 1;
    return 0;
}

void tern_blob_wrap(tern_blob *b, const void *data, size_t size, const char *name) {
    memset(b, 0, sizeof *b);
    b->data = data;
    b->size = size;
    copy_path(b->path, sizeof b->path, name);
}

void tern_blob_close(tern_blob *b) {
    if (b->mapped) munmap((void *)b->data, b->size);
    memset(b, 0, sizeof *b);
}

void tern_cursor_init(tern_cursor *c, const void *base, size_t size, const char *path) {
    c->base = base;
    c->size = size;
    c->pos = 0;
    c->path = path ? path : "(memory)";
}

const uint8_t *tern_cur_view(tern_cursor *c, size_t n, const char *what) {
    if (n > c->size - c->pos) {
        tern_errorf("%s: truncated: %s needs %zu bytes at offset %zu but the file has %zu", c->path,
                    what, n, c->pos, c->size);
        return NULL;
    }
    const uint8_t *p = c->base + c->pos;
    c->pos += n;
    return p;
}

int tern_cur_bytes(tern_cursor *c, void *dst, size_t n, const char *what) {
    const uint8_t *p = tern_cur_view(c, n, what);
    if (!p) return -1;
    if (n) memcpy(dst, p, n);
    return 0;
}

int tern_cur_skip(tern_cursor *c, size_t n, const char *what) {
    return tern_cur_view(c, n, what) ? 0 : -1;
}

// The formats tern reads are little-endian; so is every target tern builds for.
int tern_cur_u8(tern_cursor *c, uint8_t *v, const char *w) { return tern_cur_bytes(c, v, 1, w); }
int tern_cur_u16(tern_cursor *c, uint16_t *v, const char *w) { return tern_cur_bytes(c, v, 2, w); }
int tern_cur_u32(tern_cursor *c, uint32_t *v, const char *w) { return tern_cur_bytes(c, v, 4, w); }
int tern_cur_u64(tern_cursor *c, uint64_t *v, const char *w) { return tern_cur_bytes(c, v, 8, w); }
int tern_cur_i32(tern_cursor *c, int32_t *v, const char *w) { return tern_cur_bytes(c, v, 4, w); }
int tern_cur_f32(tern_cursor *c, float *v, const char *w) { return tern_cur_bytes(c, v, 4, w); }

int tern_read_file(const char *path, char **data, size_t *size) {
    tern_blob b;
    if (tern_blob_open(&b, path)) return -1;
    char *buf = malloc(b.size + 1);
    if (!buf) {
        tern_blob_close(&b);
        return tern_errorf("%s: out of memory reading %zu bytes", path, b.size);
    }
    memcpy(buf, b.data, b.size);
    buf[b.size] = 0;
    *size = b.size;
    *data = buf;
    tern_blob_close(&b);
    return 0;
}

int tern_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int tern_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int tern_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int tern_atomic_open(tern_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path) return tern_errorf("%s: path too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) return tern_errorf("%s: cannot create: %s", path, strerror(errno)); // the requested name
    return 0;
}

int tern_atomic_commit(tern_atomic_file *af) {
    int failed = ferror(af->f) != 0;
    failed |= fflush(af->f) != 0;
    failed |= fsync(fileno(af->f)) != 0;
    failed |= fclose(af->f) != 0;
    af->f = NULL;
    if (failed) {
        int e = errno;
        unlink(af->tmp_path);
        return tern_errorf("%s: write failed: %s", af->path, strerror(e));
    }
    if (rename(af->tmp_path, af->path) != 0) {
        int e = errno;
        unlink(af->tmp_path);
        return tern_errorf("%s: cannot rename into place: %s", af->path, strerror(e));
    }
    return 0;
}

void tern_atomic_abort(tern_atomic_file *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp_path[0]) unlink(af->tmp_path);
}
