// safetensors reader: an 8-byte little-endian header length N, N bytes of JSON
// ({"NAME": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]},
// ..., "__metadata__": {..}}), then the data section the offsets index into.
//
// Parsing validates every entry: known dtype, non-negative integral dims whose
// product does not overflow, offsets inside the data section with
// end - begin == numel * itemsize. Only F32, F16 and BF16 convert to float32;
// other (valid) dtypes fail at conversion with an error naming the tensor.
#ifndef TERN_IO_SAFETENSORS_H
#define TERN_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/file.h"
#include "io/json.h"

#define TERN_ST_MAX_DIMS 8

typedef struct {
    const char *name;  // points into the header document
    char dtype[16];    // as spelled in the file: "BF16", "F32", ...
    int itemsize;      // bytes per element
    int ndim;          // 0 for a scalar
    int64_t shape[TERN_ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;  // byte range within the data section
    const uint8_t *data;  // start of the tensor's bytes (not necessarily aligned)
} tern_st_tensor;

typedef struct {
    char path[512];
    tern_blob blob;             // the mapped file (tern_st_open only)
    tern_json_doc header;
    const tern_json *metadata;  // "__metadata__" object or NULL
    int n_tensors;
    tern_st_tensor *tensors;    // in header order
    const uint8_t *data;        // data section
    uint64_t data_size;
} tern_st_file;

// Parses caller-owned bytes, which must outlive `f`. Errors name `path`.
int tern_st_parse(tern_st_file *f, const void *data, size_t size, const char *path);
// Maps and parses a file.
int tern_st_open(tern_st_file *f, const char *path);
void tern_st_close(tern_st_file *f);

const tern_st_tensor *tern_st_find(const tern_st_file *f, const char *name);
// Converts a F32/F16/BF16 tensor to float32 into dst[numel].
int tern_st_read_f32(const tern_st_file *f, const tern_st_tensor *t, float *dst);

#endif
