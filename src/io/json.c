// Strict JSON (RFC 8259) recursive-descent parser. See json.h for the contract.
//
// Containers are built on a scratch stack: a container's children are parsed
// (each child's own children already moved out) and pushed, and when the
// closing bracket arrives the run is copied into the arena as one contiguous
// array. That keeps nodes compact and makes each array/object one allocation.
#include "io/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"

// ---- arena ----------------------------------------------------------------

struct tern_json_arena {
    tern_json_arena *prev; // older blocks
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

static tern_json_arena *arena_block(tern_json_arena *prev, size_t cap) {
    tern_json_arena *a = malloc(sizeof *a + cap);
    if (!a) return NULL;
    a->prev = prev;
    a->used = 0;
    a->cap = cap;
    return a;
}

// 8-byte aligned bump allocation; grows by new blocks at least twice as large.
static void *arena_alloc(tern_json_arena **ap, size_t n) {
    tern_json_arena *a = *ap;
    n = (n + 7) & ~(size_t)7;
    if (n > a->cap - a->used) {
        size_t cap = a->cap * 2 > n ? a->cap * 2 : n;
        if (cap > ((size_t)1 << 30) && n < ((size_t)1 << 30)) cap = (size_t)1 << 30;
        tern_json_arena *b = arena_block(a, cap);
        if (!b) return NULL;
        *ap = a = b;
    }
    void *p = a->data + a->used;
    a->used += n;
    return p;
}

static void arena_free(tern_json_arena *a) {
    while (a) {
        tern_json_arena *prev = a->prev;
        free(a);
        a = prev;
    }
}

// ---- parser state and errors ----------------------------------------------

typedef struct {
    const unsigned char *start, *p, *end;
    const char *name;
    tern_json_arena *arena;
    tern_json *stack; // scratch for children of open containers
    size_t sp, cap;
} parser;

// Records "NAME:LINE:COL: message" for the byte at `at`; returns -1.
static int fail_at(const parser *ps, const unsigned char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(const parser *ps, const unsigned char *at, const char *fmt, ...) {
    // Line and column are computed only on failure, so parsing never tracks them.
    int line = 1;
    const unsigned char *bol = ps->start;
    for (const unsigned char *q = ps->start; q < at; q++)
        if (*q == '\n') {
            line++;
            bol = q + 1;
        }
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tern_errorf("%s:%d:%ld: %s", ps->name, line, (long)(at - bol) + 1, msg);
}

// Describes the byte at q for "unexpected X" messages.
static const char *describe(const parser *ps, const unsigned char *q, char *buf, size_t cap) {
    if (q >= ps->end) snprintf(buf, cap, "end of input");
    else if (*q >= 0x20 && *q < 0x7f) snprintf(buf, cap, "'%c'", *q);
    else snprintf(buf, cap, "byte 0x%02x", *q);
    return buf;
}

static void skip_ws(parser *ps) {
    const unsigned char *p = ps->p, *e = ps->end;
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    ps->p = p;
}

static int push(parser *ps, const tern_json *v) {
    if (ps->sp == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 256;
        tern_json *s = realloc(ps->stack, cap * sizeof *s);
        if (!s) return tern_errorf("%s: out of memory parsing JSON", ps->name);
        ps->stack = s;
        ps->cap = cap;
    }
    ps->stack[ps->sp++] = *v;
    return 0;
}

// Moves stack[base..sp) into the arena as one array.
static int pop_into(parser *ps, size_t base, tern_json *out) {
    size_t n = ps->sp - base;
    out->items = NULL;
    if (n) {
        tern_json *items = arena_alloc(&ps->arena, n * sizeof *items);
        if (!items) return tern_errorf("%s: out of memory parsing JSON", ps->name);
        memcpy(items, ps->stack + base, n * sizeof *items);
        out->items = items;
    }
    ps->sp = base;
    return 0;
}

// ---- strings --------------------------------------------------------------

// Length of the valid UTF-8 sequence at s (before e), or 0 when invalid:
// overlong forms, UTF-16 surrogates and code points above U+10FFFF are refused.
static int utf8_seq(const unsigned char *s, const unsigned char *e) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return e - s >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (e - s < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;  // overlong
        if (c == 0xED && s[1] >= 0xA0) return 0; // surrogate
        return 3;
    }
    if (c < 0xF5) {
        if (e - s < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;  // overlong
        if (c == 0xF4 && s[1] >= 0x90) return 0; // above U+10FFFF
        return 4;
    }
    return 0;
}

static int hex4(const unsigned char *s, const unsigned char *e, unsigned *out) {
    if (e - s < 4) return -1;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = s[k], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *d, unsigned cp) {
    if (cp < 0x80) {
        *d++ = (char)cp;
    } else if (cp < 0x800) {
        *d++ = (char)(0xC0 | cp >> 6);
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *d++ = (char)(0xE0 | cp >> 12);
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *d++ = (char)(0xF0 | cp >> 18);
        *d++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    }
    return d;
}

// Decodes one \u escape (and its low-surrogate partner) at q (pointing at 'u').
static int unicode_escape(parser *ps, const unsigned char **qp, const unsigned char *e, char **dp) {
    const unsigned char *q = *qp;
    unsigned cp;
    if (hex4(q + 1, e, &cp)) return fail_at(ps, q - 1, "invalid \\u escape (expected 4 hex digits)");
    q += 5;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail_at(ps, q - 6, "lone low surrogate \\u%04X", cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned lo;
        if (e - q < 6 || q[0] != '\\' || q[1] != 'u' || hex4(q + 2, e, &lo) || lo < 0xDC00 || lo > 0xDFFF)
            return fail_at(ps, q - 6, "lone high surrogate \\u%04X (no low surrogate follows)", cp);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        q += 6;
    }
    *dp = put_utf8(*dp, cp);
    *qp = q;
    return 0;
}

// Parses the string whose opening quote is at ps->p into out (STRING node).
static int parse_string(parser *ps, tern_json *out) {
    const unsigned char *open = ps->p, *e = ps->end, *q = open + 1;
    // Pass 1: find the closing quote; the raw length bounds the decoded length
    // (every escape decodes to fewer bytes than it is spelled with).
    for (;;) {
        if (q >= e) return fail_at(ps, open, "unterminated string");
        unsigned c = *q;
        if (c == '"') break;
        if (c == '\\') {
            q += 2;
            continue;
        }
        if (c < 0x20) return fail_at(ps, q, "control character 0x%02x in string (must be escaped)", c);
        q++;
    }
    const unsigned char *close = q;
    size_t raw = (size_t)(close - open - 1);
    char *dst = arena_alloc(&ps->arena, raw + 1);
    if (!dst) return tern_errorf("%s: out of memory parsing JSON", ps->name);
    char *d = dst;
    // Pass 2: validate UTF-8 and decode escapes.
    for (q = open + 1; q < close;) {
        unsigned c = *q;
        if (c < 0x80 && c != '\\') {
            *d++ = (char)c;
            q++;
        } else if (c >= 0x80) {
            int n = utf8_seq(q, close);
            if (!n) return fail_at(ps, q, "invalid UTF-8 byte 0x%02x in string", c);
            memcpy(d, q, (size_t)n);
            d += n;
            q += n;
        } else {
            unsigned x = q[1];
            char r;
            switch (x) {
            case '"': r = '"'; break;
            case '\\': r = '\\'; break;
            case '/': r = '/'; break;
            case 'b': r = '\b'; break;
            case 'f': r = '\f'; break;
            case 'n': r = '\n'; break;
            case 'r': r = '\r'; break;
            case 't': r = '\t'; break;
            case 'u':
                q++;
                if (unicode_escape(ps, &q, close, &d)) return -1;
                continue;
            default:
                if (x >= 0x20 && x < 0x7f) return fail_at(ps, q, "invalid escape '\\%c' in string", x);
                return fail_at(ps, q, "invalid escape (backslash before byte 0x%02x) in string", x);
            }
            *d++ = r;
            q += 2;
        }
    }
    *d = 0;
    memset(out, 0, sizeof *out);
    out->type = TERN_JSON_STRING;
    out->str = dst;
    out->len = (size_t)(d - dst);
    ps->p = close + 1;
    return 0;
}

// ---- numbers --------------------------------------------------------------

static int is_digit(const unsigned char *q, const unsigned char *e) { return q < e && *q >= '0' && *q <= '9'; }

// Exact powers of ten representable as doubles (Clinger's fast path).
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int parse_number(parser *ps, tern_json *out) {
    const unsigned char *s = ps->p, *q = s, *e = ps->end;
    int neg = 0;
    if (*q == '-') {
        neg = 1;
        q++;
    }
    if (!is_digit(q, e)) return fail_at(ps, s, "invalid number (expected a digit)");
    // Mantissa digits (integer and fraction) accumulated while they fit 19 digits.
    uint64_t mant = 0;
    int mant_digits = 0, dropped = 0, frac_digits = 0, has_frac = 0, has_exp = 0;
    if (*q == '0') {
        q++;
        if (is_digit(q, e)) return fail_at(ps, s, "leading zero in number");
    } else {
        for (; is_digit(q, e); q++) {
            if (mant_digits < 19) {
                mant = mant * 10 + (uint64_t)(*q - '0');
                mant_digits++;
            } else {
                dropped++;
            }
        }
    }
    if (q < e && *q == '.') {
        has_frac = 1;
        q++;
        if (!is_digit(q, e)) return fail_at(ps, q, "invalid number (expected a digit after '.')");
        for (; is_digit(q, e); q++) {
            if (mant_digits < 19 && !dropped) {
                if (mant == 0 && *q == '0') {
                    frac_digits++; // leading zeros of the fraction do not use up precision
                    continue;
                }
                mant = mant * 10 + (uint64_t)(*q - '0');
                mant_digits++;
                frac_digits++;
            } else {
                dropped++;
            }
        }
    }
    long exp10 = 0;
    if (q < e && (*q == 'e' || *q == 'E')) {
        has_exp = 1;
        q++;
        int eneg = 0;
        if (q < e && (*q == '+' || *q == '-')) eneg = *q++ == '-';
        if (!is_digit(q, e)) return fail_at(ps, q, "invalid number (expected a digit in the exponent)");
        for (; is_digit(q, e); q++)
            if (exp10 < 100000) exp10 = exp10 * 10 + (*q - '0');
        if (eneg) exp10 = -exp10;
    }
    memset(out, 0, sizeof *out);
    out->type = TERN_JSON_NUMBER;
    size_t len = (size_t)(q - s);
    // Fast path: a mantissa below 2^53 scaled by an exact power of ten rounds
    // exactly once, so the result is correctly rounded, like strtod's.
    long scale = exp10 - frac_digits;
    if (!dropped && mant < ((uint64_t)1 << 53) && scale >= -22 && scale <= 22) {
        double v = (double)mant;
        v = scale < 0 ? v / pow10_exact[-scale] : v * pow10_exact[scale];
        out->num = neg ? -v : v;
    } else {
        // General case: strtod on a NUL-terminated copy (the input buffer may
        // not be terminated). Assumes the "C" numeric locale, which tern keeps.
        char small[64], *buf = len < sizeof small ? small : malloc(len + 1);
        if (!buf) return tern_errorf("%s: out of memory parsing JSON", ps->name);
        memcpy(buf, s, len);
        buf[len] = 0;
        out->num = strtod(buf, NULL);
        if (buf != small) free(buf);
        if (isinf(out->num)) return fail_at(ps, s, "number out of range");
    }
    if (!has_frac && !has_exp && !dropped) {
        // Integer literal of at most 19 digits: exact unless above int64's range.
        if (mant <= (uint64_t)INT64_MAX) {
            out->is_int = 1;
            out->i = neg ? -(int64_t)mant : (int64_t)mant;
        } else if (neg && mant == (uint64_t)INT64_MAX + 1) {
            out->is_int = 1;
            out->i = INT64_MIN;
        }
    } else if (out->num == floor(out->num) && fabs(out->num) < 9.2e18) {
        out->is_int = 1; // e.g. 1e3 or 2.0
        out->i = (int64_t)out->num;
    }
    ps->p = q;
    return 0;
}

// ---- values ---------------------------------------------------------------

static int parse_value(parser *ps, tern_json *out, int depth);

static int literal(parser *ps, const char *word, tern_json_type t, tern_json *out) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        char buf[32];
        return fail_at(ps, ps->p, "unexpected %s (expected a value)", describe(ps, ps->p, buf, sizeof buf));
    }
    memset(out, 0, sizeof *out);
    out->type = t;
    ps->p += n;
    return 0;
}

static int parse_array(parser *ps, tern_json *out, int depth) {
    size_t base = ps->sp;
    ps->p++; // '['
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
    } else {
        for (;;) {
            tern_json v;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ']') return fail_at(ps, ps->p, "trailing comma before ']'");
            if (parse_value(ps, &v, depth + 1) || push(ps, &v)) return -1;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                continue;
            }
            if (ps->p < ps->end && *ps->p == ']') {
                ps->p++;
                break;
            }
            char buf[32];
            return fail_at(ps, ps->p, "expected ',' or ']' but found %s", describe(ps, ps->p, buf, sizeof buf));
        }
    }
    memset(out, 0, sizeof *out);
    out->type = TERN_JSON_ARRAY;
    out->len = ps->sp - base;
    return pop_into(ps, base, out);
}

static int parse_object(parser *ps, tern_json *out, int depth) {
    size_t base = ps->sp;
    ps->p++; // '{'
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
    } else {
        for (;;) {
            tern_json k, v;
            char buf[32];
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == '}') return fail_at(ps, ps->p, "trailing comma before '}'");
            if (ps->p >= ps->end || *ps->p != '"')
                return fail_at(ps, ps->p, "expected a string key but found %s",
                               describe(ps, ps->p, buf, sizeof buf));
            if (parse_string(ps, &k) || push(ps, &k)) return -1;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':')
                return fail_at(ps, ps->p, "expected ':' but found %s", describe(ps, ps->p, buf, sizeof buf));
            ps->p++;
            if (parse_value(ps, &v, depth + 1) || push(ps, &v)) return -1;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                continue;
            }
            if (ps->p < ps->end && *ps->p == '}') {
                ps->p++;
                break;
            }
            return fail_at(ps, ps->p, "expected ',' or '}' but found %s", describe(ps, ps->p, buf, sizeof buf));
        }
    }
    memset(out, 0, sizeof *out);
    out->type = TERN_JSON_OBJECT;
    out->len = (ps->sp - base) / 2;
    return pop_into(ps, base, out);
}

static int parse_value(parser *ps, tern_json *out, int depth) {
    skip_ws(ps);
    char buf[32];
    if (ps->p >= ps->end) return fail_at(ps, ps->p, "unexpected end of input (expected a value)");
    switch (*ps->p) {
    case '{':
    case '[':
        // Bounded recursion: a nesting bomb fails here instead of overflowing the C stack.
        if (depth >= TERN_JSON_MAX_DEPTH)
            return fail_at(ps, ps->p, "nesting deeper than %d levels", TERN_JSON_MAX_DEPTH);
        return *ps->p == '{' ? parse_object(ps, out, depth) : parse_array(ps, out, depth);
    case '"': return parse_string(ps, out);
    case 't': return literal(ps, "true", TERN_JSON_TRUE, out);
    case 'f': return literal(ps, "false", TERN_JSON_FALSE, out);
    case 'n': return literal(ps, "null", TERN_JSON_NULL, out);
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return parse_number(ps, out);
        return fail_at(ps, ps->p, "unexpected %s (expected a value)", describe(ps, ps->p, buf, sizeof buf));
    }
}

// ---- public API -----------------------------------------------------------

int tern_json_parse(tern_json_doc *doc, const void *data, size_t size, const char *name) {
    memset(doc, 0, sizeof *doc);
    parser ps = {.start = data, .p = data, .end = (const unsigned char *)data + size,
                 .name = name ? name : "(json)"};
    if (!data) ps.start = ps.p = ps.end = (const unsigned char *)"";
    // A first block about the size of the input holds a typical document whole.
    size_t first = size < ((size_t)1 << 26) ? size + 1024 : (size_t)1 << 26;
    ps.arena = arena_block(NULL, first);
    if (!ps.arena) return tern_errorf("%s: out of memory parsing JSON", ps.name);
    // RFC 8259 lets parsers ignore a UTF-8 byte order mark.
    if (ps.end - ps.p >= 3 && memcmp(ps.p, "\xEF\xBB\xBF", 3) == 0) ps.p += 3;
    tern_json *root = arena_alloc(&ps.arena, sizeof *root);
    int rc = root ? parse_value(&ps, root, 0) : tern_errorf("%s: out of memory parsing JSON", ps.name);
    if (rc == 0) {
        skip_ws(&ps);
        if (ps.p < ps.end) {
            char buf[32];
            rc = fail_at(&ps, ps.p, "unexpected %s after the JSON value", describe(&ps, ps.p, buf, sizeof buf));
        }
    }
    free(ps.stack);
    if (rc) {
        arena_free(ps.arena);
        return -1;
    }
    doc->root = root;
    doc->arena = ps.arena;
    return 0;
}

int tern_json_load(tern_json_doc *doc, const char *path) {
    memset(doc, 0, sizeof *doc);
    tern_blob b;
    if (tern_blob_open(&b, path)) return -1;
    int rc = tern_json_parse(doc, b.data, b.size, path);
    tern_blob_close(&b);
    return rc;
}

void tern_json_free(tern_json_doc *doc) {
    arena_free(doc->arena);
    memset(doc, 0, sizeof *doc);
}

const tern_json *tern_json_get(const tern_json *obj, const char *key) {
    if (!obj || obj->type != TERN_JSON_OBJECT) return NULL;
    size_t klen = strlen(key);
    for (size_t i = obj->len; i-- > 0;) { // last duplicate wins
        const tern_json *k = &obj->items[2 * i];
        if (k->len == klen && memcmp(k->str, key, klen) == 0) return &obj->items[2 * i + 1];
    }
    return NULL;
}

const tern_json *tern_json_at(const tern_json *arr, size_t i) {
    return arr && arr->type == TERN_JSON_ARRAY && i < arr->len ? &arr->items[i] : NULL;
}

const tern_json *tern_json_key(const tern_json *obj, size_t i) {
    return obj && obj->type == TERN_JSON_OBJECT && i < obj->len ? &obj->items[2 * i] : NULL;
}

const tern_json *tern_json_value(const tern_json *obj, size_t i) {
    return obj && obj->type == TERN_JSON_OBJECT && i < obj->len ? &obj->items[2 * i + 1] : NULL;
}

const char *tern_json_str(const tern_json *v) { return v && v->type == TERN_JSON_STRING ? v->str : NULL; }

int tern_json_str_eq(const tern_json *v, const char *s) {
    return v && v->type == TERN_JSON_STRING && v->len == strlen(s) && memcmp(v->str, s, v->len) == 0;
}

int tern_json_bool(const tern_json *v, int def) {
    if (!v || v->type == TERN_JSON_NULL) return def;
    if (v->type == TERN_JSON_TRUE) return 1;
    if (v->type == TERN_JSON_FALSE) return 0;
    return -1;
}

const char *tern_json_type_name(tern_json_type t) {
    switch (t) {
    case TERN_JSON_NULL: return "null";
    case TERN_JSON_FALSE:
    case TERN_JSON_TRUE: return "boolean";
    case TERN_JSON_NUMBER: return "number";
    case TERN_JSON_STRING: return "string";
    case TERN_JSON_ARRAY: return "array";
    case TERN_JSON_OBJECT: return "object";
    }
    return "?";
}
