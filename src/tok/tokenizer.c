// SentencePiece-style BPE and byte-level BPE tokenizers.
//
// Both share one merge engine: the text becomes a doubly linked list of
// symbols, every adjacent pair that forms a token goes into a max-heap keyed
// by (priority, leftmost), and the best pair is merged until none is left.
// Stale heap entries are recognised by the combined length they recorded, so
// each merge costs O(log n) and a whole text O(n log n).
//   SPM: priority = score of the merged piece (SentencePiece's rule).
//   BPE: priority = -rank of the merge (GPT-2's rule: earliest merge first).
#include "tok/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tok/pretok.h"
#include "tok/unicode.h"

// ---------------------------------------------------------------------------
// Open-addressing hash maps.

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n * 2) c *= 2;
    return c;
}

// String -> token id; keys point into the vocabulary (which outlives us).
typedef struct {
    size_t cap; // power of two
    int *slot;  // token id or -1
} str_map;

static int str_map_init(str_map *m, size_t n) {
    m->cap = pow2_at_least(n);
    m->slot = malloc(m->cap * sizeof *m->slot);
    if (!m->slot) return tern_errorf("out of memory");
    memset(m->slot, 0xff, m->cap * sizeof *m->slot);
    return 0;
}

static int str_map_get(const str_map *m, const tern_vocab *v, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        int id = m->slot[i];
        if (id < 0) return -1;
        if ((size_t)v->token_lens[id] == n && memcmp(v->tokens[id], s, n) == 0) return id;
    }
}

// Keeps the first id of a duplicated string.
static void str_map_put(str_map *m, const tern_vocab *v, int id) {
    const char *s = v->tokens[id];
    size_t n = (size_t)v->token_lens[id];
    for (size_t i = hash_bytes(s, n) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        int o = m->slot[i];
        if (o < 0) {
            m->slot[i] = id;
            return;
        }
        if ((size_t)v->token_lens[o] == n && memcmp(v->tokens[o], s, n) == 0) return;
    }
}

// (left id, right id) -> (rank, merged id) for byte-level BPE merges.
typedef struct {
    uint64_t key; // left << 32 | right; UINT64_MAX when empty
    int rank, merged;
} pair_slot;

typedef struct {
    size_t cap;
    pair_slot *slot;
} pair_map;

static uint64_t pair_key(int l, int r) { return (uint64_t)(uint32_t)l << 32 | (uint32_t)r; }

static const pair_slot *pair_map_get(const pair_map *m, int l, int r) {
    uint64_t k = pair_key(l, r);
    for (size_t i = hash_u64(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->slot[i].key == k) return &m->slot[i];
        if (m->slot[i].key == UINT64_MAX) return NULL;
    }
}

// Keeps the earliest rank of a repeated merge.
static void pair_map_put(pair_map *m, int l, int r, int rank, int merged) {
    uint64_t k = pair_key(l, r);
    for (size_t i = hash_u64(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->slot[i].key == k) return;
        if (m->slot[i].key == UINT64_MAX) {
            m->slot[i] = (pair_slot){k, rank, merged};
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Tokenizer state.

typedef struct {
    char *s;
    int len;
} bytes_t;

struct tern_tokenizer {
    const tern_vocab *v;
    str_map pieces;      // SPM: mergeable pieces; BPE: every token
    pair_map merges;     // BPE only
    int byte_tok[256];   // SPM <0xNN> / BPE byte-level char token per byte; -1 absent
    tern_pretok_kind pre;
    int ignore_merges;   // llama3: a piece that is a whole token is not merged
    int *specials;       // BPE: control/user-defined ids, longest first
    int n_specials;
    uint8_t special_first[256]; // first bytes of specials (quick reject)
    bytes_t *dec;        // [n_tokens] decoded bytes of each token
    uint8_t *lead_space; // SPM: piece decodes with a leading ' ' to drop at start
    int u2b[324];        // BPE: byte-level code point -> byte, -1 when not in the map
    int *eog;            // end-of-generation ids
    int n_eog;
};

static int token_type(const tern_vocab *v, int id) {
    return v->token_types ? v->token_types[id] : TERN_TOKEN_NORMAL;
}

// GPT-2's byte <-> unicode map: printable Latin-1 bytes stand for themselves,
// the other 68 bytes take code points 256, 257, ... in byte order.
static void byte_unicode_map(uint32_t b2u[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        b2u[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

static int is_spm_byte_piece(const char *s, int len, int *byte) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    char hex[3] = {s[3], s[4], 0};
    char *end;
    long b = strtol(hex, &end, 16);
    if (*end || b < 0 || b > 255) return 0;
    *byte = (int)b;
    return 1;
}

// Decoded bytes of SPM token `id`: U+2581 -> ' ', <0xNN> -> the byte,
// control -> "", unknown -> " \u2047 " (as SentencePiece prints it).
static int spm_decode_piece(tern_tokenizer *t, int id) {
    const tern_vocab *v = t->v;
    const char *s = v->tokens[id];
    int len = v->token_lens[id], type = token_type(v, id), b;
    char *d = malloc((size_t)len + 8);
    if (!d) return tern_errorf("out of memory");
    int k = 0;
    if (type == TERN_TOKEN_CONTROL) {
        // nothing
    } else if (type == TERN_TOKEN_UNKNOWN) {
        memcpy(d, " \xe2\x81\x87 ", 5);
        k = 5;
    } else if (type == TERN_TOKEN_BYTE && is_spm_byte_piece(s, len, &b)) {
        d[k++] = (char)b;
    } else {
        for (int i = 0; i < len;) {
            if (i + 3 <= len && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                d[k++] = ' ';
                i += 3;
            } else {
                d[k++] = s[i++];
            }
        }
        t->lead_space[id] = k > 0 && d[0] == ' ';
    }
    t->dec[id] = (bytes_t){d, k};
    return 0;
}

// Decoded bytes of byte-level token `id`: each character maps back to a
// byte. Special tokens (and any character outside the map) keep their text.
static int bpe_decode_piece(tern_tokenizer *t, int id) {
    const tern_vocab *v = t->v;
    const char *s = v->tokens[id];
    int len = v->token_lens[id], type = token_type(v, id);
    char *d = malloc((size_t)len + 1);
    if (!d) return tern_errorf("out of memory");
    int k = 0;
    if (type == TERN_TOKEN_CONTROL || type == TERN_TOKEN_USER_DEFINED) {
        memcpy(d, s, (size_t)len);
        k = len;
    } else {
        for (int i = 0; i < len;) {
            int l;
            uint32_t cp = tern_utf8_decode((const uint8_t *)s + i, (size_t)(len - i), &l);
            int b = cp < 324 ? t->u2b[cp] : -1;
            if (b >= 0) d[k++] = (char)b;
            else memcpy(d + k, s + i, (size_t)l), k += l;
            i += l;
        }
    }
    t->dec[id] = (bytes_t){d, k};
    return 0;
}

static int spm_init(tern_tokenizer *t) {
    const tern_vocab *v = t->v;
    // Only normal (and user-defined) pieces take part in merges: SentencePiece
    // never forms control, unknown, unused or byte pieces from text, so the
    // text "<0x41>" stays six characters instead of becoming 'A'.
    for (int id = 0; id < v->n_tokens; id++) {
        int type = token_type(v, id), b;
        if (type == TERN_TOKEN_BYTE && is_spm_byte_piece(v->tokens[id], v->token_lens[id], &b)) {
            if (t->byte_tok[b] < 0) t->byte_tok[b] = id;
        } else if ((type == TERN_TOKEN_NORMAL || type == TERN_TOKEN_USER_DEFINED) && v->token_lens[id] > 0) {
            str_map_put(&t->pieces, v, id);
        }
        if (spm_decode_piece(t, id)) return -1;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

// Orders specials longest first (then by id) so the first match is the longest.
static int sort_specials(tern_tokenizer *t) {
    uint64_t *keys = malloc(((size_t)t->n_specials + 1) * sizeof *keys);
    if (!keys) return tern_errorf("out of memory");
    for (int i = 0; i < t->n_specials; i++)
        keys[i] = (uint64_t)(uint32_t)(INT32_MAX - t->v->token_lens[t->specials[i]]) << 32 | (uint32_t)t->specials[i];
    qsort(keys, (size_t)t->n_specials, sizeof *keys, cmp_u64);
    for (int i = 0; i < t->n_specials; i++) t->specials[i] = (int)(keys[i] & 0xffffffffu);
    free(keys);
    return 0;
}

static int add_eog(tern_tokenizer *t, int id) {
    if (id < 0) return 0;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return 0;
    int *e = realloc(t->eog, (size_t)(t->n_eog + 1) * sizeof *e);
    if (!e) return tern_errorf("out of memory");
    t->eog = e;
    t->eog[t->n_eog++] = id;
    return 0;
}

static int bpe_init(tern_tokenizer *t) {
    const tern_vocab *v = t->v;
    int pre = tern_pretok_from_name(v->pre);
    if (pre < 0)
        return tern_errorf("unknown BPE pre-tokenizer '%s' (supported: gpt2, default, smollm, llama3, llama-bpe)",
                           v->pre);
    t->pre = (tern_pretok_kind)pre;
    t->ignore_merges = pre == TERN_PRETOK_LLAMA3;
    uint32_t b2u[256];
    byte_unicode_map(b2u);
    for (int i = 0; i < 324; i++) t->u2b[i] = -1;
    for (int b = 0; b < 256; b++) t->u2b[b2u[b]] = b;
    t->specials = malloc(((size_t)v->n_tokens + 1) * sizeof *t->specials);
    if (!t->specials) return tern_errorf("out of memory");
    for (int id = 0; id < v->n_tokens; id++) {
        str_map_put(&t->pieces, v, id);
        int type = token_type(v, id);
        if ((type == TERN_TOKEN_CONTROL || type == TERN_TOKEN_USER_DEFINED) && v->token_lens[id] > 0) {
            t->specials[t->n_specials++] = id;
            t->special_first[(uint8_t)v->tokens[id][0]] = 1;
        }
        if (bpe_decode_piece(t, id)) return -1;
    }
    if (sort_specials(t)) return -1;
    for (int b = 0; b < 256; b++) {
        char u[4];
        int l = tern_utf8_encode(b2u[b], u);
        t->byte_tok[b] = str_map_get(&t->pieces, v, u, (size_t)l);
    }
    // Merges "left right": both halves and their concatenation must be tokens.
    // A token may itself contain ' ' in unusual vocabularies, so every split
    // point is tried.
    t->merges.cap = pow2_at_least((size_t)v->n_merges + 1);
    t->merges.slot = malloc(t->merges.cap * sizeof *t->merges.slot);
    if (!t->merges.slot) return tern_errorf("out of memory");
    memset(t->merges.slot, 0xff, t->merges.cap * sizeof *t->merges.slot);
    char *buf = NULL;
    size_t bufcap = 0;
    for (int r = 0; r < v->n_merges; r++) {
        const char *m = v->merges[r];
        size_t n = strlen(m);
        if (n + 1 > bufcap) {
            free(buf);
            bufcap = n + 64;
            buf = malloc(bufcap);
            if (!buf) return tern_errorf("out of memory");
        }
        for (const char *sp = strchr(m, ' '); sp; sp = strchr(sp + 1, ' ')) {
            size_t ll = (size_t)(sp - m), rl = n - ll - 1;
            int l = str_map_get(&t->pieces, v, m, ll), rt = str_map_get(&t->pieces, v, sp + 1, rl);
            if (l < 0 || rt < 0) continue;
            memcpy(buf, m, ll);
            memcpy(buf + ll, sp + 1, rl);
            int merged = str_map_get(&t->pieces, v, buf, ll + rl);
            if (merged >= 0) pair_map_put(&t->merges, l, rt, r, merged);
            break;
        }
    }
    free(buf);
    static const char *const eog_names[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>",
                                            "<|eom_id|>", "<end_of_turn>", "<|end|>"};
    for (size_t i = 0; i < sizeof eog_names / sizeof *eog_names; i++)
        if (add_eog(t, str_map_get(&t->pieces, v, eog_names[i], strlen(eog_names[i])))) return -1;
    return 0;
}

int tern_tokenizer_init(tern_tokenizer **out, const tern_vocab *v) {
    *out = NULL;
    if (v->type != TERN_VOCAB_SPM && v->type != TERN_VOCAB_BPE)
        return tern_errorf("unsupported vocabulary type %d (expected SentencePiece or byte-level BPE)", (int)v->type);
    if (v->n_tokens <= 0 || !v->tokens || !v->token_lens) return tern_errorf("empty vocabulary");
    if (v->type == TERN_VOCAB_SPM && !v->scores) return tern_errorf("SentencePiece vocabulary without scores");
    tern_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return tern_errorf("out of memory");
    t->v = v;
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    t->dec = calloc((size_t)v->n_tokens, sizeof *t->dec);
    t->lead_space = calloc((size_t)v->n_tokens, 1);
    if (!t->dec || !t->lead_space || str_map_init(&t->pieces, (size_t)v->n_tokens)) {
        tern_tokenizer_free(t);
        return tern_errorf("out of memory");
    }
    int rc = v->type == TERN_VOCAB_SPM ? spm_init(t) : bpe_init(t);
    if (rc == 0 && v->eos_id >= v->n_tokens) rc = tern_errorf("EOS id %d out of range", v->eos_id);
    if (rc == 0) rc = add_eog(t, v->eos_id);
    if (rc) {
        tern_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void tern_tokenizer_free(tern_tokenizer *t) {
    if (!t) return;
    if (t->dec)
        for (int i = 0; i < t->v->n_tokens; i++) free(t->dec[i].s);
    free(t->dec);
    free(t->lead_space);
    free(t->pieces.slot);
    free(t->merges.slot);
    free(t->specials);
    free(t->eog);
    free(t);
}

// ---------------------------------------------------------------------------
// Output id buffer.

typedef struct {
    int *ids;
    size_t n, cap;
} id_buf;

static int push_id(id_buf *b, int id) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        int *p = realloc(b->ids, cap * sizeof *p);
        if (!p) return tern_errorf("out of memory");
        b->ids = p;
        b->cap = cap;
    }
    b->ids[b->n++] = id;
    return 0;
}

// ---------------------------------------------------------------------------
// Merge engine.

typedef struct {
    int start, len;  // bytes in the text being merged
    int id;          // token id, or -1 (SPM: not a piece; falls back to bytes)
    int prev, next;  // neighbours, -1 at the ends
} symbol;

typedef struct {
    double prio;
    int left, right, len, merged;
} candidate;

typedef struct {
    const tern_tokenizer *t;
    const char *text;
    symbol *sym;
    candidate *heap;
    size_t n_heap, cap_heap;
} merger;

static int cand_better(const candidate *a, const candidate *b) {
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

static int heap_push(merger *m, candidate c) {
    if (m->n_heap == m->cap_heap) {
        size_t cap = m->cap_heap ? m->cap_heap * 2 : 256;
        candidate *h = realloc(m->heap, cap * sizeof *h);
        if (!h) return tern_errorf("out of memory");
        m->heap = h;
        m->cap_heap = cap;
    }
    size_t i = m->n_heap++;
    while (i > 0 && cand_better(&c, &m->heap[(i - 1) / 2])) {
        m->heap[i] = m->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    m->heap[i] = c;
    return 0;
}

static candidate heap_pop(merger *m) {
    candidate top = m->heap[0], last = m->heap[--m->n_heap];
    size_t i = 0, n = m->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_better(&m->heap[c + 1], &m->heap[c])) c++;
        if (!cand_better(&m->heap[c], &last)) break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (n) m->heap[i] = last;
    return top;
}

// Queues the pair (l, l.next) when it forms a token.
static int try_pair(merger *m, int l) {
    if (l < 0) return 0;
    int r = m->sym[l].next;
    if (r < 0) return 0;
    const tern_tokenizer *t = m->t;
    const symbol *a = &m->sym[l], *b = &m->sym[r];
    candidate c = {.left = l, .right = r, .len = a->len + b->len};
    if (t->v->type == TERN_VOCAB_SPM) {
        int id = str_map_get(&t->pieces, t->v, m->text + a->start, (size_t)c.len);
        if (id < 0) return 0;
        c.prio = t->v->scores[id];
        c.merged = id;
    } else {
        if (a->id < 0 || b->id < 0) return 0;
        const pair_slot *p = pair_map_get(&t->merges, a->id, b->id);
        if (!p) return 0;
        c.prio = -(double)p->rank;
        c.merged = p->merged;
    }
    return heap_push(m, c);
}

// Merges symbols sym[0..n) (already linked in order) as far as possible.
static int merge_all(merger *m, int n) {
    m->n_heap = 0;
    for (int i = 0; i + 1 < n; i++)
        if (try_pair(m, i)) return -1;
    while (m->n_heap) {
        candidate c = heap_pop(m);
        symbol *a = &m->sym[c.left], *b = &m->sym[c.right];
        // Stale: one side was merged away or grew since the pair was queued.
        if (a->len == 0 || b->len == 0 || a->next != c.right || a->len + b->len != c.len) continue;
        a->len = c.len;
        a->id = c.merged;
        a->next = b->next;
        if (b->next >= 0) m->sym[b->next].prev = c.left;
        b->len = 0;
        if (try_pair(m, a->prev) || try_pair(m, c.left)) return -1;
    }
    return 0;
}

static int merger_reserve(merger *m, size_t n, size_t *cap) {
    if (n <= *cap) return 0;
    symbol *s = realloc(m->sym, n * sizeof *s);
    if (!s) return tern_errorf("out of memory");
    m->sym = s;
    *cap = n;
    return 0;
}

// ---------------------------------------------------------------------------
// SentencePiece BPE.

static int spm_encode(const tern_tokenizer *t, const char *text, size_t len, id_buf *out) {
    const tern_vocab *v = t->v;
    if (len == 0) return 0;
    if (len > (size_t)INT32_MAX / 4) return tern_errorf("text too long to tokenize (%zu bytes)", len);
    // Normalise: optional leading U+2581, every ' ' becomes U+2581.
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    size_t nlen = len + 2 * spaces + (v->add_space_prefix ? 3 : 0);
    char *norm = malloc(nlen + 1);
    if (!norm) return tern_errorf("out of memory");
    size_t k = 0;
    if (v->add_space_prefix) memcpy(norm, "\xe2\x96\x81", 3), k = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') memcpy(norm + k, "\xe2\x96\x81", 3), k += 3;
        else norm[k++] = text[i];
    }
    merger m = {.t = t, .text = norm};
    size_t cap = 0;
    int rc = merger_reserve(&m, nlen, &cap);
    // One symbol per UTF-8 character (an invalid byte is a character of its own).
    int n = 0;
    for (size_t i = 0; rc == 0 && i < nlen; n++) {
        int l = tern_utf8_len((const uint8_t *)norm + i, nlen - i);
        m.sym[n] = (symbol){(int)i, l, str_map_get(&t->pieces, v, norm + i, (size_t)l), n - 1, n + 1};
        i += (size_t)l;
    }
    if (rc == 0 && n) m.sym[n - 1].next = -1;
    if (rc == 0) rc = merge_all(&m, n);
    for (int i = 0; rc == 0 && i >= 0 && n; i = m.sym[i].next) {
        const symbol *s = &m.sym[i];
        if (s->id >= 0) {
            rc = push_id(out, s->id);
            continue;
        }
        // Not a piece: its bytes become <0xNN> tokens, or one unk without them.
        for (int j = 0; rc == 0 && j < s->len; j++) {
            int b = t->byte_tok[(uint8_t)norm[s->start + j]];
            if (b >= 0) rc = push_id(out, b);
            else if (j == 0 && v->unk_id >= 0) rc = push_id(out, v->unk_id);
        }
    }
    free(m.sym);
    free(m.heap);
    free(norm);
    return rc;
}

// ---------------------------------------------------------------------------
// Byte-level BPE.

typedef struct {
    const tern_tokenizer *t;
    const char *text;
    id_buf *out;
    merger m;
    size_t sym_cap;
    char *word;       // byte-level spelling of the piece (ignore_merges lookup)
    size_t word_cap;
} bpe_ctx;

static int bpe_piece(void *vctx, size_t start, size_t end) {
    bpe_ctx *c = vctx;
    const tern_tokenizer *t = c->t;
    const char *s = c->text + start;
    int n = (int)(end - start);
    if (t->ignore_merges) {
        if ((size_t)n * 2 > c->word_cap) {
            free(c->word);
            c->word_cap = (size_t)n * 2 + 64;
            c->word = malloc(c->word_cap);
            if (!c->word) return tern_errorf("out of memory");
        }
        // The byte-level spelling of byte b is its token's text.
        size_t k = 0;
        for (int i = 0; i < n; i++) {
            int bt = t->byte_tok[(uint8_t)s[i]];
            if (bt < 0) break;
            memcpy(c->word + k, t->v->tokens[bt], (size_t)t->v->token_lens[bt]);
            k += (size_t)t->v->token_lens[bt];
        }
        int id = str_map_get(&t->pieces, t->v, c->word, k);
        if (id >= 0 && token_type(t->v, id) != TERN_TOKEN_CONTROL) return push_id(c->out, id);
    }
    if (merger_reserve(&c->m, (size_t)n, &c->sym_cap)) return -1;
    c->m.text = s;
    for (int i = 0; i < n; i++) {
        int id = t->byte_tok[(uint8_t)s[i]];
        c->m.sym[i] = (symbol){i, 1, id, i - 1, i + 1 < n ? i + 1 : -1};
    }
    if (merge_all(&c->m, n)) return -1;
    for (int i = 0; i >= 0; i = c->m.sym[i].next) {
        int id = c->m.sym[i].id;
        // A byte without a token (SmolLM2 has none for 0x04, 0xFF, ...) only
        // stands alone: it becomes a genuine unknown token, or is dropped as
        // Hugging Face's BPE does without unk_token. Never a control token
        // such as GGUF's unk id 0 = <|endoftext|>, which would end the text.
        if (id < 0) id = t->v->unk_id >= 0 && token_type(t->v, t->v->unk_id) == TERN_TOKEN_UNKNOWN ? t->v->unk_id : -1;
        if (id >= 0 && push_id(c->out, id)) return -1;
    }
    return 0;
}

// The special token starting at text[i], or -1.
static int special_at(const tern_tokenizer *t, const char *text, size_t len, size_t i) {
    if (!t->special_first[(uint8_t)text[i]]) return -1;
    for (int k = 0; k < t->n_specials; k++) {
        int id = t->specials[k];
        size_t l = (size_t)t->v->token_lens[id];
        if (l <= len - i && memcmp(text + i, t->v->tokens[id], l) == 0) return id;
    }
    return -1;
}

static int bpe_encode(const tern_tokenizer *t, const char *text, size_t len, id_buf *out) {
    if (len > (size_t)INT32_MAX / 4) return tern_errorf("text too long to tokenize (%zu bytes)", len);
    bpe_ctx c = {.t = t, .text = text, .out = out, .m = {.t = t}};
    int rc = 0;
    size_t seg = 0;
    // Control/user-defined token strings are cut out first (longest match at
    // the leftmost position); the text between them is pre-tokenized.
    for (size_t i = 0; rc == 0 && i <= len; i++) {
        int sp = i < len ? special_at(t, text, len, i) : -1;
        if (i < len && sp < 0) continue;
        c.text = text + seg;
        rc = tern_pretokenize(t->pre, text + seg, i - seg, bpe_piece, &c);
        if (rc == 0 && sp >= 0) {
            rc = push_id(out, sp);
            i += (size_t)t->v->token_lens[sp] - 1;
        }
        seg = i + 1;
    }
    free(c.m.sym);
    free(c.m.heap);
    free(c.word);
    return rc ? -1 : 0;
}

int tern_tokenize(const tern_tokenizer *t, const char *text, size_t len, int add_bos, int **ids, int *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    id_buf out = {0};
    int rc = 0;
    if (add_bos && t->v->bos_id >= 0) rc = push_id(&out, t->v->bos_id);
    if (rc == 0) rc = t->v->type == TERN_VOCAB_SPM ? spm_encode(t, text, len, &out) : bpe_encode(t, text, len, &out);
    if (rc == 0 && out.n > INT32_MAX) rc = tern_errorf("too many tokens");
    if (rc) {
        free(out.ids);
        return -1;
    }
    if (!out.ids) out.ids = malloc(sizeof(int)); // a valid pointer even for no tokens
    if (!out.ids) return tern_errorf("out of memory");
    *ids = out.ids;
    *n_ids = (int)out.n;
    return 0;
}

// ---------------------------------------------------------------------------
// Decoding.

size_t tern_token_to_bytes(const tern_tokenizer *t, int prev, int id, char *buf, size_t cap) {
    if (id < 0 || id >= t->v->n_tokens) return 0;
    const bytes_t *d = &t->dec[id];
    const char *s = d->s;
    size_t n = (size_t)d->len;
    // SentencePiece drops the space that add_space_prefix put before the text.
    if (t->v->type == TERN_VOCAB_SPM && t->v->add_space_prefix && t->lead_space[id] &&
        (prev < 0 || prev == t->v->bos_id))
        s++, n--;
    memcpy(buf, s, n < cap ? n : cap);
    return n;
}

int tern_detokenize(const tern_tokenizer *t, const int *ids, int n_ids, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->v->n_tokens)
            return tern_errorf("token id %d out of range (vocabulary of %d)", ids[i], t->v->n_tokens);
        total += (size_t)t->dec[ids[i]].len;
    }
    char *out = malloc(total + 1);
    if (!out) return tern_errorf("out of memory");
    size_t k = 0;
    for (int i = 0; i < n_ids; i++)
        k += tern_token_to_bytes(t, i ? ids[i - 1] : -1, ids[i], out + k, total - k);
    out[k] = 0;
    *text = out;
    *len = k;
    return 0;
}

int tern_tokenizer_bos(const tern_tokenizer *t) { return t->v->bos_id; }
int tern_tokenizer_eos(const tern_tokenizer *t) { return t->v->eos_id; }
int tern_tokenizer_add_bos(const tern_tokenizer *t) { return t->v->add_bos && t->v->bos_id >= 0; }

int tern_tokenizer_is_eog(const tern_tokenizer *t, int id) {
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return 1;
    return 0;
}
