// tern serve: an OpenAI-compatible HTTP server (libmicrohttpd, optional at
// build time). POST /v1/completions and /v1/chat/completions (streamed as
// server-sent events on request), GET /v1/models, /health and a chat page at /.
// `parallel` slots, each a session with its own KV cache, serve requests at
// once; further requests wait for a free slot. SIGINT/SIGTERM stop accepting,
// let the running responses finish and return 0.
#ifndef TERN_SERVE_SERVE_H
#define TERN_SERVE_SERVE_H

#include <stddef.h>

#include "io/model.h"
#include "serve/oai.h"
#include "tok/tokenizer.h"

typedef struct {
    const tern_model *model;
    const tern_tokenizer *tok;
    const char *model_name;   // reported by /v1/models and in responses
    const char *host;         // "127.0.0.1"
    int port;                 // 0: any free port (printed)
    int parallel;             // slots
    int ctx;                  // context per slot (<= 0: the model's, at most 4096)
    int threads;              // threads for all slots together
    int chat_template;        // a tern_chat template id, or -1: /v1/chat/completions is refused
    size_t max_body;          // request bodies over this are refused (413)
    oai_defaults defaults;    // sampling defaults
    int quiet;                // no per-request log lines
} tern_serve_opts;

// 1 when this build has the HTTP server.
int tern_serve_available(void);
// Runs until SIGINT/SIGTERM; 0 after a clean shutdown, -1 (tern error) if it cannot start.
int tern_serve(const tern_serve_opts *o);

#endif
