// Chat sessions (infer/chat.h) on the real stories260K with the zephyr
// template (its EOS </s> ends turns): a later turn runs only the tokens the
// cache lacks, and its reply equals a fresh session's reply to the same
// conversation at temperature 0 (the reused KV cache is the one a full run
// builds); reset runs everything again; a conversation longer than the
// context is refused with the session intact; a reply that fills the context
// is cut and says so. Also the public tern_chat_* / tern_llm_chat_* wrappers.
#include "infer/chat.h"
#include "tern.h"
#include "test.h"

static tern_model m;
static tern_tokenizer *tok;

static int count_pieces(const char *piece, size_t len, void *user) {
    (void)piece, (void)len;
    ++*(int *)user;
    return 0;
}

static tern_gen_opts greedy(int ctx, int n_predict) {
    return (tern_gen_opts){.n_predict = n_predict, .temp = 0, .top_p = 1, .repeat_penalty = 1, .seed = 1, .ctx = ctx};
}

static void test_cache_reuse(void) {
    tern_gen_opts o = greedy(512, 24);
    tern_chat_session a, b;
    CHECK_OK(tern_chat_session_init(&a, &m, tok, TERN_CHAT_ZEPHYR, &o));
    CHECK(a.eot_id == m.vocab.eos_id);
    tern_chat_msg msgs[4] = {{"user", "Once upon a time there was a cat."}, {"assistant", NULL},
                             {"user", "The cat saw a big dog."}};
    char *r1 = NULL, *r2 = NULL, *r2_fresh = NULL;
    tern_gen_stats s1, s2, s3;
    int pieces = 0;
    CHECK_OK(tern_chat_session_reply(&a, msgs, 1, count_pieces, &pieces, &r1, &s1));
    CHECK(r1 && s1.generated > 0 && pieces == s1.generated);
    printf("turn 1: %d prompt tokens, %d generated%s: '%s'\n", s1.prompt_tokens, s1.generated,
           s1.stopped_eog ? " (end of turn)" : "", r1);
    int full1 = s1.prompt_tokens;
    msgs[1].content = r1;
    CHECK_OK(tern_chat_session_reply(&a, msgs, 3, NULL, NULL, &r2, &s2));
    // Fresh: the whole conversation runs.
    CHECK_OK(tern_chat_session_init(&b, &m, tok, TERN_CHAT_ZEPHYR, &o));
    CHECK_OK(tern_chat_session_reply(&b, msgs, 3, NULL, NULL, &r2_fresh, &s3));
    printf("turn 2: %d new prompt tokens (fresh session: %d): '%s'\n", s2.prompt_tokens, s3.prompt_tokens, r2);
    CHECK(s2.prompt_tokens < s3.prompt_tokens - full1 + 2); // at most the reply's own end is re-run
    CHECK_MSG(r2 && r2_fresh && !strcmp(r2, r2_fresh), "cached '%s' vs fresh '%s'", r2, r2_fresh);
    // Reset: everything runs again, and gives the same reply.
    tern_chat_session_reset(&a);
    char *r3 = NULL;
    CHECK_OK(tern_chat_session_reply(&a, msgs, 3, NULL, NULL, &r3, &s2));
    CHECK(s2.prompt_tokens == s3.prompt_tokens && r3 && !strcmp(r3, r2_fresh));
    free(r1), free(r2), free(r2_fresh), free(r3);
    tern_chat_session_free(&a);
    tern_chat_session_free(&b);
}

static void test_context_limits(void) {
    tern_gen_opts o = greedy(48, 0); // n_predict 0: until the end of turn or a full context
    tern_chat_session c;
    CHECK_OK(tern_chat_session_init(&c, &m, tok, TERN_CHAT_ZEPHYR, &o));
    CHECK(tern_chat_session_n_ctx(&c) == 48);
    char long_text[2048] = "";
    for (int i = 0; i < 20; i++) strcat(long_text, "The little dog ran to the park. ");
    tern_chat_msg too_long[] = {{"user", long_text}};
    char *r = NULL;
    tern_gen_stats st;
    CHECK_FAILS(tern_chat_session_reply(&c, too_long, 1, NULL, NULL, &r, &st), "no longer fits the context of 48");
    CHECK(r == NULL && c.n_cache == 0);
    tern_chat_msg fits[] = {{"user", "Once upon a time, Lily"}};
    CHECK_OK(tern_chat_session_reply(&c, fits, 1, NULL, NULL, &r, &st));
    CHECK_MSG(st.stopped_ctx || st.stopped_eog, "neither end of turn nor a full context");
    if (st.stopped_ctx) CHECK(c.n_cache == 48);
    printf("context 48: %d prompt + %d generated, %s\n", st.prompt_tokens, st.generated,
           st.stopped_ctx ? "context full" : "end of turn");
    free(r);
    // A template refusal leaves the session as it was.
    int before = c.n_cache;
    tern_chat_msg two_users[] = {{"user", "a"}, {"user", "b"}};
    c.tmpl = TERN_CHAT_GEMMA;
    CHECK_FAILS(tern_chat_session_reply(&c, two_users, 2, NULL, NULL, &r, &st), "must alternate");
    CHECK(c.n_cache == before);
    tern_chat_session_free(&c);
}

static void test_public_api(const char *model, const char *tokenizer) {
    tern_llm *llm;
    CHECK_OK(tern_llm_load(&llm, model, tokenizer));
    CHECK(tern_llm_chat_template(llm, NULL) == -1 && strstr(tern_error(), "model has no chat template"));
    CHECK(tern_llm_chat_template(llm, "nope") == -1 && strstr(tern_error(), "unknown --chat-template"));
    int t = tern_llm_chat_template(llm, "llama2");
    CHECK(t >= 0 && !strcmp(tern_llm_chat_template_name(t), "llama2"));
    tern_chat_msg msgs[] = {{"system", "S"}, {"user", "Hi"}};
    char *p = tern_llm_chat_render(llm, t, msgs, 2, 1);
    // BOS as the vocabulary spells it (llama2.c: "\n<s>\n")
    CHECK(p && !strcmp(p, "\n<s>\n[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST]"));
    free(p);
    CHECK(tern_llm_chat_render(llm, tern_llm_chat_template(llm, "gemma"), msgs, 2, 1) == NULL);
    CHECK(tern_llm_chat_eot(llm, t) == tern_llm_eos(llm));
    tern_chat *chat;
    CHECK(tern_chat_new(&chat, llm, NULL, NULL) == -1 && chat == NULL);
    tern_gen_params gp;
    tern_gen_params_default(&gp);
    gp.temp = 0, gp.n_predict = 12, gp.n_ctx = 256;
    CHECK_OK(tern_chat_new(&chat, llm, "llama2", &gp));
    char *reply = NULL;
    tern_gen_result res;
    CHECK_OK(tern_chat_reply(chat, msgs, 2, NULL, NULL, &reply, &res));
    CHECK(reply && res.generated > 0 && res.prompt_tokens > 10);
    // The same conversation again: only the last prompt token runs.
    char *again = NULL;
    CHECK_OK(tern_chat_reply(chat, msgs, 2, NULL, NULL, &again, &res));
    CHECK(res.prompt_tokens == 1 && again && !strcmp(again, reply));
    tern_chat_reset(chat);
    free(reply), free(again);
    tern_chat_free(chat);
    tern_llm_free(llm);
}

// SentencePiece prompts: control tokens written in the text become those
// tokens, the text between is tokenized as usual (llama2.c spells BOS/EOS
// "\n<s>\n" / "\n</s>\n").
static void test_spm_specials(void) {
    int *ids = NULL, n = 0, *a = NULL, na = 0, *b = NULL, nb = 0;
    CHECK_OK(tern_chat_tokenize(tok, &m.vocab, "Lily ran.\n</s>\nTom sat.", 1, &ids, &n));
    CHECK_OK(tern_tokenize(tok, "Lily ran.", 9, 0, &a, &na));
    CHECK_OK(tern_tokenize(tok, "Tom sat.", 8, 0, &b, &nb));
    CHECK(n == 1 + na + 1 + nb && ids[0] == m.vocab.bos_id && ids[1 + na] == m.vocab.eos_id);
    CHECK(n == 1 + na + 1 + nb && !memcmp(ids + 1, a, (size_t)na * sizeof *a) &&
          !memcmp(ids + 2 + na, b, (size_t)nb * sizeof *b));
    free(ids), free(a), free(b);
    CHECK_OK(tern_chat_tokenize(tok, &m.vocab, "\n<s>\n", 0, &ids, &n));
    CHECK(n == 1 && ids[0] == m.vocab.bos_id);
    free(ids);
}

int main(void) {
    const char *model = test_data_path("models/stories260K/stories260K.bin");
    const char *tokenizer = test_data_path("models/stories260K/tok512.bin");
    CHECK_OK(tern_model_load(&m, model, tokenizer));
    CHECK_OK(tern_tokenizer_init(&tok, &m.vocab));
    test_spm_specials();
    test_cache_reuse();
    test_context_limits();
    test_public_api(model, tokenizer);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    return test_report();
}
