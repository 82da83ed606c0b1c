// GGUF v3 writer: metadata key/values and tensors, written atomically.
// tern_gguf_write_model stores a whole tern_model (LLaMA metadata, the
// tokenizer, F32 tensors) so any tern command can load it with --model alone.
#ifndef TERN_IO_GGUF_WRITE_H
#define TERN_IO_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "io/gguf.h" // metadata value types (TERN_GGUF_U8 ...), shared with the reader
#include "io/model.h"

// ggml tensor type ids the writer's block encoders produce (numbering fixed by
// ggml; io/gguf.h has the reader's full list under other names).
enum {
    TERN_GGUF_TYPE_F32 = 0,
    TERN_GGUF_TYPE_F16 = 1,
    TERN_GGUF_TYPE_Q4_0 = 2,
    TERN_GGUF_TYPE_Q8_0 = 8,
    TERN_GGUF_TYPE_TQ1_0 = 34,
    TERN_GGUF_TYPE_TQ2_0 = 35,
    TERN_GGUF_TYPE_Q2_0 = 42,
};
#define TERN_GGUF_Q4_0_BLOCK 32     // values per block
#define TERN_GGUF_Q4_0_BYTES 18     // bytes per block
#define TERN_GGUF_Q8_0_BLOCK 32
#define TERN_GGUF_Q8_0_BYTES 34
#define TERN_GGUF_TQ_BLOCK 256
#define TERN_GGUF_TQ1_0_BYTES 54
#define TERN_GGUF_TQ2_0_BYTES 66
#define TERN_GGUF_Q2_0_BLOCK 64
#define TERN_GGUF_Q2_0_BYTES 18

// Block encoders (layouts in docs/format.md, "llama.cpp export"): one block
// from its codes and scale d, which is stored rounded to fp16.
// TQ1_0 / TQ2_0: 256 ternary codes T in {-1, 0, 1}, decoded as d * T.
void tern_gguf_encode_tq1_0(const int8_t *T, float d, uint8_t *out);
void tern_gguf_encode_tq2_0(const int8_t *T, float d, uint8_t *out);
// Q2_0 (ggml-common.h block_q2_0): 64 codes q in [-1, 2], decoded as d * q.
void tern_gguf_encode_q2_0(const int8_t *q, float d, uint8_t *out);
// Q8_0: 32 int8 codes in [-127, 127], decoded as d * q.
void tern_gguf_encode_q8_0(const int8_t *q, float d, uint8_t *out);
// Q4_0: 32 codes in [-8, 7], decoded as d * q.
void tern_gguf_encode_q4_0(const int8_t *q, float d, uint8_t *out);

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
