// Runs every file in tests/corpus/<kind>/ through the matching parser. Each
// file is malformed: the parser must fail with a one-line error naming the
// file (and, under ASan/UBSan, without any invalid access).
#include <dirent.h>

#include "core/error.h"
#include "core/file.h"
#include "io/readers.h"
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

static const struct {
    const char *kind;
    parse_fn parse;
} kinds[] = {
    {"llama2c", parse_llama2c},
    {"llama2c_tok", parse_llama2c_tok},
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
