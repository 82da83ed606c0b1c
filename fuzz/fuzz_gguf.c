// Fuzzes the GGUF reader: the low-level header/metadata/tensor-directory
// parse, dequantization of every tensor, the vocabulary reader, and the full
// LLaMA model reader (full and packed-only loads).
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "io/gguf.h"
#include "io/readers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tern_gguf g;
    if (tern_gguf_parse(&g, data, size, "fuzz.gguf") == 0) {
        for (int64_t i = 0; i < g.n_tensors; i++) {
            const tern_gguf_tensor *t = &g.tensors[i];
            // Tensor bytes lie inside the input, so numel is bounded by it.
            float *out = malloc((size_t)t->numel * sizeof(float));
            if (out) tern_gguf_dequantize(&g, t, out);
            free(out);
        }
        tern_vocab v = {0};
        tern_gguf_read_vocab(&g, &v, 1);
        tern_vocab_free(&v);
    }
    tern_gguf_close(&g);
    // The model reader twice: a full load, and a packed-only one (no FP32 for
    // packed matrices, the embedding kept as file bytes and read by rows).
    for (int packed_only = 0; packed_only < 2; packed_only++) {
        tern_model m = {0};
        m.packed_only = packed_only;
        if (tern_gguf_parse_model(&m, data, size, "fuzz.gguf") == 0 && packed_only) {
            const tern_tensor *e = tern_model_find(&m, "token_embd.weight");
            float *row = e && e->ndim == 2 ? malloc((size_t)e->shape[1] * sizeof(float)) : NULL;
            for (int k = 0; row && k < 2; k++) {
                int id = k ? (int)e->shape[0] - 1 : 0;
                tern_tensor_rows(e, &id, 1, row);
            }
            free(row);
        }
        tern_model_free(&m);
    }
    return 0;
}
