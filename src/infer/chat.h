// Multi-turn chat on a model: each reply renders the whole conversation with
// the chat template (tok/chat.h), runs only the tokens the KV cache does not
// already hold (the longest common prefix of the previous turn's tokens is
// kept), and generates until the template's end-of-turn token. The prompt is
// tokenized with its special tokens parsed (tern_chat_tokenize), BOS first
// when the vocabulary adds BOS and the template did not already write it (as
// llama.cpp does; transformers' apply_chat_template adds none itself).
#ifndef TERN_INFER_CHAT_H
#define TERN_INFER_CHAT_H

#include "infer/generate.h"
#include "tok/chat.h"

typedef struct {
    const tern_model *m;
    const tern_tokenizer *tok;
    int tmpl;        // tok/chat.h template id
    int eot_id;      // end-of-turn token (-1: end-of-generation tokens only)
    tern_gen_opts o; // sampling; o.n_predict: reply tokens at most (<= 0: until end of turn or a full context)
    tern_session s;
    tern_packed *packed;
    int *cache;      // tokens whose K/V are in s, positions 0..n_cache-1
    int n_cache;
} tern_chat_session;

// Sets up a session: o gives the context, batch, sampling and n_predict;
// tmpl from tern_chat_template_pick. m and tok must outlive it.
int tern_chat_session_init(tern_chat_session *c, const tern_model *m, const tern_tokenizer *tok, int tmpl,
                           const tern_gen_opts *o);
void tern_chat_session_free(tern_chat_session *c);
// Forgets the cached tokens (the next reply runs its whole prompt).
void tern_chat_session_reset(tern_chat_session *c);
// The context length in tokens.
int tern_chat_session_n_ctx(const tern_chat_session *c);

// Generates the assistant's reply to msgs[0..n) (the whole conversation so
// far, normally ending with a user turn): each piece goes to fn, and *reply
// (may be NULL) receives the whole reply, malloc'd. stats: prompt_tokens =
// tokens run for this turn (not those reused from the cache), generated,
// stopped_eog (end of turn), stopped_ctx (the context filled: the reply is
// cut), stopped_user. A conversation that no longer fits the context is an
// error saying so (the session is unchanged).
int tern_chat_session_reply(tern_chat_session *c, const tern_chat_msg *msgs, int n, tern_gen_piece_fn fn, void *user,
                            char **reply, tern_gen_stats *stats);

// The tokens of a conversation rendered with template tmpl and an assistant
// turn opened: special tokens of the template as tokens, BOS added when the
// vocabulary adds it and the template did not write it. *ids malloc'd.
int tern_chat_prompt_ids(const tern_model *m, const tern_tokenizer *tok, int tmpl, const tern_chat_msg *msgs, int n,
                         int **ids, int *n_ids);

#endif
