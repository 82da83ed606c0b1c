// Named recipes for `tern quantize --recipe NAME`: defaults for the whole
// pipeline, chosen by measurement (docs/methods.md, "The CPU recipe"); any
// option given explicitly overrides them.
#include <string.h>

#include "quant/quant.h"

// cpu: GPTQ on 256 Brown-sized sequences of 256 tokens, then end-to-end QAT of
// the latent weights and DLT's scales/shifts with CE + logit KD against the
// FP model at lr 1e-3 (the lr measured best; 1e-4 was never tuned). Sized to
// about an hour on 2 threads for SmolLM2-135M; --budget rescales the steps.
static void recipe_cpu(tern_quant_opts *q, tern_train_opts *t) {
    q->init_gptq = 1;
    t->calib_seqs = 256, q->calib_up_to = 1;
    t->seq_len = 256;
    t->batch = 4;
    t->lr = 1e-3f;
    t->ce_weight = 1.0f;
    t->kd_weight = 1.0f;
    t->steps = 500;
    t->val_every = 50;
}

static const struct {
    const char *name;
    const char *method; // the method it is made for (when --method is not given)
    void (*apply)(tern_quant_opts *q, tern_train_opts *t);
} recipes[] = {{"cpu", "dlt", recipe_cpu}};

int tern_quant_recipe(const char *name, tern_quant_opts *q, tern_train_opts *t, const char **method) {
    for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
        if (!strcmp(recipes[i].name, name)) {
            recipes[i].apply(q, t);
            if (method && !*method) *method = recipes[i].method;
            return 0;
        }
    return tern_errorf("--recipe %s: unknown recipe (known: cpu)", name);
}
