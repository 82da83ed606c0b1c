// Chat templates (tok/chat.h): a traits table of the known templates, each
// with the markers that recognise its Jinja text and a renderer that follows
// the reference template statement by statement.
#include "tok/chat.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

// ---- output buffer -------------------------------------------------------------

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void put(sbuf *b, const char *s) { put_n(b, s, strlen(s)); }

// ---- Python's str.strip() (Jinja's trim filter), on UTF-8 -------------------------

// Code points Python's str.isspace() accepts.
static int py_space(unsigned cp) {
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

// Decodes the UTF-8 sequence of k bytes at s (k from its lead byte); 0xffffffff when malformed.
static unsigned utf8_at(const unsigned char *s, size_t k) {
    static const unsigned char lead_mask[5] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    unsigned cp = s[0] & lead_mask[k];
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0xffffffffu;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    return cp;
}

static size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1; }

// Appends s without leading and trailing Python whitespace.
static void put_stripped(sbuf *b, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str), i = 0;
    while (i < n) { // leading
        size_t k = utf8_len(s[i]);
        if (k > n - i || !py_space(utf8_at(s + i, k))) break;
        i += k;
    }
    size_t end = n;
    while (end > i) { // trailing: step back to the last character's lead byte
        size_t j = end - 1;
        while (j > i && (s[j] & 0xc0) == 0x80 && end - j < 4) j--;
        size_t k = utf8_len(s[j]);
        if (j + k != end || !py_space(utf8_at(s + j, k))) break;
        end = j;
    }
    put_n(b, str + i, end - i);
}

// ---- the templates ------------------------------------------------------------------

typedef struct {
    const tern_chat_msg *m;
    int n, add_assistant;
    const char *bos, *eos;
    const char *name;        // for error messages
    const char *default_sys; // chatml: system prompt when the conversation has none
} render_args;

static int is_role(const tern_chat_msg *m, const char *role) { return strcmp(m->role, role) == 0; }

// The reference templates' alternation check: user at even positions (of the
// loop's messages), anything else at odd ones.
static int alternates(const render_args *a, const tern_chat_msg *m, int n) {
    for (int i = 0; i < n; i++)
        if (is_role(&m[i], "user") != (i % 2 == 0))
            return tern_errorf("chat template %s: Conversation roles must alternate user/assistant/user/assistant/...",
                               a->name);
    return 0;
}

static int render_chatml(const render_args *a, sbuf *b) {
    for (int i = 0; i < a->n; i++) {
        if (i == 0 && a->default_sys && !is_role(&a->m[0], "system")) {
            put(b, "<|im_start|>system\n");
            put(b, a->default_sys);
            put(b, "<|im_end|>\n");
        }
        put(b, "<|im_start|>"), put(b, a->m[i].role), put(b, "\n"), put(b, a->m[i].content), put(b, "<|im_end|>\n");
    }
    if (a->add_assistant) put(b, "<|im_start|>assistant\n");
    return 0;
}

static int render_llama3(const render_args *a, sbuf *b) {
    for (int i = 0; i < a->n; i++) {
        if (i == 0) put(b, a->bos);
        put(b, "<|start_header_id|>"), put(b, a->m[i].role), put(b, "<|end_header_id|>\n\n");
        put_stripped(b, a->m[i].content);
        put(b, "<|eot_id|>");
    }
    if (a->add_assistant) put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return 0;
}

static int render_llama2(const render_args *a, sbuf *b) {
    const tern_chat_msg *m = a->m;
    int n = a->n;
    const char *sys = NULL;
    if (n > 0 && is_role(&m[0], "system")) sys = m[0].content, m++, n--;
    if (alternates(a, m, n)) return -1;
    for (int i = 0; i < n; i++) {
        sbuf content = {0};
        if (i == 0 && sys) put(&content, "<<SYS>>\n"), put(&content, sys), put(&content, "\n<</SYS>>\n\n");
        put(&content, m[i].content);
        if (content.oom) return free(content.p), tern_errorf("out of memory");
        if (is_role(&m[i], "user")) {
            put(b, a->bos), put(b, "[INST] "), put_stripped(b, content.p), put(b, " [/INST]");
        } else if (is_role(&m[i], "assistant")) {
            put(b, " "), put_stripped(b, content.p), put(b, " "), put(b, a->eos);
        }
        free(content.p);
    }
    return 0;
}

static int render_mistral(const render_args *a, sbuf *b) {
    put(b, a->bos);
    for (int i = 0; i < a->n; i++) {
        if (alternates(a, a->m, i + 1)) return -1; // checked message by message, as the reference does
        if (is_role(&a->m[i], "user")) put(b, "[INST] "), put(b, a->m[i].content), put(b, " [/INST]");
        else if (is_role(&a->m[i], "assistant")) put(b, a->m[i].content), put(b, a->eos);
        else return tern_errorf("chat template %s: Only user and assistant roles are supported!", a->name);
    }
    return 0;
}

static int render_zephyr(const render_args *a, sbuf *b) {
    for (int i = 0; i < a->n; i++) {
        put(b, "<|"), put(b, a->m[i].role), put(b, "|>\n"), put(b, a->m[i].content), put(b, a->eos), put(b, "\n");
        if (i == a->n - 1 && a->add_assistant) put(b, "<|assistant|>\n");
    }
    return 0;
}

static int render_gemma(const render_args *a, sbuf *b) {
    put(b, a->bos);
    if (a->n > 0 && is_role(&a->m[0], "system"))
        return tern_errorf("chat template %s: System role not supported", a->name);
    if (alternates(a, a->m, a->n)) return -1;
    for (int i = 0; i < a->n; i++) {
        put(b, "<start_of_turn>"), put(b, is_role(&a->m[i], "assistant") ? "model" : a->m[i].role), put(b, "\n");
        put_stripped(b, a->m[i].content);
        put(b, "<end_of_turn>\n");
    }
    if (a->add_assistant) put(b, "<start_of_turn>model\n");
    return 0;
}

typedef struct {
    const char *name;
    const char *eot;            // end-of-turn text
    int eot_is_eos;             // the template ends turns with eos_token
    const char *markers[4];     // all present in a template text of this kind (NULL-terminated)
    const char *forbid;         // absent from it (NULL: no condition)
    const char *default_sys;
    int (*render)(const render_args *, sbuf *);
} chat_traits;

// Detection tries the entries in this order: the more specific first.
static const chat_traits TEMPLATES[TERN_CHAT_COUNT] = {
    [TERN_CHAT_CHATML] = {"chatml", "<|im_end|>", 0, {"<|im_start|>", "<|im_end|>"}, NULL, NULL, render_chatml},
    [TERN_CHAT_SMOLLM2] = {"smollm2", "<|im_end|>", 0, {"<|im_start|>", "<|im_end|>", "named SmolLM"}, NULL,
                           "You are a helpful AI assistant named SmolLM, trained by Hugging Face", render_chatml},
    [TERN_CHAT_LLAMA3] = {"llama3", "<|eot_id|>", 0, {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}, NULL,
                          NULL, render_llama3},
    [TERN_CHAT_LLAMA2] = {"llama2", "</s>", 1, {"[INST]", "<<SYS>>"}, NULL, NULL, render_llama2},
    [TERN_CHAT_MISTRAL] = {"mistral", "</s>", 1, {"[INST]", "[/INST]"}, NULL, NULL, render_mistral},
    [TERN_CHAT_ZEPHYR] = {"zephyr", "</s>", 1, {"<|user|>", "<|assistant|>", "eos_token"}, "<|end|>", NULL,
                          render_zephyr},
    [TERN_CHAT_GEMMA] = {"gemma", "<end_of_turn>", 0, {"<start_of_turn>", "<end_of_turn>"}, NULL, NULL, render_gemma},
};

static const int DETECT_ORDER[TERN_CHAT_COUNT] = {TERN_CHAT_SMOLLM2, TERN_CHAT_CHATML, TERN_CHAT_LLAMA3,
                                                  TERN_CHAT_GEMMA,   TERN_CHAT_LLAMA2, TERN_CHAT_MISTRAL,
                                                  TERN_CHAT_ZEPHYR};

int tern_chat_template_from_name(const char *name) {
    for (int i = 0; name && i < TERN_CHAT_COUNT; i++)
        if (strcmp(name, TEMPLATES[i].name) == 0) return i;
    return -1;
}

const char *tern_chat_template_name(int tmpl) {
    return tmpl >= 0 && tmpl < TERN_CHAT_COUNT ? TEMPLATES[tmpl].name : "?";
}

const char *tern_chat_template_names(void) { return "chatml, smollm2, llama3, llama2, mistral, zephyr, gemma"; }

static int matches(const chat_traits *t, const char *jinja) {
    for (int k = 0; k < 4 && t->markers[k]; k++)
        if (!strstr(jinja, t->markers[k])) return 0;
    return !t->forbid || !strstr(jinja, t->forbid);
}

int tern_chat_template_detect(const char *jinja) {
    for (int i = 0; jinja && i < TERN_CHAT_COUNT; i++)
        if (matches(&TEMPLATES[DETECT_ORDER[i]], jinja)) return DETECT_ORDER[i];
    return -1;
}

const char *tern_chat_end_of_turn(int tmpl) { return tmpl >= 0 && tmpl < TERN_CHAT_COUNT ? TEMPLATES[tmpl].eot : NULL; }

char *tern_chat_render(int tmpl, const tern_chat_msg *msgs, int n, int add_assistant, const char *bos,
                       const char *eos) {
    if (tmpl < 0 || tmpl >= TERN_CHAT_COUNT) return tern_errorf("unknown chat template id %d", tmpl), NULL;
    if (n < 0 || (n > 0 && !msgs)) return tern_errorf("chat: %d messages", n), NULL;
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content) return tern_errorf("chat message %d has no role or content", i + 1), NULL;
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return tern_errorf("chat message %d: unknown role '%.32s' (system, user or assistant)", i + 1, r), NULL;
    }
    const chat_traits *t = &TEMPLATES[tmpl];
    render_args a = {msgs, n, add_assistant, bos ? bos : "", eos ? eos : "", t->name, t->default_sys};
    sbuf b = {0};
    put(&b, ""); // an empty conversation still renders a string
    if (t->render(&a, &b)) {
        free(b.p);
        return NULL;
    }
    if (b.oom) {
        free(b.p);
        return tern_errorf("out of memory"), NULL;
    }
    return b.p;
}

// ---- on a model's vocabulary ----------------------------------------------------------

int tern_chat_template_pick(const tern_vocab *v, const char *name) {
    if (name) {
        int t = tern_chat_template_from_name(name);
        if (t < 0) return tern_errorf("unknown --chat-template '%s' (%s)", name, tern_chat_template_names());
        return t;
    }
    if (!v->chat_template) return tern_errorf("model has no chat template; pass --chat-template NAME");
    int t = tern_chat_template_detect(v->chat_template);
    if (t < 0)
        return tern_errorf("the model's chat template is not one tern knows; pass --chat-template NAME (%s)",
                           tern_chat_template_names());
    return t;
}

int tern_chat_eot_id(const tern_vocab *v, int tmpl) {
    const char *eot = tern_chat_end_of_turn(tmpl);
    if (!eot) return -1;
    int id = tern_vocab_find(v, eot);
    if (id < 0 && TEMPLATES[tmpl].eot_is_eos) id = v->eos_id;
    return id;
}

static const char *token_text(const tern_vocab *v, int id) {
    return id >= 0 && id < v->n_tokens && v->tokens ? v->tokens[id] : NULL;
}

const char *tern_vocab_bos_text(const tern_vocab *v) { return token_text(v, v->bos_id); }
const char *tern_vocab_eos_text(const tern_vocab *v) { return token_text(v, v->eos_id); }

// ---- tokenizing a rendered prompt ----------------------------------------------------------

static int is_special(const tern_vocab *v, int id) {
    int t = v->token_types ? v->token_types[id] : TERN_TOKEN_NORMAL;
    return (t == TERN_TOKEN_CONTROL || t == TERN_TOKEN_USER_DEFINED) && v->token_lens[id] > 0;
}

// The longest of the special tokens sp[0..n_sp) whose text starts at s, or -1.
static int special_at(const tern_vocab *v, const int *sp, int n_sp, const char *s, size_t left) {
    int best = -1;
    for (int k = 0; k < n_sp; k++) {
        int id = sp[k];
        size_t len = (size_t)v->token_lens[id];
        if (len <= left && (best < 0 || len > (size_t)v->token_lens[best]) && memcmp(s, v->tokens[id], len) == 0)
            best = id;
    }
    return best;
}

static int append_ids(int **ids, int *n, int *cap, const int *add, int k) {
    if (*n + k > *cap) {
        int c = *cap ? *cap : 64;
        while (c < *n + k) c *= 2;
        int *p = realloc(*ids, (size_t)c * sizeof *p);
        if (!p) return tern_errorf("out of memory");
        *ids = p, *cap = c;
    }
    memcpy(*ids + *n, add, (size_t)k * sizeof *add);
    *n += k;
    return 0;
}

int tern_chat_tokenize(const tern_tokenizer *tok, const tern_vocab *v, const char *text, int add_bos, int **ids,
                       int *n_ids) {
    if (v->type != TERN_VOCAB_SPM) return tern_tokenize(tok, text, strlen(text), add_bos, ids, n_ids);
    int *sp = malloc(((size_t)v->n_tokens + 1) * sizeof *sp), n_sp = 0;
    if (!sp) return tern_errorf("out of memory");
    for (int id = 0; id < v->n_tokens; id++)
        if (is_special(v, id)) sp[n_sp++] = id;
    int *out = NULL, n = 0, cap = 0, rc = 0;
    if (add_bos && v->bos_id >= 0) rc = append_ids(&out, &n, &cap, &v->bos_id, 1);
    size_t len = strlen(text), start = 0;
    for (size_t i = 0; rc == 0 && i <= len; i++) {
        int id = i < len ? special_at(v, sp, n_sp, text + i, len - i) : -1;
        if (id < 0 && i < len) continue;
        if (i > start) { // the text before it
            int *piece = NULL, k = 0;
            rc = tern_tokenize(tok, text + start, i - start, 0, &piece, &k);
            if (rc == 0) rc = append_ids(&out, &n, &cap, piece, k);
            free(piece);
        }
        if (id >= 0 && rc == 0) {
            rc = append_ids(&out, &n, &cap, &id, 1);
            i += (size_t)v->token_lens[id] - 1;
        }
        start = i + 1;
    }
    free(sp);
    if (rc) {
        free(out);
        return -1;
    }
    *ids = out;
    *n_ids = n;
    return 0;
}
