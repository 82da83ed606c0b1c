// SentencePiece-style BPE tokenizer:
// - against the real SentencePiece library (fixtures from tests/ref/spm_fixtures.py:
//   a small byte-fallback BPE model exported to llama2.c's tokenizer.bin format),
// - against a naive O(n^2) llama2.c-style encoder on stories260K's tok512.bin,
// - exact round trips on real corpora, invalid UTF-8, decoding conventions.
#include "core/error.h"
#include "core/file.h"
#include "core/threads.h"
#include "io/readers.h"
#include "test.h"
#include "tok/tokenizer.h"

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

// Decodes hex in place; returns the byte count.
static size_t unhex(char *s) {
    size_t n = strlen(s) / 2;
    for (size_t i = 0; i < n; i++) s[i] = (char)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
    s[n] = 0;
    return n;
}

static int same_ids(const int *a, int na, const int *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static void print_ids(const char *label, const int *ids, int n) {
    fprintf(stderr, "  %s:", label);
    for (int i = 0; i < n && i < 60; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "%s\n", n > 60 ? " ..." : "");
}

static void test_vs_sentencepiece(void) {
    tern_vocab v = {0};
    CHECK_OK(tern_llama2c_tokenizer_load(&v, test_src_path("tests/fixtures/spm_small.tok.bin"), 800));
    tern_tokenizer *t;
    CHECK_OK(tern_tokenizer_init(&t, &v));
    if (!t) return;
    char *data;
    size_t size;
    CHECK_OK(tern_read_file(test_src_path("tests/fixtures/spm_small.expected"), &data, &size));
    int cases = 0, nonascii = 0, bytefb = 0;
    static int want[65536];
    for (char *line = strtok(data, "\n"), *next; line; line = next) {
        next = strtok(NULL, "\n");
        char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        CHECK(tab1 && tab2);
        if (!tab1 || !tab2) break;
        *tab1 = *tab2 = 0;
        char *text = line, *dec = tab2 + 1;
        size_t len = unhex(text);
        // strtok is busy with the lines: split the ids by hand.
        int nw = 0;
        for (char *p = tab1 + 1; *p && nw < 65536;) {
            want[nw++] = (int)strtol(p, &p, 10);
            while (*p == ' ') p++;
        }
        int *ids, n;
        CHECK_OK(tern_tokenize(t, text, len, 0, &ids, &n));
        CHECK_MSG(same_ids(ids, n, want, nw), "case %d '%.60s'", cases, text);
        if (!same_ids(ids, n, want, nw)) print_ids("got", ids, n), print_ids("want", want, nw);
        for (int i = 0; i < n; i++) bytefb += ids[i] >= 3 && ids[i] <= 258;
        for (size_t i = 0; i < len; i++) nonascii += (text[i] & 0x80) != 0;
        char *out;
        size_t olen;
        CHECK_OK(tern_detokenize(t, want, nw, &out, &olen));
        size_t dlen = strcmp(dec, "=") ? unhex(dec) : len;
        const char *expect = strcmp(dec, "=") ? dec : text;
        CHECK_MSG(olen == dlen && memcmp(out, expect, dlen) == 0, "decode case %d '%.60s' -> '%.60s'", cases, text, out);
        free(out);
        // With BOS: the same ids after it, and BOS decodes to nothing.
        int *bids, bn;
        CHECK_OK(tern_tokenize(t, text, len, 1, &bids, &bn));
        CHECK(bn == n + 1 && bids[0] == 1 && same_ids(bids + 1, bn - 1, ids, n));
        CHECK_OK(tern_detokenize(t, bids, bn, &out, &olen));
        CHECK(olen == dlen && memcmp(out, expect, dlen) == 0);
        free(out);
        free(bids);
        free(ids);
        cases++;
    }
    CHECK(cases == 93);
    CHECK(nonascii > 100 && bytefb > 20); // the fixtures do exercise both
    free(data);
    tern_tokenizer_free(t);
    tern_vocab_free(&v);
}

// llama2.c's encoder, written the obvious way: repeatedly merge the adjacent
// pair with the best score (first one wins ties) until no pair is a piece.
static int naive_encode(const tern_vocab *v, const char *text, int *out) {
    static char norm[1 << 16];
    static int start[1 << 16], len[1 << 16];
    size_t k = 0;
    memcpy(norm, "\xe2\x96\x81", 3), k = 3;
    for (const char *p = text; *p; p++)
        if (*p == ' ') memcpy(norm + k, "\xe2\x96\x81", 3), k += 3;
        else norm[k++] = *p;
    int n = 0;
    for (size_t i = 0; i < k;) {
        int l = 1;
        unsigned char c = (unsigned char)norm[i];
        if (c >= 0xF0) l = 4;
        else if (c >= 0xE0) l = 3;
        else if (c >= 0xC0) l = 2;
        start[n] = (int)i, len[n++] = l;
        i += (size_t)l;
    }
    for (;;) {
        int best = -1;
        float best_score = -1e30f;
        for (int i = 0; i + 1 < n; i++) {
            for (int id = 0; id < v->n_tokens; id++) {
                if (v->token_types[id] != TERN_TOKEN_NORMAL || v->token_lens[id] != len[i] + len[i + 1] ||
                    memcmp(v->tokens[id], norm + start[i], (size_t)v->token_lens[id]) != 0)
                    continue;
                if (v->scores[id] > best_score) best_score = v->scores[id], best = i;
            }
        }
        if (best < 0) break;
        len[best] += len[best + 1];
        memmove(start + best + 1, start + best + 2, (size_t)(n - best - 2) * sizeof *start);
        memmove(len + best + 1, len + best + 2, (size_t)(n - best - 2) * sizeof *len);
        n--;
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        int id = -1;
        for (int j = 0; j < v->n_tokens && id < 0; j++)
            if (v->token_types[j] == TERN_TOKEN_NORMAL && v->token_lens[j] == len[i] &&
                memcmp(v->tokens[j], norm + start[i], (size_t)len[i]) == 0)
                id = j;
        if (id >= 0) out[m++] = id;
        else
            for (int b = 0; b < len[i]; b++) out[m++] = 3 + (unsigned char)norm[start[i] + b];
    }
    return m;
}

static void test_vs_naive_tok512(const tern_vocab *v, const tern_tokenizer *t) {
    char *data;
    size_t size;
    CHECK_OK(tern_read_file(test_data_path("data/tinystories/valid-sample.txt"), &data, &size));
    int lines = 0, bad = 0;
    static int want[1 << 16];
    for (char *line = strtok(data, "\n"); line && lines < 120; line = strtok(NULL, "\n")) {
        if (strlen(line) > 2000) continue;
        int nw = naive_encode(v, line, want);
        int *ids, n;
        CHECK_OK(tern_tokenize(t, line, strlen(line), 0, &ids, &n));
        if (!same_ids(ids, n, want, nw) && bad++ < 3) {
            fprintf(stderr, "tok512 mismatch on '%.80s'\n", line);
            print_ids("got", ids, n), print_ids("want", want, nw);
        }
        free(ids);
        lines++;
    }
    CHECK_MSG(bad == 0, "%d of %d lines differ from the naive encoder", bad, lines);
    CHECK(lines == 120);
    free(data);
}

static void round_trip(const tern_tokenizer *t, const char *label, const char *text, size_t len) {
    double t0 = tern_now_sec();
    int *ids, n;
    CHECK_OK(tern_tokenize(t, text, len, 1, &ids, &n));
    double t1 = tern_now_sec();
    char *out;
    size_t olen;
    CHECK_OK(tern_detokenize(t, ids, n, &out, &olen));
    CHECK_MSG(olen == len && memcmp(out, text, len) == 0, "%s: round trip differs (%zu -> %zu bytes)", label, len,
              olen);
    printf("%-40s %8zu bytes -> %7d tokens, encode %.3f s (%.1f MB/s)\n", label, len, n, t1 - t0,
           (double)len / 1e6 / (t1 - t0 + 1e-9));
    free(out);
    free(ids);
}

static void round_trip_file(const tern_tokenizer *t, const char *name, const char *rel, size_t limit) {
    char *data;
    size_t size;
    if (tern_read_file(test_data_path(rel), &data, &size)) {
        CHECK_MSG(0, "%s", tern_last_error());
        return;
    }
    if (size > limit) {
        size = limit;
        while (size && (data[size] & 0xC0) == 0x80) size--; // keep whole characters
    }
    char label[128];
    snprintf(label, sizeof label, "%s %s", name, rel);
    round_trip(t, label, data, size);
    free(data);
}

static void test_round_trips(const tern_tokenizer *t, const char *name) {
    round_trip_file(t, name, "data/tinystories/valid-sample.txt", SIZE_MAX);
    round_trip_file(t, name, "data/wikitext-2-raw/wiki.test.raw", SIZE_MAX);
    round_trip_file(t, name, "data/brown/brown.txt", 200000);
    // Invalid UTF-8 survives through byte tokens.
    const char bad[] = "\xff\xfe ok \xc3 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf end\xe2";
    round_trip(t, "invalid utf-8", bad, sizeof bad - 1);
    // (A literal U+2581 is the one exception: it decodes as ' ', as in SentencePiece.)
    const char *odd[] = {" ", "  ", "\n", " x ", "<0x41>", "<s>", "\t\t", "a\0b"};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++)
        round_trip(t, "odd input", odd[i], i == 7 ? 3 : strlen(odd[i]));
}

static void test_tok512(void) {
    tern_vocab v = {0};
    CHECK_OK(tern_llama2c_tokenizer_load(&v, test_data_path("models/stories260K/tok512.bin"), 512));
    tern_tokenizer *t;
    CHECK_OK(tern_tokenizer_init(&t, &v));
    if (!t) return;
    test_vs_naive_tok512(&v, t);
    test_round_trips(t, "tok512");
    // Empty text: nothing, or just BOS.
    int *ids, n;
    CHECK_OK(tern_tokenize(t, "", 0, 1, &ids, &n));
    CHECK(n == 1 && ids[0] == 1);
    free(ids);
    CHECK_OK(tern_tokenize(t, "", 0, 0, &ids, &n));
    CHECK(n == 0);
    free(ids);
    // Decoding conventions: the leading space goes only right after BOS or at
    // the very start; control tokens are empty.
    int the = tern_vocab_find(&v, "\xe2\x96\x81the");
    CHECK(the > 258);
    char buf[16];
    CHECK(tern_token_to_bytes(t, 1, the, buf, sizeof buf) == 3 && memcmp(buf, "the", 3) == 0);
    CHECK(tern_token_to_bytes(t, -1, the, buf, sizeof buf) == 3);
    CHECK(tern_token_to_bytes(t, 100, the, buf, sizeof buf) == 4 && memcmp(buf, " the", 4) == 0);
    CHECK(tern_token_to_bytes(t, 100, the, buf, 2) == 4); // full length reported, 2 written
    CHECK(tern_token_to_bytes(t, 100, 1, buf, sizeof buf) == 0);
    CHECK(tern_token_to_bytes(t, 100, 2, buf, sizeof buf) == 0);
    CHECK(tern_token_to_bytes(t, 100, 3 + 'A', buf, sizeof buf) == 1 && buf[0] == 'A');
    CHECK(tern_token_to_bytes(t, 100, 99999, buf, sizeof buf) == 0);
    CHECK(tern_tokenizer_bos(t) == 1 && tern_tokenizer_eos(t) == 2 && tern_tokenizer_add_bos(t));
    CHECK(tern_tokenizer_is_eog(t, 2) && !tern_tokenizer_is_eog(t, 1) && !tern_tokenizer_is_eog(t, the));
    int bad_ids[] = {5, 512};
    char *out;
    size_t olen;
    CHECK_FAILS(tern_detokenize(t, bad_ids, 2, &out, &olen), "token id 512 out of range");
    tern_tokenizer_free(t);
    tern_vocab_free(&v);
    // The small fixture model has more multi-byte pieces: round trips again.
    CHECK_OK(tern_llama2c_tokenizer_load(&v, test_src_path("tests/fixtures/spm_small.tok.bin"), 800));
    CHECK_OK(tern_tokenizer_init(&t, &v));
    if (t) test_round_trips(t, "spm_small");
    tern_tokenizer_free(t);
    tern_vocab_free(&v);
}

static void test_init_errors(void) {
    tern_vocab v = {0};
    tern_tokenizer *t = (tern_tokenizer *)&v;
    CHECK_FAILS(tern_tokenizer_init(&t, &v), "unsupported vocabulary type");
    CHECK(t == NULL);
    v.type = TERN_VOCAB_SPM;
    CHECK_FAILS(tern_tokenizer_init(&t, &v), "empty vocabulary");
}

int main(void) {
    test_vs_sentencepiece();
    test_tok512();
    test_init_errors();
    return test_report();
}
