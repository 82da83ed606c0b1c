// Format readers. Each fills a zero-initialised tern_model (or tern_vocab) and
// returns 0, or returns -1 with a one-line error naming the file and problem.
// On failure the caller frees with tern_model_free / tern_vocab_free.
#ifndef TERN_IO_READERS_H
#define TERN_IO_READERS_H

#include <stddef.h>

#include "io/model.h"

// llama2.c v0 float32 checkpoint (config header + weights; no tokenizer).
int tern_llama2c_load(tern_model *m, const char *path);
int tern_llama2c_parse(tern_model *m, const void *data, size_t size, const char *path);
// llama2.c tokenizer.bin; `n_tokens` comes from the checkpoint's vocab_size.
int tern_llama2c_tokenizer_load(tern_vocab *v, const char *path, int n_tokens);
int tern_llama2c_tokenizer_parse(tern_vocab *v, const void *data, size_t size, int n_tokens,
                                 const char *path);

// GGUF v2/v3 LLaMA-family model with its embedded tokenizer (io/gguf.c).
int tern_gguf_load_model(tern_model *m, const char *path);
int tern_gguf_parse_model(tern_model *m, const void *data, size_t size, const char *path);
// Only the tokenizer of a GGUF file (for --tokenizer X.gguf).
int tern_gguf_load_vocab(tern_vocab *v, const char *path);

// Hugging Face directory: config.json + (sharded) safetensors + tokenizer.json (io/hf.c).
int tern_hf_load_model(tern_model *m, const char *dir);
// The same from memory, without a tokenizer: config.json's text and one
// safetensors file's bytes (both outlive the call only as long as it runs). Errors name `path`.
int tern_hf_parse_model(tern_model *m, const char *config, size_t config_len, const void *st, size_t st_size,
                        const char *path);
// tokenizer.json (+ tokenizer_config.json beside it, when present).
int tern_hf_load_vocab(tern_vocab *v, const char *tokenizer_json_path);

#endif
