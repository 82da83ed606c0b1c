// JSON parser: valid documents (escapes, surrogates, numbers, nesting, key
// order) and invalid ones, with the error text (NAME:LINE:COL: problem).
#include <stdint.h>
#include <time.h>

#include "core/error.h"
#include "io/json.h"
#include "test.h"

static int parse(tern_json_doc *d, const char *s) { return tern_json_parse(d, s, strlen(s), "t.json"); }

static void test_valid(void) {
    tern_json_doc d;
    CHECK_OK(parse(&d, " {\"b\": [1, 2.5, -0, 1e3, -1.25E-2, 0.1], \"a\": {\"x\": null, \"y\": true, \"z\": false},"
                      " \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC\\ud83d\\ude00\", \"e\": [], \"o\": {}} \n"));
    const tern_json *r = d.root;
    CHECK(r && r->type == TERN_JSON_OBJECT && r->len == 5);
    // Key order is kept.
    CHECK(tern_json_str_eq(tern_json_key(r, 0), "b") && tern_json_str_eq(tern_json_key(r, 1), "a"));
    CHECK(tern_json_str_eq(tern_json_key(r, 4), "o"));
    const tern_json *b = tern_json_get(r, "b");
    CHECK(b && b->type == TERN_JSON_ARRAY && b->len == 6);
    CHECK(tern_json_at(b, 0)->is_int && tern_json_at(b, 0)->i == 1 && tern_json_at(b, 0)->num == 1.0);
    CHECK(!tern_json_at(b, 1)->is_int && tern_json_at(b, 1)->num == 2.5);
    const tern_json *negz = tern_json_at(b, 2);
    CHECK(negz->num == 0 && signbit(negz->num) && negz->is_int && negz->i == 0);
    CHECK(tern_json_at(b, 3)->num == 1000.0 && tern_json_at(b, 3)->is_int && tern_json_at(b, 3)->i == 1000);
    CHECK(tern_json_at(b, 4)->num == -1.25e-2);
    CHECK(tern_json_at(b, 5)->num == 0.1); // correctly rounded
    CHECK(tern_json_at(b, 6) == NULL);
    const tern_json *a = tern_json_get(r, "a");
    CHECK(tern_json_get(a, "x")->type == TERN_JSON_NULL && tern_json_bool(tern_json_get(a, "y"), 0) == 1);
    CHECK(tern_json_bool(tern_json_get(a, "z"), 1) == 0 && tern_json_bool(tern_json_get(a, "w"), 7) == 7);
    const char *want = "q\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    const tern_json *s = tern_json_get(r, "s");
    CHECK(s && s->len == strlen(want) && strcmp(s->str, want) == 0);
    CHECK(tern_json_get(r, "e")->len == 0 && tern_json_get(r, "o")->type == TERN_JSON_OBJECT);
    CHECK(tern_json_get(r, "missing") == NULL && tern_json_get(b, "x") == NULL);
    tern_json_free(&d);

    // Big integers stay exact; beyond int64 they are doubles only.
    CHECK_OK(parse(&d, "[9007199254740993, -9223372036854775808, 9223372036854775807, 9223372036854775808,"
                      " 123456789012345678901234567890, 1.5e300, 4.9e-324]"));
    r = d.root;
    CHECK(tern_json_at(r, 0)->is_int && tern_json_at(r, 0)->i == 9007199254740993LL);
    CHECK(tern_json_at(r, 1)->is_int && tern_json_at(r, 1)->i == INT64_MIN);
    CHECK(tern_json_at(r, 2)->is_int && tern_json_at(r, 2)->i == INT64_MAX);
    CHECK(!tern_json_at(r, 3)->is_int && tern_json_at(r, 3)->num == 9223372036854775808.0);
    CHECK(!tern_json_at(r, 4)->is_int && tern_json_at(r, 4)->num == 1.2345678901234568e29);
    CHECK(tern_json_at(r, 5)->num == 1.5e300 && tern_json_at(r, 6)->num == 4.9e-324);
    tern_json_free(&d);

    // Scalars at top level, a BOM, an embedded NUL, duplicate keys (last wins).
    CHECK_OK(parse(&d, "\xef\xbb\xbf \"x\\u0000y\""));
    CHECK(d.root->type == TERN_JSON_STRING && d.root->len == 3 && memcmp(d.root->str, "x\0y", 3) == 0);
    tern_json_free(&d);
    CHECK_OK(parse(&d, "{\"k\": 1, \"k\": 2}"));
    CHECK(tern_json_get(d.root, "k")->i == 2);
    tern_json_free(&d);
    CHECK_OK(tern_json_parse(&d, "123", 2, "n.json")); // not NUL-terminated: size bounds it
    CHECK(d.root->i == 12);
    tern_json_free(&d);

    // Nesting at the limit parses.
    char deep[2 * TERN_JSON_MAX_DEPTH + 1];
    for (int i = 0; i < TERN_JSON_MAX_DEPTH; i++) {
        deep[i] = '[';
        deep[2 * TERN_JSON_MAX_DEPTH - 1 - i] = ']';
    }
    deep[2 * TERN_JSON_MAX_DEPTH] = 0;
    CHECK_OK(parse(&d, deep));
    tern_json_free(&d);
}

static void fails(const char *doc, const char *needle) {
    tern_json_doc d;
    CHECK_FAILS(parse(&d, doc), needle);
    CHECK(d.root == NULL && d.arena == NULL);
    tern_json_free(&d);
}

static void test_invalid(void) {
    fails("", "t.json:1:1: unexpected end of input");
    fails("   ", "t.json:1:4: unexpected end of input");
    fails("[1, 2,]", "t.json:1:7: trailing comma before ']'");
    fails("{\"a\": 1,\n  }", "t.json:2:3: trailing comma before '}'");
    fails("{\n  \"a\": 1,\n  \"b\": 2\n  \"c\": 3}", "t.json:4:3: expected ',' or '}'");
    fails("[1 2]", "t.json:1:4: expected ',' or ']'");
    fails("{\"a\" 1}", "t.json:1:6: expected ':'");
    fails("{a: 1}", "t.json:1:2: expected a string key");
    fails("\"abc", "t.json:1:1: unterminated string");
    fails("\"ab\\", "unterminated string");
    fails("\"a\\qb\"", "t.json:1:3: invalid escape '\\q'");
    fails("\"\\u12G4\"", "invalid \\u escape");
    fails("\"\\ud83d\"", "t.json:1:2: lone high surrogate \\uD83D");
    fails("\"\\ud83d\\u0041\"", "lone high surrogate");
    fails("\"\\ude00\"", "lone low surrogate \\uDE00");
    fails("\"a\tb\"", "t.json:1:3: control character 0x09 in string");
    fails("\"a\nb\"", "control character 0x0a");
    fails("\"\xff\"", "t.json:1:2: invalid UTF-8 byte 0xff");
    fails("\"\xc3\"", "invalid UTF-8");           // truncated sequence
    fails("\"\xc0\xaf\"", "invalid UTF-8");       // overlong '/'
    fails("\"\xed\xa0\x80\"", "invalid UTF-8");   // encoded surrogate
    fails("\"\xf4\x90\x80\x80\"", "invalid UTF-8"); // above U+10FFFF
    fails("[\xe9]", "t.json:1:2: unexpected byte 0xe9");
    fails("01", "t.json:1:1: leading zero");
    fails("-01", "leading zero");
    fails("[1.]", "t.json:1:4: invalid number (expected a digit after '.')");
    fails("[.5]", "unexpected '.'");
    fails("[1e]", "expected a digit in the exponent");
    fails("[-]", "invalid number");
    fails("[+1]", "unexpected '+'");
    fails("[1e999]", "number out of range");
    fails("[NaN]", "unexpected 'N'");
    fails("tru", "unexpected 't'");
    fails("nul", "expected a value");
    fails("{} {}", "t.json:1:4: unexpected '{' after the JSON value");
    fails("[1]x", "after the JSON value");
    // Nesting bomb: fails cleanly at the limit instead of exhausting the stack.
    size_t n = 100000;
    char *bomb = malloc(n + 1);
    memset(bomb, '[', n);
    bomb[n] = 0;
    char needle[64];
    snprintf(needle, sizeof needle, "t.json:1:%d: nesting deeper than %d levels", TERN_JSON_MAX_DEPTH + 1,
             TERN_JSON_MAX_DEPTH);
    fails(bomb, needle);
    for (size_t i = 0; i + 6 <= n; i += 6) memcpy(bomb + i, "[{\"a\":", 6);
    fails(bomb, "nesting deeper");
    free(bomb);
}

// A few-MB tokenizer-like document: parse speed (printed, not asserted).
static void test_speed(void) {
    size_t cap = 8 << 20, len = 0;
    char *buf = malloc(cap);
    len += (size_t)snprintf(buf + len, cap - len, "{\"model\":{\"vocab\":{");
    int n = 0;
    while (len < (3u << 20)) { // ~3 MB of vocab, then merges (< 3 MB)
        len += (size_t)snprintf(buf + len, cap - len, "%s\"\\u0120tok%d\\u00e9n\":%d", n ? "," : "", n, n);
        n++;
    }
    len += (size_t)snprintf(buf + len, cap - len, "},\"merges\":[");
    for (int i = 0; i < n / 2; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s[\"t%d\",\"o%d\"]", i ? "," : "", i, i);
    len += (size_t)snprintf(buf + len, cap - len, "],\"x\":[0.125,1e-5,3.14159]}}");
    tern_json_doc d = {0};
    double s = 1e9;
    for (int rep = 0; rep < 3; rep++) { // best of 3: the machine may be busy
        tern_json_free(&d);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = tern_json_parse(&d, buf, len, "big.json");
        clock_gettime(CLOCK_MONOTONIC, &t1);
        CHECK_OK(rc);
        double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (dt < s) s = dt;
    }
    const tern_json *vocab = tern_json_get(tern_json_get(d.root, "model"), "vocab");
    CHECK(vocab && (int)vocab->len == n && tern_json_value(vocab, (size_t)n - 1)->i == n - 1);
    CHECK(tern_json_str_eq(tern_json_key(vocab, 7), "\xc4\xa0tok7\xc3\xa9n"));
    printf("parsed %.1f MB (%d vocab entries) in %.1f ms: %.0f MB/s\n", (double)len / 1e6, n, s * 1e3,
           (double)len / 1e6 / s);
    tern_json_free(&d);
    free(buf);
}

int main(void) {
    test_valid();
    test_invalid();
    test_speed();
    return test_report();
}
