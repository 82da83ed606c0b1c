// Tokenizers built from a tern_vocab: SentencePiece-style BPE (SPM) and
// byte-level BPE (GPT-2 style). Both encode UTF-8 text to ids and decode ids
// back to the exact bytes.
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
// the leading space of the first piece after BOS is dropped (SentencePiece
// convention). Control tokens decode to "". Returns the token's byte count and
// writes at most `cap` of those bytes into buf.
size_t tern_token_to_bytes(const tern_tokenizer *t, int prev, int id, char *buf, size_t cap);

// Decodes a whole id sequence into a malloc'd NUL-terminated string.
int tern_detokenize(const tern_tokenizer *t, const int *ids, int n_ids, char **text, size_t *len);

int tern_tokenizer_bos(const tern_tokenizer *t);
int tern_tokenizer_eos(const tern_tokenizer *t);
int tern_tokenizer_is_eog(const tern_tokenizer *t, int id); // end of generation (EOS, EOT)
int tern_tokenizer_add_bos(const tern_tokenizer *t);        // does the vocabulary add BOS?

#endif
