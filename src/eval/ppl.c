#include "eval/ppl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/progress.h"
#include "core/threads.h"
#include "infer/packed.h"
#include "nn/transformer.h"

// -log softmax(logits)[target], accumulated in double for stability.
static double token_nll(const float *logits, int vocab, int target) {
    float max = logits[0];
    for (int i = 1; i < vocab; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int i = 0; i < vocab; i++) sum += exp((double)logits[i] - max);
    return log(sum) - ((double)logits[target] - max);
}

static FILE *running;
void tern_ppl_set_running(FILE *f) { running = f; }

int tern_perplexity_tokens(const tern_model *m, const int *tokens, int64_t n_tokens, int bos, int ctx,
                           int max_chunks, const char *format, tern_ppl_result *r) {
    memset(r, 0, sizeof *r);
    if (ctx < 4) return tern_errorf("perplexity: context %d is too small", ctx);
    int64_t n_chunks = n_tokens / ctx;
    if (n_chunks == 0)
        return tern_errorf("perplexity: the text has %lld tokens, fewer than one chunk of %d", (long long)n_tokens,
                           ctx);
    if (max_chunks > 0 && n_chunks > max_chunks) n_chunks = max_chunks;
    int vocab = m->cfg.vocab_size;
    tern_session s;
    tern_packed *packed = NULL;
    if (tern_session_init(&s, m, ctx, ctx)) return -1;
    if (tern_session_set_format(&s, format ? format : "native", 0, &packed)) {
        tern_session_free(&s);
        return -1;
    }
    size_t logits_bytes;
    if (tern_mul3_size((size_t)ctx, (size_t)vocab, sizeof(float), &logits_bytes)) {
        tern_session_free(&s);
        return -1;
    }
    float *logits = tern_alloc(logits_bytes);
    int *chunk = malloc((size_t)ctx * sizeof(int));
    if (!logits || !chunk) {
        tern_free(logits);
        free(chunk);
        tern_session_free(&s);
        tern_packed_free(packed);
        return tern_errorf("perplexity: out of memory");
    }
    double t0 = tern_now_sec(), nll = 0, nll2 = 0;
    int64_t count = 0;
    int first = ctx / 2, rc = 0;
    tern_progress bar;
    tern_progress_begin(&bar, "perplexity", "chunk", n_chunks);
    for (int64_t c = 0; c < n_chunks && rc == 0; c++) {
        memcpy(chunk, tokens + c * ctx, (size_t)ctx * sizeof(int));
        if (bos >= 0) chunk[0] = bos;
        rc = tern_forward(&s, chunk, ctx, 0, logits);
        // Logits at position i predict the original token at i + 1.
        for (int i = first; i < ctx - 1 && rc == 0; i++) {
            double v = token_nll(logits + (size_t)i * vocab, vocab, tokens[c * ctx + i + 1]);
            nll += v;
            nll2 += v * v;
            count++;
        }
        char extra[64];
        snprintf(extra, sizeof extra, "ppl %.4f", exp(nll / (double)count));
        if (running && rc == 0) {
            fprintf(running, "[%lld]%.4f,", (long long)c + 1, exp(nll / (double)count));
            fflush(running);
        }
        tern_progress_update(&bar, c + 1, extra);
    }
    tern_progress_end(&bar);
    if (running) fputc('\n', running);
    if (rc == 0) {
        double mean = nll / (double)count, var = nll2 / (double)count - mean * mean;
        r->nll = mean;
        r->ppl = exp(mean);
        r->ppl_se = count > 1 && var > 0 ? r->ppl * sqrt(var / (double)(count - 1)) : 0;
        r->tokens = count;
        r->chunks = (int)n_chunks;
        r->ctx = ctx;
        r->text_tokens = n_tokens;
        r->seconds = tern_now_sec() - t0;
    }
    tern_free(logits);
    free(chunk);
    tern_session_free(&s);
    tern_packed_free(packed);
    return rc;
}

int tern_perplexity_text(const tern_model *m, const tern_tokenizer *tok, const char *text, size_t len, int ctx,
                         int max_chunks, const char *format, tern_ppl_result *r) {
    int *ids = NULL, n = 0;
    int add_bos = tern_tokenizer_add_bos(tok);
    if (tern_tokenize(tok, text, len, add_bos, &ids, &n)) return -1;
    int rc = tern_perplexity_tokens(m, ids, n, add_bos ? tern_tokenizer_bos(tok) : -1, ctx, max_chunks, format, r);
    free(ids);
    return rc;
}
