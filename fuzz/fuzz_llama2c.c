// Fuzzes the llama2.c checkpoint and tokenizer.bin parsers.
#include <stddef.h>
#include <stdint.h>

#include "io/readers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tern_model m = {0};
    tern_llama2c_parse(&m, data, size, "fuzz.bin");
    tern_model_free(&m);
    tern_vocab v = {0};
    tern_llama2c_tokenizer_parse(&v, data, size, 64, "fuzz.bin");
    tern_vocab_free(&v);
    return 0;
}
