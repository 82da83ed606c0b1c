// `tern quantize` as a library call: method state, training, export, GGUF.
#include "quant/quant.h"

int tern_quantize_model(tern_model *m, const tern_tokenizer *tok, const tern_quant_method *method,
                        const tern_quant_opts *qo, const tern_train_opts *to, const char *out,
                        tern_train_report *report, double code_frac[3]) {
    if (method && !method->trains && to->steps > 0)
        return tern_errorf("%s does not train: use --steps 0", method->name);
    tern_quant *q;
    if (tern_quant_create(&q, method, qo, m)) return -1;
    int rc = tern_train_run(m, tok, to, tern_quant_train_method(q), report);
    if (rc == 0) rc = tern_quant_export(q, m, code_frac);
    if (rc == 0) rc = tern_quant_write_gguf(q, m, code_frac, out);
    tern_quant_free(q);
    return rc;
}
