// The public interface (include/tern.h) over the library's layers: opaque
// handles that own a model, its tokenizer, and an inference session.
#include "tern.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "eval/ppl.h"
#include "infer/chat.h"
#include "infer/export.h"
#include "infer/generate.h"
#include "infer/packed.h"
#include "infer/quantize_file.h"
#include "io/model.h"
#include "nn/transformer.h"
#include "quant/quant.h"
#include "tok/tokenizer.h"
#include "train/trainer.h"

struct tern_llm {
    tern_model model;
    tern_tokenizer *tok;
};

struct tern_ctx {
    tern_session s;
    tern_packed *packed; // a .tern model's packed linears
};

TERN_API const char *tern_version(void) { return TERN_VERSION_STRING; }
TERN_API const char *tern_error(void) { return tern_last_error(); }
TERN_API void tern_threads(int n) { tern_set_threads(n); }

TERN_API int tern_llm_load(tern_llm **out, const char *model, const char *tokenizer) {
    *out = NULL;
    if (!model) return tern_errorf("tern_llm_load: no model path");
    tern_llm *llm = calloc(1, sizeof *llm);
    if (!llm) return tern_errorf("out of memory");
    // The API runs the native format only: packed linears keep no FP32 copy.
    if (tern_model_load_ex(&llm->model, model, tokenizer, TERN_LOAD_TOKENIZER | TERN_LOAD_PACKED)) {
        free(llm);
        return -1;
    }
    if (tern_tokenizer_init(&llm->tok, &llm->model.vocab)) {
        tern_model_free(&llm->model);
        free(llm);
        return -1;
    }
    *out = llm;
    return 0;
}

TERN_API void tern_llm_free(tern_llm *llm) {
    if (!llm) return;
    tern_tokenizer_free(llm->tok);
    tern_model_free(&llm->model);
    free(llm);
}

TERN_API int tern_llm_n_vocab(const tern_llm *llm) { return llm->model.cfg.vocab_size; }
TERN_API int tern_llm_n_ctx_train(const tern_llm *llm) { return llm->model.cfg.max_seq; }
TERN_API int tern_llm_bos(const tern_llm *llm) { return tern_tokenizer_bos(llm->tok); }
TERN_API int tern_llm_eos(const tern_llm *llm) { return tern_tokenizer_eos(llm->tok); }

TERN_API int tern_llm_tokenize(const tern_llm *llm, const char *text, size_t len, int add_bos, int **ids, int *n) {
    return tern_tokenize(llm->tok, text, len, add_bos && tern_tokenizer_bos(llm->tok) >= 0, ids, n);
}

TERN_API int tern_llm_detokenize(const tern_llm *llm, const int *ids, int n, char **text) {
    size_t len;
    return tern_detokenize(llm->tok, ids, n, text, &len);
}

TERN_API int tern_ctx_new(tern_ctx **out, const tern_llm *llm, int n_ctx) {
    *out = NULL;
    tern_ctx *c = calloc(1, sizeof *c);
    if (!c) return tern_errorf("out of memory");
    tern_gen_opts o = {.ctx = n_ctx};
    if (tern_gen_session(&c->s, &c->packed, &llm->model, &o)) {
        free(c);
        return -1;
    }
    *out = c;
    return 0;
}

TERN_API void tern_ctx_free(tern_ctx *ctx) {
    if (!ctx) return;
    tern_gen_session_free(&ctx->s, ctx->packed);
    free(ctx);
}

TERN_API int tern_ctx_n_ctx(const tern_ctx *ctx) { return ctx->s.max_seq; }

TERN_API int tern_ctx_eval(tern_ctx *ctx, const int *ids, int n, int pos, const float **logits) {
    if (n < 1 || pos < 0) return tern_errorf("tern_ctx_eval: %d tokens at position %d", n, pos);
    if (tern_forward(&ctx->s, ids, n, pos, NULL)) return -1;
    if (logits) *logits = ctx->s.logits;
    return 0;
}

TERN_API void tern_gen_params_default(tern_gen_params *p) {
    *p = (tern_gen_params){.n_predict = 128, .temp = 0.8f, .top_p = 0.95f, .repeat_penalty = 1.0f,
                           .repeat_last_n = 64, .seed = 1};
}

static void gen_result(const tern_gen_stats *st, tern_gen_result *stats) {
    if (!stats) return;
    stats->prompt_tokens = st->prompt_tokens, stats->generated = st->generated;
    stats->prompt_seconds = st->prompt_sec, stats->gen_seconds = st->gen_sec;
    stats->stopped = st->stopped_user ? 3 : st->stopped_ctx ? 2 : st->stopped_eog ? 1 : 0;
}

static tern_gen_opts gen_opts(const tern_gen_params *p) {
    tern_gen_params d;
    if (!p) tern_gen_params_default(&d), p = &d;
    return (tern_gen_opts){.n_predict = p->n_predict, .temp = p->temp, .top_p = p->top_p, .top_k = p->top_k,
                           .min_p = p->min_p, .repeat_penalty = p->repeat_penalty,
                           .repeat_last_n = p->repeat_last_n, .seed = p->seed, .ctx = p->n_ctx};
}

TERN_API int tern_llm_generate(const tern_llm *llm, const char *prompt, const tern_gen_params *p, tern_piece_fn fn,
                               void *user, tern_gen_result *stats) {
    tern_gen_opts o = gen_opts(p);
    tern_gen_stats st;
    int rc = tern_generate_cb(&llm->model, llm->tok, prompt ? prompt : "", &o, fn, user, &st);
    gen_result(&st, stats);
    return rc;
}

TERN_API int tern_llm_chat_template(const tern_llm *llm, const char *name) {
    return tern_chat_template_pick(&llm->model.vocab, name);
}

TERN_API const char *tern_llm_chat_template_name(int tmpl) { return tern_chat_template_name(tmpl); }

TERN_API char *tern_llm_chat_render(const tern_llm *llm, int tmpl, const tern_chat_msg *msgs, int n,
                                    int add_assistant) {
    const tern_vocab *v = &llm->model.vocab;
    return tern_chat_render(tmpl, msgs, n, add_assistant, tern_vocab_bos_text(v), tern_vocab_eos_text(v));
}

TERN_API int tern_llm_chat_eot(const tern_llm *llm, int tmpl) { return tern_chat_eot_id(&llm->model.vocab, tmpl); }

struct tern_chat {
    tern_chat_session s;
};

TERN_API int tern_chat_new(tern_chat **out, const tern_llm *llm, const char *template_name, const tern_gen_params *p) {
    *out = NULL;
    int tmpl = tern_chat_template_pick(&llm->model.vocab, template_name);
    if (tmpl < 0) return -1;
    tern_chat *c = calloc(1, sizeof *c);
    if (!c) return tern_errorf("out of memory");
    tern_gen_opts o = gen_opts(p);
    if (tern_chat_session_init(&c->s, &llm->model, llm->tok, tmpl, &o)) {
        free(c);
        return -1;
    }
    *out = c;
    return 0;
}

TERN_API void tern_chat_free(tern_chat *chat) {
    if (!chat) return;
    tern_chat_session_free(&chat->s);
    free(chat);
}

TERN_API void tern_chat_reset(tern_chat *chat) { tern_chat_session_reset(&chat->s); }

TERN_API int tern_chat_reply(tern_chat *chat, const tern_chat_msg *msgs, int n, tern_piece_fn fn, void *user,
                             char **reply, tern_gen_result *stats) {
    tern_gen_stats st;
    int rc = tern_chat_session_reply(&chat->s, msgs, n, fn, user, reply, &st);
    gen_result(&st, stats);
    return rc;
}

TERN_API int tern_llm_perplexity(const tern_llm *llm, const char *text, size_t len, int n_ctx, int max_chunks,
                                 double *ppl, double *ppl_se) {
    tern_ppl_result r;
    if (tern_perplexity_text(&llm->model, llm->tok, text, len, n_ctx > 0 ? n_ctx : 512, max_chunks, NULL, &r))
        return -1;
    if (ppl) *ppl = r.ppl;
    if (ppl_se) *ppl_se = r.ppl_se;
    return 0;
}

TERN_API void tern_quantize_params_default(tern_quantize_params *p) {
    *p = (tern_quantize_params){.group = 128, .bits = 4, .steps = -1, .init_gptq = -1};
}

TERN_API int tern_quantize(const char *model, const char *tokenizer, const char *out, const tern_quantize_params *p) {
    if (!model || !out || !p || !p->calib) return tern_errorf("tern_quantize: model, out and calib are required");
    tern_train_opts t;
    tern_train_opts_defaults(&t);
    t.lr = 1e-3f; // tern quantize's default (docs/methods.md)
    tern_quant_opts q;
    tern_quant_opts_defaults(&q);
    const char *name = NULL;
    if (p->recipe && tern_quant_recipe(p->recipe, &q, &t, &name)) return -1;
    if (p->method) name = p->method;
    const tern_quant_method *method = name ? tern_quant_find(name) : NULL;
    if (!method) return tern_errorf("tern_quantize: unknown method '%s' (known: %s)", name ? name : "", tern_quant_names());
    if (p->group == 0 || p->group < -1) return tern_errorf("tern_quantize: group must be -1 or at least 1");
    q.group = p->group;
    q.bits = p->bits;
    q.keep = p->keep;
    q.target_bits = p->target_bits;
    if (p->init_gptq >= 0) q.init_gptq = p->init_gptq;
    if (p->steps >= 0) t.steps = p->steps;
    if (tern_quant_apply_defaults(method, &q, &t, p->init_gptq >= 0, p->recipe != NULL, 0, p->steps >= 0)) return -1;
    if (!method->trains && t.steps > 0) return tern_errorf("tern_quantize: %s does not train: use 0 steps", name);
    t.data_path = p->calib;
    t.budget_s = 60.0 * p->budget_minutes;
    char ckpt[1100], log[1100];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", out), snprintf(log, sizeof log, "%s.log.jsonl", out);
    t.checkpoint_path = ckpt, t.log_path = log;
    tern_quantize_files f = {model, tokenizer, out, NULL};
    tern_quantize_result r;
    return tern_quantize_file(&f, method, &q, &t, &r);
}

TERN_API int tern_export(const char *model, const char *tokenizer, const char *out, const char *pack) {
    if (!model || !out) return tern_errorf("tern_export: model and out are required");
    tern_model m;
    if (tern_model_load(&m, model, tokenizer)) return -1;
    tern_export_opts e = {.pack = pack};
    int rc = tern_export_tern(&m, model, &e, out, NULL);
    tern_model_free(&m);
    return rc;
}
