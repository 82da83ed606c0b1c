// BitNet b1.58 weights as checkpoints store them, turned into tern's ternary
// representation: FP32 values W = T * a in the tensor's `data`, plus the same
// codes and scale as packed tern-t2 bytes (one group per row, the per-tensor
// scale on every row) that the packed session runs natively.
//
// Hugging Face layout (transformers/integrations/bitnet.py): a linear's
// ternary T [rows, cols] is stored as uint8 [rows/4, cols]; byte (r, c) holds
// T+1 of rows r, r + rows/4, r + 2 rows/4, r + 3 rows/4 (column c) in bits
// 0-1, 2-3, 4-5, 6-7. Code 3 does not occur.
#ifndef TERN_IO_BITNET_H
#define TERN_IO_BITNET_H

#include <stdint.h>

#include "io/model.h"

// Unpacks bytes [rows/4, cols] into T[rows, cols] as floats; -1 (error naming
// `what`) on a code 3. rows must be a multiple of 4.
int tern_bitnet_unpack_hf(const uint8_t *bytes, int64_t rows, int64_t cols, float *t, const char *what);
// BitNet's online weight quantization (WeightQuant): s = 1 / max(mean|w|, 1e-5),
// w -> clamp(round_half_even(w s), -1, 1). Leaves T in w and returns s.
float tern_bitnet_ternarize(float *w, int64_t n);
// t->data holds T; makes it T * scale (or T / scale when `divide`) and
// attaches the packed tern-t2 bytes. -1 (error naming `what`) on a scale that
// is not finite and positive in fp16.
int tern_bitnet_attach(tern_tensor *t, float scale, int divide, const char *what);

// Finishes a GGUF model of llama.cpp's "bitnet" architecture after
// dequantization: folds each optional per-tensor scale (blk.N.attn_q.scale,
// ... : llama.cpp multiplies the product by it) into its weight, permutes q/k
// rows from the NEOX RoPE layout, and attaches packed tern-t2 bytes to every
// decoder linear whose values are 0 or +-a for one a (the converter writes
// ternary weights times one scale, as F32/F16/BF16 or TQ1_0/TQ2_0) and that
// carries no packed bytes (q/k and scaled weights drop theirs: the rows or
// values changed). The packed scale is fp16 (exact for F16 sources).
int tern_bitnet_finish_gguf(tern_model *m);

#endif
