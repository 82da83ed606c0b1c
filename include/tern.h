/* tern.h: the public C interface of libtern, ternary LLMs on CPUs.
 *
 * Load a model (Hugging Face directory, GGUF, tern's packed .tern, or a
 * llama2.c checkpoint with its tokenizer), tokenize, run an evaluation
 * context token by token, generate text with streaming, measure perplexity,
 * and quantize or pack models. Every function that can fail returns 0 on
 * success and -1 on failure; tern_error() then holds a one-line message.
 * Objects are opaque; a tern_llm may be shared by several tern_ctx, each
 * used by one thread at a time. Link with `pkg-config --cflags --libs tern`.
 */
#ifndef TERN_H
#define TERN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TERN_API __attribute__((visibility("default")))
#else
#define TERN_API
#endif

#define TERN_VERSION_MAJOR 0
#define TERN_VERSION_MINOR 2
#define TERN_VERSION_PATCH 0
#define TERN_VERSION_STRING "0.2.0"

/* The library's version ("0.2.0"), which may differ from the header's. */
TERN_API const char *tern_version(void);
/* The last error of the calling thread, one line ("" when none). */
TERN_API const char *tern_error(void);
/* Worker threads for everything that follows (0: all cores). */
TERN_API void tern_threads(int n);

/* ---- models and tokens ---------------------------------------------------- */

typedef struct tern_llm tern_llm;

/* tokenizer may be NULL (the model's own; required for llama2.c checkpoints).
   A quantized GGUF or .tern model is loaded for inference only: its packed
   weights are not expanded to FP32, so it takes about its file's size. */
TERN_API int tern_llm_load(tern_llm **out, const char *model, const char *tokenizer);
TERN_API void tern_llm_free(tern_llm *llm);
TERN_API int tern_llm_n_vocab(const tern_llm *llm);
TERN_API int tern_llm_n_ctx_train(const tern_llm *llm);
TERN_API int tern_llm_bos(const tern_llm *llm); /* -1 when none */
TERN_API int tern_llm_eos(const tern_llm *llm); /* -1 when none */

/* Token ids of text[0..len) into a malloc'd array (free() it); BOS first when
 * add_bos and the vocabulary has one. */
TERN_API int tern_llm_tokenize(const tern_llm *llm, const char *text, size_t len, int add_bos, int **ids, int *n);
/* The text of ids[0..n) as a malloc'd NUL-terminated string (free() it). */
TERN_API int tern_llm_detokenize(const tern_llm *llm, const int *ids, int n, char **text);

/* ---- evaluation contexts ---------------------------------------------------- */

typedef struct tern_ctx tern_ctx;

/* n_ctx <= 0: the model's training context, at most 4096. A .tern model runs
 * its packed weights. */
TERN_API int tern_ctx_new(tern_ctx **out, const tern_llm *llm, int n_ctx);
TERN_API void tern_ctx_free(tern_ctx *ctx);
TERN_API int tern_ctx_n_ctx(const tern_ctx *ctx);
/* Runs ids[0..n) at positions pos..pos+n-1 (earlier positions already run);
 * *logits (may be NULL) points at the last token's n_vocab logits, valid
 * until the next call. */
TERN_API int tern_ctx_eval(tern_ctx *ctx, const int *ids, int n, int pos, const float **logits);

/* ---- generation ------------------------------------------------------------------- */

typedef struct {
    int n_predict;        /* tokens to generate (128) */
    int n_ctx;            /* context length, prompt included (0: the model's, at most 4096) */
    float temp;           /* 0.8; 0 = greedy */
    float top_p;          /* 0.95; 1 = off */
    int top_k;            /* 0 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off */
    int repeat_last_n;    /* 64 */
    uint64_t seed;        /* sampling seed (1) */
} tern_gen_params;

TERN_API void tern_gen_params_default(tern_gen_params *p);

/* Receives each generated piece of text (bytes, not NUL-terminated);
 * returning non-zero stops generation. */
typedef int (*tern_piece_fn)(const char *piece, size_t len, void *user);

typedef struct {
    int prompt_tokens, generated;
    double prompt_seconds, gen_seconds;
    int stopped; /* 0: n_predict reached; 1: end of text; 2: context full; 3: the callback */
} tern_gen_result;

/* Generates a continuation of prompt (the same text as `tern generate`). */
TERN_API int tern_llm_generate(const tern_llm *llm, const char *prompt, const tern_gen_params *p, tern_piece_fn fn,
                               void *user, tern_gen_result *stats);

/* ---- chat ------------------------------------------------------------------------------ */

/* Chat templates are recognised from the model's Jinja chat template
 * (GGUF tokenizer.chat_template, tokenizer_config.json) or named: "chatml",
 * "smollm2" (ChatML with SmolLM2's default system prompt), "llama3",
 * "llama2", "mistral", "zephyr", "gemma". */
#ifndef TERN_CHAT_MSG_DEFINED
#define TERN_CHAT_MSG_DEFINED
typedef struct {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* UTF-8 */
} tern_chat_msg;
#endif

/* The template id for llm: `name` when not NULL (an unknown name is an error),
 * else the model's own; -1 when the model has none or tern does not know it. */
TERN_API int tern_llm_chat_template(const tern_llm *llm, const char *name);
/* The template's name ("?" for an unknown id). */
TERN_API const char *tern_llm_chat_template_name(int tmpl);
/* msgs[0..n) rendered as the prompt text, with the assistant-turn opener when
 * add_assistant; BOS/EOS texts are the model's. malloc'd (free() it); NULL on
 * failure (e.g. a system message for gemma, as its reference template refuses). */
TERN_API char *tern_llm_chat_render(const tern_llm *llm, int tmpl, const tern_chat_msg *msgs, int n,
                                    int add_assistant);
/* The template's end-of-turn token in the model's vocabulary (-1: none). */
TERN_API int tern_llm_chat_eot(const tern_llm *llm, int tmpl);

/* A conversation with its own context: each reply runs only the tokens its
 * KV cache does not hold yet. template_name NULL: the model's template. */
typedef struct tern_chat tern_chat;
TERN_API int tern_chat_new(tern_chat **out, const tern_llm *llm, const char *template_name, const tern_gen_params *p);
TERN_API void tern_chat_free(tern_chat *chat);
/* Forgets the cache (a new conversation). */
TERN_API void tern_chat_reset(tern_chat *chat);
/* The assistant's reply to msgs[0..n) (the whole conversation so far),
 * streamed to fn (may be NULL) and, when reply is not NULL, returned whole
 * (malloc'd). Stops at the end of turn (stopped 1), p->n_predict tokens (0),
 * a full context (2: the reply is cut) or the callback (3). prompt_tokens:
 * the tokens run for this turn. */
TERN_API int tern_chat_reply(tern_chat *chat, const tern_chat_msg *msgs, int n, tern_piece_fn fn, void *user,
                             char **reply, tern_gen_result *stats);

/* ---- evaluation -------------------------------------------------------------------- */

/* llama-perplexity's perplexity of text: chunks of n_ctx tokens, the second
 * half of each scored; max_chunks 0 = all. */
TERN_API int tern_llm_perplexity(const tern_llm *llm, const char *text, size_t len, int n_ctx, int max_chunks,
                                 double *ppl, double *ppl_se);

/* ---- quantization and packing --------------------------------------------------------- */

typedef struct {
    const char *method;      /* absmean, twn, tequila, dlt, teq, rtn, uniform (NULL: the recipe's) */
    const char *recipe;      /* "cpu" or NULL */
    const char *calib;       /* calibration text file (required) */
    int group;               /* 128; -1 = whole rows */
    int bits;                /* rtn / teq / uniform (4) */
    int steps;               /* -1: the default (100, rtn 0, the recipe's) */
    int init_gptq;           /* -1: the default (GPTQ where it applies), 0: rtn, 1: gptq */
    float budget_minutes;    /* 0: none */
    float target_bits;       /* 0: none; else mixed precision, in [1.6, 8] */
    const char *keep;        /* "PATTERN[:BITS],..." or NULL */
} tern_quantize_params;

TERN_API void tern_quantize_params_default(tern_quantize_params *p);
/* Quantizes model into out: a packed model unless out ends in ".gguf" (the
 * latent fake-quant GGUF), as `tern quantize` does. */
TERN_API int tern_quantize(const char *model, const char *tokenizer, const char *out, const tern_quantize_params *p);
/* Packs a model into a .tern file; pack "2" (default when NULL) or "1.6". */
TERN_API int tern_export(const char *model, const char *tokenizer, const char *out, const char *pack);

#ifdef __cplusplus
}
#endif

#endif /* TERN_H */
