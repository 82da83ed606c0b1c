// The whole `tern quantize` pipeline on files: load, quantize (GPTQ / QAT /
// recipe as the options say), write the latent fake-quant GGUF, pack it into
// a .tern unless the output ends in ".gguf", clean up. The CLI and the public
// API (include/tern.h) both call it after checking their options.
#ifndef TERN_INFER_QUANTIZE_FILE_H
#define TERN_INFER_QUANTIZE_FILE_H

#include "infer/export.h"
#include "quant/quant.h"
#include "train/trainer.h"

typedef struct {
    const char *model, *tokenizer; // tokenizer may be NULL
    const char *out;               // packed .tern, or the latent GGUF when it ends in ".gguf"
    const char *save_latent;       // with a packed out: also keep the latent GGUF here (NULL: a temp file)
} tern_quantize_files;

typedef struct {
    tern_train_report train;
    double code_frac[3]; // ternary methods: fraction of codes -1 / 0 / +1
    int packed;          // out is a packed .tern (info filled)
    tern_export_info info;
} tern_quantize_result;

// 1 when `out` names the latent GGUF (ends in ".gguf"), 0 for a packed model.
int tern_quantize_out_is_latent(const char *out);
// Where the latent GGUF goes: out itself, save_latent, or OUT.latent.tmp.gguf
// (buf, cap >= strlen(out) + 17) for a packed out.
const char *tern_quantize_latent_path(const tern_quantize_files *f, char *buf, size_t cap);
// tern's token cache directory ($TERN_CACHE, else ~/.cache/tern), created if
// needed, into buf; NULL when it cannot be had.
const char *tern_cache_dir(char *buf, size_t cap);
// Runs the pipeline. t->checkpoint_path and t->log_path must be set; the
// checkpoint is removed after success unless t->keep_checkpoint. -1 with one
// error line; a failed run leaves no output (and no temp file) behind.
int tern_quantize_file(const tern_quantize_files *f, const tern_quant_method *method, const tern_quant_opts *q,
                       tern_train_opts *t, tern_quantize_result *r);

#endif
