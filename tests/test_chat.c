// Chat templates (tok/chat.h) against transformers' rendering of the official
// Jinja texts (tests/ref/chat_ref.py -> tests/fixtures/chat_templates.txt):
// each template text is recognised as its id, other spellings too (or
// refused), and every conversation renders byte for byte, or fails where the
// reference raises, with its message.
#include "core/file.h"
#include "tok/chat.h"
#include "test.h"

// Splits line at tabs in place; returns the number of fields (at most cap).
static int split_tabs(char *line, char **f, int cap) {
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < cap; p++)
        if (*p == '\t') *p = 0, f[n++] = p + 1;
    return n;
}

// Decodes hex in place into a NUL-terminated string.
static char *unhex(char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i + 1 < n; i += 2) {
        unsigned v;
        sscanf(s + i, "%2x", &v);
        s[i / 2] = (char)v;
    }
    s[n / 2] = 0;
    return s;
}

static int n_rendered, n_refused;

static void check_record(char **f, int nf) {
    if (!strcmp(f[0], "T") || !strcmp(f[0], "D")) {
        int want = strcmp(f[1], "none") ? tern_chat_template_from_name(f[1]) : -1;
        CHECK(strcmp(f[1], "none") == 0 || want >= 0);
        int got = tern_chat_template_detect(unhex(f[2]));
        CHECK_MSG(got == want, "%s %s: detected %s", f[0], f[1], tern_chat_template_name(got));
        return;
    }
    int tmpl = tern_chat_template_from_name(f[1]), add = atoi(f[2]), n = atoi(f[5]);
    CHECK(tmpl >= 0 && nf == 8 + 2 * n);
    if (tmpl < 0 || nf != 8 + 2 * n) return;
    tern_chat_msg msgs[16];
    for (int i = 0; i < n; i++) msgs[i] = (tern_chat_msg){f[6 + 2 * i], unhex(f[7 + 2 * i])};
    const char *kind = f[6 + 2 * n], *want = unhex(f[7 + 2 * n]);
    char *got = tern_chat_render(tmpl, msgs, n, add, unhex(f[3]), unhex(f[4]));
    if (!strcmp(kind, "ok")) {
        CHECK_MSG(got && !strcmp(got, want), "%s add_gen %d, %d messages (first %s):\n got  '%s'\n want '%s'\n  %s",
                  f[1], add, n, n ? msgs[0].role : "-", got ? got : "(null)", want, got ? "" : tern_last_error());
        n_rendered++;
    } else {
        CHECK_MSG(!got && strstr(tern_last_error(), want) && strstr(tern_last_error(), f[1]),
                  "%s, %d messages: expected the error '%s', got %s", f[1], n, want, got ? got : tern_last_error());
        n_refused++;
    }
    free(got);
}

static void test_fixture(void) {
    char *text;
    size_t len;
    const char *path = test_src_path("tests/fixtures/chat_templates.txt");
    if (tern_read_file(path, &text, &len)) {
        fprintf(stderr, "missing %s (tests/ref/chat_ref.py writes it)\n", path);
        exit(1);
    }
    int templates = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[48];
        int nf = split_tabs(line, f, 48);
        templates += !strcmp(f[0], "T");
        check_record(f, nf);
    }
    free(text);
    CHECK(templates == TERN_CHAT_COUNT);
    CHECK(n_rendered >= 100 && n_refused >= 20); // the fixture is complete
    printf("fixture: %d templates, %d renderings, %d refusals\n", templates, n_rendered, n_refused);
}

static void test_names(void) {
    const char *names[] = {"chatml", "smollm2", "llama3", "llama2", "mistral", "zephyr", "gemma"};
    const char *eot[] = {"<|im_end|>", "<|im_end|>", "<|eot_id|>", "</s>", "</s>", "</s>", "<end_of_turn>"};
    for (int i = 0; i < TERN_CHAT_COUNT; i++) {
        CHECK(tern_chat_template_from_name(names[i]) == i);
        CHECK(!strcmp(tern_chat_template_name(i), names[i]));
        CHECK(!strcmp(tern_chat_end_of_turn(i), eot[i]));
        CHECK(strstr(tern_chat_template_names(), names[i]));
    }
    CHECK(tern_chat_template_from_name("ChatML") == -1 && tern_chat_template_from_name("") == -1);
    CHECK(tern_chat_template_from_name(NULL) == -1);
    CHECK(tern_chat_end_of_turn(-1) == NULL && tern_chat_end_of_turn(TERN_CHAT_COUNT) == NULL);
    CHECK(tern_chat_template_detect(NULL) == -1 && tern_chat_template_detect("") == -1);
}

static void test_bad_input(void) {
    tern_chat_msg bad_role[] = {{"tool", "x"}}, no_content[] = {{"user", NULL}}, ok[] = {{"user", "hi"}};
    CHECK(tern_chat_render(TERN_CHAT_CHATML, bad_role, 1, 1, NULL, NULL) == NULL);
    CHECK(strstr(tern_last_error(), "unknown role 'tool'"));
    CHECK(tern_chat_render(TERN_CHAT_CHATML, no_content, 1, 1, NULL, NULL) == NULL);
    CHECK(tern_chat_render(-1, ok, 1, 1, NULL, NULL) == NULL);
    CHECK(tern_chat_render(TERN_CHAT_COUNT, ok, 1, 1, NULL, NULL) == NULL);
    CHECK(tern_chat_render(TERN_CHAT_CHATML, NULL, 1, 1, NULL, NULL) == NULL);
    // NULL bos/eos render as empty, as an undefined Jinja variable would.
    char *s = tern_chat_render(TERN_CHAT_GEMMA, ok, 1, 1, NULL, NULL);
    CHECK(s && !strcmp(s, "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"));
    free(s);
    // No messages: the generation prompt alone.
    s = tern_chat_render(TERN_CHAT_SMOLLM2, NULL, 0, 1, NULL, NULL);
    CHECK(s && !strcmp(s, "<|im_start|>assistant\n"));
    free(s);
    // Malformed UTF-8 and lone continuation bytes at the edges are not whitespace: kept as they are.
    tern_chat_msg odd[] = {{"user", "\x80 x \xe3\x80"}};
    s = tern_chat_render(TERN_CHAT_LLAMA3, odd, 1, 0, "", "");
    CHECK(s && strstr(s, "\n\n\x80 x \xe3\x80<|eot_id|>"));
    free(s);
}

// A vocabulary with a few specials, for the model-side helpers.
static void test_vocab(void) {
    char *toks[] = {"<unk>", "<s>", "</s>", "<|im_end|>", "<end_of_turn>"};
    int lens[] = {5, 3, 4, 10, 13};
    tern_vocab v = {.type = TERN_VOCAB_SPM, .n_tokens = 5, .tokens = toks, .token_lens = lens, .bos_id = 1, .eos_id = 2};
    CHECK(!strcmp(tern_vocab_bos_text(&v), "<s>") && !strcmp(tern_vocab_eos_text(&v), "</s>"));
    CHECK(tern_chat_eot_id(&v, TERN_CHAT_CHATML) == 3);
    CHECK(tern_chat_eot_id(&v, TERN_CHAT_GEMMA) == 4);
    CHECK(tern_chat_eot_id(&v, TERN_CHAT_LLAMA2) == 2);
    CHECK(tern_chat_eot_id(&v, TERN_CHAT_LLAMA3) == -1); // no <|eot_id|>, and llama3 does not end turns with EOS
    v.eos_id = -1;
    CHECK(tern_vocab_eos_text(&v) == NULL);
    CHECK(tern_chat_eot_id(&v, TERN_CHAT_ZEPHYR) == 2); // found by its text
    CHECK(tern_chat_eot_id(&v, -1) == -1);

    CHECK_FAILS(tern_chat_template_pick(&v, NULL), "model has no chat template; pass --chat-template NAME");
    CHECK_FAILS(tern_chat_template_pick(&v, "alpaca"), "unknown --chat-template 'alpaca' (chatml");
    CHECK(tern_chat_template_pick(&v, "zephyr") == TERN_CHAT_ZEPHYR);
    v.chat_template = "{{ messages }}";
    CHECK_FAILS(tern_chat_template_pick(&v, NULL), "pass --chat-template NAME");
    CHECK(tern_chat_template_pick(&v, "gemma") == TERN_CHAT_GEMMA); // the override wins
    v.chat_template = "{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}";
    CHECK(tern_chat_template_pick(&v, NULL) == TERN_CHAT_CHATML);
}

int main(void) {
    test_fixture();
    test_names();
    test_bad_input();
    test_vocab();
    return test_report();
}
