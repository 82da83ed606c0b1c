// Training forward/backward of a tiny LLaMA (GQA, untied head) against float64
// PyTorch autograd (tests/ref/train_grad_ref.py): loss and every parameter's
// gradient; logits against the inference forward; the block-wise path against
// the full one; frozen tensors; run-to-run determinism.
#include "core/file.h"
#include "core/mem.h"
#include "io/readers.h"
#include "nn/llama_train.h"
#include "nn/ops.h"
#include "nn/transformer.h"
#include "test.h"

static int B, T, V, n_ref_params;
static int *numels, *tokens, *targets;
static double ref_loss;
static float *ref_grads; // concatenated in tern's parameter order

static void load_fixture(void) {
    char *data;
    size_t size;
    if (tern_read_file(test_src_path("tests/fixtures/train_grad.bin"), &data, &size)) {
        fprintf(stderr, "%s\n", tern_last_error());
        exit(1);
    }
    int32_t h[5];
    if (size < 24 || memcmp(data, "TGRD", 4)) {
        fprintf(stderr, "train_grad.bin: bad header\n");
        exit(1);
    }
    memcpy(h, data + 4, sizeof h);
    B = h[1], T = h[2], V = h[3], n_ref_params = h[4];
    size_t off = 24;
    numels = malloc((size_t)n_ref_params * sizeof(int));
    memcpy(numels, data + off, (size_t)n_ref_params * 4);
    off += (size_t)n_ref_params * 4;
    size_t total = 0;
    for (int i = 0; i < n_ref_params; i++) total += (size_t)numels[i];
    tokens = malloc((size_t)B * T * sizeof(int));
    targets = malloc((size_t)B * T * sizeof(int));
    memcpy(tokens, data + off, (size_t)B * T * 4);
    off += (size_t)B * T * 4;
    memcpy(targets, data + off, (size_t)B * T * 4);
    off += (size_t)B * T * 4;
    memcpy(&ref_loss, data + off, 8);
    off += 8;
    if (off + total * 4 != size) {
        fprintf(stderr, "train_grad.bin: size %zu, expected %zu\n", size, off + total * 4);
        exit(1);
    }
    ref_grads = malloc(total * sizeof(float));
    memcpy(ref_grads, data + off, total * 4);
    free(data);
}

// Mean cross-entropy over the B*T tokens and its gradient (softmax − onehot) / (B*T).
static double cross_entropy(const float *logits, float *dlogits) {
    int n = B * T;
    double loss = 0;
    for (int t = 0; t < n; t++) {
        const float *z = logits + (size_t)t * V;
        double mx = z[0], sum = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, z[v]);
        for (int v = 0; v < V; v++) sum += exp(z[v] - mx);
        loss += log(sum) + mx - z[targets[t]];
        for (int v = 0; v < V; v++)
            dlogits[(size_t)t * V + v] = (float)((exp(z[v] - mx) / sum - (v == targets[t])) / n);
    }
    return loss / n;
}

static int find_param(tern_train_model *tm, const char *name) {
    for (int i = 0; i < tern_train_n_params(tm); i++)
        if (!strcmp(tern_train_param_name(tm, i), name)) return i;
    return -1;
}

// Worst per-tensor max|diff| / max|ref| of tm's gradients against `ref` (flat).
static double worst_grad_err(tern_train_model *tm, const float *ref, int verbose) {
    double worst = 0;
    size_t off = 0;
    for (int i = 0; i < tern_train_n_params(tm); i++) {
        int64_t numel;
        tern_train_param(tm, i, &numel);
        double e = test_max_rel_err(tern_train_grad(tm, i), ref + off, (size_t)numel, 1e-12);
        if (verbose && e > 1e-5) printf("  %-28s rel err %.3g\n", tern_train_param_name(tm, i), e);
        worst = fmax(worst, e);
        off += (size_t)numel;
    }
    return worst;
}

static void forward_backward(tern_train_model *tm, float *dlogits, double *loss) {
    tern_train_zero_grad(tm);
    CHECK_OK(tern_train_forward(tm, tokens, B, T));
    double l = cross_entropy(tern_train_logits(tm), dlogits);
    if (loss) *loss = l;
    CHECK_OK(tern_train_backward(tm, dlogits, NULL));
}

// Logits equal the KV-cache inference forward's, sequence by sequence.
static void check_against_inference(const tern_model *m, const float *logits) {
    tern_session s;
    CHECK_OK(tern_session_init(&s, m, T, T));
    float *inf = malloc((size_t)T * V * 4);
    double worst = 0;
    for (int b = 0; b < B; b++) {
        CHECK_OK(tern_forward(&s, tokens + b * T, T, 0, inf));
        worst = fmax(worst, test_max_rel_err(logits + (size_t)b * T * V, inf, (size_t)T * V, 1e-6));
    }
    CHECK_MSG(worst < 1e-5, "training vs inference logits: rel err %.3g", worst);
    printf("logits vs inference forward: rel err %.3g\n", worst);
    free(inf);
    tern_session_free(&s);
}

// Blocks run one at a time reproduce the full forward's hidden states, and the
// chained block backwards the full backward's gradients for dL/dhidden[L-1] = g.
static void check_blockwise(tern_train_model *tm, const tern_model *m) {
    int L = m->cfg.n_layers, D = m->cfg.dim, n = B * T;
    size_t nd = (size_t)n * D;
    int64_t total;
    tern_train_grads_flat(tm, &total);
    float *g = malloc(nd * 4), *full_grads = malloc((size_t)total * 4), *hidden = malloc(L * nd * 4);
    float *x = malloc(nd * 4), *d = malloc(nd * 4), *emb_grad = calloc((size_t)V * D, 4);
    unsigned s = 99;
    for (size_t i = 0; i < nd; i++) {
        s = s * 1103515245u + 12345u;
        g[i] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    const float **dh = calloc((size_t)L, sizeof *dh);
    dh[L - 1] = g;
    tern_train_zero_grad(tm);
    CHECK_OK(tern_train_forward(tm, tokens, B, T));
    for (int l = 0; l < L; l++) memcpy(hidden + l * nd, tern_train_hidden(tm, l), nd * 4);
    CHECK_OK(tern_train_backward(tm, NULL, dh));
    memcpy(full_grads, tern_train_grads_flat(tm, NULL), (size_t)total * 4);

    tern_train_zero_grad(tm);
    const float *embd = tern_train_param(tm, 0, NULL);
    for (int t = 0; t < n; t++) memcpy(x + (size_t)t * D, embd + (size_t)tokens[t] * D, (size_t)D * 4);
    double fwd_err = 0;
    for (int l = 0; l < L; l++) {
        CHECK_OK(tern_train_block_forward(tm, l, x, B, T, x));
        fwd_err = fmax(fwd_err, test_max_rel_err(x, hidden + l * nd, nd, 1e-6));
    }
    CHECK_MSG(fwd_err == 0, "block-wise forward differs from the full forward: %.3g", fwd_err);
    memcpy(d, g, nd * 4);
    for (int l = L - 1; l >= 0; l--) CHECK_OK(tern_train_block_backward(tm, l, d, d));
    // The full path ends with the embedding scatter; do it here from dL/dx_in of block 0.
    tern_embedding_backward(emb_grad, d, tokens, n, D);
    memcpy(tern_train_grad(tm, 0), emb_grad, (size_t)V * D * 4);
    double bwd_err = worst_grad_err(tm, full_grads, 0);
    CHECK_MSG(bwd_err < 1e-6, "block-wise gradients differ from the full backward: %.3g", bwd_err);
    printf("block-wise vs full: hidden rel err %.3g, gradients rel err %.3g\n", fwd_err, bwd_err);
    // Not vacuous: the last block's gradients are non-zero.
    float *gq = tern_train_grad(tm, find_param(tm, "blk.1.attn_q.weight"));
    CHECK(gq && fabsf(gq[0]) + fabsf(gq[1]) > 0);
    free(g), free(full_grads), free(hidden), free(x), free(d), free(emb_grad), free(dh);
}

// Frozen tensors get exactly zero gradient; every other gradient is unchanged
// bit for bit (gradients still flow through the frozen ones).
static void check_frozen(tern_train_model *tm, const float *ref_run, float *dlogits) {
    const char *names[] = {"blk.1.attn_q.weight", "blk.0.ffn_norm.weight", "output.weight", "blk.1.ffn_down.weight"};
    int idx[4];
    for (int i = 0; i < 4; i++) {
        idx[i] = find_param(tm, names[i]);
        CHECK(idx[i] >= 0);
        tern_train_set_frozen(tm, idx[i], 1);
    }
    forward_backward(tm, dlogits, NULL);
    size_t off = 0;
    int frozen_zero = 1, others_same = 1;
    for (int p = 0; p < tern_train_n_params(tm); p++) {
        int64_t numel;
        tern_train_param(tm, p, &numel);
        const float *gr = tern_train_grad(tm, p);
        int frozen = p == idx[0] || p == idx[1] || p == idx[2] || p == idx[3];
        for (int64_t i = 0; i < numel; i++) {
            if (frozen) frozen_zero &= gr[i] == 0;
            else others_same &= gr[i] == ref_run[off + i];
        }
        off += (size_t)numel;
    }
    CHECK(frozen_zero);
    CHECK(others_same);
    for (int i = 0; i < 4; i++) tern_train_set_frozen(tm, idx[i], 0);

    // Everything below layer 1 frozen: the backward may stop early, and layer 1's
    // gradients stay identical.
    int first1 = find_param(tm, "blk.1.attn_norm.weight");
    for (int p = 0; p < first1; p++) tern_train_set_frozen(tm, p, 1);
    forward_backward(tm, dlogits, NULL);
    off = 0;
    int below_zero = 1, above_same = 1;
    for (int p = 0; p < tern_train_n_params(tm); p++) {
        int64_t numel;
        tern_train_param(tm, p, &numel);
        const float *gr = tern_train_grad(tm, p);
        for (int64_t i = 0; i < numel; i++) {
            if (p < first1) below_zero &= gr[i] == 0;
            else above_same &= gr[i] == ref_run[off + i];
        }
        off += (size_t)numel;
    }
    CHECK(below_zero && above_same);
    for (int p = 0; p < first1; p++) tern_train_set_frozen(tm, p, 0);
}

int main(void) {
    load_fixture();
    tern_model m = {0};
    CHECK_OK(tern_llama2c_load(&m, test_src_path("tests/fixtures/tiny_llama.bin")));
    tern_train_model *tm;
    CHECK_OK(tern_train_model_init(&tm, &m));
    if (!tm) return test_report();
    CHECK(tern_train_n_params(tm) == n_ref_params && m.cfg.vocab_size == V);
    for (int i = 0; i < n_ref_params && i < tern_train_n_params(tm); i++) {
        int64_t numel;
        tern_train_param(tm, i, &numel);
        CHECK_MSG(numel == numels[i], "%s: %lld elements, fixture has %d", tern_train_param_name(tm, i),
                  (long long)numel, numels[i]);
    }
    float *dlogits = malloc((size_t)B * T * V * 4);
    double loss;
    forward_backward(tm, dlogits, &loss);
    CHECK_MSG(fabs(loss - ref_loss) / ref_loss < 1e-4, "loss %.9g, reference %.9g", loss, ref_loss);
    double worst = worst_grad_err(tm, ref_grads, 1);
    CHECK_MSG(worst < 1e-4, "gradients: worst rel err %.3g", worst);
    printf("loss %.9g (ref %.9g, rel err %.3g); gradients: worst per-tensor rel err %.3g\n", loss, ref_loss,
           fabs(loss - ref_loss) / ref_loss, worst);
    check_against_inference(&m, tern_train_logits(tm));

    // Determinism: a second run gives the same gradients bit for bit.
    int64_t total;
    tern_train_grads_flat(tm, &total);
    float *first = malloc((size_t)total * 4);
    memcpy(first, tern_train_grads_flat(tm, NULL), (size_t)total * 4);
    forward_backward(tm, dlogits, NULL);
    CHECK(memcmp(first, tern_train_grads_flat(tm, NULL), (size_t)total * 4) == 0);
    // Gradients accumulate: without zero_grad, a second backward doubles them.
    CHECK_OK(tern_train_backward(tm, dlogits, NULL));
    double acc = 0;
    for (int64_t i = 0; i < total; i++) acc = fmax(acc, fabs(tern_train_grads_flat(tm, NULL)[i] - 2 * first[i]));
    CHECK(acc < 1e-6);

    // The comparison can fail: a gradient of a slightly wrong loss is caught.
    forward_backward(tm, dlogits, NULL);
    for (int i = 0; i < B * T * V; i++) dlogits[i] *= 1.001f;
    tern_train_zero_grad(tm);
    CHECK_OK(tern_train_backward(tm, dlogits, NULL));
    CHECK(worst_grad_err(tm, ref_grads, 0) > 1e-4);

    check_frozen(tm, first, dlogits);
    check_blockwise(tm, &m);

    // Bad calls are refused.
    int bad = V;
    CHECK_FAILS(tern_train_forward(tm, &bad, 1, 1), "outside the vocabulary");
    CHECK_FAILS(tern_train_backward(tm, dlogits, NULL), "without a preceding forward");
    CHECK_FAILS(tern_train_block_forward(tm, 5, dlogits, 1, 1, NULL), "no layer");

    // Export writes the parameters back into the model.
    tern_train_param(tm, 1, NULL)[0] = 42.0f;
    CHECK_OK(tern_train_export(tm, &m));
    CHECK(tern_model_find(&m, tern_train_param_name(tm, 1))->data[0] == 42.0f);

    tern_train_model_free(tm);
    tern_model_free(&m);
    free(dlogits), free(first), free(numels), free(tokens), free(targets), free(ref_grads);
    return test_report();
}
