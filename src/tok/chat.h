// Chat templates: the common Jinja chat templates of instruction-tuned models,
// recognised by their text and rendered in C, byte for byte as transformers'
// apply_chat_template renders the reference texts (tests/ref/chat_ref.py,
// fixture tests/fixtures/chat_templates.txt):
//
//   chatml   <|im_start|>ROLE\nCONTENT<|im_end|>\n (OpenHermes-2.5)
//   smollm2  ChatML as SmolLM2-Instruct writes it: its default system prompt
//            ("You are a helpful AI assistant named SmolLM, ...") when the
//            conversation has none
//   llama3   Meta-Llama-3-Instruct (BOS, headers, content trimmed, <|eot_id|>);
//            Llama 3.1+ templates are recognised as llama3, but their date /
//            tools system header is not reproduced
//   llama2   Llama-2-chat ([INST], <<SYS>> folded into the first user turn)
//   mistral  Mistral-7B-Instruct v0.1/v0.2, Mixtral (no system role)
//   zephyr   zephyr-7b-beta (<|system|>/<|user|>/<|assistant|>, EOS after each)
//   gemma    gemma-it (<start_of_turn>, assistant is "model", no system role)
//
// What a reference template refuses (a system message for gemma or mistral,
// roles that do not alternate user/assistant where it checks) is an error
// with the template's own message. Llama-2, Mistral and Gemma templates
// ignore add_generation_prompt, as their references do.
#ifndef TERN_TOK_CHAT_H
#define TERN_TOK_CHAT_H

#include "io/model.h"
#include "tok/tokenizer.h"

#ifndef TERN_CHAT_MSG_DEFINED
#define TERN_CHAT_MSG_DEFINED
typedef struct {
    const char *role;    // "system", "user" or "assistant"
    const char *content; // UTF-8
} tern_chat_msg;
#endif

enum {
    TERN_CHAT_CHATML = 0,
    TERN_CHAT_SMOLLM2,
    TERN_CHAT_LLAMA3,
    TERN_CHAT_LLAMA2,
    TERN_CHAT_MISTRAL,
    TERN_CHAT_ZEPHYR,
    TERN_CHAT_GEMMA,
    TERN_CHAT_COUNT
};

// Template id from a name ("chatml", "smollm2", "llama3", "llama2", "mistral",
// "zephyr", "gemma"); -1 if unknown.
int tern_chat_template_from_name(const char *name);
// The name of a template id ("?" when out of range).
const char *tern_chat_template_name(int tmpl);
// The known names, "chatml, smollm2, ..." (for messages).
const char *tern_chat_template_names(void);
// Template id recognised from a Jinja template text (GGUF
// tokenizer.chat_template / HF tokenizer_config.json); -1 if not recognised.
int tern_chat_template_detect(const char *jinja);
// Renders messages to a prompt (malloc'd, caller frees). add_assistant:
// append the assistant-turn opener (add_generation_prompt). bos/eos: the
// vocabulary's texts, may be NULL (then ""). NULL + tern error on failure.
char *tern_chat_render(int tmpl, const tern_chat_msg *msgs, int n, int add_assistant, const char *bos,
                       const char *eos);
// End-of-turn text of the template: "<|im_end|>" (chatml, smollm2),
// "<|eot_id|>" (llama3), "</s>" (llama2, mistral, zephyr), "<end_of_turn>"
// (gemma). NULL when out of range.
const char *tern_chat_end_of_turn(int tmpl);

// The template for a model's vocabulary: the override `name` when given (an
// unknown name is an error naming --chat-template), else the vocabulary's
// chat_template text recognised; a model without one is the error "model
// has no chat template; pass --chat-template NAME". Returns the id or -1.
int tern_chat_template_pick(const tern_vocab *v, const char *name);
// The end-of-turn token of `tmpl` in v: the token spelled as its end-of-turn
// text, else EOS when the template ends turns with the vocabulary's EOS
// (llama2, mistral, zephyr); -1 when neither exists.
int tern_chat_eot_id(const tern_vocab *v, int tmpl);
// Tokenizes a rendered prompt with the special tokens in it parsed as tokens
// (as llama.cpp and transformers do for chat prompts): byte-level BPE does
// that already; for SentencePiece vocabularies the text is cut at control and
// user-defined token texts (longest first at the leftmost position) and the
// pieces between are tokenized as text (each with the space prefix when the
// vocabulary adds one, as llama.cpp does after a special token). BOS first when
// add_bos and the vocabulary has one. *ids malloc'd.
int tern_chat_tokenize(const tern_tokenizer *tok, const tern_vocab *v, const char *text, int add_bos, int **ids,
                       int *n_ids);
// The vocabulary's BOS / EOS texts (NULL when absent), for tern_chat_render.
const char *tern_vocab_bos_text(const tern_vocab *v);
const char *tern_vocab_eos_text(const tern_vocab *v);

#endif
