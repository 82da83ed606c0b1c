// Pre-tokenizers of byte-level BPE vocabularies: hand-written scanners that
// split text exactly as the model family's regex would (no regex library).
//   gpt2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   smollm every \p{N} character isolated first, then gpt2 on the rest
//          (SmolLM2's Sequence[Digits(individual_digits), ByteLevel]; llama.cpp "smollm")
//   llama3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// Invalid UTF-8 bytes count as single characters outside \p{L}, \p{N} and \s.
// (?i:...) folds ASCII case only (the long s U+017F is not treated as 's').
#ifndef TERN_TOK_PRETOK_H
#define TERN_TOK_PRETOK_H

#include <stddef.h>

typedef enum {
    TERN_PRETOK_GPT2 = 0,
    TERN_PRETOK_SMOLLM,
    TERN_PRETOK_LLAMA3,
} tern_pretok_kind;

// Maps a vocabulary's pre value to a scanner: "gpt2", "default" and "" (no
// pre-tokenizer recorded) -> gpt2; "smollm"; "llama3" and "llama-bpe" (the
// name llama.cpp gives it) -> llama3. Returns -1 for anything else.
int tern_pretok_from_name(const char *name);

// Receives one piece: bytes [start, end) of the text given to tern_pretokenize.
typedef int (*tern_pretok_emit)(void *ctx, size_t start, size_t end);

// Splits text into pieces, in order, covering every byte. Returns 0, -1 when
// out of memory, or the first non-zero value `emit` returned.
int tern_pretokenize(tern_pretok_kind kind, const char *text, size_t len, tern_pretok_emit emit, void *ctx);

#endif
