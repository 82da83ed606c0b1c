// Perplexity with llama.cpp's llama-perplexity protocol: the text is tokenized
// once (BOS first when the vocabulary adds BOS), cut into non-overlapping chunks
// of ctx tokens; each chunk's first token is replaced by BOS (when added) and
// only the second half of each chunk is scored, so every scored token sees at
// least ctx/2 tokens of context.
#ifndef TERN_EVAL_PPL_H
#define TERN_EVAL_PPL_H

#include <stdint.h>
#include <stdio.h>

#include "io/model.h"
#include "tok/tokenizer.h"

typedef struct {
    double ppl, ppl_se;   // exp(mean NLL) and its standard error (delta method)
    double nll;           // mean negative log-likelihood (nats)
    int64_t tokens;       // scored tokens
    int chunks, ctx;
    int64_t text_tokens;  // tokens in the whole text
    double seconds;
} tern_ppl_result;

// Where the running estimate goes after each chunk, as llama-perplexity
// prints it ("[1]5.1234,[2]5.3210,..." then a newline at the end); NULL (the
// default): nowhere. Process-wide: set it around one call.
void tern_ppl_set_running(FILE *f);

// format: the linear layers' storage ("f32", or see infer/packed.h); NULL = "native" (a .tern model's packed bytes, else f32).
int tern_perplexity_tokens(const tern_model *m, const int *tokens, int64_t n_tokens, int bos, int ctx,
                           int max_chunks, const char *format, tern_ppl_result *r);
int tern_perplexity_text(const tern_model *m, const tern_tokenizer *tok, const char *text, size_t len, int ctx,
                         int max_chunks, const char *format, tern_ppl_result *r);

#endif
