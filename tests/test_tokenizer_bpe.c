// Byte-level BPE on SmolLM2-135M's real vocabulary (read from its GGUF) against
// the independent Python reference tests/ref/bpe_ref.py, plus round trips on
// real corpora, special tokens and end-of-generation ids.
#include "core/error.h"
#include "core/file.h"
#include "core/threads.h"
#include "io/readers.h"
#include "test.h"
#include "tok/tokenizer.h"

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

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

static void test_vs_reference(const tern_tokenizer *t) {
    char *data;
    size_t size;
    CHECK_OK(tern_read_file(test_src_path("tests/fixtures/smollm2_bpe.expected"), &data, &size));
    int cases = 0, specials = 0;
    static int want[65536];
    for (char *line = data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *tab = strchr(line, '\t');
        CHECK(tab != NULL);
        if (!tab) break;
        *tab = 0;
        size_t len = unhex(line);
        int nw = 0;
        for (char *p = tab + 1; *p && nw < 65536;) {
            want[nw++] = (int)strtol(p, &p, 10);
            while (*p == ' ') p++;
        }
        int *ids, n;
        CHECK_OK(tern_tokenize(t, line, len, 0, &ids, &n));
        CHECK_MSG(same_ids(ids, n, want, nw), "case %d '%.60s'", cases, line);
        if (!same_ids(ids, n, want, nw)) print_ids("got", ids, n), print_ids("want", want, nw);
        specials += strstr(line, "<|im_start|>") != NULL;
        char *out;
        size_t olen;
        CHECK_OK(tern_detokenize(t, want, nw, &out, &olen));
        CHECK_MSG(olen == len && memcmp(out, line, len) == 0, "decode case %d '%.60s'", cases, line);
        free(out);
        free(ids);
        cases++;
    }
    CHECK(cases == 100 && specials == 2);
    free(data);
}

static void round_trip(const tern_tokenizer *t, const char *label, const char *text, size_t len) {
    double t0 = tern_now_sec();
    int *ids, n;
    CHECK_OK(tern_tokenize(t, text, len, 0, &ids, &n));
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

static void round_trip_file(const tern_tokenizer *t, const char *rel, size_t limit) {
    char *data;
    size_t size;
    if (tern_read_file(test_data_path(rel), &data, &size)) {
        CHECK_MSG(0, "%s", tern_last_error());
        return;
    }
    if (size > limit) {
        size = limit;
        while (size && (data[size] & 0xC0) == 0x80) size--;
    }
    round_trip(t, rel, data, size);
    free(data);
}

static void test_specials(const tern_vocab *v, const tern_tokenizer *t) {
    int start = tern_vocab_find(v, "<|im_start|>"), end = tern_vocab_find(v, "<|im_end|>");
    int eot = tern_vocab_find(v, "<|endoftext|>");
    CHECK(start >= 0 && end >= 0 && eot >= 0);
    const char *chat = "<|im_start|>user\nHi<|im_end|>";
    int *ids, n;
    CHECK_OK(tern_tokenize(t, chat, strlen(chat), 0, &ids, &n));
    CHECK(n >= 4 && ids[0] == start && ids[n - 1] == end);
    free(ids);
    CHECK(tern_tokenizer_is_eog(t, end) && tern_tokenizer_is_eog(t, eot) && tern_tokenizer_is_eog(t, v->eos_id));
    CHECK(!tern_tokenizer_is_eog(t, start));
    // Control tokens decode to their text (so encode/decode stay inverse).
    char buf[32];
    CHECK(tern_token_to_bytes(t, -1, end, buf, sizeof buf) == 10 && memcmp(buf, "<|im_end|>", 10) == 0);
    // A space token decodes to a space byte, Ċ to a newline.
    int sp = tern_vocab_find(v, "\xc4\xa0"), nl = tern_vocab_find(v, "\xc4\x8a");
    CHECK(sp >= 0 && tern_token_to_bytes(t, -1, sp, buf, sizeof buf) == 1 && buf[0] == ' ');
    CHECK(nl >= 0 && tern_token_to_bytes(t, -1, nl, buf, sizeof buf) == 1 && buf[0] == '\n');
    // BOS is added only on request.
    if (v->bos_id >= 0) {
        CHECK_OK(tern_tokenize(t, "Hi", 2, 1, &ids, &n));
        CHECK(n >= 2 && ids[0] == v->bos_id);
        free(ids);
    }
}

int main(void) {
    tern_vocab v = {0};
    CHECK_OK(tern_gguf_load_vocab(&v, test_smollm2_path()));
    CHECK(v.type == TERN_VOCAB_BPE && strcmp(v.pre, "smollm") == 0 && v.n_merges > 40000);
    tern_tokenizer *t = NULL;
    double t0 = tern_now_sec();
    CHECK_OK(tern_tokenizer_init(&t, &v));
    printf("init %.3f s (%d tokens, %d merges)\n", tern_now_sec() - t0, v.n_tokens, v.n_merges);
    if (t) {
        test_vs_reference(t);
        test_specials(&v, t);
        round_trip_file(t, "data/tinystories/valid-sample.txt", SIZE_MAX);
        round_trip_file(t, "data/wikitext-2-raw/wiki.test.raw", SIZE_MAX);
        round_trip_file(t, "data/brown/brown.txt", 200000);
        // Invalid UTF-8 made of bytes the vocabulary has tokens for survives.
        const char bad[] = "\xc3 ok \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 \xc3\x28 \x80\x80 end\xe2";
        round_trip(t, "invalid utf-8", bad, sizeof bad - 1);
        // Bytes SmolLM2 has no token for are dropped, never mapped to unk id 0
        // (<|endoftext|>).
        int *ids, n;
        CHECK_OK(tern_tokenize(t, "a\x04" "b\xff" "c", 5, 0, &ids, &n));
        char *out;
        size_t olen;
        CHECK_OK(tern_detokenize(t, ids, n, &out, &olen));
        CHECK(olen == 3 && memcmp(out, "abc", 3) == 0);
        for (int i = 0; i < n; i++) CHECK(ids[i] != 0);
        free(out);
        free(ids);
        round_trip(t, "NUL byte", "a\0b", 3);
    }
    tern_tokenizer_free(t);
    // An unknown pre-tokenizer is refused by name.
    snprintf(v.pre, sizeof v.pre, "qwen2");
    CHECK_FAILS(tern_tokenizer_init(&t, &v), "unknown BPE pre-tokenizer 'qwen2'");
    tern_vocab_free(&v);
    return test_report();
}
