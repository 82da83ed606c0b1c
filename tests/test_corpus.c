// Runs every file in tests/corpus/<kind>/ through the matching parser. Each
// file is malformed: the parser must fail with a one-line error naming the
// file (and, under ASan/UBSan, without any invalid access).
#include <dirent.h>

#include "core/error.h"
#include "core/file.h"
#include "io/json.h"
#include "io/readers.h"
#include "io/safetensors.h"
#include "eval/zeroshot.h"
#include "test.h"

typedef int (*parse_fn)(const tern_blob *b);

static int parse_llama2c(const tern_blob *b) {
    tern_model m = {0};
    int rc = tern_llama2c_parse(&m, b->data, b->size, b->path);
    tern_model_free(&m);
    return rc;
}

static int parse_llama2c_tok(const tern_blob *b) {
    tern_vocab v = {0};
    int rc = tern_llama2c_tokenizer_parse(&v, b->data, b->size, 512, b->path);
    tern_vocab_free(&v);
    return rc;
}

// Whole LLaMA load: header, metadata, vocabulary, config, shapes, dequantization.
static int parse_gguf(const tern_blob *b) {
    tern_model m = {0};
    int rc = tern_gguf_parse_model(&m, b->data, b->size, b->path);
    tern_model_free(&m);
    return rc;
}

static int parse_json(const tern_blob *b) {
    tern_json_doc d;
    int rc = tern_json_parse(&d, b->data, b->size, b->path);
    tern_json_free(&d);
    return rc;
}

// Header parse, then conversion of every tensor (unconvertible dtypes fail there).
static int parse_safetensors(const tern_blob *b) {
    tern_st_file f;
    int rc = tern_st_parse(&f, b->data, b->size, b->path);
    for (int i = 0; rc == 0 && i < f.n_tensors; i++) {
        float *dst = malloc((size_t)f.tensors[i].numel * sizeof(float) + 1);
        rc = dst ? tern_st_read_f32(&f, &f.tensors[i], dst) : -1;
        free(dst);
    }
    tern_st_close(&f);
    return rc;
}

static int parse_tasks(const tern_blob *b) {
    tern_zs_task t;
    int rc = tern_zs_task_parse(&t, (const char *)b->data, b->size, b->path, NULL);
    if (rc == 0) tern_zs_task_free(&t);
    return rc;
}

// Hugging Face model in memory (fuzz/fuzz_hf.c's form: u32 config length,
// config.json, safetensors bytes): config, BitNet quantization, tensors, bind.
static int parse_hf(const tern_blob *b) {
    uint32_t n;
    if (b->size < 4 || (memcpy(&n, b->data, 4), n > b->size - 4))
        return tern_errorf("%s: not a config + safetensors container", b->path);
    tern_model m = {0};
    int rc = tern_hf_parse_model(&m, (const char *)b->data + 4, n, b->data + 4 + n, b->size - 4 - n, b->path);
    tern_model_free(&m);
    return rc;
}

static const struct {
    const char *kind;
    parse_fn parse;
} kinds[] = {
    {"llama2c", parse_llama2c},
    {"llama2c_tok", parse_llama2c_tok},
    {"gguf", parse_gguf},
    {"hf", parse_hf},
    {"json", parse_json},
    {"safetensors", parse_safetensors},
    {"tasks", parse_tasks},
};

int main(void) {
    int files = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", test_src_path("tests/corpus"));
        snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%s", kinds[k].kind);
        DIR *d = opendir(dir);
        CHECK_MSG(d != NULL, "missing corpus directory %s", dir);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char path[1400];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            tern_blob b;
            if (tern_blob_open(&b, path)) continue;
            tern_clear_error();
            int rc = kinds[k].parse(&b);
            CHECK_MSG(rc != 0, "%s: parsed without error", path);
            CHECK_MSG(strstr(tern_last_error(), e->d_name) != NULL && !strchr(tern_last_error(), '\n'),
                      "%s: error does not name the file: %s", path, tern_last_error());
            tern_blob_close(&b);
            files++;
        }
        closedir(d);
    }
    CHECK(files > 0);
    return test_report();
}
