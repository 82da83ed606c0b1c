#include "infer/quantize_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/dist.h"
#include "core/error.h"
#include "core/file.h"
#include "tok/tokenizer.h"

int tern_quantize_out_is_latent(const char *out) {
    size_t n = strlen(out);
    return n >= 5 && !strcmp(out + n - 5, ".gguf");
}

const char *tern_quantize_latent_path(const tern_quantize_files *f, char *buf, size_t cap) {
    if (tern_quantize_out_is_latent(f->out)) return f->out;
    if (f->save_latent) return f->save_latent;
    snprintf(buf, cap, "%s.latent.tmp.gguf", f->out);
    return buf;
}

const char *tern_cache_dir(char *buf, size_t cap) {
    const char *env = getenv("TERN_CACHE"), *home = getenv("HOME");
    if (env && *env) snprintf(buf, cap, "%s", env);
    else snprintf(buf, cap, "%s/.cache/tern", home ? home : "/tmp");
    mkdir(buf, 0755);
    return tern_is_dir(buf) ? buf : NULL;
}

// Packs the latent GGUF as `tern export` does (codes and scales recovered exactly).
static int pack_latent(const char *latent, const char *out, tern_export_info *info) {
    tern_model lm;
    if (tern_model_load(&lm, latent, NULL)) return -1;
    int rc = tern_export_tern(&lm, latent, &(tern_export_opts){0}, out, info);
    tern_model_free(&lm);
    return rc;
}

int tern_quantize_file(const tern_quantize_files *f, const tern_quant_method *method, const tern_quant_opts *q,
                       tern_train_opts *t, tern_quantize_result *r) {
    memset(r, 0, sizeof *r);
    char *text;
    size_t len;
    if (tern_read_file(t->data_path, &text, &len)) return -1;
    free(text);
    if (len == 0) return tern_errorf("%s: the calibration text is empty", t->data_path);
    if (tern_quant_check_unquantized(f->model)) return -1;
    r->packed = !tern_quantize_out_is_latent(f->out);
    char tmp[1100], cache[1024];
    const char *latent = tern_quantize_latent_path(f, tmp, sizeof tmp);
    tern_model m;
    if (tern_model_load(&m, f->model, f->tokenizer)) return -1;
    tern_tokenizer *tok;
    if (tern_tokenizer_init(&tok, &m.vocab)) {
        tern_model_free(&m);
        return -1;
    }
    if (!t->cache_dir) t->cache_dir = tern_cache_dir(cache, sizeof cache);
    int rc = tern_quantize_model(&m, tok, method, q, t, latent, &r->train, r->code_frac);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    // Under mpirun, rank 0 writes the output (tern_quantize_model wrote the latent model there).
    int writer = tern_dist_rank() == 0;
    if (rc == 0 && r->packed && writer) rc = pack_latent(latent, f->out, &r->info);
    if (latent == tmp && writer) remove(tmp);
    if (rc == 0 && writer && !t->keep_checkpoint) remove(t->checkpoint_path); // the output holds the result
    if (t->cache_dir == cache) t->cache_dir = NULL;
    return rc;
}
