#include "train/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/threads.h"

#define TOKEN_CACHE_MAGIC 0x4b4f544e52455455ull /* "UTERNTOK" */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Fisher-Yates with a stream seeded by (seed, epoch): any epoch's order can be
// rebuilt from the checkpointed position alone.
static void shuffle_epoch(tern_dataset *d) {
    uint64_t s = d->seed * 0x2545f4914f6cdd1dull + (uint64_t)d->epoch;
    for (int64_t i = 0; i < d->n_train; i++) d->order[i] = i;
    for (int64_t i = d->n_train - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix(&s) % (uint64_t)(i + 1));
        int64_t t = d->order[i];
        d->order[i] = d->order[j];
        d->order[j] = t;
    }
}

int tern_dataset_from_tokens(tern_dataset *d, const int *tokens, int64_t n, int seq_len, double val_frac,
                             uint64_t seed, const char *what) {
    memset(d, 0, sizeof *d);
    if (seq_len < 1) return tern_errorf("%s: sequence length %d is too small", what, seq_len);
    if (!(val_frac >= 0 && val_frac <= 0.5)) return tern_errorf("validation fraction %g outside [0, 0.5]", val_frac);
    // Windows of L+1 tokens with stride L: targets are inputs shifted by one.
    int64_t n_seq = n > seq_len ? (n - 1) / seq_len : 0;
    int64_t n_val = val_frac > 0 ? (int64_t)(n_seq * val_frac + 0.999999) : 0;
    if (n_seq - n_val < 1 || (val_frac > 0 && n_val < 1))
        return tern_errorf("%s: %lld tokens are too few for training sequences of %d tokens%s", what, (long long)n,
                           seq_len, val_frac > 0 ? " plus a validation split" : "");
    d->tokens = malloc((size_t)n * sizeof(int));
    d->order = malloc((size_t)(n_seq - n_val) * sizeof(int64_t));
    if (!d->tokens || !d->order) {
        tern_dataset_free(d);
        return tern_errorf("out of memory");
    }
    memcpy(d->tokens, tokens, (size_t)n * sizeof(int));
    d->n_tokens = n;
    d->seq_len = seq_len;
    d->n_train = n_seq - n_val;
    d->n_val = n_val;
    d->seed = seed;
    shuffle_epoch(d);
    return 0;
}

static void cache_path(char *out, size_t cap, const char *dir, const char *text_path, uint64_t key) {
    const char *base = strrchr(text_path, '/');
    base = base ? base + 1 : text_path;
    snprintf(out, cap, "%s/%.100s.%016llx.tokens", dir, base, (unsigned long long)key);
}

static int read_token_cache(const char *path, uint64_t key, int **tokens, int64_t *n) {
    tern_blob b;
    if (!tern_file_exists(path) || tern_blob_open(&b, path)) return -1;
    tern_cursor c;
    tern_cursor_init(&c, b.data, b.size, path);
    uint64_t magic, k, count;
    int rc = -1;
    if (!tern_cur_u64(&c, &magic, "magic") && !tern_cur_u64(&c, &k, "key") && !tern_cur_u64(&c, &count, "count") &&
        magic == TOKEN_CACHE_MAGIC && k == key && count == (b.size - 24) / 4 && (b.size - 24) % 4 == 0) {
        *tokens = malloc(count ? count * 4 : 4);
        if (*tokens) {
            memcpy(*tokens, b.data + 24, count * 4);
            *n = (int64_t)count;
            rc = 0;
        }
    }
    tern_blob_close(&b);
    return rc;
}

static void write_token_cache(const char *path, uint64_t key, const int *tokens, int64_t n) {
    tern_atomic_file af;
    if (tern_atomic_open(&af, path)) return; // a cache is an optimisation: failure is not an error
    uint64_t hdr[3] = {TOKEN_CACHE_MAGIC, key, (uint64_t)n};
    fwrite(hdr, 8, 3, af.f);
    fwrite(tokens, 4, (size_t)n, af.f);
    if (tern_atomic_commit(&af)) tern_clear_error();
}

int tern_dataset_load(tern_dataset *d, const char *text_path, const tern_tokenizer *tok, uint64_t vocab_key,
                      int seq_len, double val_frac, uint64_t seed, const char *cache_dir) {
    char *text;
    size_t len;
    if (tern_read_file(text_path, &text, &len)) return -1;
    if (len == 0) {
        free(text);
        return tern_errorf("%s: calibration text is empty", text_path);
    }
    // The key covers the text and the vocabulary, so an edited file or another
    // tokenizer never reuses stale tokens.
    uint64_t key = tern_hash64(text, len, vocab_key ^ (uint64_t)tern_tokenizer_add_bos(tok));
    char path[1024];
    int *tokens = NULL;
    int64_t n = 0;
    if (cache_dir) cache_path(path, sizeof path, cache_dir, text_path, key);
    if (!cache_dir || read_token_cache(path, key, &tokens, &n)) {
        int count;
        // One call (chunking would change tokens at the seams): say what runs.
        double t0 = tern_now_sec();
        if (len > 1000000)
            fprintf(stderr, "tokenizing %s (%.1f MB)%s\n", text_path, len / 1e6, cache_dir ? "; cached for next time" : "");
        if (tern_tokenize(tok, text, len, tern_tokenizer_add_bos(tok), &tokens, &count)) {
            free(text);
            return tern_error_prefix("%s", text_path);
        }
        if (len > 1000000) fprintf(stderr, "tokenized: %d tokens in %.1f s\n", count, tern_now_sec() - t0);
        n = count;
        if (cache_dir) write_token_cache(path, key, tokens, n);
    }
    free(text);
    int rc = tern_dataset_from_tokens(d, tokens, n, seq_len, val_frac, seed, text_path);
    free(tokens);
    return rc;
}

void tern_dataset_free(tern_dataset *d) {
    free(d->tokens);
    free(d->order);
    memset(d, 0, sizeof *d);
}

static void copy_sequence(const tern_dataset *d, int64_t seq, int *inputs, int *targets) {
    const int *src = d->tokens + seq * d->seq_len;
    memcpy(inputs, src, (size_t)d->seq_len * sizeof(int));
    memcpy(targets, src + 1, (size_t)d->seq_len * sizeof(int));
}

void tern_dataset_next_share(tern_dataset *d, int B, int first, int count, int *inputs, int *targets) {
    for (int b = 0; b < B; b++) {
        if (d->cursor == d->n_train) {
            d->epoch++;
            d->cursor = 0;
            shuffle_epoch(d);
        }
        int64_t seq = d->order[d->cursor++];
        if (b < first || b >= first + count) continue;
        size_t at = (size_t)(b - first) * d->seq_len;
        copy_sequence(d, seq, inputs + at, targets + at);
    }
}

void tern_dataset_next(tern_dataset *d, int B, int *inputs, int *targets) {
    tern_dataset_next_share(d, B, 0, B, inputs, targets);
}

void tern_dataset_val(const tern_dataset *d, int64_t i, int *inputs, int *targets) {
    copy_sequence(d, d->n_train + i, inputs, targets);
}

int tern_dataset_seek(tern_dataset *d, int64_t epoch, int64_t cursor) {
    if (epoch < 0 || cursor < 0 || cursor > d->n_train)
        return tern_errorf("data position (epoch %lld, index %lld) is outside the dataset of %lld sequences",
                           (long long)epoch, (long long)cursor, (long long)d->n_train);
    d->epoch = epoch;
    d->cursor = cursor;
    shuffle_epoch(d);
    return 0;
}
