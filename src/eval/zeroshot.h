// Zero-shot multiple-choice accuracy, scored as lm-evaluation-harness scores
// "multiple_choice" tasks: each choice's log-likelihood as a continuation of
// its context; acc = argmax of the summed log-likelihood, acc_norm = argmax of
// the log-likelihood divided by the choice's length in characters; standard errors
// are sample std / sqrt(n).
//
// Task files are JSONL, one item per line, in one of three layouts:
//   {"query": Q, "choices": [C0, C1, ...], "gold": k}        ARC, PIQA, BoolQ, HellaSwag
//   {"context_options": [X0, X1, ...], "continuation": Y, "gold": k}
//                                                            WinoGrande ("partial scoring":
//                                                            Y is scored after each Xi)
//   {"context": X, "continuation": Y}                        LAMBADA (lambada_openai): as
//                                                            lm-eval scores it, acc = every
//                                                            token of Y is the greedy choice,
//                                                            ppl = exp(-mean over items of
//                                                            log p(Y | X))
// The layout is picked from the first item. A field map renames fields for
// other exports: "query=ctx,choices=endings,gold=label" (keys: query, choices,
// gold, context_options, continuation; a value is a field name, a dotted path
// into nested objects such as "choices.text", or for choices/context_options
// several string fields joined by '|', e.g. "choices=sol1|sol2"). gold is an
// integer or a string of decimal digits, 0-based.
//
// Joining rule. The context is Q (or Xi) and the continuation is
// DELIM + C (or DELIM + Y). DELIM is lm-eval's target delimiter " ", except
// that it is left out when the context is empty or ends in whitespace, or the
// choice starts with whitespace (the shared PIQA queries end in "\n"; a space
// after it would be an artefact). An explicit delimiter (opts.delimiter) is
// used verbatim instead. Then, as lm-eval's _encode_pair does, trailing
// whitespace of the context moves to the front of the continuation.
//
// Tokenization (as lm-eval): ctx = encode(context) with BOS first when the
// vocabulary adds BOS; cont = encode(context + continuation)[len(ctx):]. An
// empty ctx gets BOS (or EOS) so the first continuation token has something to
// be predicted from. Sequences longer than the model's context lose tokens
// from the left of the context.
#ifndef TERN_EVAL_ZEROSHOT_H
#define TERN_EVAL_ZEROSHOT_H

#include <stdint.h>

#include "io/model.h"
#include "tok/tokenizer.h"

typedef struct {
    int line;            // 1-based line in the task file
    int n_choices, gold;
    // Text (after joining and the whitespace move); NULL for token-only items.
    char **ctx_text, **cont_text;  // [n_choices]
    double *norm_len;    // [n_choices] acc_norm divisor: characters of the choice as written
    // Token ids (filled by tern_zs_task_tokenize, or directly by the caller).
    int **ctx, *n_ctx;   // [n_choices]
    int **cont, *n_cont; // [n_choices]
    // Results of tern_zs_evaluate.
    double *ll;          // [n_choices] summed log-likelihood of the continuation
    int *greedy;         // [n_choices] 1 when every continuation token is the argmax
} tern_zs_item;

#define TERN_ZS_MAX_CHOICES 1000

typedef struct {
    char name[128];      // file base name without extension
    char path[512];      // the file (for messages)
    int n_items, cap_items;
    tern_zs_item *items;
    int n_skipped;       // malformed lines skipped (skip_bad)
    int partial;         // WinoGrande layout
    int lambada;         // LAMBADA layout: one continuation per item, greedy accuracy and perplexity
} tern_zs_task;

typedef struct {
    const char *fields;    // field map (see above) or NULL
    const char *delimiter; // explicit target delimiter or NULL for the rule above
    int skip_bad;          // skip lines that are not valid JSON objects (warning on stderr)
    int limit;             // keep only the first `limit` items (0: all)
} tern_zs_opts;

typedef struct {
    int n;
    double acc, acc_se, acc_norm, acc_norm_se;
    double seconds, items_per_s;
    int64_t tokens;        // tokens run through the model (after KV-cache reuse)
    int lambada;           // a LAMBADA task: acc = greedy continuation, ppl below (acc_norm = acc)
    double ppl;            // LAMBADA: exp(-mean over items of the continuation's log-likelihood)
    int truncated;         // choices whose continuation alone exceeded the context: only
                           // its last ctx - 1 tokens were scored
} tern_zs_result;

// Reads a task file into text items (no model needed). Errors:
// "PATH:LINE:COL: <JSON problem>", "PATH:LINE: missing field 'choices'",
// "PATH:LINE: gold 4 is outside the 4 choices", "PATH: no items",
// "PATH: unknown task layout ...".
// The same from memory (`path` names it in messages); fuzzed by fuzz/fuzz_tasks.c.
int tern_zs_task_parse(tern_zs_task *t, const char *data, size_t size, const char *path, const tern_zs_opts *o);
int tern_zs_task_read(tern_zs_task *t, const char *path, const tern_zs_opts *o);
// Tokenizes every item's contexts and continuations.
int tern_zs_task_tokenize(tern_zs_task *t, const tern_tokenizer *tok);
void tern_zs_task_free(tern_zs_task *t);

// Appends a token-level item (ids are copied; norm_len may be NULL: then the
// continuation token count is the divisor). For tests and callers with ids.
int tern_zs_task_add_tokens(tern_zs_task *t, int n_choices, int gold, const int *const *ctx, const int *n_ctx,
                            const int *const *cont, const int *n_cont, const double *norm_len);

// Scores every item (fills item->ll and item->greedy) and computes the metrics.
// The context's KV cache is shared: each choice runs only the tokens after the
// longest prefix already in the cache, and the continuation's tokens in one
// batch, computing logits only for the positions that predict them.
int tern_zs_evaluate(const tern_model *m, tern_zs_task *t, tern_zs_result *r);

// acc / acc_norm / standard errors from item->ll (already scored items).
void tern_zs_metrics(const tern_zs_task *t, tern_zs_result *r);

// Log-likelihood of one continuation given a context, with a private session
// (no cache sharing): the plain reference path, handy for checks.
int tern_zs_loglik(const tern_model *m, const int *ctx, int n_ctx, const int *cont, int n_cont, double *ll,
                   int *greedy);

#endif
