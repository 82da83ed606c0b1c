// Fuzzes both tokenizer front ends on arbitrary bytes:
// - SentencePiece BPE with stories260K's tok512.bin: encode, decode, and the
//   exact round trip (byte fallback makes it hold even for invalid UTF-8; only
//   a literal U+2581 legitimately decodes as ' ');
// - the three byte-level BPE pre-tokenizers: pieces must tile the input.
// The tokenizer is loaded once from $TERN_DATA/models/stories260K/tok512.bin
// (default ../shared/..., i.e. run from the repository root).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/readers.h"
#include "tok/pretok.h"
#include "tok/tokenizer.h"

static tern_vocab vocab;
static tern_tokenizer *tok;

static void load_once(void) {
    if (tok) return;
    const char *root = getenv("TERN_DATA");
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K/tok512.bin", root && *root ? root : "../shared");
    if (tern_llama2c_tokenizer_load(&vocab, path, 512) || tern_tokenizer_init(&tok, &vocab)) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", tern_last_error());
        abort();
    }
}

typedef struct {
    size_t next;
} tiling;

static int check_piece(void *ctx, size_t start, size_t end) {
    tiling *t = ctx;
    if (start != t->next || end <= start) abort();
    t->next = end;
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    load_once();
    const char *text = (const char *)data;
    int *ids, n;
    if (tern_tokenize(tok, text, size, 1, &ids, &n)) abort();
    if (n < 1 || ids[0] != tern_tokenizer_bos(tok)) abort();
    char *out;
    size_t len;
    if (tern_detokenize(tok, ids, n, &out, &len)) abort();
    int has_u2581 = 0;
    for (size_t i = 0; i + 2 < size; i++)
        if (data[i] == 0xE2 && data[i + 1] == 0x96 && data[i + 2] == 0x81) has_u2581 = 1;
    if (!has_u2581 && (len != size || memcmp(out, data, size) != 0)) abort();
    free(out);
    free(ids);
    for (int kind = TERN_PRETOK_GPT2; kind <= TERN_PRETOK_LLAMA3; kind++) {
        tiling t = {0};
        if (tern_pretokenize((tern_pretok_kind)kind, text, size, check_piece, &t)) abort();
        if (t.next != size) abort();
    }
    return 0;
}
