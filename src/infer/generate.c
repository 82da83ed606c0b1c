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

int tern_gen_setup(const tern_model *m, const tern_gen_opts *o, tern_session *s, tern_packed **packed,
                   tern_sampler *smp) {
    memset(smp, 0, sizeof *smp);
    *packed = NULL;
    if (tern_session_init(s, m, o->ctx > 0 ? o->ctx : 0, o->batch > 0 ? o->batch : 256)) return -1;
    float penalty = o->repeat_penalty > 0 ? o->repeat_penalty : 1.0f;
    if (tern_session_use_native(s, packed) || tern_sampler_init(smp, m->cfg.vocab_size, o->temp, o->top_p, o->seed) ||
        tern_sampler_set_filters(smp, o->top_k, o->min_p, penalty, penalty != 1 ? o->repeat_last_n : 0)) {
        tern_gen_teardown(s, *packed, smp);
        return -1;
    }
    return 0;
}

void tern_gen_teardown(tern_session *s, tern_packed *packed, tern_sampler *smp) {
    tern_sampler_free(smp);
    tern_session_free(s);
    tern_packed_free(packed);
}

int tern_decode(tern_session *s, tern_sampler *smp, const tern_tokenizer *tok, int prev, int pos, int n_predict,
                int stop_id, tern_gen_piece_fn fn, void *user, tern_gen_stats *stats, int *end_pos, int *run_ids) {
    char piece[512];
    for (int i = 0; i < n_predict; i++) {
        int next = tern_sample(smp, s->logits);
        if (next == stop_id || tern_tokenizer_is_eog(tok, next)) {
            stats->stopped_eog = 1;
            break;
        }
        size_t len = tern_token_to_bytes(tok, prev, next, piece, sizeof piece);
        stats->generated++;
        tern_sampler_accept(smp, next);
        prev = next;
        if (fn(piece, len < sizeof piece ? len : sizeof piece, user)) {
            stats->stopped_user = 1;
            break;
        }
        if (i + 1 == n_predict) break;
        if (pos == s->max_seq) { // the next token would need position max_seq
            stats->stopped_ctx = 1;
            break;
        }
        if (tern_forward(s, &next, 1, pos, NULL)) return -1;
        if (run_ids) run_ids[pos] = next;
        pos++;
    }
    if (end_pos) *end_pos = pos;
    return 0;
}

int tern_generate_cb(const tern_model *m, const tern_tokenizer *tok, const char *prompt, const tern_gen_opts *o,
                     tern_gen_piece_fn fn, void *user, tern_gen_stats *stats) {
    memset(stats, 0, sizeof *stats);
    int *ids = NULL, n_ids = 0;
    if (tern_tokenize(tok, prompt, strlen(prompt), tern_tokenizer_add_bos(tok), &ids, &n_ids)) return -1;
    if (n_ids == 0) {
        // Nothing to condition on: start from BOS even when the vocabulary does not add it.
        int bos = tern_tokenizer_bos(tok);
        free(ids);
        if (bos < 0) return tern_errorf("empty prompt and the vocabulary has no BOS token");
        ids = malloc(sizeof(int));
        if (!ids) return tern_errorf("out of memory");
        ids[0] = bos;
        n_ids = 1;
    }
    tern_session s;
    tern_sampler smp;
    tern_packed *packed;
    if (tern_gen_setup(m, o, &s, &packed, &smp)) {
        free(ids);
        return -1;
    }
    int rc = -1;
    for (int i = 0; i < n_ids; i++) tern_sampler_accept(&smp, ids[i]);
    stats->ctx = s.max_seq;
    // Positions 0..max_seq-1 exist: a prompt of max_seq tokens still yields one
    // token, and a one-token prompt yields max_seq (as llama2.c's run.c does).
    if (n_ids > s.max_seq) {
        tern_errorf("prompt of %d tokens does not fit the context of %d", n_ids, s.max_seq);
        goto done;
    }
    double t0 = tern_now_sec();
    if (tern_forward(&s, ids, n_ids, 0, NULL)) goto done;
    double t1 = tern_now_sec();
    stats->prompt_tokens = n_ids;
    stats->prompt_sec = t1 - t0;
    if (tern_decode(&s, &smp, tok, ids[n_ids - 1], n_ids, o->n_predict, -1, fn, user, stats, NULL, NULL)) goto done;
    stats->gen_sec = tern_now_sec() - t1;
    rc = 0;
done:
    tern_gen_teardown(&s, packed, &smp);
    free(ids);
    return rc;
}
