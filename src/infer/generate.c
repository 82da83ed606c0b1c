#include "infer/generate.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "infer/packed.h"
#include "infer/sampler.h"
#include "nn/transformer.h"

static int write_piece(const char *piece, size_t len, void *user) {
    FILE *out = user;
    fwrite(piece, 1, len, out);
    fflush(out);
    return 0;
}

int tern_generate(const tern_model *m, const tern_tokenizer *tok, const char *prompt, const tern_gen_opts *o,
                  FILE *out, tern_gen_stats *stats) {
    return tern_generate_cb(m, tok, prompt, o, write_piece, out, stats);
}

int tern_gen_tokenize(const tern_tokenizer *tok, const char *prompt, int **ids, int *n) {
    if (tern_tokenize(tok, prompt, strlen(prompt), tern_tokenizer_add_bos(tok), ids, n)) return -1;
    if (*n > 0) return 0;
    // Nothing to condition on: start from BOS even when the vocabulary does not add it.
    int bos = tern_tokenizer_bos(tok);
    free(*ids);
    *ids = NULL;
    if (bos < 0) return tern_errorf("empty prompt and the vocabulary has no BOS token");
    if (!(*ids = malloc(sizeof(int)))) return tern_errorf("out of memory");
    (*ids)[0] = bos;
    *n = 1;
    return 0;
}

int tern_gen_begin(tern_gen_run *g, tern_session *s, const tern_tokenizer *tok, const int *ids, int n, int reuse,
                   const tern_gen_opts *o) {
    memset(g, 0, sizeof *g);
    g->s = s, g->tok = tok, g->n_predict = o->n_predict;
    g->st.ctx = s->max_seq;
    // Positions 0..max_seq-1 exist: a prompt of max_seq tokens still yields one
    // token, and a one-token prompt yields max_seq (as llama2.c's run.c does).
    if (n < 1) return tern_errorf("empty prompt");
    if (n > s->max_seq) return tern_errorf("prompt of %d tokens does not fit the context of %d", n, s->max_seq);
    if (tern_sampler_init(&g->smp, s->cfg.vocab_size, o->temp, o->top_p, o->seed)) return -1;
    float penalty = o->repeat_penalty > 0 ? o->repeat_penalty : 1.0f;
    if (tern_sampler_set_filters(&g->smp, o->top_k, o->min_p, penalty, penalty != 1 ? o->repeat_last_n : 0)) {
        tern_sampler_free(&g->smp);
        return -1;
    }
    for (int i = 0; i < n; i++) tern_sampler_accept(&g->smp, ids[i]);
    reuse = reuse < 0 ? 0 : reuse > n - 1 ? n - 1 : reuse;
    double t0 = tern_now_sec();
    if (tern_forward(s, ids + reuse, n - reuse, reuse, NULL)) {
        tern_sampler_free(&g->smp);
        return -1;
    }
    g->t_gen = tern_now_sec();
    g->st.prompt_tokens = n;
    g->st.prompt_sec = g->t_gen - t0;
    g->prev = ids[n - 1], g->pos = n;
    g->stop_id = -1;
    g->done = g->n_predict <= 0;
    return 0;
}

int tern_gen_next(tern_gen_run *g, char *piece, size_t cap, size_t *len) {
    *len = 0;
    if (g->done) return 0;
    if (g->pending) {
        if (g->pos == g->s->max_seq) { // the next token would need position max_seq
            g->st.stopped_ctx = 1, g->done = 1;
            return 0;
        }
        if (tern_forward(g->s, &g->prev, 1, g->pos, NULL)) return -1;
        g->pos++, g->pending = 0;
    }
    int next = tern_sample(&g->smp, g->s->logits);
    if (next == g->stop_id || tern_tokenizer_is_eog(g->tok, next)) {
        g->st.stopped_eog = 1, g->done = 1;
        return 0;
    }
    size_t n = tern_token_to_bytes(g->tok, g->prev, next, piece, cap);
    *len = n < cap ? n : cap;
    tern_sampler_accept(&g->smp, next);
    g->prev = next, g->pending = 1;
    g->done = ++g->st.generated == g->n_predict;
    return 1;
}

void tern_gen_end(tern_gen_run *g) {
    g->st.gen_sec = tern_now_sec() - g->t_gen;
    tern_sampler_free(&g->smp);
}

int tern_gen_session(tern_session *s, tern_packed **packed, const tern_model *m, const tern_gen_opts *o) {
    *packed = NULL;
    if (tern_session_init(s, m, o->ctx > 0 ? o->ctx : 0, o->batch > 0 ? o->batch : 256)) return -1;
    if (tern_session_set_format(s, o->format ? o->format : "native", 0, packed)) {
        tern_gen_session_free(s, *packed);
        return -1;
    }
    return 0;
}

void tern_gen_session_free(tern_session *s, tern_packed *packed) {
    tern_session_free(s);
    tern_packed_free(packed);
}

int tern_generate_cb(const tern_model *m, const tern_tokenizer *tok, const char *prompt, const tern_gen_opts *o,
                     tern_gen_piece_fn fn, void *user, tern_gen_stats *stats) {
    memset(stats, 0, sizeof *stats);
    int *ids = NULL, n_ids = 0;
    if (tern_gen_tokenize(tok, prompt, &ids, &n_ids)) return -1;
    tern_session s;
    tern_packed *packed; // a .tern model runs its packed bytes
    if (tern_gen_session(&s, &packed, m, o)) {
        free(ids);
        return -1;
    }
    tern_gen_run g;
    int rc = -1;
    stats->ctx = s.max_seq;
    if (tern_gen_begin(&g, &s, tok, ids, n_ids, 0, o)) goto done;
    char piece[512];
    size_t len;
    while ((rc = tern_gen_next(&g, piece, sizeof piece, &len)) == 1)
        if (fn(piece, len, user)) {
            g.st.stopped_user = 1;
            break;
        }
    tern_gen_end(&g);
    *stats = g.st;
    rc = rc < 0 ? -1 : 0;
done:
    tern_gen_session_free(&s, packed);
    free(ids);
    return rc;
}
