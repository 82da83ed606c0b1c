#include "infer/chat.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"

int tern_chat_session_init(tern_chat_session *c, const tern_model *m, const tern_tokenizer *tok, int tmpl,
                           const tern_gen_opts *o) {
    memset(c, 0, sizeof *c);
    if (!tern_chat_end_of_turn(tmpl)) return tern_errorf("unknown chat template id %d", tmpl);
    c->m = m, c->tok = tok, c->tmpl = tmpl, c->o = *o;
    c->eot_id = tern_chat_eot_id(&m->vocab, tmpl);
    if (tern_gen_session(&c->s, &c->packed, m, o)) return -1;
    c->cache = malloc((size_t)c->s.max_seq * sizeof *c->cache);
    if (!c->cache) {
        tern_gen_session_free(&c->s, c->packed);
        return tern_errorf("out of memory");
    }
    return 0;
}

void tern_chat_session_free(tern_chat_session *c) {
    if (c->cache) tern_gen_session_free(&c->s, c->packed); // set up when cache is
    free(c->cache);
    memset(c, 0, sizeof *c);
}

void tern_chat_session_reset(tern_chat_session *c) { c->n_cache = 0; }

int tern_chat_session_n_ctx(const tern_chat_session *c) { return c->s.max_seq; }

// The reply as it streams: each piece is kept and passed on.
typedef struct {
    char *text;
    size_t n, cap;
    tern_gen_piece_fn fn;
    void *user;
} reply_buf;

static int keep_piece(const char *piece, size_t len, void *user) {
    reply_buf *r = user;
    if (r->n + len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        while (cap < r->n + len + 1) cap *= 2;
        char *p = realloc(r->text, cap);
        if (!p) return tern_errorf("out of memory"), 1;
        r->text = p, r->cap = cap;
    }
    memcpy(r->text + r->n, piece, len);
    r->n += len;
    r->text[r->n] = 0;
    return r->fn ? r->fn(piece, len, r->user) : 0;
}

// The rendered conversation as tokens; BOS added only when the vocabulary adds
// it and the template did not already write it.
int tern_chat_prompt_ids(const tern_model *m, const tern_tokenizer *tok, int tmpl, const tern_chat_msg *msgs, int n,
                         int **ids, int *n_ids) {
    const tern_vocab *v = &m->vocab;
    const char *bos = tern_vocab_bos_text(v);
    char *prompt = tern_chat_render(tmpl, msgs, n, 1, bos, tern_vocab_eos_text(v));
    if (!prompt) return -1;
    int add_bos = tern_tokenizer_add_bos(tok) && !(bos && *bos && !strncmp(prompt, bos, strlen(bos)));
    int rc = tern_chat_tokenize(tok, v, prompt, add_bos, ids, n_ids);
    free(prompt);
    if (rc == 0 && *n_ids == 0) {
        free(*ids);
        return tern_errorf("the chat template renders this conversation as an empty prompt");
    }
    return rc;
}

int tern_chat_session_reply(tern_chat_session *c, const tern_chat_msg *msgs, int n, tern_gen_piece_fn fn, void *user,
                            char **reply, tern_gen_stats *stats) {
    memset(stats, 0, sizeof *stats);
    stats->ctx = c->s.max_seq;
    if (reply) *reply = NULL;
    int *ids, n_ids;
    if (tern_chat_prompt_ids(c->m, c->tok, c->tmpl, msgs, n, &ids, &n_ids)) return -1;
    if (n_ids >= c->s.max_seq) {
        free(ids);
        return tern_errorf("the conversation (%d tokens) no longer fits the context of %d tokens; /reset starts a new "
                           "one (or raise --ctx)", n_ids, c->s.max_seq);
    }
    // Reuse the cached prefix (tern_gen_begin runs the last prompt token again in any case).
    int keep = 0;
    while (keep < c->n_cache && keep < n_ids && c->cache[keep] == ids[keep]) keep++;
    tern_gen_opts o = c->o;
    o.n_predict = o.n_predict > 0 ? o.n_predict : c->s.max_seq;
    tern_gen_run g;
    c->n_cache = 0; // until the prompt has run
    int rc = tern_gen_begin(&g, &c->s, c->tok, ids, n_ids, keep, &o);
    if (rc == 0) {
        memcpy(c->cache, ids, (size_t)n_ids * sizeof *ids);
        g.stop_id = c->eot_id;
        reply_buf r = {NULL, 0, 0, fn, user};
        char piece[512];
        size_t len;
        while ((rc = tern_gen_next(&g, piece, sizeof piece, &len)) == 1) {
            if (g.pos < c->s.max_seq) c->cache[g.pos] = g.prev; // run at position pos next
            if (keep_piece(piece, len, &r)) {
                g.st.stopped_user = 1;
                break;
            }
        }
        tern_gen_end(&g);
        c->n_cache = g.pos;
        *stats = g.st;
        stats->prompt_tokens = n_ids - (keep < n_ids ? keep : n_ids - 1); // run for this turn
        rc = rc < 0 ? -1 : 0;
        if (rc == 0 && reply && !r.text && !(r.text = calloc(1, 1))) rc = tern_errorf("out of memory");
        if (rc || !reply) free(r.text);
        else *reply = r.text;
    }
    free(ids);
    return rc;
}
