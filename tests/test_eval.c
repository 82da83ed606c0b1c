// Zero-shot scoring: per-choice log-likelihoods vs a float64 PyTorch reference
// (tests/ref/eval_ref.py on the tiny random model), the joining/tokenization
// rules, the real stories260K model on hand-made tasks (acc must be 1, including
// an oracle built from the model's own greedy continuations), bad task files,
// and the CLI.
#include <sys/wait.h>
#include <unistd.h>

#include "core/file.h"
#include "eval/zeroshot.h"
#include "io/readers.h"
#include "nn/transformer.h"
#include "test.h"

// ---- tiny model vs the reference -------------------------------------------

typedef struct {
    const char *p, *end;
} reader;

static int rd_i32(reader *r) {
    int v = 0;
    if (r->p + 4 <= r->end) memcpy(&v, r->p, 4);
    r->p += 4;
    return v;
}

static double rd_f64(reader *r) {
    double v = 0;
    if (r->p + 8 <= r->end) memcpy(&v, r->p, 8);
    r->p += 8;
    return v;
}

static void test_reference(void) {
    char *data;
    size_t size;
    if (tern_read_file(test_src_path("tests/fixtures/eval_tiny.bin"), &data, &size)) {
        CHECK_MSG(0, "%s", tern_last_error());
        return;
    }
    reader r = {data, data + size};
    tern_zs_task t = {0};
    int n_items = rd_i32(&r);
    double ref_ll[64][8];
    int ref_greedy[64][8];
    CHECK(n_items > 0 && n_items <= 64);
    for (int i = 0; i < n_items && i < 64; i++) {
        int nc = rd_i32(&r), gold = rd_i32(&r);
        int *ctx[8], *cont[8], n_ctx[8], n_cont[8];
        double norm[8];
        CHECK(nc > 0 && nc <= 8);
        for (int c = 0; c < nc && c < 8; c++) {
            n_ctx[c] = rd_i32(&r);
            ctx[c] = malloc((size_t)n_ctx[c] * sizeof(int));
            for (int k = 0; k < n_ctx[c]; k++) ctx[c][k] = rd_i32(&r);
            n_cont[c] = rd_i32(&r);
            cont[c] = malloc((size_t)n_cont[c] * sizeof(int));
            for (int k = 0; k < n_cont[c]; k++) cont[c][k] = rd_i32(&r);
            norm[c] = rd_f64(&r);
            ref_ll[i][c] = rd_f64(&r);
            ref_greedy[i][c] = rd_i32(&r);
        }
        CHECK_OK(tern_zs_task_add_tokens(&t, nc, gold, (const int *const *)ctx, n_ctx, (const int *const *)cont,
                                         n_cont, norm));
        for (int c = 0; c < nc && c < 8; c++) {
            free(ctx[c]);
            free(cont[c]);
        }
    }
    double ref_m[4];
    for (int k = 0; k < 4; k++) ref_m[k] = rd_f64(&r);
    CHECK(r.p == r.end);
    free(data);

    tern_model m = {0};
    CHECK_OK(tern_llama2c_load(&m, test_src_path("tests/fixtures/tiny_llama.bin")));
    tern_zs_result res;
    CHECK_OK(tern_zs_evaluate(&m, &t, &res));
    CHECK(res.n == n_items);
    for (int i = 0; i < t.n_items; i++)
        for (int c = 0; c < t.items[i].n_choices; c++) {
            const tern_zs_item *it = &t.items[i];
            CHECK_NEAR(it->ll[c], ref_ll[i][c], 1e-4);
            CHECK_MSG(it->greedy[c] == ref_greedy[i][c], "item %d choice %d greedy %d vs %d", i, c, it->greedy[c],
                      ref_greedy[i][c]);
            // The cache-free path agrees with the shared-cache path.
            double ll;
            CHECK_OK(tern_zs_loglik(&m, it->ctx[c], it->n_ctx[c], it->cont[c], it->n_cont[c], &ll, NULL));
            CHECK_NEAR(ll, ref_ll[i][c], 1e-4);
        }
    CHECK_NEAR(res.acc, ref_m[0], 1e-12);
    CHECK_NEAR(res.acc_se, ref_m[1], 1e-9);
    CHECK_NEAR(res.acc_norm, ref_m[2], 1e-12);
    CHECK_NEAR(res.acc_norm_se, ref_m[3], 1e-9);
    // Cache sharing must not leak between calls: scoring again gives the same numbers.
    double first = t.items[0].ll[0];
    CHECK_OK(tern_zs_evaluate(&m, &t, &res));
    CHECK(t.items[0].ll[0] == first);
    // A token outside the vocabulary is an error naming the item, not a crash.
    int bad_ctx[2] = {1, 5}, bad_cont[1] = {100000};
    const int *pc[1] = {bad_ctx}, *pq[1] = {bad_cont};
    int nc1[1] = {2}, nq1[1] = {1};
    tern_zs_task t2 = {0};
    snprintf(t2.name, sizeof t2.name, "bad");
    CHECK_OK(tern_zs_task_add_tokens(&t2, 1, 0, pc, nc1, pq, nq1, NULL));
    CHECK_FAILS(tern_zs_evaluate(&m, &t2, &res), "outside the vocabulary");
    CHECK_FAILS(tern_zs_task_add_tokens(&t2, 1, 1, pc, nc1, pq, nq1, NULL), "outside the 1 choices");
    tern_zs_task_free(&t2);
    tern_zs_task_free(&t);
    tern_model_free(&m);
}

// LAMBADA metrics against tests/ref/lambada_ref.py (PyTorch, float64):
// acc = the whole continuation is greedy, ppl = exp(-mean log-likelihood).
static void test_lambada_reference(void) {
    char *data;
    size_t size;
    if (tern_read_file(test_src_path("tests/fixtures/eval_lambada.bin"), &data, &size)) {
        CHECK_MSG(0, "%s", tern_last_error());
        return;
    }
    reader r = {data, data + size};
    tern_zs_task t = {0};
    t.lambada = 1;
    int n_items = rd_i32(&r);
    double ref_ll[32];
    int ref_greedy[32];
    CHECK(n_items > 0 && n_items <= 32);
    for (int i = 0; i < n_items && i < 32; i++) {
        int n_ctx = rd_i32(&r), *ctx = malloc((size_t)n_ctx * sizeof(int));
        for (int k = 0; k < n_ctx; k++) ctx[k] = rd_i32(&r);
        int n_cont = rd_i32(&r), *cont = malloc((size_t)n_cont * sizeof(int));
        for (int k = 0; k < n_cont; k++) cont[k] = rd_i32(&r);
        ref_ll[i] = rd_f64(&r);
        ref_greedy[i] = rd_i32(&r);
        const int *pc[1] = {ctx}, *pq[1] = {cont};
        CHECK_OK(tern_zs_task_add_tokens(&t, 1, 0, pc, &n_ctx, pq, &n_cont, NULL));
        free(ctx), free(cont);
    }
    double acc = rd_f64(&r), acc_se = rd_f64(&r), ppl = rd_f64(&r);
    CHECK(r.p == r.end);
    free(data);
    tern_model m = {0};
    CHECK_OK(tern_llama2c_load(&m, test_src_path("tests/fixtures/tiny_llama.bin")));
    tern_zs_result res;
    CHECK_OK(tern_zs_evaluate(&m, &t, &res));
    for (int i = 0; i < t.n_items && i < 32; i++) {
        CHECK_NEAR(t.items[i].ll[0], ref_ll[i], 1e-4);
        CHECK(t.items[i].greedy[0] == ref_greedy[i]);
    }
    CHECK(res.lambada && res.n == n_items && acc > 0 && acc < 1);
    CHECK_NEAR(res.acc, acc, 1e-12);
    CHECK_NEAR(res.acc_se, acc_se, 1e-9);
    CHECK_NEAR(res.ppl / ppl, 1.0, 1e-5);
    tern_zs_task_free(&t);
    tern_model_free(&m);
}

// ---- reading: joining rule, layouts, field map, bad files ------------------

static char tmp_paths[16][64];
static int n_tmp;

// Writes a temporary task file (removed at exit by remove_tmp).
static const char *write_tmp(const char *text) {
    static int k;
    char *p = tmp_paths[n_tmp < 16 ? n_tmp++ : 15];
    k++;
    snprintf(p, 64, "/tmp/tern_test_eval_%d_%d.jsonl", (int)getpid(), k);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    return p;
}

// The LAMBADA layout: {"context", "continuation"} per line, one choice each,
// joined by the usual rule; a missing continuation names the field.
static void test_lambada_layout(void) {
    tern_zs_task t;
    const char *f = write_tmp("{\"context\": \"The cat sat on the\", \"continuation\": \" mat\"}\n"
                              "{\"context\": \"She said\", \"continuation\": \"hello\"}\n");
    CHECK_OK(tern_zs_task_read(&t, f, NULL));
    CHECK(t.n_items == 2 && t.lambada && !t.partial);
    if (t.n_items == 2) {
        CHECK(t.items[0].n_choices == 1 && t.items[0].gold == 0);
        CHECK(!strcmp(t.items[0].ctx_text[0], "The cat sat on the") && !strcmp(t.items[0].cont_text[0], " mat"));
        CHECK(!strcmp(t.items[1].cont_text[0], " hello"));
    }
    tern_zs_task_free(&t);
    f = write_tmp("{\"context\": \"a\", \"continuation\": \" b\"}\n{\"context\": \"c\"}\n");
    CHECK_FAILS(tern_zs_task_read(&t, f, NULL), "continuation");
}

static void test_joining(void) {
    tern_zs_task t;
    const char *f = write_tmp("{\"query\": \"Question: Why?\", \"choices\": [\"yes\", \" no\"], \"gold\": 1}\n"
                              "\n"
                              "{\"query\": \"Question: How?\\n\", \"choices\": [\"so\", \"thus\"], \"gold\": 0}\n"
                              "{\"query\": \"Trailing  \", \"choices\": [\"a\"], \"gold\": 0}\n"
                              "{\"query\": \"Q\", \"choices\": [\"caf\u00e9\", \"\u6771\u4eac\"], \"gold\": 0}\n");
    CHECK_OK(tern_zs_task_read(&t, f, NULL));
    CHECK(t.n_items == 4 && !t.partial);
    // acc_norm divides by characters, as lm-eval's len(str): "café" 4 (5 bytes), "東京" 2 (6 bytes).
    if (t.n_items == 4) CHECK(t.items[3].norm_len[0] == 4 && t.items[3].norm_len[1] == 2);
    if (t.n_items == 4) {
        tern_zs_item *a = &t.items[0], *b = &t.items[1], *c = &t.items[2];
        // A space joins context and choice, unless the choice brings its own.
        CHECK(!strcmp(a->ctx_text[0], "Question: Why?") && !strcmp(a->cont_text[0], " yes"));
        CHECK(!strcmp(a->cont_text[1], " no") && a->norm_len[1] == 3 && a->norm_len[0] == 3);
        // A context ending in whitespace gets no delimiter; its whitespace moves over (lm-eval).
        CHECK(!strcmp(b->ctx_text[0], "Question: How?") && !strcmp(b->cont_text[0], "\nso"));
        CHECK(b->line == 3 && b->gold == 0 && b->norm_len[1] == 4);
        CHECK(!strcmp(c->ctx_text[0], "Trailing") && !strcmp(c->cont_text[0], "  a"));
    }
    tern_zs_task_free(&t);
    // An explicit delimiter is used verbatim; --limit keeps the first items.
    tern_zs_opts o = {.delimiter = " ", .limit = 2};
    CHECK_OK(tern_zs_task_read(&t, f, &o));
    CHECK(t.n_items == 2);
    if (t.n_items == 2) CHECK(!strcmp(t.items[0].cont_text[1], "  no") && !strcmp(t.items[1].cont_text[1], "\n thus"));
    tern_zs_task_free(&t);

    // WinoGrande: the context varies, the continuation is shared.
    CHECK_OK(tern_zs_task_read(&t, test_src_path("tests/fixtures/eval_stories_wino.jsonl"), NULL));
    CHECK(t.partial && t.n_items == 2 && !strcmp(t.name, "eval_stories_wino"));
    if (t.n_items == 2) {
        CHECK(!strcmp(t.items[0].cont_text[0], " loved to play outside.") &&
              !strcmp(t.items[0].cont_text[1], " loved to play outside."));
        CHECK(!strcmp(t.items[0].ctx_text[1], "Qz xv kkj zz wq jjx vvk qqz. Zx"));
    }
    tern_zs_task_free(&t);

    // Field maps: renamed fields, dotted paths, digit-string gold, '|' lists.
    o = (tern_zs_opts){.fields = "query=ctx,choices=endings.text,gold=label"};
    CHECK_OK(tern_zs_task_read(&t, test_src_path("tests/fixtures/eval_stories_fields.jsonl"), &o));
    CHECK(t.n_items == 2 && t.items[1].gold == 1 && !strcmp(t.items[1].cont_text[1], " park."));
    tern_zs_task_free(&t);
    f = write_tmp("{\"goal\": \"Open a jar\", \"sol1\": \"twist\", \"sol2\": \"pull\", \"label\": 1}\n");
    o = (tern_zs_opts){.fields = "query=goal,choices=sol1|sol2,gold=label"};
    CHECK_OK(tern_zs_task_read(&t, f, &o));
    CHECK(t.n_items == 1 && t.items[0].n_choices == 2 && !strcmp(t.items[0].cont_text[1], " pull"));
    tern_zs_task_free(&t);
    o = (tern_zs_opts){.fields = "query=goal,answer=x"};
    CHECK_FAILS(tern_zs_task_read(&t, f, &o), "unknown key 'answer'");
    o = (tern_zs_opts){.fields = "query"};
    CHECK_FAILS(tern_zs_task_read(&t, f, &o), "expected KEY=FIELD");
    o = (tern_zs_opts){.fields = "query=goal,choices=sol1|sol3,gold=label"};
    CHECK_FAILS(tern_zs_task_read(&t, f, &o), ":1: missing field 'sol3'");
}

static void test_bad_files(void) {
    tern_zs_task t;
#define BAD(name) test_src_path("tests/fixtures/eval_bad/" name)
    CHECK_FAILS(tern_zs_task_read(&t, BAD("malformed.jsonl"), NULL), "malformed.jsonl:3:71: trailing comma");
    tern_zs_opts skip = {.skip_bad = 1};
    CHECK_OK(tern_zs_task_read(&t, BAD("malformed.jsonl"), &skip));
    CHECK(t.n_items == 3 && t.n_skipped == 1 && t.items[2].line == 4);
    tern_zs_task_free(&t);
    CHECK_FAILS(tern_zs_task_read(&t, BAD("gold_range.jsonl"), NULL), "gold_range.jsonl:2: gold 4 is outside the 4 choices");
    // Content errors are not "bad lines": --skip-bad does not hide them.
    CHECK_FAILS(tern_zs_task_read(&t, BAD("gold_range.jsonl"), &skip), "outside the 4 choices");
    CHECK_FAILS(tern_zs_task_read(&t, BAD("empty.jsonl"), NULL), "empty.jsonl: no items");
    CHECK_FAILS(tern_zs_task_read(&t, BAD("blank.jsonl"), NULL), "no items");
    CHECK_FAILS(tern_zs_task_read(&t, BAD("unknown_layout.jsonl"), NULL),
                "unknown_layout.jsonl:1: unknown task layout (keys: question, answers, label)");
    CHECK_FAILS(tern_zs_task_read(&t, BAD("missing_field.jsonl"), NULL), "missing_field.jsonl:2: missing field 'choices'");
    CHECK_FAILS(tern_zs_task_read(&t, BAD("not_object.jsonl"), NULL), "not_object.jsonl:2: expected a JSON object");
    CHECK_OK(tern_zs_task_read(&t, BAD("not_object.jsonl"), &skip));
    CHECK(t.n_items == 1 && t.n_skipped == 1);
    tern_zs_task_free(&t);
    CHECK_FAILS(tern_zs_task_read(&t, BAD("bad_gold_type.jsonl"), NULL), "'gold' must be an integer");
    CHECK_FAILS(tern_zs_task_read(&t, BAD("does_not_exist.jsonl"), NULL), "does_not_exist.jsonl");
    // A task file whose strings are the wrong type, or an empty choice list.
    CHECK_FAILS(tern_zs_task_read(&t, write_tmp("{\"query\": 5, \"choices\": [\"a\"], \"gold\": 0}\n"), NULL),
                ":1: field 'query' must be a string");
    CHECK_FAILS(tern_zs_task_read(&t, write_tmp("{\"query\": \"q\", \"choices\": [], \"gold\": 0}\n"), NULL),
                "non-empty array");
    CHECK_FAILS(tern_zs_task_read(&t, write_tmp("{\"query\": \"q\", \"choices\": [\"a\", 3], \"gold\": 0}\n"), NULL),
                "'choices[1]' must be a string");
    CHECK_FAILS(tern_zs_task_read(&t, write_tmp("{\"context_options\": [\"a\", \"b\"], \"gold\": 0}\n"), NULL),
                "missing field 'continuation'");
#undef BAD
}

// ---- stories260K: the text path on a real model ----------------------------

static int load_stories(tern_model *m, tern_tokenizer **tok) {
    if (tern_model_load(m, test_data_path("models/stories260K/stories260K.bin"),
                        test_data_path("models/stories260K/tok512.bin")) ||
        tern_tokenizer_init(tok, &m->vocab)) {
        CHECK_MSG(0, "%s", tern_last_error());
        return -1;
    }
    return 0;
}

static void eval_file(const tern_model *m, const tern_tokenizer *tok, const char *path, const tern_zs_opts *o,
                      tern_zs_result *r) {
    tern_zs_task t;
    memset(r, 0, sizeof *r);
    if (tern_zs_task_read(&t, path, o)) {
        CHECK_MSG(0, "%s", tern_last_error());
        return;
    }
    CHECK_OK(tern_zs_task_tokenize(&t, tok));
    CHECK_OK(tern_zs_evaluate(m, &t, r));
    tern_zs_task_free(&t);
}

// Greedy continuation of `prompt` (n tokens) as text, via the plain forward.
static char *greedy_text(const tern_model *m, const tern_tokenizer *tok, const char *prompt, int n) {
    int *ids, n_ids;
    if (tern_tokenize(tok, prompt, strlen(prompt), 1, &ids, &n_ids)) return NULL;
    tern_session s;
    if (tern_session_init(&s, m, n_ids + n + 1, 64)) return NULL;
    int gen[64], pos = n_ids;
    tern_forward(&s, ids, n_ids, 0, NULL);
    for (int k = 0; k < n && k < 64; k++) {
        int best = 0;
        for (int v = 1; v < m->cfg.vocab_size; v++)
            if (s.logits[v] > s.logits[best]) best = v;
        gen[k] = best;
        tern_forward(&s, &best, 1, pos++, NULL);
    }
    // Decode after the prompt's last token so SPM keeps the leading space.
    int *all = malloc((size_t)(n_ids + n) * sizeof(int));
    memcpy(all, ids, (size_t)n_ids * sizeof(int));
    memcpy(all + n_ids, gen, (size_t)n * sizeof(int));
    char *full = NULL, *only = NULL;
    size_t len;
    if (tern_detokenize(tok, all, n_ids + n, &full, &len) == 0) {
        char *p = NULL;
        size_t plen;
        tern_detokenize(tok, ids, n_ids, &p, &plen);
        only = strdup(full + plen);
        free(p);
    }
    free(full);
    free(all);
    free(ids);
    tern_session_free(&s);
    return only;
}

// JSON string body of s (quotes, backslashes and control characters escaped).
static void json_escape(char *out, size_t cap, const char *s) {
    size_t k = 0;
    for (; *s && k + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') k += (size_t)snprintf(out + k, cap - k, "\\%c", c);
        else if (c < 0x20) k += (size_t)snprintf(out + k, cap - k, "\\u%04x", c);
        else out[k++] = (char)c;
    }
    out[k] = 0;
}

static void test_stories(void) {
    tern_model m = {0};
    tern_tokenizer *tok = NULL;
    if (load_stories(&m, &tok)) return;
    tern_zs_result r;
    // Hand-made items where one choice is overwhelmingly likely.
    eval_file(&m, tok, test_src_path("tests/fixtures/eval_stories.jsonl"), NULL, &r);
    CHECK(r.n == 5 && r.acc == 1.0 && r.acc_norm == 1.0 && r.acc_se == 0);
    eval_file(&m, tok, test_src_path("tests/fixtures/eval_stories_wino.jsonl"), NULL, &r);
    CHECK(r.n == 2 && r.acc == 1.0);
    tern_zs_opts o = {.fields = "query=ctx,choices=endings.text,gold=label"};
    eval_file(&m, tok, test_src_path("tests/fixtures/eval_stories_fields.jsonl"), &o, &r);
    CHECK(r.n == 2 && r.acc == 1.0);

    // Oracle: the model's own greedy continuation against absurd ones; joined
    // with no delimiter, the text is exactly prompt + what the model wrote.
    const char *prompts[] = {"Once upon a time", "Lily and Tom went to the", "The little dog was", "One day, Ben"};
    char buf[4096] = "";
    for (int k = 0; k < 4; k++) {
        char *g = greedy_text(&m, tok, prompts[k], 8);
        CHECK(g && strlen(g) > 0);
        if (!g) continue;
        // The gold choice moves around: 0, 1, 2, 0.
        const char *absurd[2] = {" zqx vvk jjw qz.", " Xk Zq wv kkj zzz jq."};
        const char *ch[3];
        char esc[512];
        json_escape(esc, sizeof esc, g);
        int gold = k % 3;
        for (int c = 0, a = 0; c < 3; c++) ch[c] = c == gold ? esc : absurd[a++];
        size_t used = strlen(buf);
        snprintf(buf + used, sizeof buf - used, "{\"query\": \"%s\", \"choices\": [\"%s\", \"%s\", \"%s\"], \"gold\": %d}\n",
                 prompts[k], ch[0], ch[1], ch[2], gold);
        free(g);
    }
    tern_zs_task t;
    tern_zs_opts exact = {.delimiter = ""};
    if (tern_zs_task_read(&t, write_tmp(buf), &exact) == 0) {
        CHECK_OK(tern_zs_task_tokenize(&t, tok));
        CHECK_OK(tern_zs_evaluate(&m, &t, &r));
        CHECK_MSG(r.n == 4 && r.acc == 1.0 && r.acc_norm == 1.0, "oracle acc %g acc_norm %g\n%s", r.acc, r.acc_norm, buf);
        // Re-tokenized, the gold continuation is (almost always) the model's argmax at every step.
        int greedy = 0;
        for (int i = 0; i < t.n_items; i++) greedy += t.items[i].greedy[t.items[i].gold];
        CHECK_MSG(greedy >= 3, "only %d of 4 gold continuations are greedy", greedy);
        // BOS is added (llama2.c vocabularies add it) and starts every context.
        CHECK(t.items[0].ctx[0][0] == tern_tokenizer_bos(tok));
        tern_zs_task_free(&t);
    } else
        CHECK_MSG(0, "%s", tern_last_error());
    tern_tokenizer_free(tok);
    tern_model_free(&m);
}

// ---- CLI ---------------------------------------------------------------------

static int run_cli(const char *args, char *out, size_t cap) {
    const char *bin = getenv("TERN_BIN");
    if (!bin) return -1;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s eval --model %s --tokenizer %s %s 2>&1", bin,
             test_data_path("models/stories260K/stories260K.bin"), test_data_path("models/stories260K/tok512.bin"),
             args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    if (!getenv("TERN_BIN")) return;
    char out[8192], args[2048];
    snprintf(args, sizeof args, "--task %s --task %s --json", test_src_path("tests/fixtures/eval_stories.jsonl"),
             test_src_path("tests/fixtures/eval_stories_wino.jsonl"));
    CHECK(run_cli(args, out, sizeof out) == 0);
    CHECK_MSG(strstr(out, "\"task\": \"eval_stories\", \"n\": 5, \"acc\": 1.000000") &&
                  strstr(out, "\"task\": \"eval_stories_wino\", \"n\": 2") && strstr(out, "\"acc_norm_se\""),
              "%s", out);
    snprintf(args, sizeof args, "--task %s --limit 2", test_src_path("tests/fixtures/eval_stories.jsonl"));
    CHECK(run_cli(args, out, sizeof out) == 0);
    CHECK_MSG(strstr(out, "acc_norm") && strstr(out, "eval_stories") && strstr(out, "1.0000 ±"), "%s", out);
    snprintf(args, sizeof args, "--task %s", test_src_path("tests/fixtures/eval_bad/malformed.jsonl"));
    CHECK(run_cli(args, out, sizeof out) == 1);
    CHECK_MSG(strstr(out, "malformed.jsonl:3:"), "%s", out);
    snprintf(args, sizeof args, "--task %s --skip-bad --json", test_src_path("tests/fixtures/eval_bad/malformed.jsonl"));
    CHECK(run_cli(args, out, sizeof out) == 0);
    CHECK_MSG(strstr(out, "line skipped") && strstr(out, "\"n\": 3"), "%s", out);
    CHECK(run_cli("", out, sizeof out) == 2);
    CHECK(run_cli("--task x.jsonl --bogus", out, sizeof out) == 2);
}

int main(void) {
    test_reference();
    test_lambada_reference();
    test_lambada_layout();
    test_joining();
    test_bad_files();
    test_stories();
    test_cli();
    for (int i = 0; i < n_tmp; i++) unlink(tmp_paths[i]);
    return test_report();
}
