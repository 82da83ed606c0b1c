// The OpenAI request reader and the streamed-text filter of tern serve:
// defaults and overrides, every kind of bad field (status 400 naming it),
// stop strings found across piece boundaries and never released, UTF-8
// characters never split across stream chunks, and error/response JSON that
// the project's own strict JSON parser reads back.
#include "io/json.h"
#include "serve/oai.h"
#include "test.h"

static const oai_defaults defs = {.temp = 0.8f, .top_p = 0.95f, .repeat_penalty = 1, .seed = 5};

static int parse(oai_request *r, oai_kind k, const char *body, oai_error *e) {
    return oai_parse(r, k, body, strlen(body), &defs, e);
}

static void test_parse(void) {
    oai_request r;
    oai_error e;
    CHECK_OK(parse(&r, OAI_COMPLETION, "{\"prompt\": \"hi\"}", &e));
    CHECK(!strcmp(r.prompt, "hi") && r.max_tokens == -1 && r.temp == 0.8f && r.top_p == 0.95f && r.seed == 5);
    CHECK(!r.stream && !r.seed_given && r.n_stop == 0);
    oai_request_free(&r);
    CHECK_OK(parse(&r, OAI_COMPLETION,
                   "{\"prompt\": [\"hi\"], \"max_tokens\": 7, \"temperature\": 0, \"top_p\": 0.5, \"seed\": 9,"
                   " \"stream\": true, \"stop\": [\"a\", \"\", \"bc\"], \"stream_options\": {\"include_usage\": true},"
                   " \"user\": \"ignored\", \"logprobs\": null, \"n\": 1}", &e));
    CHECK(r.max_tokens == 7 && r.temp == 0 && r.top_p == 0.5f && r.seed == 9 && r.seed_given && r.stream);
    CHECK(r.include_usage && r.n_stop == 2 && !strcmp(r.stop[1], "bc"));
    oai_request_free(&r);
    CHECK_OK(parse(&r, OAI_CHAT,
                   "{\"messages\": [{\"role\": \"developer\", \"content\": \"be brief\"},"
                   " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", \"text\": \"b\"}]},"
                   " {\"role\": \"assistant\", \"content\": null}], \"max_completion_tokens\": 3}", &e));
    CHECK(r.n_msgs == 3 && !strcmp(r.msgs[0].role, "system") && !strcmp(r.msgs[1].content, "ab"));
    CHECK(!strcmp(r.msgs[2].content, "") && r.max_tokens == 3);
    oai_request_free(&r);

    static const struct { oai_kind k; const char *body, *param; } bad[] = {
        {OAI_COMPLETION, "{\"prompt\": \"x\"", NULL},
        {OAI_COMPLETION, "\"x\"", NULL},
        {OAI_COMPLETION, "{}", "prompt"},
        {OAI_COMPLETION, "{\"prompt\": [\"a\", \"b\"]}", "prompt"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"max_tokens\": 1.5}", "max_tokens"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"max_tokens\": -1}", "max_tokens"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"temperature\": 2.5}", "temperature"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"top_p\": \"1\"}", "top_p"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"seed\": 1e30}", "seed"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"stream\": 1}", "stream"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", "stop"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"n\": 2}", "n"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"echo\": true}", "echo"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"presence_penalty\": 0.5}", "presence_penalty"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"model\": 3}", "model"},
        {OAI_COMPLETION, "{\"prompt\": \"x\", \"stream_options\": []}", "stream_options"},
        {OAI_CHAT, "{\"messages\": []}", "messages"},
        {OAI_CHAT, "{\"messages\": [{\"role\": \"user\"}]}", "messages"},
        {OAI_CHAT, "{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", "messages"},
        {OAI_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", "messages"},
        {OAI_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(&r, bad[i].k, bad[i].body, &e);
        CHECK_MSG(rc != 0 && e.status == 400, "accepted: %s", bad[i].body);
        if (rc) CHECK_MSG(bad[i].param ? e.param && !strcmp(e.param, bad[i].param) && strstr(e.message, bad[i].param)
                                       : e.param == NULL,
                          "%s: param %s, message %s", bad[i].body, e.param ? e.param : "null", e.message);
        oai_request_free(&r);
    }
}

// Feeds text in pieces, releasing what oai_text_ready allows; returns what was released.
static char *stream(const char *pieces[], int n, const char *const *stop, int n_stop, int *stopped) {
    static char out[256];
    oai_text t = {.stop = stop, .n_stop = n_stop};
    size_t o = 0;
    for (int i = 0; i < n && !t.stopped; i++) {
        CHECK(oai_text_add(&t, pieces[i], strlen(pieces[i])) >= 0);
        size_t end = oai_text_ready(&t, 0);
        CHECK(end >= t.sent && end <= t.len);
        memcpy(out + o, t.buf + t.sent, end - t.sent), o += end - t.sent, t.sent = end;
    }
    size_t end = oai_text_ready(&t, 1);
    memcpy(out + o, t.buf + t.sent, end - t.sent), o += end - t.sent;
    out[o] = 0;
    *stopped = t.stopped;
    oai_text_free(&t);
    return out;
}

static void test_text(void) {
    int stopped;
    const char *stop1[] = {"END"};
    const char *p1[] = {"Hello E", "N", "D more"};
    CHECK(!strcmp(stream(p1, 3, stop1, 1, &stopped), "Hello ") && stopped); // across three pieces
    const char *p2[] = {"Hello E", "NVY"};
    CHECK(!strcmp(stream(p2, 2, stop1, 1, &stopped), "Hello ENVY") && !stopped); // held back, then released
    const char *stop2[] = {"xyz", "b"};
    const char *p3[] = {"aaxy", "ab"};
    CHECK(!strcmp(stream(p3, 2, stop2, 2, &stopped), "aaxya") && stopped); // the earliest stop wins
    // "é" (C3 A9) and "€" (E2 82 AC) split across pieces never come out in halves.
    oai_text t = {0};
    CHECK(oai_text_add(&t, "a\xC3", 2) == 0 && oai_text_ready(&t, 0) == 1);
    CHECK(oai_text_add(&t, "\xA9\xE2\x82", 3) == 0 && oai_text_ready(&t, 0) == 3);
    CHECK(oai_text_add(&t, "\xAC", 1) == 0 && oai_text_ready(&t, 0) == 6);
    CHECK(oai_text_ready(&t, 1) == 6);
    oai_text_free(&t);
}

static void check_json(char *s, size_t len, const char *needle) {
    tern_json_doc d;
    CHECK_MSG(s && tern_json_parse(&d, s, len, "out") == 0, "invalid JSON: %s", s ? s : "(null)");
    CHECK_MSG(s && strstr(s, needle), "%s lacks %s", s ? s : "", needle);
    tern_json_free(&d);
    free(s);
}

static void test_json_out(void) {
    size_t len;
    oai_error e;
    oai_set_error(&e, 400, "invalid_request_error", "temperature", "bad \"quote\"\n");
    char *s = oai_error_json(&e, &len);
    check_json(s, len, "\"param\":\"temperature\"");
    oai_head h = {OAI_CHAT, "chatcmpl-1", "m", 7};
    // Invalid UTF-8 becomes U+FFFD, so the JSON stays valid.
    s = oai_response_json(&h, "ok\xFF\xC3", 4, "stop", 3, 2, &len);
    check_json(s, len, "ok\\ufffd\\ufffd");
    char *sse = oai_chunk_sse(&h, "hi", 2, 1, NULL, &len);
    CHECK(sse && !strncmp(sse, "data: ", 6) && len > 8 && !strcmp(sse + len - 2, "\n\n"));
    if (sse) check_json(strdup(sse + 6), len - 8, "\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"}");
    free(sse);
    h.kind = OAI_COMPLETION;
    sse = oai_usage_sse(&h, 3, 4, &len);
    if (sse) check_json(strdup(sse + 6), len - 8, "\"total_tokens\":7");
    free(sse);
}

int main(void) {
    test_parse();
    test_text();
    test_json_out();
    return test_report();
}
