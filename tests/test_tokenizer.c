// Tokenizer pieces that need no model: the pre-tokenizer scanners against
// Python's regex engine (fixture from tests/ref/bpe_ref.py), UTF-8 decoding and
// Unicode classes, and byte-level BPE rules on a hand-made vocabulary (merge
// order, leftmost ties, special tokens longest first, llama3's ignore_merges,
// unknown pre-tokenizers).
#include "core/error.h"
#include "core/file.h"
#include "test.h"
#include "tok/pretok.h"
#include "tok/tokenizer.h"
#include "tok/unicode.h"

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

static size_t unhex(char *s) {
    size_t n = strlen(s) / 2;
    for (size_t i = 0; i < n; i++) s[i] = (char)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
    s[n] = 0;
    return n;
}

typedef struct {
    int lens[4096];
    int n;
    size_t expect_start;
} pieces;

static int collect(void *ctx, size_t start, size_t end) {
    pieces *p = ctx;
    CHECK(start == p->expect_start && end > start); // contiguous, non-empty
    p->expect_start = end;
    if (p->n < 4096) p->lens[p->n++] = (int)(end - start);
    return 0;
}

static void test_pretok_vs_python(void) {
    char *data;
    size_t size;
    CHECK_OK(tern_read_file(test_src_path("tests/fixtures/smollm2_bpe.pretok"), &data, &size));
    int cases[3] = {0};
    for (char *line = data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        CHECK(t1 && t2);
        if (!t1 || !t2) break;
        *t1 = *t2 = 0;
        int kind = tern_pretok_from_name(line);
        CHECK(kind >= 0);
        char *text = t1 + 1;
        size_t len = unhex(text);
        int want[4096], nw = 0;
        for (char *p = t2 + 1; *p && nw < 4096;) {
            want[nw++] = (int)strtol(p, &p, 10);
            while (*p == ' ') p++;
        }
        pieces got = {.n = 0};
        CHECK_OK(tern_pretokenize((tern_pretok_kind)kind, text, len, collect, &got));
        int same = got.n == nw && memcmp(got.lens, want, (size_t)nw * sizeof *want) == 0;
        CHECK_MSG(same, "%s pre-tokenizer on '%s'", line, text);
        if (!same) {
            fprintf(stderr, "  got:");
            for (int i = 0; i < got.n; i++) fprintf(stderr, " %d", got.lens[i]);
            fprintf(stderr, "\n  want:");
            for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n");
        }
        cases[kind]++;
    }
    CHECK(cases[0] == 62 && cases[1] == 62 && cases[2] == 62);
    free(data);
    CHECK(tern_pretok_from_name("llama-bpe") == TERN_PRETOK_LLAMA3 && tern_pretok_from_name("") == TERN_PRETOK_GPT2);
    CHECK(tern_pretok_from_name("qwen2") == -1);
}

static void test_unicode(void) {
    int l;
    CHECK(tern_utf8_decode((const uint8_t *)"\xc3\xa9", 2, &l) == 0xE9 && l == 2);
    CHECK(tern_utf8_decode((const uint8_t *)"\xf0\x9f\x98\x80", 4, &l) == 0x1F600 && l == 4);
    // Truncated, overlong, surrogate, beyond U+10FFFF, stray continuation.
    const char *bad[] = {"\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(tern_utf8_decode((const uint8_t *)bad[i], strlen(bad[i]), &l) == TERN_UTF8_INVALID && l == 1);
    }
    char buf[4];
    CHECK(tern_utf8_encode(0x20AC, buf) == 3 && memcmp(buf, "\xe2\x82\xac", 3) == 0);
    CHECK(tern_uni_is_letter('a') && tern_uni_is_letter(0xE9) && tern_uni_is_letter(0x65E5) && !tern_uni_is_letter('1'));
    CHECK(tern_uni_is_number('7') && tern_uni_is_number(0x0663) && tern_uni_is_number(0xB2) && tern_uni_is_number(0x216B));
    CHECK(!tern_uni_is_number('x') && !tern_uni_is_letter(0x1F600) && !tern_uni_is_number(0x1F600));
    CHECK(tern_uni_is_space(' ') && tern_uni_is_space('\n') && tern_uni_is_space(0x85) && tern_uni_is_space(0xA0));
    CHECK(tern_uni_is_space(0x3000) && tern_uni_is_space(0x2028) && !tern_uni_is_space(0x1C) && !tern_uni_is_space(0x200B));
}

// A byte-level vocabulary: ids 0..255 are the byte characters (GPT-2 map),
// then merged tokens and specials.
typedef struct {
    tern_vocab v;
    int cap;
} vb;

static int vb_add(vb *b, const char *tok, int type) {
    tern_vocab *v = &b->v;
    if (v->n_tokens == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 512;
        v->tokens = realloc(v->tokens, (size_t)b->cap * sizeof *v->tokens);
        v->token_lens = realloc(v->token_lens, (size_t)b->cap * sizeof *v->token_lens);
        v->token_types = realloc(v->token_types, (size_t)b->cap * sizeof *v->token_types);
    }
    v->tokens[v->n_tokens] = strdup(tok);
    v->token_lens[v->n_tokens] = (int)strlen(tok);
    v->token_types[v->n_tokens] = type;
    return v->n_tokens++;
}

static void build_vocab(vb *b) {
    memset(b, 0, sizeof *b);
    int n = 0;
    for (int c = 0; c < 256; c++) {
        int keep = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE);
        uint32_t cp = keep ? (uint32_t)c : (uint32_t)(256 + n++);
        char u[5] = {0};
        tern_utf8_encode(cp, u);
        vb_add(b, u, TERN_TOKEN_NORMAL);
    }
    static const char *merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 h", "1 2"};
    b->v.n_merges = 6;
    b->v.merges = malloc(6 * sizeof *b->v.merges);
    for (int i = 0; i < 6; i++) {
        b->v.merges[i] = strdup(merges[i]);
        char joined[32];
        const char *sp = strchr(merges[i], ' ');
        snprintf(joined, sizeof joined, "%.*s%s", (int)(sp - merges[i]), merges[i], sp + 1);
        vb_add(b, joined, TERN_TOKEN_NORMAL);
    }
    vb_add(b, "\xc4\xa0hx", TERN_TOKEN_NORMAL); // a token merges never produce
    vb_add(b, "<x>", TERN_TOKEN_CONTROL);
    vb_add(b, "<x>y", TERN_TOKEN_USER_DEFINED);
    b->v.eos_id = vb_add(b, "</s>", TERN_TOKEN_CONTROL);
    vb_add(b, "<|eot_id|>", TERN_TOKEN_CONTROL);
    b->v.type = TERN_VOCAB_BPE;
    b->v.bos_id = b->v.unk_id = b->v.pad_id = -1;
    snprintf(b->v.pre, sizeof b->v.pre, "gpt2");
}

static int id_of(const tern_vocab *v, const char *s) { return tern_vocab_find(v, s); }

// Tokenizes `text` and compares with the given token strings.
static void expect(const tern_tokenizer *t, const tern_vocab *v, const char *text, int n, const char *const *toks) {
    int *ids, got;
    CHECK_OK(tern_tokenize(t, text, strlen(text), 0, &ids, &got));
    int ok = got == n;
    for (int i = 0; ok && i < n; i++) ok = ids[i] == id_of(v, toks[i]);
    CHECK_MSG(ok, "'%s': %d tokens, want %d", text, got, n);
    char *out;
    size_t len;
    CHECK_OK(tern_detokenize(t, ids, got, &out, &len));
    CHECK_MSG(len == strlen(text) && memcmp(out, text, len) == 0, "'%s' decodes to '%s'", text, out);
    free(out);
    free(ids);
}

static void test_bpe_rules(void) {
    vb b;
    build_vocab(&b);
    tern_vocab *v = &b.v;
    tern_tokenizer *t;
    CHECK_OK(tern_tokenizer_init(&t, v));
    if (!t) return;
    // Lowest rank first: "h e" before "Ġ h", so " hello" ends as Ġ + hello.
    expect(t, v, " hello", 2, (const char *[]){"\xc4\xa0", "hello"});
    expect(t, v, "hi", 2, (const char *[]){"h", "i"});
    expect(t, v, " hi", 2, (const char *[]){"\xc4\xa0h", "i"});
    // Equal pairs: the leftmost merges first.
    expect(t, v, "lll", 2, (const char *[]){"ll", "l"});
    // Specials are cut out first, longest match first, and survive decoding.
    expect(t, v, "<x>yz<x>", 3, (const char *[]){"<x>y", "z", "<x>"});
    expect(t, v, "a<x", 3, (const char *[]){"a", "<", "x"});
    expect(t, v, "</s> 12", 3, (const char *[]){"</s>", "\xc4\xa0", "12"});
    // gpt2 merges " hx" as far as the merges go; llama3 takes the whole token.
    expect(t, v, " hx", 2, (const char *[]){"\xc4\xa0h", "x"});
    CHECK(tern_tokenizer_is_eog(t, id_of(v, "</s>")) && tern_tokenizer_is_eog(t, id_of(v, "<|eot_id|>")));
    CHECK(!tern_tokenizer_is_eog(t, id_of(v, "<x>")) && !tern_tokenizer_add_bos(t));
    tern_tokenizer_free(t);
    snprintf(v->pre, sizeof v->pre, "llama3");
    CHECK_OK(tern_tokenizer_init(&t, v));
    if (t) expect(t, v, " hx", 1, (const char *[]){"\xc4\xa0hx"});
    tern_tokenizer_free(t);
    snprintf(v->pre, sizeof v->pre, "smollm");
    CHECK_OK(tern_tokenizer_init(&t, v));
    if (t) expect(t, v, "x 12", 4, (const char *[]){"x", "\xc4\xa0", "1", "2"}); // digits isolated
    tern_tokenizer_free(t);
    snprintf(v->pre, sizeof v->pre, "tekken");
    t = (tern_tokenizer *)v;
    CHECK_FAILS(tern_tokenizer_init(&t, v), "unknown BPE pre-tokenizer 'tekken'");
    CHECK(t == NULL);
    tern_vocab_free(v);
}

int main(void) {
    test_pretok_vs_python();
    test_unicode();
    test_bpe_rules();
    return test_report();
}
