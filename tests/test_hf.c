// Hugging Face directory reader on tests/fixtures/tiny_hf (written by
// tests/ref/hf_fixture.py): config, every tensor bit-exact against the
// independently permuted expectation, the byte-level BPE vocabulary; plus
// safetensors edge cases and broken directories written under /tmp.
#include <stdint.h>
#include <unistd.h>

#include "core/error.h"
#include "core/file.h"
#include "io/model.h"
#include "io/readers.h"
#include "io/safetensors.h"
#include "test.h"

#define FIXTURE "tests/fixtures/tiny_hf"

static void test_config(const tern_model *m) {
    const tern_config *c = &m->cfg;
    CHECK(strcmp(m->format, "hf") == 0 && strcmp(c->arch, "llama") == 0);
    CHECK(strcmp(c->name, "tern/tiny-hf-fixture") == 0);
    CHECK(c->dim == 32 && c->n_layers == 2 && c->n_heads == 4 && c->n_kv_heads == 2 && c->head_dim == 8);
    CHECK(c->hidden_dim == 48 && c->vocab_size == 285 && c->max_seq == 256);
    CHECK(c->rope_theta == 10000.0f && c->rms_eps == 1e-5f);
    CHECK(c->rope_scaling == TERN_ROPE_SCALING_LLAMA3 && c->rope_factor == 8.0f);
    CHECK(c->rope_low_freq_factor == 1.0f && c->rope_high_freq_factor == 4.0f && c->rope_orig_max_seq == 64);
    CHECK(!c->tied_embeddings && c->attn_qkv_bias && c->attn_out_bias);
}

static uint32_t rd_u32(const uint8_t **p) {
    uint32_t v;
    memcpy(&v, *p, 4);
    *p += 4;
    return v;
}

// Compares every tensor with tiny_hf.expected.bin (format in hf_fixture.py).
static void test_tensors(const tern_model *m) {
    tern_blob b;
    CHECK_OK(tern_blob_open(&b, test_src_path(FIXTURE ".expected.bin")));
    if (!b.data) return;
    const uint8_t *p = b.data + 8, *end = b.data + b.size;
    CHECK(b.size > 12 && memcmp(b.data, "TERNEXP1", 8) == 0);
    uint32_t count = rd_u32(&p);
    CHECK_MSG((int)count == m->n_tensors, "expected %u tensors, loaded %d", count, m->n_tensors);
    int exact = 0;
    for (uint32_t k = 0; k < count && p < end; k++) {
        char name[TERN_NAME_MAX] = {0};
        uint32_t len = rd_u32(&p);
        memcpy(name, p, len < sizeof name - 1 ? len : sizeof name - 1);
        p += len;
        uint32_t ndim = rd_u32(&p);
        int64_t shape[4] = {0}, numel = 1;
        CHECK_MSG(ndim <= 4, "%s: %u dimensions", name, ndim);
        if (ndim > 4) break;
        for (uint32_t d = 0; d < ndim; d++) {
            memcpy(&shape[d], p, 8);
            p += 8;
            numel *= shape[d];
        }
        const tern_tensor *t = tern_model_find(m, name);
        CHECK_MSG(t != NULL, "missing tensor %s", name);
        if (t) {
            CHECK_MSG(t->ndim == (int)ndim && t->shape[0] == shape[0] && t->shape[1] == shape[1],
                      "%s: shape mismatch", name);
            CHECK_MSG(strcmp(t->src_type, "BF16") == 0, "%s: src_type %s", name, t->src_type);
            int same = t->numel == numel;
            for (int64_t i = 0; same && i < numel; i++) {
                uint16_t hi;
                memcpy(&hi, p + 2 * i, 2);
                uint32_t want = (uint32_t)hi << 16, got;
                memcpy(&got, &t->data[i], 4);
                if (got != want) {
                    fprintf(stderr, "%s[%lld]: got 0x%08x want 0x%08x\n", name, (long long)i, got, want);
                    same = 0;
                }
            }
            CHECK_MSG(same, "%s: data differs", name);
            exact += same;
        }
        p += 2 * numel;
    }
    CHECK(exact == 29 && p == end);
    tern_blob_close(&b);
    // The F32 inv_freq buffer in the shard is not a model tensor.
    CHECK(tern_model_find(m, "blk.0.attn_q.weight") && !tern_model_find(m, "rotary_emb.inv_freq"));
}

static void test_vocab(const tern_vocab *v) {
    CHECK(v->type == TERN_VOCAB_BPE && v->n_tokens == 285 && strcmp(v->pre, "smollm") == 0);
    CHECK(strcmp(v->tokens['A'], "A") == 0 && v->token_lens['A'] == 1);
    CHECK(strcmp(v->tokens[' '], "\xc4\xa0") == 0); // byte 0x20 is 'Ġ' (U+0120, from a \u escape)
    CHECK(v->n_merges == 25);
    if (v->n_merges == 25) {
        CHECK(strcmp(v->merges[0], "t h") == 0);
        CHECK(strcmp(v->merges[1], "h e") == 0); // written as a ["h", "e"] pair
        CHECK(strcmp(v->merges[24], "\xc4\xa0 \xc3\x83\xc2\xa9") == 0);
    }
    CHECK(tern_vocab_find(v, "\xc4\xa0the") >= 256);
    int eot = tern_vocab_find(v, "<|endoftext|>"), eos = tern_vocab_find(v, "<|im_end|>");
    int think = tern_vocab_find(v, "<think>");
    CHECK(eot == 281 && eos == 283 && think == 284);
    CHECK(v->token_types && v->token_types[eot] == TERN_TOKEN_CONTROL);
    CHECK(v->token_types && v->token_types[think] == TERN_TOKEN_USER_DEFINED);
    CHECK(v->token_types && v->token_types['A'] == TERN_TOKEN_NORMAL);
    CHECK(v->bos_id == eot && v->eos_id == eos && v->add_bos == 1 && v->pad_id == -1);
}

static void test_fixture(void) {
    tern_model m;
    CHECK_OK(tern_model_load(&m, test_src_path(FIXTURE), NULL));
    test_config(&m);
    test_tensors(&m);
    test_vocab(&m.vocab);
    tern_weights w;
    CHECK_OK(tern_model_bind(&m, &w));
    CHECK(w.output != w.tok_embd && w.layers && w.layers[1].bq && w.layers[1].bo);
    tern_weights_free(&w);
    tern_model_free(&m);
    // The tokenizer alone, as --tokenizer tokenizer.json loads it.
    tern_vocab v;
    CHECK_OK(tern_hf_load_vocab(&v, test_src_path(FIXTURE "/tokenizer.json")));
    test_vocab(&v);
    tern_vocab_free(&v);
}

// ---- broken directories ------------------------------------------------------

static char tmpdir[64];

static void write_file(const char *name, const void *data, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot create %s", path);
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

static void write_str(const char *name, const char *s) { write_file(name, s, strlen(s)); }

static void copy_fixture(const char *name) {
    char *data;
    size_t n;
    char src[256];
    snprintf(src, sizeof src, "%s/%s", FIXTURE, name);
    CHECK_OK(tern_read_file(test_src_path(src), &data, &n));
    write_file(name, data, n);
    free(data);
}

static void remove_file(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    unlink(path);
}

// A safetensors file: 8-byte length, header, data.
static void write_st(const char *name, const char *header, const void *data, size_t n) {
    size_t h = strlen(header);
    uint8_t *buf = malloc(8 + h + n);
    uint64_t hl = h;
    memcpy(buf, &hl, 8);
    memcpy(buf + 8, header, h);
    if (n) memcpy(buf + 8 + h, data, n);
    write_file(name, buf, 8 + h + n);
    free(buf);
}

static const char *tiny_config(const char *model_type, const char *extra) {
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"model_type\": \"%s\", \"hidden_size\": 4, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
             " \"intermediate_size\": 8, \"vocab_size\": 3, \"max_position_embeddings\": 16%s}",
             model_type, extra);
    return buf;
}

static void test_bad_dirs(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tern_test_hf.XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    tern_model m;
    char needle[256];

    // Foreign architectures are refused by name, with the config's path.
    write_str("config.json", tiny_config("gpt2", ""));
    snprintf(needle, sizeof needle,
             "%s/config.json: unsupported architecture 'gpt2' (tern supports the LLaMA family and BitNet)", tmpdir);
    CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), needle);
    write_str("config.json", tiny_config("qwen2", ""));
    CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), "unsupported architecture 'qwen2'");
    write_str("config.json", tiny_config("llama", ", \"mlp_bias\": true"));
    CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), "mlp_bias");
    write_str("config.json", tiny_config("llama", ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2}"));
    CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), "unsupported rope_scaling type 'yarn'");
    write_str("config.json", tiny_config("llama", ", \"num_key_value_heads\": 3"));
    CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), "n_kv_heads");
    write_str("config.json", "{\"model_type\": \"llama\", \"hidden_size\": 4,}");
    CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), "config.json:1:42: trailing comma");

    // No weights at all.
    write_str("config.json", tiny_config("llama", ""));
    CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), "no model.safetensors");

    // A tensor whose data lies beyond the end of the file.
    float zeros[16] = {0};
    write_st("model.safetensors",
             "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]}}",
             zeros, 16);
    CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), "outside the 16-byte data section");
    // A mapped tensor of an unconvertible dtype is named with its dtype.
    write_st("model.safetensors",
             "{\"model.embed_tokens.weight\":{\"dtype\":\"I32\",\"shape\":[3,4],\"data_offsets\":[0,48]}}",
             zeros, 48);
    CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), "tensor model.embed_tokens.weight has dtype I32");
    // Valid file, but the model is incomplete.
    write_st("model.safetensors",
             "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]}}",
             zeros, 48);
    CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), "missing tensor output_norm.weight");
    remove_file("model.safetensors");

    // Tied embeddings: lm_head in the shards is ignored, output.weight absent.
    copy_fixture("model-00001-of-00002.safetensors");
    copy_fixture("model-00002-of-00002.safetensors");
    copy_fixture("model.safetensors.index.json");
    copy_fixture("tokenizer.json");
    char *cfg;
    size_t n;
    CHECK_OK(tern_read_file(test_src_path(FIXTURE "/config.json"), &cfg, &n));
    char *tie = strstr(cfg, "\"tie_word_embeddings\": false");
    CHECK(tie != NULL);
    if (tie) {
        memcpy(tie, "\"tie_word_embeddings\": true ", 28);
        write_str("config.json", cfg);
        CHECK_OK(tern_model_load(&m, tmpdir, NULL));
        CHECK(m.cfg.tied_embeddings && !tern_model_find(&m, "output.weight") && m.n_tensors == 28);
        // Without tokenizer_config.json, BOS/EOS come from config.json's ids.
        CHECK(m.vocab.bos_id == 281 && m.vocab.eos_id == 283 && m.vocab.add_bos == 0);
        tern_model_free(&m);
    }
    free(cfg);
    // The index names a tensor its shard does not have.
    char *idx;
    CHECK_OK(tern_read_file(test_src_path(FIXTURE "/model.safetensors.index.json"), &idx, &n));
    char *w = strstr(idx, "\"model.norm.weight\"");
    CHECK(w != NULL);
    if (w) {
        w[7] = 'x'; // "model.xorm.weight"
        write_str("model.safetensors.index.json", idx);
        CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), "tensor model.xorm.weight (listed in the index) is missing");
    }
    free(idx);
    copy_fixture("model.safetensors.index.json");

    // Vocabulary errors.
    write_str("tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":2},\"merges\":[]},"
                                "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}");
    CHECK_FAILS(tern_model_load(&m, tmpdir, NULL), "no token has id 1");
    write_str("tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}");
    tern_vocab v;
    snprintf(needle, sizeof needle, "%s/tokenizer.json", tmpdir);
    CHECK_FAILS(tern_hf_load_vocab(&v, needle), "id 0 is used by both 'a' and 'b'");
    tern_vocab_free(&v);
    write_str("tokenizer.json", "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}");
    CHECK_FAILS(tern_hf_load_vocab(&v, needle), "unsupported tokenizer model 'Unigram'");
    tern_vocab_free(&v);
    write_str("tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                                "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":"
                                "[{\"type\":\"Split\"},{\"type\":\"Punctuation\"}]}}");
    CHECK_FAILS(tern_hf_load_vocab(&v, needle), "unsupported pre-tokenizer Sequence[Split, Punctuation]");
    tern_vocab_free(&v);
    // SentencePiece-style tokenizer.json (byte_fallback): SPM scores from merge order.
    write_str("tokenizer.json",
              "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
              "{\"id\":1,\"content\":\"<s>\",\"special\":true},{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
              "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
              "{\"type\":\"Replace\"}]},\"pre_tokenizer\":null,"
              "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,"
              "\"<s>\":1,\"</s>\":2,\"<0x00>\":3,\"\\u2581\":4,\"a\":5,\"\\u2581a\":6,\"aa\":7},"
              "\"merges\":[\"a a\",\"\\u2581 a\"]}}");
    write_str("tokenizer_config.json", "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\"}}");
    CHECK_OK(tern_hf_load_vocab(&v, needle));
    CHECK(v.type == TERN_VOCAB_SPM && v.n_tokens == 8 && v.add_space_prefix == 1);
    CHECK(v.scores && v.scores[7] == 0.0f && v.scores[6] == -1.0f && v.scores[5] == -1e9f);
    CHECK(v.token_types && v.token_types[3] == TERN_TOKEN_BYTE && v.token_types[0] == TERN_TOKEN_UNKNOWN);
    CHECK(v.token_types && v.token_types[1] == TERN_TOKEN_CONTROL && v.unk_id == 0);
    CHECK(v.bos_id == 1 && v.eos_id == 2 && v.add_bos == 1); // SentencePiece adds BOS by default
    CHECK(v.chat_template == NULL);
    tern_vocab_free(&v);
    // The chat template: a string, a list with a "default" entry, or chat_template.jinja beside.
    write_str("tokenizer_config.json", "{\"chat_template\": \"{{ bos_token }}[INST] \\u00e9\\n\"}");
    CHECK_OK(tern_hf_load_vocab(&v, needle));
    CHECK(v.chat_template && !strcmp(v.chat_template, "{{ bos_token }}[INST] \u00e9\n"));
    tern_vocab_free(&v);
    write_str("tokenizer_config.json", "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, "
                                       "{\"name\": \"default\", \"template\": \"D\"}]}");
    CHECK_OK(tern_hf_load_vocab(&v, needle));
    CHECK(v.chat_template && !strcmp(v.chat_template, "D"));
    tern_vocab_free(&v);
    write_str("tokenizer_config.json", "{\"chat_template\": 3}");
    CHECK_FAILS(tern_hf_load_vocab(&v, needle), "chat_template must be a string");
    tern_vocab_free(&v);
    write_str("tokenizer_config.json", "{}");
    write_str("chat_template.jinja", "<|im_start|>J");
    CHECK_OK(tern_hf_load_vocab(&v, needle));
    CHECK(v.chat_template && !strcmp(v.chat_template, "<|im_start|>J"));
    tern_vocab_free(&v);
    remove_file("chat_template.jinja");

    const char *files[] = {"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                           "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) remove_file(files[i]);
    CHECK(rmdir(tmpdir) == 0);
}

// ---- safetensors directly ------------------------------------------------------

static void test_safetensors(void) {
    // F16 and F32 (unaligned: the header length is odd), a scalar, and an I64.
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                      "\"f\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]},"
                      "\"i\":{\"dtype\":\"I64\",\"shape\":[1,1],\"data_offsets\":[8,16]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[16,18]}}";
    size_t h = strlen(hdr);
    uint8_t buf[512];
    uint64_t hl = h;
    memcpy(buf, &hl, 8);
    memcpy(buf + 8, hdr, h);
    uint8_t *d = buf + 8 + h;
    uint16_t f16[2] = {0x3C00, 0xC000}; // 1.0, -2.0
    float half = 0.5f;
    int64_t i64 = 7;
    uint16_t bf = 0x4040; // 3.0
    memcpy(d, f16, 4);
    memcpy(d + 4, &half, 4);
    memcpy(d + 8, &i64, 8);
    memcpy(d + 16, &bf, 2);
    tern_st_file st;
    CHECK_OK(tern_st_parse(&st, buf, 8 + h + 18, "mem.safetensors"));
    CHECK(st.n_tensors == 4 && st.metadata && tern_json_str_eq(tern_json_get(st.metadata, "format"), "pt"));
    float out[2] = {0};
    const tern_st_tensor *t = tern_st_find(&st, "h");
    CHECK(t && t->numel == 2 && tern_st_read_f32(&st, t, out) == 0 && out[0] == 1.0f && out[1] == -2.0f);
    t = tern_st_find(&st, "f");
    CHECK(t && t->ndim == 0 && t->numel == 1 && tern_st_read_f32(&st, t, out) == 0 && out[0] == 0.5f);
    t = tern_st_find(&st, "b");
    CHECK(t && tern_st_read_f32(&st, t, out) == 0 && out[0] == 3.0f);
    t = tern_st_find(&st, "i");
    CHECK(t != NULL);
    if (t) CHECK_FAILS(tern_st_read_f32(&st, t, out), "mem.safetensors: tensor i has dtype I64");
    tern_st_close(&st);
    // Truncating the data section puts the last tensor outside it.
    CHECK_FAILS(tern_st_parse(&st, buf, 8 + h + 17, "cut.safetensors"), "cut.safetensors: tensor b");
    tern_st_close(&st);
    CHECK_FAILS(tern_st_parse(&st, buf, 7, "tiny.safetensors"), "tiny.safetensors: not a safetensors file");
    tern_st_close(&st);
}

int main(void) {
    test_fixture();
    test_safetensors();
    test_bad_dirs();
    return test_report();
}
