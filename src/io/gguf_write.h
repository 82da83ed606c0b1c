// GGUF v3 writer: metadata key/values and tensors, written atomically.
// tern_gguf_write_model stores a whole tern_model (LLaMA metadata, the
// tokenizer, F32 tensors) so any tern command can load it with --model alone.
#ifndef TERN_IO_GGUF_WRITE_H
#define TERN_IO_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "io/model.h"

// GGUF metadata value types (from the GGUF specification).
enum {
    TERN_GGUF_U8 = 0, TERN_GGUF_I8, TERN_GGUF_U16, TERN_GGUF_I16, TERN_GGUF_U32, TERN_GGUF_I32,
    TERN_GGUF_F32, TERN_GGUF_BOOL, TERN_GGUF_STRING, TERN_GGUF_ARRAY, TERN_GGUF_U64, TERN_GGUF_I64,
    TERN_GGUF_F64,
};

typedef struct tern_gguf_writer tern_gguf_writer;

tern_gguf_writer *tern_gguf_writer_new(void);
void tern_gguf_writer_free(tern_gguf_writer *w);
// Scalars and strings are copied; arrays point at caller memory until write.
int tern_gguf_set_u32(tern_gguf_writer *w, const char *key, uint32_t v);
int tern_gguf_set_i32(tern_gguf_writer *w, const char *key, int32_t v);
int tern_gguf_set_f32(tern_gguf_writer *w, const char *key, float v);
int tern_gguf_set_bool(tern_gguf_writer *w, const char *key, int v);
int tern_gguf_set_str(tern_gguf_writer *w, const char *key, const char *v);
// Array of n elements of `type` (numeric), or of strings (type STRING: data is
// const char *const *, lens gives byte lengths or NULL for strlen).
int tern_gguf_set_array(tern_gguf_writer *w, const char *key, int type, const void *data, uint64_t n,
                        const int *lens);
// A tensor: ggml type id, shape outermost-first (as tern stores it), raw bytes.
int tern_gguf_add_tensor(tern_gguf_writer *w, const char *name, uint32_t ggml_type, int ndim,
                         const int64_t *shape, const void *data, uint64_t nbytes);
int tern_gguf_write(tern_gguf_writer *w, const char *path);

// Adds a model's LLaMA metadata and tokenizer to a writer.
int tern_gguf_add_model_metadata(tern_gguf_writer *w, const tern_model *m);
// Metadata + every tensor as F32, written atomically to path.
int tern_gguf_write_model(const tern_model *m, const char *path);

#endif
