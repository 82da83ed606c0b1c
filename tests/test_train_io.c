// Checkpoint files (round trip, corruption, truncation, version) and the
// dataset packer (windows, split, deterministic shuffle, seek).
#include <unistd.h>

#include "core/file.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "test.h"

static void test_checkpoint(void) {
    const char *path = test_tmp_path("tern_test_ckpt.bin");
    float params[1000];
    for (int i = 0; i < 1000; i++) params[i] = (float)i * 0.5f;
    int64_t step = 42;
    tern_ckpt_section secs[] = {{"params", params, sizeof params}, {"step", &step, sizeof step}, {"empty", "", 0}};
    CHECK_OK(tern_ckpt_save(path, secs, 3));
    tern_ckpt c;
    CHECK_OK(tern_ckpt_load(&c, path));
    uint64_t size;
    const float *p = tern_ckpt_get(&c, "params", sizeof params, &size);
    CHECK(p && memcmp(p, params, sizeof params) == 0);
    const int64_t *s = tern_ckpt_get(&c, "step", 8, NULL);
    CHECK(s && *s == 42);
    CHECK(tern_ckpt_get(&c, "empty", 0, &size) && size == 0);
    CHECK(tern_ckpt_get(&c, "params", 4, NULL) == NULL && strstr(tern_last_error(), "expected 4"));
    CHECK(tern_ckpt_get(&c, "moments", 0, NULL) == NULL && strstr(tern_last_error(), "no section 'moments'"));
    tern_ckpt_close(&c);

    char *data;
    size_t n;
    CHECK_OK(tern_read_file(path, &data, &n));
    FILE *f = fopen(path, "wb");
    data[n - 100] ^= 1; // flip one bit in the parameters
    fwrite(data, 1, n, f);
    fclose(f);
    CHECK_FAILS(tern_ckpt_load(&c, path), "section 'params' fails its checksum");
    f = fopen(path, "wb");
    fwrite(data, 1, n / 2, f);
    fclose(f);
    CHECK_FAILS(tern_ckpt_load(&c, path), "outside the file");
    data[8] = 9; // version
    f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
    CHECK_FAILS(tern_ckpt_load(&c, path), "checkpoint version 9");
    free(data);
    CHECK_FAILS(tern_ckpt_load(&c, test_src_path("tests/fixtures/tiny_llama.bin")), "not a tern checkpoint");
    unlink(path);
}

static void test_dataset(void) {
    int tokens[1001];
    for (int i = 0; i < 1001; i++) tokens[i] = i;
    tern_dataset d;
    CHECK_OK(tern_dataset_from_tokens(&d, tokens, 1001, 10, 0.1, 5, "toy"));
    CHECK(d.n_train + d.n_val == 100 && d.n_val == 10);
    int in[30], tg[30];
    tern_dataset_val(&d, 0, in, tg);
    CHECK(in[0] == 900 && tg[0] == 901 && tg[9] == 910);
    // One epoch visits every training sequence exactly once, in shuffled order.
    int seen[90] = {0}, in_order = 1;
    for (int k = 0; k < 90; k++) {
        tern_dataset_next(&d, 1, in, tg);
        CHECK(in[0] % 10 == 0 && tg[0] == in[0] + 1);
        seen[in[0] / 10]++;
        in_order &= in[0] / 10 == k;
    }
    int all_once = 1;
    for (int k = 0; k < 90; k++) all_once &= seen[k] == 1;
    CHECK(all_once && !in_order);
    // Seeking to a saved position reproduces the stream exactly.
    tern_dataset_next(&d, 3, in, tg);
    int64_t epoch = d.epoch, cursor = d.cursor;
    int a[30], b[30], dummy[30];
    tern_dataset_next(&d, 3, a, dummy);
    tern_dataset e;
    CHECK_OK(tern_dataset_from_tokens(&e, tokens, 1001, 10, 0.1, 5, "toy"));
    CHECK_OK(tern_dataset_seek(&e, epoch, cursor));
    tern_dataset_next(&e, 3, b, dummy);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK_FAILS(tern_dataset_seek(&e, 0, 1000), "outside the dataset");
    tern_dataset_free(&e);
    tern_dataset_free(&d);
    CHECK_FAILS(tern_dataset_from_tokens(&d, tokens, 15, 10, 0.1, 5, "short.txt"), "short.txt: 15 tokens are too few");
    CHECK_FAILS(tern_dataset_from_tokens(&d, tokens, 500, 10, 0.9, 5, "x"), "validation fraction");
}

int main(void) {
    test_checkpoint();
    test_dataset();
    return test_report();
}
