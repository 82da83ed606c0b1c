// Fuzzes the safetensors parser and float32 conversion of every tensor.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tern_st_file f;
    if (tern_st_parse(&f, data, size, "fuzz.safetensors") == 0) {
        for (int i = 0; i < f.n_tensors; i++) {
            // Offsets were validated against the input, so numel is bounded by it.
            float *dst = malloc((size_t)f.tensors[i].numel * sizeof(float) + 1);
            if (dst) tern_st_read_f32(&f, &f.tensors[i], dst);
            free(dst);
        }
    }
    tern_st_close(&f);
    return 0;
}
