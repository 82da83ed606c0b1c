// Training data from plain text: tokenized once (cached on disk), packed into
// sequences of seq_len + 1 tokens (inputs and shifted targets), a held-out
// validation split at the end, and a deterministic per-epoch shuffle.
#ifndef TERN_TRAIN_DATA_H
#define TERN_TRAIN_DATA_H

#include <stdint.h>

#include "tok/tokenizer.h"

typedef struct {
    int *tokens;
    int64_t n_tokens;
    int seq_len;
    int64_t n_train, n_val; // sequences; validation sequences follow the training ones
    uint64_t seed;
    // Position: epoch and index into the epoch's permutation (saved in checkpoints).
    int64_t epoch, cursor;
    int64_t *order;         // [n_train] permutation for `epoch`
} tern_dataset;

// vocab_key identifies the tokenizer (tern_vocab_fingerprint) for the token
// cache in cache_dir (NULL: no cache). val_frac in [0, 0.5]. Fails when the
// text is too short for at least one training sequence (and one validation
// sequence when val_frac > 0).
int tern_dataset_load(tern_dataset *d, const char *text_path, const tern_tokenizer *tok, uint64_t vocab_key,
                      int seq_len, double val_frac, uint64_t seed, const char *cache_dir);
// Same, from tokens already in memory (copied).
int tern_dataset_from_tokens(tern_dataset *d, const int *tokens, int64_t n, int seq_len, double val_frac,
                             uint64_t seed, const char *what);
void tern_dataset_free(tern_dataset *d);

// Next B training sequences: inputs[B, L], targets[B, L]. Wraps to a new,
// reshuffled epoch as needed.
void tern_dataset_next(tern_dataset *d, int B, int *inputs, int *targets);
// A rank's share of the next global batch of B sequences: sequences
// [first, first + count) of it go to inputs[count, L] and targets; the
// position moves past all B (every rank's data position stays the global one).
void tern_dataset_next_share(tern_dataset *d, int B, int first, int count, int *inputs, int *targets);
// Validation sequence i (0 <= i < n_val).
void tern_dataset_val(const tern_dataset *d, int64_t i, int *inputs, int *targets);
// Moves to a saved position (epoch, cursor).
int tern_dataset_seek(tern_dataset *d, int64_t epoch, int64_t cursor);

#endif
