// Fuzzes the OpenAI request reader of tern serve (completion and chat bodies)
// and the streamed-text filter (stop strings, whole UTF-8 characters) on the
// parsed request's own text.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "serve/oai.h"

static void stream_text(const oai_request *r, const char *s, size_t n) {
    oai_text t = {.stop = r->stop, .n_stop = r->n_stop};
    for (size_t i = 0; i < n && !t.stopped; i += 3) {
        if (oai_text_add(&t, s + i, n - i < 3 ? n - i : 3) < 0) break;
        size_t end = oai_text_ready(&t, 0);
        if (end < t.sent || end > t.len) abort();
        t.sent = end;
    }
    if (oai_text_ready(&t, 1) != t.len) abort();
    oai_text_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const oai_defaults d = {.temp = 0.8f, .top_p = 0.95f, .repeat_penalty = 1};
    for (int kind = 0; kind < 2; kind++) {
        oai_request r;
        oai_error e;
        if (oai_parse(&r, kind ? OAI_CHAT : OAI_COMPLETION, (const char *)data, size, &d, &e) == 0) {
            stream_text(&r, (const char *)data, size);
            oai_head h = {r.kind, "id", "model", 0};
            size_t len;
            free(oai_response_json(&h, (const char *)data, size, "stop", 1, 2, &len));
        } else {
            size_t len;
            free(oai_error_json(&e, &len));
        }
        oai_request_free(&r);
    }
    return 0;
}
