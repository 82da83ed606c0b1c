#include "eval/zeroshot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "core/mem.h"
#include "core/progress.h"
#include "core/threads.h"
#include "infer/packed.h"
#include "io/json.h"
#include "nn/transformer.h"
#include "tok/unicode.h"

// ---------------------------------------------------------------------------
// Items

static void item_free(tern_zs_item *it) {
    for (int c = 0; c < it->n_choices; c++) {
        if (it->ctx_text) free(it->ctx_text[c]);
        if (it->cont_text) free(it->cont_text[c]);
        if (it->ctx) free(it->ctx[c]);
        if (it->cont) free(it->cont[c]);
    }
    free(it->ctx_text);
    free(it->cont_text);
    free(it->norm_len);
    free(it->ctx);
    free(it->n_ctx);
    free(it->cont);
    free(it->n_cont);
    free(it->ll);
    free(it->greedy);
    memset(it, 0, sizeof *it);
}

// Allocates the per-choice arrays (all zeroed); text arrays only when `text`.
static int item_alloc(tern_zs_item *it, int n_choices, int text) {
    size_t n = (size_t)n_choices;
    it->n_choices = n_choices;
    it->norm_len = calloc(n, sizeof(double));
    it->ctx = calloc(n, sizeof(int *));
    it->n_ctx = calloc(n, sizeof(int));
    it->cont = calloc(n, sizeof(int *));
    it->n_cont = calloc(n, sizeof(int));
    it->ll = calloc(n, sizeof(double));
    it->greedy = calloc(n, sizeof(int));
    if (text) {
        it->ctx_text = calloc(n, sizeof(char *));
        it->cont_text = calloc(n, sizeof(char *));
    }
    if (!it->norm_len || !it->ctx || !it->n_ctx || !it->cont || !it->n_cont || !it->ll || !it->greedy ||
        (text && (!it->ctx_text || !it->cont_text))) {
        item_free(it);
        return tern_errorf("zero-shot: out of memory");
    }
    return 0;
}

// Returns a zeroed slot at the end of the task's item array.
static tern_zs_item *task_push(tern_zs_task *t) {
    if (t->n_items == t->cap_items) {
        int cap = t->cap_items ? 2 * t->cap_items : 64;
        tern_zs_item *p = realloc(t->items, (size_t)cap * sizeof *p);
        if (!p) {
            tern_errorf("zero-shot: out of memory");
            return NULL;
        }
        t->items = p;
        t->cap_items = cap;
    }
    tern_zs_item *it = &t->items[t->n_items];
    memset(it, 0, sizeof *it);
    return it;
}

void tern_zs_task_free(tern_zs_task *t) {
    for (int i = 0; i < t->n_items; i++) item_free(&t->items[i]);
    free(t->items);
    memset(t, 0, sizeof *t);
}

static int *copy_ids(const int *ids, int n) {
    int *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    if (p && n > 0) memcpy(p, ids, (size_t)n * sizeof(int));
    return p;
}

int tern_zs_task_add_tokens(tern_zs_task *t, int n_choices, int gold, const int *const *ctx, const int *n_ctx,
                            const int *const *cont, const int *n_cont, const double *norm_len) {
    if (n_choices < 1 || n_choices > TERN_ZS_MAX_CHOICES || gold < 0 || gold >= n_choices)
        return tern_errorf("zero-shot: gold %d is outside the %d choices", gold, n_choices);
    tern_zs_item *it = task_push(t);
    if (!it || item_alloc(it, n_choices, 0)) return -1;
    it->line = t->n_items + 1;
    it->gold = gold;
    for (int c = 0; c < n_choices; c++) {
        it->ctx[c] = copy_ids(ctx[c], n_ctx[c]);
        it->cont[c] = copy_ids(cont[c], n_cont[c]);
        it->n_ctx[c] = n_ctx[c];
        it->n_cont[c] = n_cont[c];
        it->norm_len[c] = norm_len ? norm_len[c] : n_cont[c];
        if (!it->ctx[c] || !it->cont[c]) {
            item_free(it);
            return tern_errorf("zero-shot: out of memory");
        }
        if (n_ctx[c] < 1 || n_cont[c] < 1) {
            item_free(it);
            return tern_errorf("zero-shot: choice %d needs at least one context and one continuation token", c);
        }
    }
    t->n_items++;
    return 0;
}

// ---------------------------------------------------------------------------
// Field map

enum { F_QUERY, F_CHOICES, F_GOLD, F_CTX_OPTIONS, F_CONTINUATION, F_CONTEXT, F_COUNT };
static const char *const field_keys[F_COUNT] = {"query",        "choices", "gold", "context_options",
                                                "continuation", "context"};

typedef struct {
    char names[F_COUNT][128]; // field path in the file for each canonical key
} field_map;

static int field_map_parse(field_map *fm, const char *spec) {
    for (int k = 0; k < F_COUNT; k++) snprintf(fm->names[k], sizeof fm->names[k], "%s", field_keys[k]);
    if (!spec || !*spec) return 0;
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq || eq == p || eq + 1 == p + len)
            return tern_errorf("--fields: expected KEY=FIELD, got '%.*s'", (int)len, p);
        size_t klen = (size_t)(eq - p), vlen = len - klen - 1;
        int k = 0;
        while (k < F_COUNT && !(strlen(field_keys[k]) == klen && !memcmp(field_keys[k], p, klen))) k++;
        if (k == F_COUNT)
            return tern_errorf("--fields: unknown key '%.*s' (keys: query, choices, gold, context_options, "
                               "continuation, context)",
                               (int)klen, p);
        if (vlen >= sizeof fm->names[k]) return tern_errorf("--fields: field name '%.*s' is too long", (int)vlen, eq + 1);
        memcpy(fm->names[k], eq + 1, vlen);
        fm->names[k][vlen] = 0;
        p += len + (end ? 1 : 0);
    }
    return 0;
}

// Looks up a dotted path ("choices.text") of `len` bytes.
static const tern_json *get_path(const tern_json *obj, const char *path, size_t len) {
    char key[128];
    while (obj && len > 0) {
        const char *dot = memchr(path, '.', len);
        size_t n = dot ? (size_t)(dot - path) : len;
        if (n >= sizeof key) return NULL;
        memcpy(key, path, n);
        key[n] = 0;
        obj = tern_json_get(obj, key);
        path += n + (dot ? 1 : 0);
        len -= n + (dot ? 1 : 0);
    }
    return obj;
}

// ---------------------------------------------------------------------------
// Reading

typedef struct {
    const char *path;
    int line;
    const field_map *fm;
    const char *delimiter;
} line_ctx;

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// A string field that must not hide a NUL (our strings are C strings).
static int get_string(const line_ctx *lc, const tern_json *v, const char *what, const char **out) {
    if (!v) return tern_errorf("%s:%d: missing field '%s'", lc->path, lc->line, what);
    if (v->type != TERN_JSON_STRING)
        return tern_errorf("%s:%d: field '%s' must be a string, not %s", lc->path, lc->line, what,
                           tern_json_type_name(v->type));
    if (strlen(v->str) != v->len)
        return tern_errorf("%s:%d: field '%s' contains a NUL character", lc->path, lc->line, what);
    *out = v->str;
    return 0;
}

// The list of strings for choices / context_options: an array field, or
// several string fields joined by '|'. *out is malloc'd.
static int get_string_list(const line_ctx *lc, const tern_json *obj, int key, const char ***out, int *n_out) {
    const char *spec = lc->fm->names[key];
    const char *what = field_keys[key];
    *out = NULL;
    *n_out = 0;
    if (strchr(spec, '|')) {
        int n = 1;
        for (const char *q = spec; *q; q++) n += *q == '|';
        const char **list = calloc((size_t)n, sizeof *list);
        if (!list) return tern_errorf("zero-shot: out of memory");
        const char *p = spec;
        for (int i = 0; i < n; i++) {
            const char *bar = strchr(p, '|');
            size_t len = bar ? (size_t)(bar - p) : strlen(p);
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)len, p);
            if (get_string(lc, get_path(obj, p, len), name, &list[i])) {
                free(list);
                return -1;
            }
            p += len + 1;
        }
        *out = list;
        *n_out = n;
        return 0;
    }
    const tern_json *arr = get_path(obj, spec, strlen(spec));
    if (!arr) return tern_errorf("%s:%d: missing field '%s'", lc->path, lc->line, spec);
    if (arr->type != TERN_JSON_ARRAY || arr->len == 0)
        return tern_errorf("%s:%d: field '%s' (%s) must be a non-empty array of strings", lc->path, lc->line, spec,
                           what);
    if (arr->len > TERN_ZS_MAX_CHOICES)
        return tern_errorf("%s:%d: field '%s' has %zu entries (at most %d)", lc->path, lc->line, spec, arr->len,
                           TERN_ZS_MAX_CHOICES);
    const char **list = calloc(arr->len, sizeof *list);
    if (!list) return tern_errorf("zero-shot: out of memory");
    for (size_t i = 0; i < arr->len; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s[%zu]", spec, i);
        if (get_string(lc, tern_json_at(arr, i), name, &list[i])) {
            free(list);
            return -1;
        }
    }
    *out = list;
    *n_out = (int)arr->len;
    return 0;
}

static int get_gold(const line_ctx *lc, const tern_json *obj, int n_choices, int *gold) {
    const char *name = lc->fm->names[F_GOLD];
    const tern_json *v = get_path(obj, name, strlen(name));
    long long g = -1;
    if (!v) return tern_errorf("%s:%d: missing field '%s'", lc->path, lc->line, name);
    if (v->type == TERN_JSON_NUMBER && v->is_int) g = v->i;
    else if (v->type == TERN_JSON_STRING && v->len > 0 && v->len < 10 && strspn(v->str, "0123456789") == v->len)
        g = atoll(v->str);
    else
        return tern_errorf("%s:%d: field '%s' must be an integer (or a string of digits)", lc->path, lc->line, name);
    if (g < 0 || g >= n_choices)
        return tern_errorf("%s:%d: gold %lld is outside the %d choices", lc->path, lc->line, g, n_choices);
    *gold = (int)g;
    return 0;
}

// Length in characters (code points; an invalid byte counts as one), the
// length lm-evaluation-harness divides by for acc_norm (Python's len(str)).
static size_t char_count(const char *s) {
    size_t n = strlen(s), chars = 0;
    for (size_t i = 0; i < n; chars++) i += (size_t)tern_utf8_len((const uint8_t *)s + i, n - i);
    return chars;
}

// Context and continuation of one choice, by the joining rule in the header.
static int join_pair(const line_ctx *lc, const char *ctx, const char *choice, char **ctx_out, char **cont_out) {
    size_t nctx = strlen(ctx), nch = strlen(choice);
    const char *delim = lc->delimiter;
    if (!delim) delim = nctx == 0 || is_ws(ctx[nctx - 1]) || (nch > 0 && is_ws(choice[0])) ? "" : " ";
    size_t nd = strlen(delim), keep = nctx;
    while (keep > 0 && is_ws(ctx[keep - 1])) keep--; // lm-eval moves trailing whitespace over
    *ctx_out = tern_strndup(ctx, keep);
    *cont_out = malloc(nctx - keep + nd + nch + 1);
    if (!*ctx_out || !*cont_out) {
        free(*ctx_out);
        free(*cont_out);
        *ctx_out = *cont_out = NULL;
        return tern_errorf("zero-shot: out of memory");
    }
    char *p = *cont_out;
    memcpy(p, ctx + keep, nctx - keep);
    p += nctx - keep;
    memcpy(p, delim, nd);
    p += nd;
    memcpy(p, choice, nch + 1);
    return 0;
}

// Builds one item from a parsed line in the task's layout.
static int parse_item(const line_ctx *lc, const tern_json *obj, int partial, tern_zs_item *it) {
    const char **list = NULL, *single = NULL;
    int n = 0;
    if (obj->type != TERN_JSON_OBJECT)
        return tern_errorf("%s:%d: expected a JSON object, got %s", lc->path, lc->line, tern_json_type_name(obj->type));
    const char *lctx = NULL;
    if (partial == 2) { // LAMBADA: one context, one continuation, no gold
        const char *cn = lc->fm->names[F_CONTEXT], *name = lc->fm->names[F_CONTINUATION];
        if (get_string(lc, get_path(obj, cn, strlen(cn)), cn, &lctx) ||
            get_string(lc, get_path(obj, name, strlen(name)), name, &single))
            return -1;
        list = malloc(sizeof *list);
        if (!list) return tern_errorf("zero-shot: out of memory");
        list[0] = lctx, n = 1;
    } else if (partial) {
        const char *name = lc->fm->names[F_CONTINUATION];
        if (get_string_list(lc, obj, F_CTX_OPTIONS, &list, &n) ||
            get_string(lc, get_path(obj, name, strlen(name)), name, &single)) {
            free(list);
            return -1;
        }
    } else {
        const char *name = lc->fm->names[F_QUERY];
        if (get_string(lc, get_path(obj, name, strlen(name)), name, &single) ||
            get_string_list(lc, obj, F_CHOICES, &list, &n))
            return -1;
    }
    int gold = 0, rc = partial == 2 ? 0 : get_gold(lc, obj, n, &gold);
    if (rc == 0) rc = item_alloc(it, n, 1);
    for (int c = 0; c < n && rc == 0; c++) {
        // Multiple choice: shared query, choice varies. Partial: context varies, shared continuation.
        const char *ctx = partial ? list[c] : single, *choice = partial ? single : list[c];
        rc = join_pair(lc, ctx, choice, &it->ctx_text[c], &it->cont_text[c]);
        it->norm_len[c] = (double)char_count(choice);
    }
    free(list);
    if (rc) {
        item_free(it);
        return -1;
    }
    it->line = lc->line;
    it->gold = gold;
    return 0;
}

// Which layout the first item uses: 1 partial (WinoGrande), 0 query/choices,
// 2 context/continuation (LAMBADA), -1 unknown.
static int detect_layout(const tern_json *obj, const field_map *fm) {
    const char *n = fm->names[F_CTX_OPTIONS];
    if (get_path(obj, n, strlen(n))) return 1;
    n = fm->names[F_QUERY];
    const char *c = fm->names[F_CHOICES];
    if (get_path(obj, n, strlen(n)) || get_path(obj, c, strcspn(c, "|"))) return 0;
    n = fm->names[F_CONTEXT], c = fm->names[F_CONTINUATION];
    if (get_path(obj, n, strlen(n)) && get_path(obj, c, strlen(c))) return 2;
    return -1;
}

static int unknown_layout(const char *path, int line, const tern_json *obj) {
    char keys[256] = "";
    for (size_t i = 0; obj->type == TERN_JSON_OBJECT && i < obj->len; i++) {
        const char *k = tern_json_str(tern_json_key(obj, i));
        size_t used = strlen(keys);
        snprintf(keys + used, sizeof keys - used, "%s%s", i ? ", " : "", k);
    }
    return tern_errorf("%s:%d: unknown task layout (keys: %s); expected query/choices/gold, "
                       "context_options/continuation/gold or context/continuation (LAMBADA), or map the fields "
                       "with --fields "
                       "query=...,choices=...,gold=...",
                       path, line, obj->type == TERN_JSON_OBJECT ? keys : tern_json_type_name(obj->type));
}

// The JSON parser reports "NAME:1:COL: problem" for a single line; restate it
// as "PATH:LINE:COL: problem".
static int json_line_error(const char *path, int line) {
    char msg[TERN_ERR_MAX];
    snprintf(msg, sizeof msg, "%s", tern_last_error());
    const char *rest = strstr(msg, ":1:");
    return tern_errorf("%s:%d:%s", path, line, rest ? rest + 3 : msg);
}

static void task_name(char *out, size_t cap, const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, cap, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

int tern_zs_task_read(tern_zs_task *t, const char *path, const tern_zs_opts *o) {
    memset(t, 0, sizeof *t);
    char *data;
    size_t size;
    if (tern_read_file(path, &data, &size)) return -1;
    int rc = tern_zs_task_parse(t, data, size, path, o);
    free(data);
    return rc;
}

int tern_zs_task_parse(tern_zs_task *t, const char *data, size_t size, const char *path, const tern_zs_opts *o) {
    static const tern_zs_opts defaults = {0};
    if (!o) o = &defaults;
    memset(t, 0, sizeof *t);
    task_name(t->name, sizeof t->name, path);
    snprintf(t->path, sizeof t->path, "%s", path);
    field_map fm;
    if (field_map_parse(&fm, o->fields)) return -1;
    line_ctx lc = {.path = path, .fm = &fm, .delimiter = o->delimiter};
    int layout = -2, rc = 0; // -2: not decided yet
    size_t pos = 0;
    for (int line = 1; pos < size && rc == 0; line++) {
        const char *s = data + pos, *nl = memchr(s, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - s) : size - pos;
        pos += len + (nl ? 1 : 0);
        lc.line = line;
        size_t k = 0;
        while (k < len && is_ws(s[k])) k++;
        if (k == len) continue; // blank lines (and a trailing newline) are not items
        if (o->limit > 0 && t->n_items >= o->limit) break;
        tern_json_doc doc;
        int bad = tern_json_parse(&doc, s, len, path);
        if (bad) json_line_error(path, line);
        else if (doc.root->type != TERN_JSON_OBJECT) {
            bad = tern_errorf("%s:%d: expected a JSON object, got %s", path, line, tern_json_type_name(doc.root->type));
            tern_json_free(&doc);
        }
        if (bad) {
            if (!o->skip_bad) {
                rc = -1;
                break;
            }
            fprintf(stderr, "warning: %s (line skipped)\n", tern_last_error());
            t->n_skipped++;
            continue;
        }
        if (layout == -2) {
            layout = detect_layout(doc.root, &fm);
            t->partial = layout == 1;
            t->lambada = layout == 2;
        }
        if (layout < 0) rc = unknown_layout(path, line, doc.root);
        tern_zs_item *it = rc == 0 ? task_push(t) : NULL;
        if (rc == 0 && !it) rc = -1;
        if (rc == 0 && (rc = parse_item(&lc, doc.root, layout, it)) == 0) t->n_items++;
        tern_json_free(&doc);
    }
    if (rc == 0 && t->n_items == 0)
        rc = tern_errorf("%s: no items (an empty task file)%s", path, t->n_skipped ? " after skipping bad lines" : "");
    if (rc) tern_zs_task_free(t);
    return rc;
}

// ---------------------------------------------------------------------------
// Tokenization

static int tokenize_choice(const tern_zs_task *t, tern_zs_item *it, int c, const tern_tokenizer *tok) {
    int add_bos = tern_tokenizer_add_bos(tok);
    const char *ctx = it->ctx_text[c], *cont = it->cont_text[c];
    size_t nctx = strlen(ctx), ncont = strlen(cont);
    char *whole = malloc(nctx + ncont + 1);
    if (!whole) return tern_errorf("zero-shot: out of memory");
    memcpy(whole, ctx, nctx);
    memcpy(whole + nctx, cont, ncont + 1);
    int *ctx_ids = NULL, *all = NULL, n_ctx = 0, n_all = 0;
    int rc = tern_tokenize(tok, ctx, nctx, add_bos, &ctx_ids, &n_ctx);
    if (rc == 0) rc = tern_tokenize(tok, whole, nctx + ncont, add_bos, &all, &n_all);
    free(whole);
    if (rc == 0 && n_all <= n_ctx)
        rc = tern_errorf("%s:%d: choice %d has no tokens after its context", t->path, it->line, c);
    int skip = n_ctx; // the continuation is what follows the context's token count
    if (rc == 0 && n_ctx == 0) {
        // Nothing to predict the first token from: start from BOS (or EOS), as lm-eval does.
        int pre = tern_tokenizer_bos(tok) >= 0 ? tern_tokenizer_bos(tok) : tern_tokenizer_eos(tok);
        if (pre < 0) rc = tern_errorf("%s:%d: empty context and no BOS/EOS token to start from", t->path, it->line);
        else {
            free(ctx_ids);
            ctx_ids = copy_ids(&pre, 1);
            n_ctx = 1;
            if (!ctx_ids) rc = tern_errorf("zero-shot: out of memory");
        }
    }
    if (rc == 0) {
        it->cont[c] = copy_ids(all + skip, n_all - skip);
        it->n_cont[c] = n_all - skip;
        it->ctx[c] = ctx_ids;
        it->n_ctx[c] = n_ctx;
        ctx_ids = NULL;
        if (!it->cont[c]) rc = tern_errorf("zero-shot: out of memory");
    }
    free(ctx_ids);
    free(all);
    return rc;
}

int tern_zs_task_tokenize(tern_zs_task *t, const tern_tokenizer *tok) {
    for (int i = 0; i < t->n_items; i++) {
        tern_zs_item *it = &t->items[i];
        if (!it->ctx_text) return tern_errorf("%s: item %d has no text to tokenize", t->name, i);
        for (int c = 0; c < it->n_choices; c++) {
            free(it->ctx[c]);
            free(it->cont[c]);
            it->ctx[c] = it->cont[c] = NULL;
            if (tokenize_choice(t, it, c, tok)) return -1;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Scoring

// One session whose KV cache holds the tokens in `cached`: a new sequence
// runs only from where it departs from them (the shared context of the
// choices, the common prefix of WinoGrande's two contexts, ...). Positions
// beyond that are simply overwritten.
typedef struct {
    tern_session s;
    tern_packed *packed; // a .tern model's packed linears (NULL otherwise)
    int vocab;
    int *cached, n_cached;
    int *seq;          // scratch: context + continuation
    float *logits;     // [rows, vocab]
    int logits_rows;
    // Logits at position saved_pos (-1: none), valid while the cache keeps
    // tokens 0..saved_pos: the choices after a shared context all need the
    // context's last logits, which are computed once.
    float *saved;
    int saved_pos;
    int64_t tokens;    // tokens run through the model
    int truncated;     // continuations longer than the window, scored in part
} scorer;

static void scorer_free(scorer *sc) {
    tern_session_free(&sc->s);
    tern_packed_free(sc->packed);
    free(sc->cached);
    free(sc->seq);
    tern_free(sc->logits);
    tern_free(sc->saved);
    memset(sc, 0, sizeof *sc);
}

// max_seq: the longest sequence to be fed (context + continuation - 1).
static int scorer_init(scorer *sc, const tern_model *m, int max_seq) {
    memset(sc, 0, sizeof *sc);
    if (max_seq > m->cfg.max_seq && m->cfg.max_seq > 0) max_seq = m->cfg.max_seq;
    if (max_seq < 1) max_seq = 1;
    // Logits of a batch are [max_batch, vocab] inside the session: keep batches moderate.
    int batch = max_seq < 128 ? max_seq : 128;
    if (tern_session_init(&sc->s, m, max_seq, batch)) return -1;
    if (tern_session_use_native(&sc->s, &sc->packed)) {
        scorer_free(sc);
        return -1;
    }
    sc->vocab = m->cfg.vocab_size;
    sc->cached = malloc((size_t)max_seq * sizeof(int));
    sc->seq = malloc((size_t)max_seq * sizeof(int));
    sc->saved = tern_alloc((size_t)sc->vocab * sizeof(float));
    sc->saved_pos = -1;
    if (!sc->cached || !sc->seq || !sc->saved) {
        scorer_free(sc);
        return tern_errorf("zero-shot: out of memory");
    }
    return 0;
}

static int ensure_logits(scorer *sc, int rows) {
    if (rows <= sc->logits_rows) return 0;
    size_t bytes;
    if (tern_mul3_size((size_t)rows, (size_t)sc->vocab, sizeof(float), &bytes)) return -1;
    tern_free(sc->logits);
    sc->logits = tern_alloc(bytes);
    sc->logits_rows = sc->logits ? rows : 0;
    return sc->logits ? 0 : tern_errorf("zero-shot: out of memory for %d rows of logits", rows);
}

// log softmax(logits)[target] in double; *is_max set when target is an argmax.
static double token_logprob(const float *logits, int vocab, int target, int *is_max) {
    float max = logits[0];
    for (int i = 1; i < vocab; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int i = 0; i < vocab; i++) sum += exp((double)logits[i] - max);
    *is_max = logits[target] >= max;
    return ((double)logits[target] - max) - log(sum);
}

static int scorer_run(scorer *sc, const int *ctx, int n_ctx, const int *cont, int n_cont, double *ll, int *greedy) {
    int max_seq = sc->s.max_seq;
    if (n_ctx < 1 || n_cont < 1) return tern_errorf("zero-shot: empty context or continuation");
    // The last continuation token is only looked up in the logits, never fed: check it here.
    for (int i = 0; i < n_cont; i++)
        if (cont[i] < 0 || cont[i] >= sc->vocab)
            return tern_errorf("zero-shot: token id %d outside the vocabulary (%d)", cont[i], sc->vocab);
    if (n_cont >= max_seq && max_seq >= 2) {
        // A continuation that fills the window alone: its leading tokens become
        // the context and the last max_seq - 1 are scored (counted, reported).
        int k = n_cont - (max_seq - 1);
        ctx = cont + k - 1, n_ctx = 1;
        cont += k, n_cont -= k;
        sc->truncated++;
    }
    // Too long: drop context tokens from the left (lm-eval does the same).
    int over = n_ctx + n_cont - 1 - max_seq;
    if (over > 0) {
        ctx += over;
        n_ctx -= over;
    }
    int total = n_ctx + n_cont - 1; // the last continuation token is never fed
    memcpy(sc->seq, ctx, (size_t)n_ctx * sizeof(int));
    memcpy(sc->seq + n_ctx, cont, (size_t)(n_cont - 1) * sizeof(int));
    int p = 0;
    while (p < sc->n_cached && p < total && sc->cached[p] == sc->seq[p]) p++;
    size_t V = (size_t)sc->vocab;
    int first = n_ctx - 1; // the position whose logits predict cont[0]
    if (ensure_logits(sc, n_cont)) return -1;
    if (sc->saved_pos == first && p > first) {
        // The context is in the cache and its last logits are saved: run only
        // the continuation (nothing at all for a one-token continuation).
        memcpy(sc->logits, sc->saved, V * sizeof(float));
        sc->n_cached = n_ctx; // positions from here on are about to be overwritten
        if (n_cont > 1) {
            if (tern_forward(&sc->s, sc->seq + n_ctx, n_cont - 1, n_ctx, sc->logits + V)) {
                sc->saved_pos = -1;
                return -1;
            }
            sc->tokens += n_cont - 1;
        }
    } else {
        // Fill the cache up to the context's last token (no logits needed), then
        // run it and the continuation together with logits.
        int start = p < first ? p : first;
        sc->n_cached = start;
        sc->saved_pos = -1;
        if (start < first) {
            if (tern_forward(&sc->s, sc->seq + start, first - start, start, NULL)) return -1;
            sc->tokens += first - start;
        }
        if (tern_forward(&sc->s, sc->seq + first, n_cont, first, sc->logits)) return -1;
        sc->tokens += n_cont;
        memcpy(sc->saved, sc->logits, V * sizeof(float));
        sc->saved_pos = first;
    }
    memcpy(sc->cached, sc->seq, (size_t)total * sizeof(int));
    sc->n_cached = total;
    double sum = 0;
    int all_max = 1;
    for (int i = 0; i < n_cont; i++) {
        int is_max;
        sum += token_logprob(sc->logits + (size_t)i * sc->vocab, sc->vocab, cont[i], &is_max);
        all_max &= is_max;
    }
    *ll = sum;
    if (greedy) *greedy = all_max;
    return 0;
}

int tern_zs_loglik(const tern_model *m, const int *ctx, int n_ctx, const int *cont, int n_cont, double *ll,
                   int *greedy) {
    scorer sc;
    if (scorer_init(&sc, m, n_ctx + n_cont - 1)) return -1;
    int rc = scorer_run(&sc, ctx, n_ctx, cont, n_cont, ll, greedy);
    scorer_free(&sc);
    return rc;
}

// ---------------------------------------------------------------------------
// Metrics

static int argmax(const double *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i; // ties: the first, as numpy's argmax
    return best;
}

// Mean and its standard error (sample std with n - 1, over sqrt(n)), as lm-eval reports.
static void mean_se(double sum, double sum_sq, int n, double *mean, double *se) {
    *mean = n > 0 ? sum / n : 0;
    double var = n > 1 ? (sum_sq - n * *mean * *mean) / (n - 1) : 0;
    *se = var > 0 ? sqrt(var / n) : 0;
}

void tern_zs_metrics(const tern_zs_task *t, tern_zs_result *r) {
    if (t->lambada) { // lm-eval's lambada: acc = all continuation tokens greedy; ppl = exp(-mean ll)
        double greedy = 0, ll = 0;
        for (int i = 0; i < t->n_items; i++) greedy += t->items[i].greedy[0], ll += t->items[i].ll[0];
        r->n = t->n_items;
        r->lambada = 1;
        mean_se(greedy, greedy, t->n_items, &r->acc, &r->acc_se);
        r->acc_norm = r->acc, r->acc_norm_se = r->acc_se;
        r->ppl = exp(-ll / (t->n_items > 0 ? t->n_items : 1));
        return;
    }
    double acc = 0, acc_norm = 0;
    double norm[TERN_ZS_MAX_CHOICES];
    for (int i = 0; i < t->n_items; i++) {
        const tern_zs_item *it = &t->items[i];
        int n = it->n_choices;
        for (int c = 0; c < n; c++) norm[c] = it->ll[c] / (it->norm_len[c] > 0 ? it->norm_len[c] : 1);
        acc += argmax(it->ll, n) == it->gold;
        acc_norm += argmax(norm, n) == it->gold;
    }
    // For 0/1 outcomes the sum of squares equals the sum.
    r->n = t->n_items;
    mean_se(acc, acc, t->n_items, &r->acc, &r->acc_se);
    mean_se(acc_norm, acc_norm, t->n_items, &r->acc_norm, &r->acc_norm_se);
}

int tern_zs_evaluate(const tern_model *m, tern_zs_task *t, tern_zs_result *r) {
    memset(r, 0, sizeof *r);
    if (t->n_items == 0) return tern_errorf("%s: no items", t->name);
    int longest = 1;
    for (int i = 0; i < t->n_items; i++)
        for (int c = 0; c < t->items[i].n_choices; c++) {
            const tern_zs_item *it = &t->items[i];
            if (!it->ctx[c] || !it->cont[c]) return tern_errorf("%s: item %d is not tokenized", t->name, i);
            int len = it->n_ctx[c] + it->n_cont[c] - 1;
            if (len > longest) longest = len;
        }
    scorer sc;
    if (scorer_init(&sc, m, longest)) return -1;
    double t0 = tern_now_sec(), correct = 0;
    int rc = 0;
    char label[160];
    snprintf(label, sizeof label, "eval %s", t->name);
    tern_progress bar;
    tern_progress_begin(&bar, label, "item", t->n_items);
    for (int i = 0; i < t->n_items && rc == 0; i++) {
        tern_zs_item *it = &t->items[i];
        for (int c = 0; c < it->n_choices && rc == 0; c++)
            rc = scorer_run(&sc, it->ctx[c], it->n_ctx[c], it->cont[c], it->n_cont[c], &it->ll[c], &it->greedy[c]);
        if (rc) {
            tern_error_prefix("%s: item on line %d", t->name, it->line);
            break;
        }
        correct += argmax(it->ll, it->n_choices) == it->gold;
        char extra[48];
        snprintf(extra, sizeof extra, "acc %.4f", correct / (i + 1));
        tern_progress_update(&bar, i + 1, extra);
    }
    tern_progress_end(&bar);
    if (rc == 0) {
        tern_zs_metrics(t, r);
        r->seconds = tern_now_sec() - t0;
        r->items_per_s = t->n_items / (r->seconds > 0 ? r->seconds : 1e-9);
        r->tokens = sc.tokens;
        r->truncated = sc.truncated;
    }
    scorer_free(&sc);
    return rc;
}
