// `tern export`: writes a packed .tern model file (docs/format.md), a GGUF
// container with tern's packed tensor types: every decoder linear ternary
// (tern-t2 or tern-t1.6, fp16 scales per group, DLT shifts when the input has
// them), biases and norms F32, token embedding and LM head q8 (block TERN_KQ8_GROUP = 128; one
// table when tied), plus the config and tokenizer. Written atomically.
#ifndef TERN_INFER_EXPORT_H
#define TERN_INFER_EXPORT_H

#include "io/model.h"

typedef struct {
    const char *pack; // "2"/"t2"/"tern-t2" or "1.6"/"t1.6"/"tern-t1.6"; NULL = t2
    int group;        // 0: the input's tern.group_size, else 128
} tern_export_opts;

// GGUF tensor type ids of the packed formats (= TERN_GGUF_PACKED_BASE /
// TERN_GGUF_PACKED_SHIFT_BASE in io/gguf.h) + tern_kfmt_id.
#define TERN_EXPORT_PACKED_BASE 1000u
#define TERN_EXPORT_SHIFT_BASE 1100u

// What the export found and did.
typedef struct {
    char method[32];  // input's tern.method, "" for an FP model (absmean PTQ)
    int group, has_shift;
    int64_t bytes;    // size of the written file
} tern_export_info;

// Exports model `m` (loaded from in_path, which is re-read for its tern.*
// metadata when it is a GGUF file) to out_path. Codes come from exact
// recovery when the input is a `tern quantize` output (tern.method present),
// from absmean per group otherwise. -1 with one error line, nothing written.
int tern_export_tern(const tern_model *m, const char *in_path, const tern_export_opts *o, const char *out_path,
                     tern_export_info *info);

// The tern.method ("" when absent or not a GGUF file) and tern.group_size
// (0 when absent, -1 per row) of an input file.
int tern_export_input_meta(const char *path, char *method, size_t cap, int *group);

#endif
