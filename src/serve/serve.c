#include "serve/serve.h"

#ifndef TERN_HAVE_MHD

#include "core/error.h"

int tern_serve_available(void) { return 0; }

int tern_serve(const tern_serve_opts *o) {
    (void)o;
    return tern_errorf("this tern was built without the HTTP server (install libmicrohttpd-dev and rebuild)");
}

#else

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/threads.h"
#include "infer/chat.h"
#include "infer/generate.h"
#include "infer/packed.h"
#include "serve/page.h"

int tern_serve_available(void) { return 1; }

/* ---- slots: sessions with a KV cache, handed out one request at a time ---- */

typedef struct {
    tern_session s;
    tern_packed *packed;
    int *hist;   // tokens whose keys and values the cache holds
    int n_hist;
    int busy;
    int ready; // s and packed are set up
} slot;

typedef struct {
    const tern_serve_opts *o;
    slot *slots;
    int n_slots, threads_per_slot;
    pthread_mutex_t mu;
    pthread_cond_t free_cv, idle_cv;
    int active;           // requests being answered (waiting for a slot included)
    unsigned long long next_id;
    long long started;    // time the server started
    int listening;        // the daemon is up (libmicrohttpd's messages go to stderr, else to start_err)
    char start_err[256];  // libmicrohttpd's last message while starting
} server;

static int common_prefix(const int *a, int na, const int *b, int nb) {
    int k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

// Waits for a free slot and takes the one whose cache shares the longest
// prefix with ids (a chat's next turn finds its conversation there).
static slot *slot_acquire(server *sv, const int *ids, int n, int *reuse) {
    pthread_mutex_lock(&sv->mu);
    slot *best = NULL;
    for (;;) {
        int best_k = -1;
        for (int i = 0; i < sv->n_slots; i++) {
            slot *s = &sv->slots[i];
            if (s->busy) continue;
            int k = common_prefix(s->hist, s->n_hist, ids, n);
            if (k > best_k) best = s, best_k = k;
        }
        if (best) {
            *reuse = best_k;
            break;
        }
        pthread_cond_wait(&sv->free_cv, &sv->mu);
    }
    best->busy = 1;
    pthread_mutex_unlock(&sv->mu);
    return best;
}

static void slot_release(server *sv, slot *s) {
    pthread_mutex_lock(&sv->mu);
    s->busy = 0;
    pthread_cond_signal(&sv->free_cv);
    pthread_mutex_unlock(&sv->mu);
}

static int slots_init(server *sv) {
    const tern_serve_opts *o = sv->o;
    sv->n_slots = o->parallel > 0 ? o->parallel : 1;
    sv->slots = calloc((size_t)sv->n_slots, sizeof(slot));
    if (!sv->slots) return tern_errorf("out of memory");
    for (int i = 0; i < sv->n_slots; i++) {
        slot *s = &sv->slots[i];
        tern_gen_opts go = {.ctx = o->ctx};
        if (tern_gen_session(&s->s, &s->packed, o->model, &go)) return -1;
        s->ready = 1;
        if (!(s->hist = malloc(sizeof(int) * ((size_t)s->s.max_seq + 1)))) return tern_errorf("out of memory");
    }
    return 0;
}

static void slots_free(server *sv) {
    for (int i = 0; sv->slots && i < sv->n_slots; i++) {
        if (sv->slots[i].ready) tern_gen_session_free(&sv->slots[i].s, sv->slots[i].packed);
        free(sv->slots[i].hist);
    }
    free(sv->slots);
}

/* ---- responses ---- */

// Queues r (any origin may read it; type NULL: no body) and drops our reference.
static enum MHD_Result queue(struct MHD_Connection *c, int status, struct MHD_Response *r, const char *type) {
    if (type) MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_bytes(struct MHD_Connection *c, int status, const char *type, char *body, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    return queue(c, status, r, type);
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, char *body, size_t len) {
    if (!body) return MHD_NO;
    return send_bytes(c, status, "application/json", body, len);
}

static enum MHD_Result send_error(struct MHD_Connection *c, const oai_error *e) {
    size_t len;
    char *body = oai_error_json(e, &len);
    return send_json(c, e->status, body, len);
}

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *type, const char *text) {
    size_t len = strlen(text);
    char *body = malloc(len + 1);
    if (!body) return MHD_NO;
    memcpy(body, text, len + 1);
    return send_bytes(c, status, type, body, len);
}

static enum MHD_Result send_models(server *sv, struct MHD_Connection *c) {
    char *out = NULL;
    size_t len;
    FILE *f = open_memstream(&out, &len);
    if (!f) return MHD_NO;
    fputs("{\"object\":\"list\",\"data\":[{\"id\":", f);
    oai_write_string(f, sv->o->model_name, strlen(sv->o->model_name));
    fprintf(f, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"tern\",\"meta\":{\"n_ctx\":%d,\"n_vocab\":%d}}]}\n",
            sv->started, sv->slots[0].s.max_seq, sv->o->model->cfg.vocab_size);
    fclose(f);
    return send_json(c, 200, out, len);
}

/* ---- a generation request ---- */

typedef struct {
    server *sv;
    slot *sl;
    oai_request req;
    oai_head head;
    char id[48];
    tern_gen_run g;
    int running;       // g holds a sampler
    oai_text text;
    int sent_role;     // chat stream: the first chunk named the role
    int finished;      // generation ended; what remains is to flush
    int done;          // [DONE] is queued
    const char *finish;
    char *out;         // bytes ready for the client
    size_t out_len, out_off;
} job;

static void job_end_generation(job *j) {
    if (j->running) tern_gen_end(&j->g), j->running = 0;
    if (j->sl) {
        // The cache now holds the prompt and the generated tokens that were run.
        j->sl->n_hist = j->g.pos;
        slot_release(j->sv, j->sl);
        j->sl = NULL;
    }
}

static void job_free(job *j) {
    job_end_generation(j);
    oai_request_free(&j->req);
    oai_text_free(&j->text);
    free(j->out);
    free(j);
}

// The prompt's tokens: the completion's text as tern generate tokenizes it, or
// the conversation rendered with the chat template.
static int request_ids(server *sv, job *j, int **ids, int *n, oai_error *e) {
    const tern_serve_opts *o = sv->o;
    int rc;
    if (j->req.kind == OAI_COMPLETION)
        rc = tern_gen_tokenize(o->tok, j->req.prompt, ids, n);
    else if (o->chat_template < 0)
        rc = tern_errorf("this server has no chat template (start it with --chat-template NAME)");
    else
        rc = tern_chat_prompt_ids(o->model, o->tok, o->chat_template, j->req.msgs, j->req.n_msgs, ids, n);
    if (rc)
        oai_set_error(e, 400, "invalid_request_error", j->req.kind == OAI_CHAT ? "messages" : "prompt", "%s",
                      tern_last_error());
    return rc ? -1 : 0;
}

// Tokenizes, checks the context, takes a slot and runs the prompt.
static int job_start(job *j, oai_error *e) {
    server *sv = j->sv;
    int *ids = NULL, n = 0;
    if (request_ids(sv, j, &ids, &n, e)) return -1;
    int ctx = sv->slots[0].s.max_seq, room = ctx - n + 1; // a prompt of ctx tokens still yields one
    if (n > ctx || (j->req.max_tokens > room)) {
        oai_set_error(e, 400, "invalid_request_error", n > ctx ? "messages" : "max_tokens",
                      "this model's context is %d tokens; the prompt has %d and max_tokens asks for %d more", ctx, n,
                      j->req.max_tokens < 0 ? 0 : j->req.max_tokens);
        if (j->req.kind == OAI_COMPLETION && n > ctx) e->param = "prompt";
        e->code = "context_length_exceeded";
        free(ids);
        return -1;
    }
    oai_request *r = &j->req;
    tern_gen_opts go = {.n_predict = r->max_tokens >= 0 ? r->max_tokens : r->kind == OAI_COMPLETION ? 16 : room,
                        .temp = r->temp, .top_p = r->top_p, .top_k = r->top_k, .min_p = r->min_p,
                        .repeat_penalty = r->repeat_penalty, .repeat_last_n = 64, .seed = r->seed};
    int reuse = 0;
    j->sl = slot_acquire(sv, ids, n, &reuse);
    tern_threads_this_thread(sv->threads_per_slot);
    memcpy(j->sl->hist, ids, sizeof(int) * (size_t)n);
    j->sl->n_hist = 0; // until the prompt has run
    int rc = tern_gen_begin(&j->g, &j->sl->s, sv->o->tok, ids, n, reuse, &go);
    free(ids);
    if (r->kind == OAI_CHAT) j->g.stop_id = tern_chat_eot_id(&sv->o->model->vocab, sv->o->chat_template);
    if (rc) {
        oai_set_error(e, 500, "server_error", NULL, "%s", tern_last_error());
        slot_release(sv, j->sl);
        j->sl = NULL;
        return -1;
    }
    j->running = 1;
    j->text.stop = j->req.stop, j->text.n_stop = j->req.n_stop;
    return 0;
}

// One token more: 1 while generating, 0 when finished, -1 on error.
static int job_step(job *j) {
    char piece[512];
    size_t len;
    int rc = tern_gen_next(&j->g, piece, sizeof piece, &len);
    if (rc == 1) {
        if (j->g.pos < j->sl->s.max_seq + 1) j->sl->hist[j->g.pos] = j->g.prev; // run at position pos next
        int st = oai_text_add(&j->text, piece, len);
        if (st < 0) return tern_errorf("out of memory");
        if (st == 0) return 1;
    }
    if (rc < 0) return -1;
    j->finish = j->text.stopped || j->g.st.stopped_eog ? "stop" : "length";
    j->finished = 1;
    job_end_generation(j);
    return 0;
}

static void log_request(server *sv, const char *method, const char *url, int status, const job *j) {
    if (sv->o->quiet) return;
    if (j)
        fprintf(stderr, "%s %s %d: %d prompt + %d generated tokens, %.1f tok/s%s\n", method, url, status,
                j->g.st.prompt_tokens, j->g.st.generated, j->g.st.generated / (j->g.st.gen_sec + 1e-9),
                j->req.stream ? " (stream)" : "");
    else
        fprintf(stderr, "%s %s %d\n", method, url, status);
}

static enum MHD_Result answer_whole(job *j, struct MHD_Connection *c, const char *url) {
    int rc;
    while ((rc = job_step(j)) == 1) {}
    if (rc < 0) {
        oai_error e;
        oai_set_error(&e, 500, "server_error", NULL, "%s", tern_last_error());
        log_request(j->sv, "POST", url, 500, j);
        job_free(j);
        return send_error(c, &e);
    }
    size_t len;
    char *body = oai_response_json(&j->head, j->text.buf ? j->text.buf : "", j->text.len, j->finish,
                                   j->g.st.prompt_tokens, j->g.st.generated, &len);
    log_request(j->sv, "POST", url, 200, j);
    job_free(j);
    return send_json(c, 200, body, len);
}

static int out_append(job *j, char *chunk, size_t len) {
    if (!chunk) return -1;
    char *b = realloc(j->out, j->out_len + len);
    if (!b) {
        free(chunk);
        return -1;
    }
    memcpy(b + j->out_len, chunk, len);
    j->out = b, j->out_len += len;
    free(chunk);
    return 0;
}

// Queues what the text releases now as one chunk; at the end the finishing chunks and [DONE].
static int stream_fill(job *j) {
    size_t end = oai_text_ready(&j->text, j->finished), len;
    if (end > j->text.sent || (j->req.kind == OAI_CHAT && !j->sent_role)) {
        char *ch = oai_chunk_sse(&j->head, j->text.buf + j->text.sent, end - j->text.sent, !j->sent_role, NULL, &len);
        j->sent_role = 1, j->text.sent = end;
        if (out_append(j, ch, len)) return -1;
    }
    if (!j->finished) return 0;
    char *last = oai_chunk_sse(&j->head, "", 0, 0, j->finish, &len);
    if (out_append(j, last, len)) return -1;
    if (j->req.include_usage) {
        char *usage = oai_usage_sse(&j->head, j->g.st.prompt_tokens, j->g.st.generated, &len);
        if (out_append(j, usage, len)) return -1;
    }
    static const char done[] = "data: [DONE]\n\n";
    char *d = strdup(done);
    if (out_append(j, d, sizeof done - 1)) return -1;
    j->done = 1;
    return 0;
}

// libmicrohttpd asks for the next bytes of a stream: generate until there are some.
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    job *j = cls;
    (void)pos;
    while (j->out_off == j->out_len) {
        j->out_off = j->out_len = 0;
        if (j->done) {
            log_request(j->sv, "POST", j->head.kind == OAI_CHAT ? "/v1/chat/completions" : "/v1/completions", 200, j);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (!j->finished && job_step(j) < 0) {
            fprintf(stderr, "tern serve: %s\n", tern_last_error());
            job_end_generation(j);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (stream_fill(j)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = j->out_len - j->out_off < max ? j->out_len - j->out_off : max;
    memcpy(buf, j->out + j->out_off, n);
    j->out_off += n;
    return (ssize_t)n;
}

// Also called when the client goes away mid-stream: the slot is freed here.
static void stream_free(void *cls) {
    job *j = cls;
    if (!j->done && !j->sv->o->quiet)
        fprintf(stderr, "POST %s: stream closed by the client after %d tokens\n",
                j->head.kind == OAI_CHAT ? "/v1/chat/completions" : "/v1/completions", j->g.st.generated);
    job_free(j);
}

static enum MHD_Result answer_stream(job *j, struct MHD_Connection *c) {
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, j, stream_free);
    if (!r) {
        job_free(j);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    return queue(c, 200, r, "text/event-stream");
}

static enum MHD_Result answer_generation(server *sv, struct MHD_Connection *c, oai_kind kind, const char *url,
                                         const char *body, size_t len) {
    oai_error e;
    job *j = calloc(1, sizeof *j);
    if (!j) return MHD_NO;
    j->sv = sv;
    pthread_mutex_lock(&sv->mu);
    unsigned long long id = ++sv->next_id;
    pthread_mutex_unlock(&sv->mu);
    snprintf(j->id, sizeof j->id, "%s-%llx%08llx", kind == OAI_CHAT ? "chatcmpl" : "cmpl", sv->started, id);
    j->head = (oai_head){kind, j->id, sv->o->model_name, (long long)time(NULL)};
    int rc = oai_parse(&j->req, kind, body, len, &sv->o->defaults, &e);
    if (!rc && !j->req.seed_given && sv->o->defaults.seed_random) // a fresh seed for each request
        j->req.seed = ((uint64_t)time(NULL) << 20) ^ (id * 0x9E3779B97F4A7C15ull);
    if (rc || job_start(j, &e)) {
        log_request(sv, "POST", url, e.status, NULL);
        job_free(j);
        return send_error(c, &e);
    }
    return j->req.stream ? answer_stream(j, c) : answer_whole(j, c, url);
}

/* ---- HTTP ---- */

static void active_add(server *sv, int d) {
    pthread_mutex_lock(&sv->mu);
    if ((sv->active += d) == 0) pthread_cond_broadcast(&sv->idle_cv);
    pthread_mutex_unlock(&sv->mu);
}


typedef struct {
    char *body;
    size_t len;
    int too_big;
} conn;

static enum MHD_Result answer_preflight(struct MHD_Connection *c) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type, Authorization");
    return queue(c, 204, r, NULL);
}

static enum MHD_Result answer_route(server *sv, struct MHD_Connection *c, const char *url, const char *method,
                                    conn *k) {
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    oai_error e;
    if (!strcmp(method, "OPTIONS")) return answer_preflight(c); // browsers ask before a cross-origin POST
    int route = !strcmp(url, "/") ? 1 : !strcmp(url, "/health") ? 2 : !strcmp(url, "/v1/models") ? 3
              : !strcmp(url, "/v1/completions") ? 4 : !strcmp(url, "/v1/chat/completions") ? 5 : 0;
    if (!route) {
        oai_set_error(&e, 404, "not_found_error", NULL, "no route %s %s", method, url);
    } else if (route <= 3 ? !get : !post) {
        oai_set_error(&e, 405, "invalid_request_error", NULL, "%s takes %s, not %s", url, route <= 3 ? "GET" : "POST",
                      method);
    } else if (k->too_big) {
        oai_set_error(&e, 413, "invalid_request_error", NULL, "the body is over the limit of %zu bytes",
                      sv->o->max_body);
    } else {
        switch (route) {
        case 1: log_request(sv, method, url, 200, NULL); return send_text(c, 200, "text/html; charset=utf-8", tern_chat_page);
        case 2: log_request(sv, method, url, 200, NULL); return send_text(c, 200, "application/json", "{\"status\":\"ok\"}\n");
        case 3: log_request(sv, method, url, 200, NULL); return send_models(sv, c);
        default:
            return answer_generation(sv, c, route == 4 ? OAI_COMPLETION : OAI_CHAT, url, k->body ? k->body : "",
                                     k->len);
        }
    }
    log_request(sv, method, url, e.status, NULL);
    return send_error(c, &e);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    server *sv = cls;
    (void)version;
    conn *k = *con_cls;
    if (!k) { // headers only: set up the body
        if (!(k = calloc(1, sizeof *k))) return MHD_NO;
        *con_cls = k;
        active_add(sv, 1);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > sv->o->max_body) k->too_big = 1;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!k->too_big && k->len + *upload_size <= sv->o->max_body) {
            char *b = realloc(k->body, k->len + *upload_size + 1);
            if (!b) return MHD_NO;
            memcpy(b + k->len, upload, *upload_size);
            k->body = b, k->len += *upload_size;
            k->body[k->len] = 0;
        } else {
            k->too_big = 1; // the rest is read and dropped
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return answer_route(sv, c, url, method, k);
}

// The end of a request, answered or not (a stream's end included).
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)c, (void)why;
    conn *k = *con_cls;
    if (!k) return;
    free(k->body), free(k);
    *con_cls = NULL;
    active_add(cls, -1);
}

// libmicrohttpd's own messages: while starting, kept for the one error line
// tern_serve makes of them; then one line each on stderr (none with --quiet).
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    server *sv = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = 0;
    if (!sv->listening) snprintf(sv->start_err, sizeof sv->start_err, "%s", msg);
    else if (!sv->o->quiet) fprintf(stderr, "tern serve: %s\n", msg);
}

int tern_serve(const tern_serve_opts *o) {
    server sv = {.o = o, .started = (long long)time(NULL)};
    pthread_mutex_init(&sv.mu, NULL);
    pthread_cond_init(&sv.free_cv, NULL);
    pthread_cond_init(&sv.idle_cv, NULL);
    int rc = -1;
    struct MHD_Daemon *d = NULL;
    // SIGINT/SIGTERM are taken by sigwait below; every thread the daemon starts inherits the mask.
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT), sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    signal(SIGPIPE, SIG_IGN);
    if (slots_init(&sv)) goto done;
    int threads = o->threads > 0 ? o->threads : tern_get_threads();
    sv.threads_per_slot = threads / sv.n_slots > 0 ? threads / sv.n_slots : 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1) {
        tern_errorf("--host %s: not an IPv4 address", o->host);
        goto done;
    }
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                             MHD_USE_ERROR_LOG,
                         0, NULL, NULL, on_request, &sv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                         MHD_OPTION_EXTERNAL_LOGGER, mhd_log, &sv,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, &sv, MHD_OPTION_CONNECTION_LIMIT, 256u,
                         MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    if (!d) {
        tern_errorf("cannot listen on %s:%d: %s", o->host, o->port,
                    sv.start_err[0] ? sv.start_err : "in use, or not allowed");
        goto done;
    }
    sv.listening = 1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "tern serve: listening on http://%s:%u/ (%d slot%s of %d tokens, %d thread%s each)\n", o->host,
            info ? info->port : (unsigned)o->port, sv.n_slots, sv.n_slots == 1 ? "" : "s", sv.slots[0].s.max_seq,
            sv.threads_per_slot, sv.threads_per_slot == 1 ? "" : "s");
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "tern serve: %s: finishing the running requests\n", sig == SIGINT ? "interrupted" : "terminated");
    MHD_quiesce_daemon(d); // no new connections
    pthread_mutex_lock(&sv.mu);
    while (sv.active > 0) pthread_cond_wait(&sv.idle_cv, &sv.mu);
    pthread_mutex_unlock(&sv.mu);
    rc = 0;
done:
    if (d) MHD_stop_daemon(d);
    slots_free(&sv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

#endif
