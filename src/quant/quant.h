// Quantization methods (issue 4): one file per method (absmean.c, twn.c,
// tequila.c, dlt.c, teq.c, rtn.c) behind this one interface, plus the adapter
// that turns a method into a tern_train_method for the trainer, dead-zone
// diagnostics, and export to a fake-quant GGUF.
//
// What is quantized: the seven linears of every decoder block (linear id =
// layer*7 + TERN_LIN_{Q,K,V,O,GATE,UP,DOWN}); embeddings, norms and the LM head
// stay FP. A group is G consecutive input columns of one output row (G = -1:
// the whole row); a row whose width is not a multiple of G ends with a shorter
// group. Exact formulas: docs/methods.md.
#ifndef TERN_QUANT_QUANT_H
#define TERN_QUANT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "io/model.h"
#include "nn/llama_train.h"
#include "train/trainer.h"

// Options every method parses (each reads the ones it uses).
typedef struct {
    int bits;         // rtn / teq: 2..8 (default 4)
    int group;        // G, or -1 for per-row (default 128)
    float lambda;     // tequila dead-zone bias weight (default 1e-3)
    int sym;          // rtn / teq: symmetric grid instead of asymmetric
    int lsq_scale;    // dlt: scale alpha/gamma gradients by 1/sqrt(group size) (default 0)
    int dlt_absmean_init; // dlt: init alpha = mean|w|, gamma = 0 (ablation) instead of TWN on the centred group
    const char *inner; // teq: inner quantizer "rtn" (default), "absmean" or "twn"
    int diag_window;  // dead-zone diagnostics: window K in steps (default 20)
    int diag_every;   // per-layer arrays in the log every N steps (default 50; 0 = never)
    const char *keep; // --keep "PATTERN[:BITS],...": linears held at BITS (4) with the uniform method
    const uint8_t *keep_bits; // or per linear id: bits to hold it at, 0 = the method (--target-bits)
    float target_bits;        // --target-bits: average bits per weight to allocate (0: off)
    int calib_up_to;  // take at most --calib-seqs sequences, fewer when the text is short (recipes)
    int init_gptq;    // --init gptq: GPTQ-style initialization (gptq.h) instead of round-to-nearest
    float damp;       // GPTQ damping (default 0.01)
} tern_quant_opts;

void tern_quant_opts_defaults(tern_quant_opts *o);

typedef struct tern_quant tern_quant;

// The grid a method's effective weights lie on per group, as GPTQ (gptq.h)
// fits it: α·T (T in {-1, 0, 1}), α·T + γ, or s·(c - z) with integer
// c, z in [0, 2^b - 1].
typedef enum { TERN_GRID_NONE, TERN_GRID_SYM, TERN_GRID_SHIFT, TERN_GRID_UNIFORM } tern_grid;

// Per-linear state common to every method.
typedef struct tern_quant_method tern_quant_method;

typedef struct {
    int out, in, G, n_groups; // G resolved (never -1)
    float *p, *g;             // the method's parameters / their gradients (NULL when none)
    const tern_quant_method *m; // this linear's method: the run's, or the kept one (--keep)
    int bits;                 // grid bits for b-bit methods (rtn, teq, uniform)
} tern_quant_linear;

// A method. `effective`/`backward` have tern_weight_hook's contract (w_eff and
// the optional extra[out]; gradients ADDED into d_w and the method's own
// gradient buffer). `codes` (ternary methods) writes T[out*in] in {-1,0,1} and
// the threshold Δ on |w| of each group (delta[out*n_groups]; NaN when the
// threshold is not on |w|, as for dlt's shifted grid: no "trapped" count then).
struct tern_quant_method {
    const char *name;
    int ternary;          // the codes are {-1, 0, 1} (bits reported as 2 in metadata: log2(3) rounded up)
    int trains_weights;   // 0: latent weights stay frozen (teq) or nothing trains (rtn)
    int trains;           // 0: no training at all (rtn); --steps must be 0
    int (*check)(const tern_quant_opts *o);                        // option ranges; -1 with an error
    // Parameter floats linear `id` needs, or -1 when it shares those of linear `*share` (teq).
    int64_t (*n_params)(const tern_quant *q, int id, int *share);
    // Initializes linear id's parameters from its latent weight w (after they are laid out).
    void (*init)(tern_quant *q, int id, const float *w);
    int (*effective)(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra);
    int (*backward)(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra, float *d_w);
    void (*codes)(const tern_quant *q, int id, const float *w, int8_t *T, float *delta);
    // Optional: rewrites the model for export (teq folds s into the norms); NULL = generic.
    int (*export_model)(tern_quant *q, tern_model *m);
    // The grid GPTQ fits for this method (TERN_GRID_NONE: no --init gptq), and
    // adopt, which sets linear id's state so that its effective weight is
    // exactly the fitted result: per group (out*n_groups, row-major) scale α or
    // s and shift γ or zero point z; codes T[out*in] (-1..1, or 0..2^b-1). w
    // holds the error-updated weights GPTQ rounded on entry and receives the
    // latent weights.
    tern_grid grid;
    void (*adopt)(tern_quant *q, int id, float *w, const int8_t *T, const float *scale, const float *shift);
};

// Looks a method up by name (NULL when unknown).
const tern_quant_method *tern_quant_find(const char *name);
// "absmean, twn, tequila, dlt, teq, rtn"
const char *tern_quant_names(void);

// Dead-zone diagnostics state (ternary methods with `codes` only).
typedef struct {
    int8_t *T;        // last codes, all linears concatenated
    uint16_t *age;    // steps since the code last changed (saturating)
    float *delta;     // scratch: thresholds of one linear
    int64_t n, n_delta, observed; // weights; delta capacity; steps observed
    int *param_idx;   // linear id -> trainer parameter index (resolved on first use)
} tern_quant_diag;

struct tern_quant {
    const tern_quant_method *method;
    tern_quant_opts opt;
    tern_config cfg;
    int n_lin;
    tern_quant_linear *lin;   // [n_lin]
    float *params, *grads;    // all method parameters, contiguous
    int64_t n_params;
    int64_t *w_off;           // offset of each linear's weights in the concatenation (diagnostics)
    tern_quant_diag diag;
    float *scratch;           // one row of the widest linear (methods' temporaries)
    float **latent;           // [n_lin] initial latent weights (GPTQ), NULL: the model's own
    char key[128];            // method name + settings (checkpoint identity)
    int narrow_note;          // rows narrower than the group were noted
    tern_weight_hook hook;
    tern_train_method train;  // the adapter for tern_train_run
};

// Whether --keep / --target-bits hold linear id on its own b-bit grid.
static inline int tern_quant_is_kept(const tern_quant *q, int id) {
    return q->lin[id].m != q->method || q->lin[id].bits != q->opt.bits;
}

// Linear id -> the model's tensor name ("blk.3.ffn_up.weight").
void tern_quant_linear_name(int id, char *buf, size_t cap);

// Creates the method's state for model m (shapes from m, parameters initialized
// from m's latent weights). Errors: bad options, a group wider than a row.
int tern_quant_create(tern_quant **out, const tern_quant_method *method, const tern_quant_opts *o,
                      const tern_model *m);
void tern_quant_free(tern_quant *q);
// Installs initial latent weights ([n_lin] arrays, owned by q from now on;
// the student starts from them) and refreshes the diagnostics' codes.
void tern_quant_set_latent(tern_quant *q, float **latent);
// The trainer plug-in (points into q; valid while q lives).
const tern_train_method *tern_quant_train_method(tern_quant *q);

// Effective weight of one linear through the method (for tests and export).
int tern_quant_effective(tern_quant *q, int id, const float *w, float *w_eff, float *extra, int *has_extra);
int tern_quant_backward(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra,
                        float *d_w);

// Diagnostics over the given latent weights (get(id) returns linear id's
// weights); appends JSON fields to buf. Exposed for tests.
typedef const float *(*tern_quant_weights_fn)(void *ctx, int id);
void tern_quant_diag_update(tern_quant *q, tern_quant_weights_fn get, void *ctx, int step, char *buf, size_t cap);

// Replaces m's linear weights by their effective (dequantized) values, adds
// Tequila's constant term as per-output biases of every linear (applied by the
// inference forward), folds TEQ's
// scales into the norms. Fills the ternary code statistics (fractions of -1,
// 0, +1; zeros when not ternary).
int tern_quant_export(tern_quant *q, tern_model *m, double code_frac[3]);
// Writes m as a self-contained GGUF with tern.* metadata, atomically.
int tern_quant_write_gguf(const tern_quant *q, const tern_model *m, const double code_frac[3], const char *path);
// Fails when `path` is a GGUF that already holds a tern.method key.
int tern_quant_check_unquantized(const char *path);

// The whole `tern quantize` pipeline on a loaded model: sets the method up
// from m's weights, trains it (QAT; 0 steps = PTQ) with tern_train_run,
// exports and writes `out` (atomically). m receives the exported weights.
// The defaults that depend on the method, for options not given: GPTQ
// initialization where the method has a grid GPTQ can fit (calibrating on up to
// --calib-seqs sequences when that was not given; a recipe keeps its own
// choice), and 0 steps for a method that does not train. -1 (error naming
// --init) when GPTQ was asked for a method it cannot initialize.
int tern_quant_apply_defaults(const tern_quant_method *method, tern_quant_opts *q, tern_train_opts *t, int init_given,
                              int recipe, int seqs_given, int steps_given);

int tern_quantize_model(tern_model *m, const tern_tokenizer *tok, const tern_quant_method *method,
                        const tern_quant_opts *qo, const tern_train_opts *to, const char *out,
                        tern_train_report *report, double code_frac[3]);

// Mixed precision (mixed.c). Storage bits per weight of linear id: ternary as
// tern-t1.6 (the densest packing) with its fp16 scales (and DLT's shifts),
// b-bit linears as q{b}g (fp16 scale, u8 zero point per group); and their
// average over all linear weights.
double tern_quant_linear_bits(const tern_quant *q, int id);
double tern_quant_avg_bits(const tern_quant *q);
// Sensitivity of each linear, leave one out: with every linear quantized (its
// method's effective weight of q's latent weights: GPTQ's when installed,
// else the FP weights), KL(FP || model) mean per token over tokens[n_seqs, T]
// (*kl_all, may be NULL), and kl[id] = how much it drops when linear id alone
// is FP again (interactions included, unlike quantizing one linear at a time).
int tern_quant_sensitivity(tern_quant *q, const tern_model *m, const int *tokens, int n_seqs, int T, double *kl,
                           double *kl_all);
// Chooses the linears to hold at keep_bits (keep[id] = keep_bits, else 0): the
// most KL saved per added bit first, while the average stays <= target.
int tern_quant_plan_bits(const tern_quant *q, const double *kl, double target, int keep_bits, uint8_t *keep,
                         double *avg);

// `tern quantize --recipe NAME` (recipe.c): sets the recipe's defaults in q and
// t (options given afterwards override them) and, when *method is NULL, the
// method it is made for. -1 with an error for an unknown name.
int tern_quant_recipe(const char *name, tern_quant_opts *q, tern_train_opts *t, const char **method);

// Shared group helpers (group.c).
static inline int tern_group_len(const tern_quant_linear *L, int g) {
    int start = g * L->G;
    return L->in - start < L->G ? L->in - start : L->G;
}
float tern_group_absmean(const float *w, int n);
// Fake-quantizes one group: absmean ternary, TWN ternary, b-bit RTN (sym/asym).
void tern_group_absmean_q(const float *w, int n, float *out);
void tern_group_twn_q(const float *w, int n, float *out);
void tern_group_rtn_q(const float *w, int n, int bits, int sym, float *out);
// Absmean codes for one group (T and Δ = α/2) and TWN codes (Δ = 0.7·mean|w|).
float tern_group_absmean_codes(const float *w, int n, int8_t *T);
float tern_group_twn_codes(const float *w, int n, int8_t *T);

// Whole-linear drivers for methods that quantize each group independently:
// apply a group function to every group of linear L (row-major [out, in]).
typedef void (*tern_group_q_fn)(const float *w, int n, const tern_quant_opts *o, float *out);
typedef float (*tern_group_codes_fn)(const float *w, int n, int8_t *T);
void tern_linear_groups_q(const tern_quant_linear *L, const float *w, float *out, tern_group_q_fn fq,
                          const tern_quant_opts *o);
// T[out, in] codes and delta[out, n_groups] thresholds.
void tern_linear_groups_codes(const tern_quant_linear *L, const float *w, int8_t *T, float *delta,
                              tern_group_codes_fn fc);
// GPTQ adoption (tern_quant_method.adopt) for rules that derive the scale
// from the latent weights: latent weights that reproduce codes T and scale a
// under absmean's (also Tequila's) or TWN's rule; w holds GPTQ's updated
// weights on entry.
void tern_group_absmean_adopt(float *w, int n, const int8_t *T, float a);
void tern_group_twn_adopt(float *w, int n, const int8_t *T, float a);
void tern_linear_groups_adopt(const tern_quant_linear *L, float *w, const int8_t *T, const float *scale,
                              void (*adopt)(float *w, int n, const int8_t *T, float a));
// Straight-through backward (dL/dw += dL/dŵ) for methods whose only trainable input is w.
int tern_quant_ste_backward(tern_quant *q, int id, const float *w, const float *d_w_eff, const float *d_extra,
                            float *d_w);

// Method descriptors (one per file).
extern const tern_quant_method tern_quant_absmean, tern_quant_twn, tern_quant_tequila, tern_quant_dlt,
    tern_quant_teq, tern_quant_rtn, tern_quant_uniform;

#endif
