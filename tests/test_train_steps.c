// A few optimizer steps on the whole tiny LLaMA reproduce PyTorch's loss
// trajectory (tests/ref/train_steps_ref.py): forward, cross-entropy, backward,
// global-norm clipping and AdamW together.
#include "core/file.h"
#include "io/readers.h"
#include "nn/llama_train.h"
#include "train/loss.h"
#include "train/optim.h"
#include "test.h"

int main(void) {
    char *data;
    size_t size;
    if (tern_read_file(test_src_path("tests/fixtures/train_steps.bin"), &data, &size)) {
        fprintf(stderr, "%s\n", tern_last_error());
        return 1;
    }
    int hdr[3];
    memcpy(hdr, data, 12);
    int steps = hdr[0], B = hdr[1], T = hdr[2];
    const int *batches = (const int *)(data + 12);
    // The losses follow the int32 tokens at an offset that is not 8-aligned: copy them out.
    double ref_loss[16];
    if (steps > 16) return 1;
    memcpy(ref_loss, data + 12 + (size_t)steps * B * (T + 1) * 4, (size_t)steps * sizeof(double));

    tern_model m = {0};
    CHECK_OK(tern_llama2c_load(&m, test_src_path("tests/fixtures/tiny_llama.bin")));
    tern_train_model *tm;
    CHECK_OK(tern_train_model_init(&tm, &m));
    tern_adamw opt;
    tern_adamw_init(&opt);
    int g = tern_adamw_add_group(&opt, (tern_adamw_hparams){1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f});
    for (int i = 0; i < tern_train_n_params(tm); i++) {
        int64_t n;
        float *p = tern_train_param(tm, i, &n);
        CHECK_OK(tern_adamw_add(&opt, p, tern_train_grad(tm, i), n, g));
    }
    int V = m.cfg.vocab_size;
    int *in = malloc((size_t)B * T * sizeof(int)), *tg = malloc((size_t)B * T * sizeof(int));
    float *dlogits = malloc((size_t)B * T * V * sizeof(float));
    for (int s = 0; s < steps; s++) {
        const int *batch = batches + (size_t)s * B * (T + 1);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                in[b * T + t] = batch[b * (T + 1) + t];
                tg[b * T + t] = batch[b * (T + 1) + t + 1];
            }
        tern_train_zero_grad(tm);
        CHECK_OK(tern_train_forward(tm, in, B, T));
        memset(dlogits, 0, (size_t)B * T * V * sizeof(float));
        double loss = tern_loss_cross_entropy(tern_train_logits(tm), tg, B * T, V, 1.0f, dlogits);
        CHECK_OK(tern_train_backward(tm, dlogits, NULL));
        tern_clip_grad_norm(&opt, 1.0);
        tern_adamw_step(&opt, 1.0f);
        CHECK_MSG(fabs(loss - ref_loss[s]) <= 1e-4 * fabs(ref_loss[s]), "step %d: loss %.8f, PyTorch %.8f", s, loss,
                  ref_loss[s]);
    }
    free(in), free(tg), free(dlogits), free(data);
    tern_adamw_free(&opt);
    tern_train_model_free(tm);
    tern_model_free(&m);
    return test_report();
}
