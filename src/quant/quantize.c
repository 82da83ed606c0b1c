// `tern quantize` as a library call: method state, initialization (round to
// nearest, or GPTQ on calibration sequences), training, export, GGUF.
#include <stdio.h>
#include <stdlib.h>

#include "core/dist.h"
#include "core/threads.h"
#include "quant/gptq.h"
#include "quant/quant.h"
#include "train/data.h"
#include "train/trainer.h"

// The first n_seqs sequences of the training data's seeded shuffle (the
// block-wise pool takes the same ones).
static int calibration_tokens(const tern_model *m, const tern_tokenizer *tok, const tern_train_opts *to, int *n_io,
                              int up_to, int **tokens) {
    int n_seqs = *n_io;
    tern_dataset d;
    *tokens = NULL;
    if (tern_dataset_load(&d, to->data_path, tok, tern_vocab_fingerprint(&m->vocab), to->seq_len, to->val_frac,
                          to->seed, to->cache_dir))
        return -1;
    int rc = 0;
    if (up_to && d.n_train < n_seqs && d.n_train > 0) {
        fprintf(stderr, "calibration: %s holds %lld sequences of %d tokens; using them all (fewer than %d)\n",
                to->data_path, (long long)d.n_train, to->seq_len, n_seqs);
        n_seqs = *n_io = (int)d.n_train;
    }
    if (d.n_train < n_seqs)
        rc = tern_errorf("%s: %lld tokens make %lld training sequences of %d; --calib-seqs %d needs at least %lld "
                         "tokens (or fewer --calib-seqs or a shorter --seq)",
                         to->data_path, (long long)d.n_tokens, (long long)d.n_train, to->seq_len, n_seqs,
                         (long long)((double)n_seqs * (to->seq_len + 1) / (1.0 - to->val_frac)) + 1);
    size_t n = (size_t)n_seqs * to->seq_len;
    int *targets = rc == 0 ? malloc(n * sizeof(int)) : NULL;
    if (rc == 0 && (!(*tokens = malloc(n * sizeof(int))) || !targets)) rc = tern_errorf("out of memory");
    if (rc == 0) tern_dataset_next(&d, n_seqs, *tokens, targets);
    free(targets);
    if (rc) free(*tokens), *tokens = NULL;
    tern_dataset_free(&d);
    return rc;
}

#define SENS_SEQS 4 // calibration sequences the sensitivity of each linear is measured on

static tern_gptq_opts gptq_opts(const tern_quant_opts *qo) {
    tern_gptq_opts go;
    tern_gptq_opts_defaults(&go);
    go.damp = qo->damp;
    return go;
}

// --target-bits: quantizes every linear with the method (GPTQ with --init
// gptq), measures each one's sensitivity leaving it out, and chooses the
// linears to hold at 4 bits; keep[n_lin] receives the plan.
static int plan_mixed(const tern_model *m, const tern_quant_method *method, const tern_quant_opts *qo,
                      const int *tokens, int n_seqs, int T, uint8_t *keep) {
    tern_quant *q0;
    tern_quant_opts o = *qo;
    o.keep = NULL, o.keep_bits = NULL;
    if (tern_quant_create(&q0, method, &o, m)) return -1;
    double *kl = malloc((size_t)q0->n_lin * sizeof *kl), avg = 0, all = 0, alone = tern_quant_avg_bits(q0);
    int rc = kl ? 0 : tern_errorf("out of memory");
    if (rc == 0 && alone > qo->target_bits) // before any measuring
        rc = tern_errorf("--target-bits %.3g is below the %.3f bits per weight of %s alone", qo->target_bits, alone,
                         method->name);
    if (rc == 0 && qo->init_gptq) {
        tern_gptq_opts go = gptq_opts(qo);
        float **latent = NULL;
        rc = tern_gptq_run(q0, m, tokens, n_seqs, T, &go, &latent, NULL);
        if (rc == 0) tern_quant_set_latent(q0, latent);
    }
    if (rc == 0) rc = tern_quant_sensitivity(q0, m, tokens, n_seqs < SENS_SEQS ? n_seqs : SENS_SEQS, T, kl, &all);
    if (rc == 0) rc = tern_quant_plan_bits(q0, kl, qo->target_bits, 4, keep, &avg);
    if (rc == 0) {
        int kept = 0;
        for (int id = 0; id < q0->n_lin; id++) kept += keep[id] != 0;
        fprintf(stderr, "target %.3g bits per weight: %d of %d linears held at 4 bits, %.3f bits per weight (method "
                        "alone %.3f, KL %.3f)\n",
                qo->target_bits, kept, q0->n_lin, avg, tern_quant_avg_bits(q0), all);
    }
    free(kl);
    tern_quant_free(q0);
    return rc;
}

int tern_quant_apply_defaults(const tern_quant_method *method, tern_quant_opts *q, tern_train_opts *t, int init_given,
                              int recipe, int seqs_given, int steps_given) {
    int fits = method->grid != TERN_GRID_NONE && method->adopt; // GPTQ can initialize it
    if (init_given && q->init_gptq && !fits)
        return tern_errorf("--init gptq: method %s has no grid GPTQ can fit (use --init rtn)", method->name);
    if (!init_given && !recipe) { // GPTQ by default where it applies (docs/methods.md, "GPTQ initialization")
        q->init_gptq = fits;
        if (fits && !seqs_given) q->calib_up_to = 1;
    } else if (!init_given && !fits) q->init_gptq = 0; // a recipe with rtn / teq
    if (!steps_given && !method->trains) t->steps = 0;
    return 0;
}

int tern_quantize_model(tern_model *m, const tern_tokenizer *tok, const tern_quant_method *method,
                        const tern_quant_opts *qo, const tern_train_opts *to, const char *out,
                        tern_train_report *report, double code_frac[3]) {
    if (tern_model_require_llama(m, "quantize")) return -1;
    if (method && !method->trains && to->steps > 0)
        return tern_errorf("%s does not train: use --steps 0", method->name);
    if (qo->target_bits > 0 && qo->keep) return tern_errorf("--keep and --target-bits exclude each other");
    if (tern_train_check(to, m)) return -1; // before minutes of GPTQ
    double t0 = tern_now_sec();
    int n_seqs = to->calib_seqs > 0 ? to->calib_seqs : 128, *tokens = NULL;
    int gptq = qo->init_gptq && !to->resume; // a resumed run restores the weights GPTQ gave
    uint8_t *keep = NULL;
    tern_quant_opts o = *qo;
    int rc = 0;
    if (gptq || qo->target_bits > 0) rc = calibration_tokens(m, tok, to, &n_seqs, qo->calib_up_to, &tokens);
    if (rc == 0 && qo->target_bits > 0) {
        keep = calloc((size_t)m->cfg.n_layers * TERN_LIN_COUNT, 1);
        rc = keep ? plan_mixed(m, method, qo, tokens, n_seqs, to->seq_len, keep) : tern_errorf("out of memory");
        o.keep_bits = keep;
    }
    tern_quant *q = NULL;
    if (rc == 0) rc = tern_quant_create(&q, method, &o, m);
    if (rc == 0 && gptq) {
        tern_gptq_opts go = gptq_opts(qo);
        float **latent = NULL;
        rc = tern_gptq_run(q, m, tokens, n_seqs, to->seq_len, &go, &latent, NULL);
        if (rc == 0) tern_quant_set_latent(q, latent);
    }
    free(tokens);
    // A budget covers the whole run: what GPTQ and the sensitivities took is
    // spent; export and writing keep 2% (at least 10 s).
    tern_train_opts tro = *to;
    if (to->budget_s > 0) {
        double spent = tern_now_sec() - t0, reserve = 0.02 * to->budget_s > 10 ? 0.02 * to->budget_s : 10;
        tro.budget_s = to->budget_s - spent - reserve;
        if (tro.budget_s < 1) {
            fprintf(stderr, "budget: %.0f s of %.0f spent before training; training runs its minimum\n", spent,
                    to->budget_s);
            tro.budget_s = 1;
        }
    }
    if (rc == 0) rc = tern_train_run(m, tok, &tro, tern_quant_train_method(q), report);
    if (rc == 0) rc = tern_quant_export(q, m, code_frac);
    if (rc == 0 && tern_dist_rank() == 0) rc = tern_quant_write_gguf(q, m, code_frac, out); // mpirun: rank 0 writes
    tern_quant_free(q);
    free(keep);
    return rc;
}
