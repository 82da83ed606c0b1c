// Tokenizers built from a tern_vocab: SentencePiece-style BPE (SPM) and
// byte-level BPE (GPT-2 style). Both encode UTF-8 text to ids and decode ids
// back to the exact bytes.
//
// SPM (TERN_VOCAB_SPM): ' ' becomes U+2581, which is also prepended when
// add_space_prefix; the text splits into UTF-8 characters (an invalid byte is
// a character of its own); the adjacent pair whose concatenation is a normal
// or user-defined piece with the highest score merges first (ties: leftmost),
// exactly as SentencePiece's BPE does. What is left that is not a piece falls
// back to <0xNN> byte tokens (or one unk when the vocabulary has none).
// Control/byte/unknown pieces are never formed from text: "<s>" or "<0x41>"
// in the input stay ordinary characters.
//
// Byte-level BPE (TERN_VOCAB_BPE): the text is first split on exact
// occurrences of control and user-defined token strings (longest first at the
// leftmost position), each of which becomes that token, as llama.cpp/HF do
// with special-token parsing on. Between them, the pre-tokenizer chosen by
// vocab->pre (tok/pretok.h: gpt2/default, smollm, llama3/llama-bpe; anything
// else is refused by tern_tokenizer_init) cuts pieces; each piece's bytes map
// to GPT-2's byte characters and merge by rank. llama3 uses ignore_merges (a
// piece that is a whole token is taken as is). A byte the vocabulary has no
// token for (SmolLM2 lacks 0x04, 0xFF, ...) becomes the unk token only when
// that is a genuine UNKNOWN token; otherwise it is dropped, as HF does.
#ifndef TERN_TOK_TOKENIZER_H
#define TERN_TOK_TOKENIZER_H

#include <stddef.h>

#include "io/model.h"

typedef struct tern_tokenizer tern_tokenizer;

// Builds lookup tables from `v` (which must outlive the tokenizer).
// Fails with a clear error for an unknown vocabulary type or pre-tokenizer.
int tern_tokenizer_init(tern_tokenizer **out, const tern_vocab *v);
void tern_tokenizer_free(tern_tokenizer *t);

// Encodes `len` bytes of `text`. Adds BOS first when add_bos is set and the
// vocabulary has one. *ids is malloc'd (caller frees); returns 0 or -1.
// Invalid UTF-8 is not an error: SPM falls back to byte tokens, byte-level BPE
// encodes raw bytes.
int tern_tokenize(const tern_tokenizer *t, const char *text, size_t len, int add_bos, int **ids,
                  int *n_ids);

// Bytes of one token as it appears in decoded text. For SPM `prev` matters:
// the leading space of the first piece after BOS, or at the start (prev < 0),
// is dropped when add_space_prefix (SentencePiece convention). SPM control
// tokens decode to "", unk to " \u2047 " (as SentencePiece). Byte-level
// control/user-defined tokens decode to their own text, so decoding stays the
// inverse of encoding with special tokens in the text. Out-of-range ids give
// "". Returns the token's byte count and writes at most `cap` of those bytes
// into buf.
size_t tern_token_to_bytes(const tern_tokenizer *t, int prev, int id, char *buf, size_t cap);

// Decodes a whole id sequence into a malloc'd NUL-terminated string; fails on
// an out-of-range id. decode(encode(text)) == text for any bytes, except that a
// literal U+2581 decodes as ' ' with SPM and bytes without a token vanish with
// byte-level BPE.
int tern_detokenize(const tern_tokenizer *t, const int *ids, int n_ids, char **text, size_t *len);

int tern_tokenizer_bos(const tern_tokenizer *t);
int tern_tokenizer_eos(const tern_tokenizer *t);
// End of generation: EOS, and for byte-level vocabularies also <|im_end|>,
// <|endoftext|>, <|eot_id|>, <|end_of_text|>, <|eom_id|>, <end_of_turn> and
// <|end|> when present.
int tern_tokenizer_is_eog(const tern_tokenizer *t, int id);
int tern_tokenizer_add_bos(const tern_tokenizer *t);        // does the vocabulary add BOS?

#endif
