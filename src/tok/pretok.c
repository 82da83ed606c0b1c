// Pre-tokenizer scanners. The text is decoded once into code points with a
// class each; every scanner then finds the end of the regex match starting at
// character i, trying the alternatives in the regex's order (leftmost-first
// semantics, which is what Oniguruma/PCRE give and what the models were
// trained with).
#include "tok/pretok.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tok/unicode.h"

enum { CL_LETTER, CL_NUMBER, CL_SPACE, CL_OTHER };

typedef struct {
    size_t n;        // characters
    uint32_t *cp;    // code point (TERN_UTF8_INVALID for a stray byte)
    uint8_t *cl;     // class
    size_t *off;     // byte offset of each character; off[n] == byte length
} chars;

int tern_pretok_from_name(const char *name) {
    if (!strcmp(name, "") || !strcmp(name, "gpt2") || !strcmp(name, "default")) return TERN_PRETOK_GPT2;
    if (!strcmp(name, "smollm")) return TERN_PRETOK_SMOLLM;
    if (!strcmp(name, "llama3") || !strcmp(name, "llama-bpe")) return TERN_PRETOK_LLAMA3;
    return -1;
}

static int classify(uint32_t cp) {
    if (cp == TERN_UTF8_INVALID) return CL_OTHER;
    if (tern_uni_is_letter(cp)) return CL_LETTER;
    if (tern_uni_is_number(cp)) return CL_NUMBER;
    if (tern_uni_is_space(cp)) return CL_SPACE;
    return CL_OTHER;
}

static int chars_decode(chars *c, const char *text, size_t len) {
    c->cp = malloc((len + 1) * sizeof *c->cp);
    c->cl = malloc(len + 1);
    c->off = malloc((len + 1) * sizeof *c->off);
    if (!c->cp || !c->cl || !c->off) return tern_errorf("out of memory");
    const uint8_t *s = (const uint8_t *)text;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int l;
        uint32_t cp = tern_utf8_decode(s + i, len - i, &l);
        c->cp[n] = cp;
        c->cl[n] = (uint8_t)classify(cp);
        c->off[n] = i;
        n++;
        i += (size_t)l;
    }
    c->off[n] = len;
    c->n = n;
    return 0;
}

static void chars_free(chars *c) {
    free(c->cp);
    free(c->cl);
    free(c->off);
}

static size_t run_of(const chars *c, size_t i, int cl) {
    while (i < c->n && c->cl[i] == cl) i++;
    return i;
}

static uint32_t lower_ascii(uint32_t cp) { return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp; }

// 's 't 're 've 'm 'll 'd at i; returns the end or 0. `fold`: (?i:...).
static size_t contraction(const chars *c, size_t i, int fold) {
    if (c->cp[i] != '\'' || i + 1 >= c->n) return 0;
    uint32_t a = c->cp[i + 1], b = i + 2 < c->n ? c->cp[i + 2] : 0;
    if (fold) a = lower_ascii(a), b = lower_ascii(b);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

// \s+(?!\S)|\s+ at a whitespace character i: the whole run when it ends the
// text; otherwise all but its last character (which then prefixes the next
// word), or the single character when the run is one long.
static size_t space_run(const chars *c, size_t i) {
    size_t j = run_of(c, i, CL_SPACE);
    if (j == c->n || j - i == 1) return j;
    return j - 1;
}

static size_t gpt2_match(const chars *c, size_t i) {
    size_t e = contraction(c, i, 0);
    if (e) return e;
    size_t p = i;
    // " ?X+": the optional space belongs to the word when one follows it.
    if (c->cp[i] == ' ' && i + 1 < c->n && c->cl[i + 1] != CL_SPACE) p = i + 1;
    if (c->cl[p] != CL_SPACE) return run_of(c, p, c->cl[p]);
    return space_run(c, i);
}

static int is_crlf(uint32_t cp) { return cp == '\r' || cp == '\n'; }

static size_t llama3_match(const chars *c, size_t i) {
    size_t e = contraction(c, i, 1);
    if (e) return e;
    int cl = c->cl[i];
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (cl == CL_LETTER) return run_of(c, i, CL_LETTER);
    if (cl != CL_NUMBER && !is_crlf(c->cp[i]) && i + 1 < c->n && c->cl[i + 1] == CL_LETTER)
        return run_of(c, i + 1, CL_LETTER);
    // \p{N}{1,3}
    if (cl == CL_NUMBER) {
        size_t j = i + 1;
        while (j < c->n && j < i + 3 && c->cl[j] == CL_NUMBER) j++;
        return j;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    size_t p = c->cp[i] == ' ' && i + 1 < c->n && c->cl[i + 1] == CL_OTHER ? i + 1 : i;
    if (c->cl[p] == CL_OTHER) {
        size_t j = run_of(c, p, CL_OTHER);
        while (j < c->n && is_crlf(c->cp[j])) j++;
        return j;
    }
    // \s*[\r\n]+ : up to the last line break of the whitespace run.
    size_t j = run_of(c, i, CL_SPACE);
    for (size_t k = j; k > i; k--)
        if (is_crlf(c->cp[k - 1])) return k;
    return space_run(c, i);
}

static int scan(const chars *c, size_t from, size_t to, tern_pretok_kind kind, tern_pretok_emit emit, void *ctx) {
    // The scanners look at most at c->n; a sub-range scan uses a view.
    chars v = {.n = to, .cp = c->cp, .cl = c->cl, .off = c->off};
    for (size_t i = from; i < to;) {
        size_t j = kind == TERN_PRETOK_LLAMA3 ? llama3_match(&v, i) : gpt2_match(&v, i);
        int rc = emit(ctx, c->off[i], c->off[j]);
        if (rc) return rc;
        i = j;
    }
    return 0;
}

int tern_pretokenize(tern_pretok_kind kind, const char *text, size_t len, tern_pretok_emit emit, void *ctx) {
    if (len == 0) return 0;
    chars c = {0};
    int rc = chars_decode(&c, text, len);
    if (rc == 0 && kind == TERN_PRETOK_SMOLLM) {
        // Digits(individual_digits): each \p{N} is a piece; gpt2 runs between them.
        size_t start = 0;
        for (size_t i = 0; i <= c.n && rc == 0; i++) {
            if (i < c.n && c.cl[i] != CL_NUMBER) continue;
            rc = scan(&c, start, i, TERN_PRETOK_GPT2, emit, ctx);
            if (rc == 0 && i < c.n) rc = emit(ctx, c.off[i], c.off[i + 1]);
            start = i + 1;
        }
    } else if (rc == 0) {
        rc = scan(&c, 0, c.n, kind, emit, ctx);
    }
    chars_free(&c);
    return rc;
}
