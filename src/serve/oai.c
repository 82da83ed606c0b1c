#include "serve/oai.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/jsonw.h"
#include "tok/unicode.h"

void oai_set_error(oai_error *e, int status, const char *type, const char *param, const char *fmt, ...) {
    e->status = status, e->type = type, e->param = param, e->code = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

static int bad_param(oai_error *e, const char *param, const char *what) {
    oai_set_error(e, 400, "invalid_request_error", param, "'%s' must be %s", param, what);
    return -1;
}

// A number field in [lo, hi] (absent or null: left as it is).
static int get_float(const tern_json *root, const char *key, double lo, double hi, float *out, oai_error *e) {
    const tern_json *v = tern_json_get(root, key);
    if (!v || v->type == TERN_JSON_NULL) return 0;
    char what[96];
    snprintf(what, sizeof what, "a number in [%g, %g]", lo, hi);
    if (v->type != TERN_JSON_NUMBER || !(v->num >= lo && v->num <= hi)) return bad_param(e, key, what);
    *out = (float)v->num;
    return 0;
}

// An integer field in [lo, hi]; *given (may be NULL) says whether it was there.
static int get_int(const tern_json *root, const char *key, int64_t lo, int64_t hi, int64_t *out, int *given,
                   oai_error *e) {
    const tern_json *v = tern_json_get(root, key);
    if (given) *given = 0;
    if (!v || v->type == TERN_JSON_NULL) return 0;
    char what[96];
    snprintf(what, sizeof what, "an integer in [%lld, %lld]", (long long)lo, (long long)hi);
    if (v->type != TERN_JSON_NUMBER || !v->is_int || v->i < lo || v->i > hi) return bad_param(e, key, what);
    *out = v->i;
    if (given) *given = 1;
    return 0;
}

static int get_bool(const tern_json *root, const char *key, int *out, oai_error *e) {
    int b = tern_json_bool(tern_json_get(root, key), *out);
    if (b < 0) return bad_param(e, key, "a boolean");
    *out = b;
    return 0;
}

static int parse_stop(oai_request *r, const tern_json *root, oai_error *e) {
    const tern_json *v = tern_json_get(root, "stop");
    if (!v || v->type == TERN_JSON_NULL) return 0;
    if (v->type == TERN_JSON_STRING) {
        if (v->len) r->stop[r->n_stop++] = v->str;
        return 0;
    }
    if (v->type != TERN_JSON_ARRAY || v->len > OAI_MAX_STOP)
        return bad_param(e, "stop", "a string or an array of at most 4 strings");
    for (size_t i = 0; i < v->len; i++) {
        const tern_json *s = tern_json_at(v, i);
        if (s->type != TERN_JSON_STRING) return bad_param(e, "stop", "a string or an array of at most 4 strings");
        if (s->len) r->stop[r->n_stop++] = s->str;
    }
    return 0;
}

// Fields tern does not implement are refused unless they ask for the default.
static int refuse_unsupported(const tern_json *root, oai_error *e) {
    int64_t n = 1;
    if (get_int(root, "n", 1, 1, &n, NULL, e)) return -1;
    const tern_json *v = tern_json_get(root, "echo");
    if (v && v->type != TERN_JSON_NULL && v->type != TERN_JSON_FALSE) return bad_param(e, "echo", "false (echo is not supported)");
    v = tern_json_get(root, "logprobs");
    if (v && v->type != TERN_JSON_NULL && v->type != TERN_JSON_FALSE && !(v->type == TERN_JSON_NUMBER && v->num == 0))
        return bad_param(e, "logprobs", "null or false (log probabilities are not supported)");
    const char *pen[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        float p = 0;
        if (get_float(root, pen[i], -2, 2, &p, e)) return -1;
        if (p != 0) return bad_param(e, pen[i], "0 (not supported; use repeat_penalty)");
    }
    return 0;
}

// The text of a message's content: a string, or an array of {"type": "text", "text": ...} parts.
static int message_text(oai_request *r, const tern_json *c, const char **out, oai_error *e) {
    if (c->type == TERN_JSON_STRING) {
        *out = c->str;
        return 0;
    }
    if (c->type == TERN_JSON_NULL) {
        *out = "";
        return 0;
    }
    if (c->type != TERN_JSON_ARRAY) return bad_param(e, "messages", "an array of messages whose content is a string or text parts");
    size_t total = 1;
    for (size_t i = 0; i < c->len; i++) {
        const tern_json *part = tern_json_at(c, i), *t = tern_json_get(part, "text");
        if (!tern_json_str_eq(tern_json_get(part, "type"), "text") || !t || t->type != TERN_JSON_STRING)
            return bad_param(e, "messages", "an array of messages whose content parts are {\"type\": \"text\", \"text\": ...}");
        total += t->len;
    }
    // Joined parts live as long as the request: keep them in a block freed with it.
    char *s = malloc(total);
    if (!s) {
        oai_set_error(e, 500, "server_error", NULL, "out of memory");
        return -1;
    }
    size_t at = 0;
    for (size_t i = 0; i < c->len; i++) {
        const tern_json *t = tern_json_get(tern_json_at(c, i), "text");
        memcpy(s + at, t->str, t->len), at += t->len;
    }
    s[at] = 0;
    r->owned[r->n_owned++] = s; // freed with the request
    *out = s;
    return 0;
}

static int parse_messages(oai_request *r, const tern_json *root, oai_error *e) {
    const tern_json *v = tern_json_get(root, "messages");
    if (!v) return bad_param(e, "messages", "given");
    if (v->type != TERN_JSON_ARRAY || v->len == 0 || v->len > 100000)
        return bad_param(e, "messages", "a non-empty array of {\"role\", \"content\"} objects");
    size_t n = v->len;
    r->msgs = calloc(n, sizeof(oai_msg));
    r->owned = calloc(n, sizeof(char *)); // joined content parts, at most one per message
    if (!r->msgs || !r->owned) {
        oai_set_error(e, 500, "server_error", NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const tern_json *m = tern_json_at(v, i);
        const char *role = tern_json_str(tern_json_get(m, "role"));
        const tern_json *c = tern_json_get(m, "content");
        if (m->type != TERN_JSON_OBJECT || !role || !c)
            return bad_param(e, "messages", "an array of objects with a string 'role' and a 'content'");
        if (!strcmp(role, "developer")) role = "system"; // OpenAI's newer name for it
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))
            return bad_param(e, "messages", "messages whose role is system, user or assistant");
        r->msgs[i].role = role;
        if (message_text(r, c, &r->msgs[i].content, e)) return -1;
    }
    r->n_msgs = (int)n;
    return 0;
}

static int parse_prompt(oai_request *r, const tern_json *root, oai_error *e) {
    const tern_json *v = tern_json_get(root, "prompt");
    if (v && v->type == TERN_JSON_ARRAY && v->len == 1) v = tern_json_at(v, 0);
    if (!v || v->type != TERN_JSON_STRING) return bad_param(e, "prompt", "a string (or an array of one string)");
    r->prompt = v->str;
    return 0;
}

static int parse_fields(oai_request *r, const tern_json *root, oai_error *e) {
    if (r->kind == OAI_CHAT ? parse_messages(r, root, e) : parse_prompt(r, root, e)) return -1;
    const tern_json *model = tern_json_get(root, "model");
    if (model && model->type != TERN_JSON_STRING && model->type != TERN_JSON_NULL)
        return bad_param(e, "model", "a string");
    int64_t max = -1, seed = 0;
    int given = 0, seed_given = 0;
    // max_completion_tokens is the chat API's newer name for max_tokens.
    if (get_int(root, "max_tokens", 0, 1 << 30, &max, &given, e)) return -1;
    if (!given && get_int(root, "max_completion_tokens", 0, 1 << 30, &max, &given, e)) return -1;
    r->max_tokens = given ? (int)max : -1;
    if (get_float(root, "temperature", 0, 2, &r->temp, e) || get_float(root, "top_p", 0, 1, &r->top_p, e) ||
        get_float(root, "min_p", 0, 1, &r->min_p, e) || get_float(root, "repeat_penalty", 0, 100, &r->repeat_penalty, e))
        return -1;
    int64_t top_k = r->top_k;
    if (get_int(root, "top_k", 0, 1 << 30, &top_k, NULL, e)) return -1;
    r->top_k = (int)top_k;
    if (r->top_p == 0) r->top_p = 1e-6f; // OpenAI allows 0: only the most likely token
    if (get_int(root, "seed", INT64_MIN, INT64_MAX, &seed, &seed_given, e)) return -1;
    if (seed_given) r->seed = (uint64_t)seed;
    r->seed_given = seed_given;
    if (get_bool(root, "stream", &r->stream, e) || parse_stop(r, root, e) || refuse_unsupported(root, e)) return -1;
    const tern_json *so = tern_json_get(root, "stream_options");
    if (so && so->type != TERN_JSON_NULL) {
        if (so->type != TERN_JSON_OBJECT) return bad_param(e, "stream_options", "an object");
        if (get_bool(so, "include_usage", &r->include_usage, e)) return -1;
    }
    return 0;
}

int oai_parse(oai_request *r, oai_kind kind, const char *body, size_t len, const oai_defaults *d, oai_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->temp = d->temp, r->top_p = d->top_p, r->top_k = d->top_k, r->min_p = d->min_p;
    r->repeat_penalty = d->repeat_penalty, r->seed = d->seed;
    if (tern_json_parse(&r->doc, body, len, "request")) {
        oai_set_error(e, 400, "invalid_request_error", NULL, "the body is not valid JSON (%s)", tern_last_error());
        return -1;
    }
    if (r->doc.root->type != TERN_JSON_OBJECT) {
        oai_set_error(e, 400, "invalid_request_error", NULL, "the body must be a JSON object");
        return -1;
    }
    return parse_fields(r, r->doc.root, e);
}

void oai_request_free(oai_request *r) {
    for (int i = 0; i < r->n_owned; i++) free(r->owned[i]);
    free(r->owned);
    free(r->msgs);
    tern_json_free(&r->doc);
    memset(r, 0, sizeof *r);
}

/* ---- streamed text ---- */

int oai_text_add(oai_text *t, const char *p, size_t n) {
    if (t->stopped) return 1;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1) cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) return -1;
        t->buf = b, t->cap = cap;
    }
    size_t old = t->len;
    memcpy(t->buf + t->len, p, n);
    t->len += n;
    t->buf[t->len] = 0;
    // The earliest stop string that now appears; it may straddle the old end.
    size_t cut = t->len;
    for (int i = 0; i < t->n_stop; i++) {
        size_t sl = strlen(t->stop[i]);
        size_t from = old >= sl - 1 ? old - (sl - 1) : 0;
        for (size_t at = from; at + sl <= t->len && at < cut; at++)
            if (!memcmp(t->buf + at, t->stop[i], sl)) {
                cut = at;
                break;
            }
    }
    if (cut == t->len) return 0;
    t->len = cut < t->sent ? t->sent : cut;
    t->buf[t->len] = 0;
    t->stopped = 1;
    return 1;
}

// Start of an incomplete UTF-8 character at the end of s[0..n), or n.
static size_t utf8_complete_end(const char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue; // a continuation byte: look further back
        int need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return (size_t)need > back ? n - back : n;
    }
    return n;
}

size_t oai_text_ready(const oai_text *t, int final) {
    if (final || t->stopped) return t->len;
    size_t end = t->len;
    for (int i = 0; i < t->n_stop; i++) { // hold back a suffix that may begin a stop string
        size_t sl = strlen(t->stop[i]);
        for (size_t k = sl - 1; k >= 1; k--)
            if (k <= t->len && !memcmp(t->buf + t->len - k, t->stop[i], k)) {
                if (t->len - k < end) end = t->len - k;
                break;
            }
    }
    end = utf8_complete_end(t->buf, end);
    return end > t->sent ? end : t->sent;
}

void oai_text_free(oai_text *t) {
    free(t->buf);
    t->buf = NULL, t->len = t->cap = t->sent = 0;
}

/* ---- JSON ---- */

void oai_write_string(FILE *f, const char *s, size_t len) {
    // Runs of valid UTF-8 go through the shared escaper; each invalid byte becomes U+FFFD.
    fputc('"', f);
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        int l = 1;
        while (j < len) {
            if (tern_utf8_decode((const uint8_t *)s + j, len - j, &l) == TERN_UTF8_INVALID) break;
            j += (size_t)l;
        }
        tern_json_write_escaped(f, s + i, j - i);
        if (j < len) fputs("\\ufffd", f), j++;
        i = j;
    }
    fputc('"', f);
}

static void write_opt_string(FILE *f, const char *s) {
    if (s) oai_write_string(f, s, strlen(s));
    else fputs("null", f);
}

char *oai_error_json(const oai_error *e, size_t *len) {
    char *out = NULL;
    FILE *f = open_memstream(&out, len);
    if (!f) return NULL;
    fputs("{\"error\":{\"message\":", f);
    oai_write_string(f, e->message, strlen(e->message));
    fputs(",\"type\":", f);
    write_opt_string(f, e->type);
    fputs(",\"param\":", f);
    write_opt_string(f, e->param);
    fputs(",\"code\":", f);
    write_opt_string(f, e->code);
    fputs("}}\n", f);
    fclose(f);
    return out;
}

static void write_head(FILE *f, const oai_head *h, const char *object) {
    fputs("{\"id\":", f);
    write_opt_string(f, h->id);
    fprintf(f, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, h->created);
    write_opt_string(f, h->model);
}

// The end of a choice: no log probabilities, and why it finished (null: not yet).
static void write_finish(FILE *f, const char *finish) {
    fputs(",\"logprobs\":null,\"finish_reason\":", f);
    write_opt_string(f, finish);
}

static void write_usage(FILE *f, int prompt_tokens, int completion_tokens) {
    fprintf(f, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}", prompt_tokens,
            completion_tokens, prompt_tokens + completion_tokens);
}

char *oai_response_json(const oai_head *h, const char *text, size_t len, const char *finish, int prompt_tokens,
                        int completion_tokens, size_t *out_len) {
    char *out = NULL;
    FILE *f = open_memstream(&out, out_len);
    if (!f) return NULL;
    int chat = h->kind == OAI_CHAT;
    write_head(f, h, chat ? "chat.completion" : "text_completion");
    fputs(",\"choices\":[{\"index\":0,", f);
    if (chat) {
        fputs("\"message\":{\"role\":\"assistant\",\"content\":", f);
        oai_write_string(f, text, len);
        fputs("}", f);
    } else {
        fputs("\"text\":", f);
        oai_write_string(f, text, len);
    }
    write_finish(f, finish);
    fputs("}],", f);
    write_usage(f, prompt_tokens, completion_tokens);
    fputs("}\n", f);
    fclose(f);
    return out;
}

char *oai_chunk_sse(const oai_head *h, const char *text, size_t len, int role_first, const char *finish,
                    size_t *out_len) {
    char *out = NULL;
    FILE *f = open_memstream(&out, out_len);
    if (!f) return NULL;
    int chat = h->kind == OAI_CHAT;
    fputs("data: ", f);
    write_head(f, h, chat ? "chat.completion.chunk" : "text_completion");
    fputs(",\"choices\":[{\"index\":0,", f);
    if (chat) {
        fputs("\"delta\":{", f);
        if (role_first) fputs("\"role\":\"assistant\"", f);
        if (!finish) {
            fputs(role_first ? ",\"content\":" : "\"content\":", f);
            oai_write_string(f, text, len);
        }
        fputs("}", f);
    } else {
        fputs("\"text\":", f);
        oai_write_string(f, text, len);
    }
    write_finish(f, finish);
    fputs("}]}\n\n", f);
    fclose(f);
    return out;
}

char *oai_usage_sse(const oai_head *h, int prompt_tokens, int completion_tokens, size_t *out_len) {
    char *out = NULL;
    FILE *f = open_memstream(&out, out_len);
    if (!f) return NULL;
    fputs("data: ", f);
    write_head(f, h, h->kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion");
    fputs(",\"choices\":[],", f);
    write_usage(f, prompt_tokens, completion_tokens);
    fputs("}\n\n", f);
    fclose(f);
    return out;
}
