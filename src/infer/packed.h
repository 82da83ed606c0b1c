// Inference in other weight formats: replaces an FP32 session's linear layers
// (and LM head) with packed copies run by the kernels layer.
//   "f32"         unchanged
//   "bf16"        weights rounded to bfloat16, FP32 activations
//   "t2", "t1.6"  ternary: weights that already are ternary per group (a
//                 quantized model, a llama.cpp TQ / Q1_0 / Q2_0 file) keep their
//                 codes and scales (tern_ternary_codes; DLT shifts too), others
//                 by BitNet b1.58's absmean rule per group (PTQ, no training):
//                 T = clamp(round(w / a), -1, 1), a = mean|w| over the group;
//                 int8 activations; LM head at 8 bits (q8, block TERN_KQ8_GROUP,
//                 or the file's own packed q8 head)
//   "q8"          int8 weights per block of TERN_KQ8_GROUP (linears and head)
//   "native"      the packed bytes a loaded .tern file carries (f32 otherwise)
#ifndef TERN_INFER_PACKED_H
#define TERN_INFER_PACKED_H

#include <stdint.h>

#include "nn/transformer.h"

typedef struct tern_packed tern_packed;

// group <= 0 uses 128. The returned state must outlive the session's use of
// it; free it after tern_session_free.
int tern_session_set_format(tern_session *s, const char *format, int group, tern_packed **out);
// 1 when tern_session_set_format knows the format name (native, f32, bf16, t2, t1.6, q8).
int tern_format_known(const char *format);
void tern_packed_free(tern_packed *p);

// For every linear (and the LM head) whose model tensor carries packed bytes
// (a loaded .tern file, or llama.cpp ternary / 1-2 bit tensors repacked at
// load by io/gguf.c), installs a packed layer that runs those bytes
// directly: no re-quantization, int8 activations. *out stays NULL when the
// model has no packed tensor (the session is left FP32). Also reachable as
// tern_session_set_format(s, "native", ...).
int tern_session_use_native(tern_session *s, tern_packed **out);
// "tern-t2" / "tern-t1.6" / ... for a native session's decoder linears, else NULL.
const char *tern_packed_format_name(const tern_packed *p);

// The PTQ quantizers the packed formats use (exported for `tern export`):
// absmean ternary codes + scales per group (scales [rows, ceil(cols/group)]);
// q8-row's is tern_absmax_q8 (kernels/formats.h).
void tern_absmean_ternary(const float *w, int rows, int cols, int group, int8_t *codes, float *scales);

// Exact recovery of one group's ternary structure from its values: at most
// three distinct levels, symmetric {-a, 0, a} (shift 0) or L < M < H with
// M - L == H - M (shift 1: gamma = M, alpha = (H - L)/2). Returns the number of
// distinct levels, or -1 when they are not ternary.
int tern_ternary_recover_group(const float *x, int n, int shift, int8_t *T, float *alpha, float *gamma);

// Ternary codes of one matrix per group: the exact codes and scales when its
// values already are ternary per group (alpha*T, or with shifts non-NULL also
// alpha*T + gamma), absmean PTQ otherwise. shifts (when given) is always
// filled, 0 unless EXACT_SHIFT.
enum { TERN_TERNARY_ABSMEAN = 0, TERN_TERNARY_EXACT = 1, TERN_TERNARY_EXACT_SHIFT = 2 };
int tern_ternary_codes(const float *w, int rows, int cols, int group, int8_t *codes, float *scales, float *shifts);
// Adds sum (w - (a*T + b))^2 and sum w^2 over the matrix (a, b fp16-rounded as packing stores them).
void tern_ternary_error(const float *w, int rows, int cols, int group, const int8_t *codes, const float *scales,
                        const float *shifts, double *err2, double *norm2);

// Fake quantization for reference: replaces every decoder linear's weights in
// `m` with the FP32 values the packed "t2"/"t1.6" format represents (absmean
// ternary per group, scales rounded to fp16 exactly as packing rounds them),
// and the LM head with its q8 values. Running this model in FP32 differs from
// the packed run only by the int8 activations.
int tern_model_fake_quant_absmean(tern_model *m, int group);

// Bytes the forward streams per generated token for the weights (linears,
// head, norms, one embedding row), and the bytes a file in this format holds.
int64_t tern_session_weight_bytes(const tern_session *s);
int64_t tern_session_file_bytes(const tern_session *s, const tern_packed *p); // p NULL: f32

#endif
