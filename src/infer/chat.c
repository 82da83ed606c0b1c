#include "infer/chat.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"

int tern_chat_session_init(tern_chat_session *c, const tern_model *m, const tern_tokenizer *tok, int tmpl,
                           const tern_gen_opts *o) {
    memset(c, 0, sizeof *c);
    if (!tern_chat_end_of_turn(tmpl)) return tern_errorf("unknown chat template id %d", tmpl);
    c->m = m, c->tok = tok, c->tmpl = tmpl, c->n_predict = o->n_predict;
    c->eot_id = tern_chat_eot_id(&m->vocab, tmpl);
    if (tern_gen_setup(m, o, &c->s, &c->packed, &c->smp)) return -1;
    c->cache = malloc((size_t)c->s.max_seq * sizeof *c->cache);
    if (!c->cache) {
        tern_chat_session_free(c);
        return tern_errorf("out of memory");
    }
    return 0;
}

void tern_chat_session_free(tern_chat_session *c) {
    tern_gen_teardown(&c->s, c->packed, &c->smp);
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
static int prompt_ids(const tern_chat_session *c, const tern_chat_msg *msgs, int n, int **ids, int *n_ids) {
    const tern_vocab *v = &c->m->vocab;
    const char *bos = tern_vocab_bos_text(v);
    char *prompt = tern_chat_render(c->tmpl, msgs, n, 1, bos, tern_vocab_eos_text(v));
    if (!prompt) return -1;
    int add_bos = tern_tokenizer_add_bos(c->tok) && !(bos && *bos && !strncmp(prompt, bos, strlen(bos)));
    int rc = tern_chat_tokenize(c->tok, v, prompt, add_bos, ids, n_ids);
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
    if (prompt_ids(c, msgs, n, &ids, &n_ids)) return -1;
    if (n_ids >= c->s.max_seq) {
        free(ids);
        return tern_errorf("the conversation (%d tokens) no longer fits the context of %d tokens; /reset starts a new "
                           "one (or raise --ctx)", n_ids, c->s.max_seq);
    }
    // Reuse the cached prefix; the last prompt token always runs (its logits start the reply).
    int keep = 0;
    while (keep < c->n_cache && keep < n_ids - 1 && c->cache[keep] == ids[keep]) keep++;
    c->n_cache = keep;
    double t0 = tern_now_sec();
    int rc = tern_forward(&c->s, ids + keep, n_ids - keep, keep, NULL);
    if (rc == 0) {
        memcpy(c->cache + keep, ids + keep, (size_t)(n_ids - keep) * sizeof *ids);
        c->n_cache = n_ids;
        for (int i = keep; i < n_ids; i++) tern_sampler_accept(&c->smp, ids[i]);
    }
    double t1 = tern_now_sec();
    stats->prompt_tokens = n_ids - keep;
    stats->prompt_sec = t1 - t0;
    reply_buf r = {NULL, 0, 0, fn, user};
    int n_predict = c->n_predict > 0 ? c->n_predict : c->s.max_seq;
    if (rc == 0)
        rc = tern_decode(&c->s, &c->smp, c->tok, ids[n_ids - 1], n_ids, n_predict, c->eot_id, keep_piece, &r,
                         stats, &c->n_cache, c->cache);
    stats->gen_sec = tern_now_sec() - t1;
    free(ids);
    if (rc == 0 && reply && !r.text && !(r.text = calloc(1, 1))) rc = tern_errorf("out of memory");
    if (rc || !reply) free(r.text);
    else *reply = r.text;
    return rc;
}
