// Low-level GGUF (v2/v3) access: the header, every metadata key/value, the
// tensor directory, and dequantization of one tensor to float32. The LLaMA
// model and vocabulary readers (io/readers.h) are built on this; tests and
// tools use it directly.
//
// tern_gguf_parse validates the whole header up front (every length and count
// against the bytes that remain, nested arrays walked to their end, every
// tensor's bytes inside the file and aligned), so later accessors cannot read
// out of bounds. Strings and array payloads stay in the caller's buffer: the
// buffer must outlive the tern_gguf.
#ifndef TERN_IO_GGUF_H
#define TERN_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/file.h"
#include "io/model.h"
#include "io/readers.h"

// Metadata value types (numbering fixed by the GGUF format).
typedef enum {
    TERN_GGUF_U8 = 0,
    TERN_GGUF_I8 = 1,
    TERN_GGUF_U16 = 2,
    TERN_GGUF_I16 = 3,
    TERN_GGUF_U32 = 4,
    TERN_GGUF_I32 = 5,
    TERN_GGUF_F32 = 6,
    TERN_GGUF_BOOL = 7,
    TERN_GGUF_STRING = 8,
    TERN_GGUF_ARRAY = 9,
    TERN_GGUF_U64 = 10,
    TERN_GGUF_I64 = 11,
    TERN_GGUF_F64 = 12,
} tern_gguf_vtype;

// Tensor types tern knows (ggml numbering). Only the ones with a dequantizer
// (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, TQ1_0, TQ2_0,
// Q1_0, Q2_0)
// can be loaded; the others are known by size so that their files can still be
// parsed.
enum {
    TERN_GGML_F32 = 0,
    TERN_GGML_F16 = 1,
    TERN_GGML_Q4_0 = 2,
    TERN_GGML_Q4_1 = 3,
    TERN_GGML_Q5_0 = 6,
    TERN_GGML_Q5_1 = 7,
    TERN_GGML_Q8_0 = 8,
    TERN_GGML_Q8_1 = 9,
    TERN_GGML_Q2_K = 10,
    TERN_GGML_Q3_K = 11,
    TERN_GGML_Q4_K = 12,
    TERN_GGML_Q5_K = 13,
    TERN_GGML_Q6_K = 14,
    TERN_GGML_Q8_K = 15,
    TERN_GGML_IQ4_NL = 20,
    TERN_GGML_IQ4_XS = 23,
    TERN_GGML_I8 = 24,
    TERN_GGML_I16 = 25,
    TERN_GGML_I32 = 26,
    TERN_GGML_I64 = 27,
    TERN_GGML_F64 = 28,
    TERN_GGML_BF16 = 30,
    TERN_GGML_TQ1_0 = 34,
    TERN_GGML_TQ2_0 = 35,
    TERN_GGML_Q1_0 = 41,
    TERN_GGML_Q2_0 = 42,
};

// tern's packed types in a .tern file (docs/format.md): 1000 + tern_kfmt_id
// (kernels/formats.h), 1100 + id for a ternary matrix with per-group shifts.
// The group size comes from metadata: tern.group_size for ternary and RTN
// types, tern.q8_group for q8 (min(G, row length) per tensor).
#define TERN_GGUF_PACKED_BASE 1000u
#define TERN_GGUF_PACKED_SHIFT_BASE 1100u
#define TERN_GGUF_PACKED_MAX_FMT 100u

typedef struct {
    char *key;              // NUL-terminated copy
    uint32_t type;          // tern_gguf_vtype
    // Scalars (bool as 0/1): the value in the matching member; ints are also
    // mirrored into `f` so float keys may be written as ints.
    uint64_t u;
    int64_t i;
    double f;
    // STRING: bytes in the file (not NUL-terminated).
    const uint8_t *str;
    uint64_t str_len;
    // ARRAY: element type, count, and the encoded elements in the file.
    uint32_t arr_type;
    uint64_t arr_n;
    const uint8_t *arr_data;
    size_t arr_bytes;
} tern_gguf_kv;

typedef struct {
    char name[TERN_NAME_MAX];
    int n_dims;
    int64_t ne[TERN_MAX_DIMS]; // GGUF order: ne[0] is the innermost (row length)
    uint32_t type;             // ggml type id
    uint64_t offset;           // from the start of the data section
    uint64_t nbytes;
    int64_t numel;
    const uint8_t *data;       // the tensor's bytes inside the file
    // tern packed types only: format id, group (resolved), shift flag, row bytes.
    int packed_fmt, packed_group, packed_shift;
    uint64_t packed_row_bytes;
} tern_gguf_tensor;

typedef struct {
    char path[512];
    const uint8_t *data;
    size_t size;
    uint32_t version;
    int64_t n_kv;
    tern_gguf_kv *kv;
    int64_t n_tensors;
    tern_gguf_tensor *tensors;
    uint64_t alignment;
    size_t data_offset;  // start of the tensor data section
    tern_blob blob;      // owned mapping (tern_gguf_open only)
} tern_gguf;

// Parses `data` (caller-owned, must outlive g). Returns 0 or -1 with one error
// line naming `path`. Always call tern_gguf_close, also after a failure.
int tern_gguf_parse(tern_gguf *g, const void *data, size_t size, const char *path);
// Maps the file and parses it; tern_gguf_close unmaps.
int tern_gguf_open(tern_gguf *g, const char *path);
void tern_gguf_close(tern_gguf *g);

const tern_gguf_kv *tern_gguf_find_kv(const tern_gguf *g, const char *key);
const tern_gguf_tensor *tern_gguf_find_tensor(const tern_gguf *g, const char *name);

// Name of a ggml tensor type ("Q4_K"), or NULL when unknown.
const char *tern_gguf_type_name(uint32_t type);
// Whether tern can dequantize this tensor type.
int tern_gguf_type_supported(uint32_t type);
// Dequantizes all t->numel values into `out` (row-major, rows of ne[0]).
// Runs in parallel over blocks. Fails for unsupported types.
int tern_gguf_dequantize(const tern_gguf *g, const tern_gguf_tensor *t, float *out);

// Builds a model / vocabulary from a parsed file (what the readers.h entry
// points use). tern_gguf_read_vocab leaves v->type NONE when the file has no
// tokenizer and `required` is 0.
int tern_gguf_read_model(const tern_gguf *g, tern_model *m);
int tern_gguf_read_vocab(const tern_gguf *g, tern_vocab *v, int required);

#endif
