#include "train/checkpoint.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"

static const char MAGIC[8] = {'T', 'E', 'R', 'N', 'C', 'K', 'P', 'T'};

static uint64_t align64(uint64_t x) { return (x + 63) & ~(uint64_t)63; }

int tern_ckpt_save(const char *path, const tern_ckpt_section *sections, int n) {
    if (n < 0 || n > TERN_CKPT_MAX_SECTIONS) return tern_errorf("%s: %d checkpoint sections", path, n);
    tern_atomic_file af;
    if (tern_atomic_open(&af, path)) return -1;
    uint32_t head[2] = {TERN_CKPT_VERSION, (uint32_t)n};
    fwrite(MAGIC, 1, 8, af.f);
    fwrite(head, 4, 2, af.f);
    uint64_t offset = align64(16 + (uint64_t)n * (TERN_CKPT_NAME + 24));
    for (int i = 0; i < n; i++) {
        char name[TERN_CKPT_NAME] = {0};
        snprintf(name, sizeof name, "%s", sections[i].name);
        uint64_t meta[3] = {offset, sections[i].size, tern_hash64(sections[i].data, sections[i].size, 0)};
        fwrite(name, 1, sizeof name, af.f);
        fwrite(meta, 8, 3, af.f);
        offset = align64(offset + sections[i].size);
    }
    static const char zeros[64];
    long pos = ftell(af.f);
    for (int i = 0; i < n; i++) {
        fwrite(zeros, 1, (size_t)(align64((uint64_t)pos) - (uint64_t)pos), af.f);
        fwrite(sections[i].data, 1, sections[i].size, af.f);
        pos = ftell(af.f);
    }
    return tern_atomic_commit(&af);
}

int tern_ckpt_load(tern_ckpt *c, const char *path) {
    memset(c, 0, sizeof *c);
    if (tern_blob_open(&c->blob, path)) return -1;
    tern_cursor cur;
    tern_cursor_init(&cur, c->blob.data, c->blob.size, path);
    char magic[8];
    uint32_t version, n;
    int rc = -1;
    if (tern_cur_bytes(&cur, magic, 8, "magic") || tern_cur_u32(&cur, &version, "version") ||
        tern_cur_u32(&cur, &n, "section count"))
        goto fail;
    if (memcmp(magic, MAGIC, 8)) {
        tern_errorf("%s: not a tern checkpoint (bad magic)", path);
        goto fail;
    }
    if (version != TERN_CKPT_VERSION) {
        tern_errorf("%s: checkpoint version %u, this tern reads version %d", path, version, TERN_CKPT_VERSION);
        goto fail;
    }
    if (n > TERN_CKPT_MAX_SECTIONS) {
        tern_errorf("%s: %u sections (corrupt header)", path, n);
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++) {
        tern_ckpt_section *s = &c->sections[i];
        uint64_t meta[3];
        if (tern_cur_bytes(&cur, s->name, TERN_CKPT_NAME, "section name") ||
            tern_cur_bytes(&cur, meta, sizeof meta, "section header"))
            goto fail;
        s->name[TERN_CKPT_NAME - 1] = 0;
        if (meta[0] > c->blob.size || meta[1] > c->blob.size - meta[0]) {
            tern_errorf("%s: section '%s' lies outside the file (truncated?)", path, s->name);
            goto fail;
        }
        s->data = c->blob.data + meta[0];
        s->size = meta[1];
        if (tern_hash64(s->data, s->size, 0) != meta[2]) {
            tern_errorf("%s: section '%s' fails its checksum (corrupt file)", path, s->name);
            goto fail;
        }
    }
    c->n = (int)n;
    return 0;
fail:
    tern_ckpt_close(c);
    return rc;
}

void tern_ckpt_close(tern_ckpt *c) {
    tern_blob_close(&c->blob);
    memset(c, 0, sizeof *c);
}

const void *tern_ckpt_get(const tern_ckpt *c, const char *name, uint64_t expected_size, uint64_t *size) {
    for (int i = 0; i < c->n; i++) {
        if (strcmp(c->sections[i].name, name)) continue;
        if (expected_size && c->sections[i].size != expected_size) {
            tern_errorf("%s: section '%s' has %llu bytes, expected %llu (checkpoint from another model or run?)",
                        c->blob.path, name, (unsigned long long)c->sections[i].size,
                        (unsigned long long)expected_size);
            return NULL;
        }
        if (size) *size = c->sections[i].size;
        return c->sections[i].data;
    }
    tern_errorf("%s: checkpoint has no section '%s'", c->blob.path, name);
    return NULL;
}
