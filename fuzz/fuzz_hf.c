// Fuzzes the Hugging Face model reader in memory: config.json parsing (LLaMA
// and BitNet, quantization_config) and the tensors of one safetensors file,
// including BitNet's packed 2-bit linears and their weight_scale.
// Input: u32 little-endian config length, the config.json text, then the
// safetensors bytes (tests/corpus/hf holds seeds and bad files in this form).
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "io/model.h"
#include "io/readers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint32_t n;
    if (size < 4) return 0;
    memcpy(&n, data, 4);
    if (n > size - 4) return 0;
    tern_model m;
    memset(&m, 0, sizeof m);
    tern_hf_parse_model(&m, (const char *)data + 4, n, data + 4 + n, size - 4 - n, "fuzz.hf");
    tern_model_free(&m);
    return 0;
}
