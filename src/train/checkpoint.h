// Training checkpoints: a versioned file of named, checksummed sections
// (parameters, optimizer moments, quantizer state, step, RNG, data position),
// written atomically (temp file, fsync, rename) and fully verified on load.
//
// Layout: "TERNCKPT" | u32 version | u32 n_sections |
//         n_sections x { char name[32] | u64 offset | u64 size | u64 hash } |
//         section payloads (each at its offset, 64-byte aligned)
#ifndef TERN_TRAIN_CHECKPOINT_H
#define TERN_TRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/file.h"

#define TERN_CKPT_VERSION 1
#define TERN_CKPT_MAX_SECTIONS 64
#define TERN_CKPT_NAME 32

typedef struct {
    char name[TERN_CKPT_NAME];
    const void *data;
    uint64_t size;
} tern_ckpt_section;

// Writes all sections at once (data stays owned by the caller).
int tern_ckpt_save(const char *path, const tern_ckpt_section *sections, int n);

typedef struct {
    tern_blob blob;
    int n;
    tern_ckpt_section sections[TERN_CKPT_MAX_SECTIONS];
} tern_ckpt;

int tern_ckpt_load(tern_ckpt *c, const char *path);
void tern_ckpt_close(tern_ckpt *c);
// The section's bytes; an error naming the file when it is missing or its size
// differs from `expected_size` (pass 0 to accept any size).
const void *tern_ckpt_get(const tern_ckpt *c, const char *name, uint64_t expected_size, uint64_t *size);

#endif
