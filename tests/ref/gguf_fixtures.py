#!/usr/bin/python3
"""Writes tern's GGUF test fixtures (run with Debian's /usr/bin/python3 + numpy):

tests/fixtures/quant_types.gguf           GGUF v3, alignment 64: one 2x256 tensor of every
                                          type tern loads (random blocks, sane scales) and
                                          one metadata key of every value type.
tests/fixtures/quant_types.expected.bin   float32 values of those tensors, dequantized here
                                          in numpy (the oracle for tests/test_gguf.c).
tests/fixtures/quant_types_llama.gguf     a tiny complete LLaMA (dim 32, 1 layer, BPE vocab
                                          of 12 tokens) for the model/vocab readers.

The dequantization below is written from the block layouts (ggml's Q*_0/Q*_1 and
K-quants), vectorised over whole tensors, independently of tern's C code.
Deterministic: the same bytes every run.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_writer import (ARRAY, BOOL, F32, F64, GGML, I8, I16, I32, I64, STRING, U8, U16, U32,  # noqa: E402
                         U64, Writer)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
ROW, ROWS = 256, 2
# Order of the tensors in quant_types.gguf and of their values in the expected file.
TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
# Added 2026-12-07, after TYPES and from their own random stream, so that the
# tensors above and tiny_llama's stay byte for byte what they were.
TYPES_2 = ["Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS"]

f32 = np.float32


def half(rng, n, lo, hi, signed):
    """n fp16 scales with magnitude in [lo, hi) (random sign when `signed`)."""
    v = rng.uniform(lo, hi, n)
    if signed:
        v *= rng.choice([-1.0, 1.0], n)
    return v.astype(np.float16)


def fields(blocks, layout):
    """Splits (nblocks, size) bytes into named columns per `layout` [(name, nbytes)]."""
    out, pos = {}, 0
    for name, n in layout:
        out[name] = blocks[:, pos:pos + n]
        pos += n
    assert pos == blocks.shape[1]
    return out


def as_f32(col):
    return col.copy().view(np.float16).astype(f32)  # (nblocks, 1)


def nibbles(qs):
    """(nb, 16) bytes -> (nb, 32): low nibbles are values 0..15, high nibbles 16..31."""
    return np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int32)


def bits_le(b, nbits):
    """(nb, k) bytes -> (nb, nbits) bits, bit i of the little-endian integer."""
    return np.unpackbits(b, axis=1, bitorder="little")[:, :nbits].astype(np.int32)


# ---- dequantization oracles: raw bytes -> float32 values (flat) -------------

def dq_q8_0(raw):
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 34), [("d", 2), ("qs", 32)])
    return (f["qs"].copy().view(np.int8).astype(f32) * as_f32(f["d"])).reshape(-1)


def dq_q4_0(raw):
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 18), [("d", 2), ("qs", 16)])
    return ((nibbles(f["qs"]) - 8).astype(f32) * as_f32(f["d"])).reshape(-1)


def dq_q4_1(raw):
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 20), [("d", 2), ("m", 2), ("qs", 16)])
    return (nibbles(f["qs"]).astype(f32) * as_f32(f["d"]) + as_f32(f["m"])).reshape(-1)


def q5(f):
    return nibbles(f["qs"]) | (bits_le(f["qh"], 32) << 4)


def dq_q5_0(raw):
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 22), [("d", 2), ("qh", 4), ("qs", 16)])
    return ((q5(f) - 16).astype(f32) * as_f32(f["d"])).reshape(-1)


def dq_q5_1(raw):
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 24), [("d", 2), ("m", 2), ("qh", 4), ("qs", 16)])
    return (q5(f).astype(f32) * as_f32(f["d"]) + as_f32(f["m"])).reshape(-1)


def k_scales(s):
    """(nb, 12) packed bytes -> (nb, 8) scales and (nb, 8) mins, 6 bits each.
    Sub-blocks 0..3: low 6 bits of bytes 0..3 (scale) and 4..7 (min).
    Sub-blocks 4..7: low/high nibble of bytes 8..11 plus the top two bits of
    bytes 0..3 (scale) / 4..7 (min) as bits 4..5."""
    s = s.astype(np.int32)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc.astype(f32), mn.astype(f32)


def k_nibbles(qs):
    """(nb, 128) -> (nb, 8, 32): sub-block 2g = low nibbles of bytes 32g..32g+31,
    sub-block 2g+1 = their high nibbles."""
    q = qs.reshape(-1, 4, 32).astype(np.int32)
    return np.stack([q & 15, q >> 4], axis=2).reshape(-1, 8, 32)


def dq_q4_k(raw):
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 144),
               [("d", 2), ("dmin", 2), ("scales", 12), ("qs", 128)])
    sc, mn = k_scales(f["scales"])
    d1 = as_f32(f["d"]) * sc        # (nb, 8)  float32 products, as the format defines
    m1 = as_f32(f["dmin"]) * mn
    q = k_nibbles(f["qs"]).astype(f32)
    return (d1[:, :, None] * q - m1[:, :, None]).reshape(-1)


def dq_q5_k(raw):
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 176),
               [("d", 2), ("dmin", 2), ("scales", 12), ("qh", 32), ("qs", 128)])
    sc, mn = k_scales(f["scales"])
    d1 = as_f32(f["d"]) * sc
    m1 = as_f32(f["dmin"]) * mn
    # Fifth bit of value l in sub-block s is bit s of qh byte l.
    hb = np.unpackbits(f["qh"][:, :, None], axis=2, bitorder="little").astype(np.int32)  # (nb, 32, 8)
    q = (k_nibbles(f["qs"]) | (hb.transpose(0, 2, 1) << 4)).astype(f32)
    return (d1[:, :, None] * q - m1[:, :, None]).reshape(-1)


def dq_q6_k(raw):
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 210),
               [("ql", 128), ("qh", 64), ("scales", 16), ("d", 2)])
    nb = f["ql"].shape[0]
    ql = f["ql"].reshape(nb, 2, 2, 32).astype(np.int32)   # half, byte group (l / l+32), l
    qh = f["qh"].reshape(nb, 2, 32).astype(np.int32)      # half, l
    q = np.empty((nb, 2, 4, 32), np.int32)                # half, quarter k, l
    for k in range(4):
        low = ql[:, :, k % 2, :]
        low = low & 15 if k < 2 else low >> 4
        q[:, :, k, :] = (low | (((qh >> (2 * k)) & 3) << 4)) - 32
    sc = f["scales"].copy().view(np.int8).astype(f32).reshape(nb, 2, 4, 2)  # 16 values per scale
    sc = np.repeat(sc, 16, axis=3)                        # (nb, 2, 4, 32)
    d = as_f32(f["d"]).reshape(nb, 1, 1, 1)
    return ((d * sc) * q.astype(f32)).reshape(-1)


def dq_q2_k(raw):
    """Q2_K, 256 values in 84 bytes: scales[16] (low nibble scale, high nibble
    min, one pair per 16 values), qs[64], fp16 d, fp16 dmin. Value 128h + 32k + l
    (half h, k = 0..3, l = 0..31) is bits 2k..2k+1 of qs[32h + l]; its pair is
    scales[8h + 2k + l // 16]. x = d * sc * q - dmin * mn."""
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 84), [("scales", 16), ("qs", 64), ("d", 2), ("dmin", 2)])
    nb = f["qs"].shape[0]
    qs = f["qs"].reshape(nb, 2, 1, 32).astype(np.int32)
    q = (qs >> (2 * np.arange(4).reshape(1, 1, 4, 1))) & 3             # (nb, h, k, l)
    s = f["scales"].reshape(nb, 2, 4, 2).astype(np.int32)              # (nb, h, k, l // 16)
    sc = np.repeat(s & 15, 16, axis=3).astype(f32)
    mn = np.repeat(s >> 4, 16, axis=3).astype(f32)
    d, dmin = as_f32(f["d"]).reshape(nb, 1, 1, 1), as_f32(f["dmin"]).reshape(nb, 1, 1, 1)
    return ((d * sc) * q.astype(f32) - (dmin * mn)).reshape(-1)


def q3_k_scales(s):
    """(nb, 12) bytes -> (nb, 16) signed scales (6 bits, minus 32). Scale j's low
    4 bits: low nibble of byte j (j < 8) or high nibble of byte j - 8; its top 2
    bits: bits 2(j // 4)..+1 of byte 8 + j % 4."""
    s = s.astype(np.int32)
    low = np.concatenate([s[:, 0:8] & 15, s[:, 0:8] >> 4], axis=1)    # (nb, 16)
    j = np.arange(16)
    high = (s[:, 8 + j % 4] >> (2 * (j // 4))) & 3
    return (low | (high << 4)) - 32


def dq_q3_k(raw):
    """Q3_K, 256 values in 110 bytes: hmask[32], qs[64], scales[12], fp16 d.
    Value 128h + 32k + l: low 2 bits from bits 2k..2k+1 of qs[32h + l], high
    bit = bit 4h + k of hmask[l] (clear: subtract 4); scale 8h + 2k + l // 16.
    x = d * scale * q, q in -4..3."""
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 110), [("hmask", 32), ("qs", 64), ("scales", 12), ("d", 2)])
    nb = f["qs"].shape[0]
    qs = f["qs"].reshape(nb, 2, 1, 32).astype(np.int32)
    k = np.arange(4).reshape(1, 1, 4, 1)
    low = (qs >> (2 * k)) & 3                                           # (nb, h, k, l)
    hm = f["hmask"].reshape(nb, 1, 1, 32).astype(np.int32)
    bit = (hm >> (4 * np.arange(2).reshape(1, 2, 1, 1) + k)) & 1
    q = low - 4 * (1 - bit)
    sc = np.repeat(q3_k_scales(f["scales"]).reshape(nb, 2, 4, 2), 16, axis=3).astype(f32)
    d = as_f32(f["d"]).reshape(nb, 1, 1, 1)
    return ((d * sc) * q.astype(f32)).reshape(-1)


# IQ4_NL / IQ4_XS: a code is an index into these 16 non-uniform levels.
IQ4_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int32)


def dq_iq4_nl(raw):
    """IQ4_NL, 32 values in 18 bytes: fp16 d, nibbles as Q4_0; x = d * level[q]."""
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 18), [("d", 2), ("qs", 16)])
    return (IQ4_LEVELS[nibbles(f["qs"])].astype(f32) * as_f32(f["d"])).reshape(-1)


def dq_iq4_xs(raw):
    """IQ4_XS, 256 values in 136 bytes: fp16 d, u16 scales_h, scales_l[4],
    qs[128]. Sub-block s (32 values, nibbles as Q4_0 in qs[16s..16s+15]) has the
    6-bit scale ls = nibble s % 2 of scales_l[s // 2] | bits 2s..2s+1 of scales_h
    << 4; x = d * (ls - 32) * level[q]."""
    f = fields(np.frombuffer(raw, np.uint8).reshape(-1, 136), [("d", 2), ("sh", 2), ("sl", 4), ("qs", 128)])
    nb = f["qs"].shape[0]
    sh = f["sh"].copy().view("<u2").astype(np.int32)                     # (nb, 1)
    sl = f["sl"].astype(np.int32)
    s = np.arange(8)
    ls = ((sl[:, s // 2] >> (4 * (s % 2))) & 15) | (((sh >> (2 * s)) & 3) << 4)
    dl = as_f32(f["d"]) * (ls - 32).astype(f32)                          # (nb, 8)
    q = IQ4_LEVELS[nibbles(f["qs"].reshape(nb * 8, 16))].reshape(nb, 8, 32).astype(f32)
    return (dl[:, :, None] * q).reshape(-1)


# ---- random but sane raw blocks ---------------------------------------------

def rand_blocks(rng, type_name, n):
    _, block, size = GGML[type_name]
    nb = n // block
    raw = rng.integers(0, 256, (nb, size), dtype=np.uint8)
    h = lambda lo, hi, signed: half(rng, nb, lo, hi, signed).view(np.uint8).reshape(nb, 2)  # noqa: E731
    if type_name in ("Q8_0", "Q4_0", "Q5_0"):
        raw[:, 0:2] = h(1e-3, 5e-2, True)
    elif type_name in ("Q4_1", "Q5_1"):
        raw[:, 0:2] = h(1e-3, 5e-2, True)
        raw[:, 2:4] = h(1e-2, 1.0, True)
    elif type_name in ("Q4_K", "Q5_K"):
        raw[:, 0:2] = h(1e-4, 2e-3, False)
        raw[:, 2:4] = h(1e-4, 2e-3, False)
    elif type_name == "Q6_K":
        raw[:, 208:210] = h(1e-4, 2e-3, True)
    elif type_name == "Q2_K":
        raw[:, 80:82] = h(1e-4, 2e-3, False)
        raw[:, 82:84] = h(1e-4, 2e-3, False)
    elif type_name == "Q3_K":
        raw[:, 108:110] = h(1e-4, 2e-3, True)
    elif type_name in ("IQ4_NL", "IQ4_XS"):
        raw[:, 0:2] = h(1e-4, 2e-3, True)
    return raw.tobytes()


def float_tensor(rng, type_name, n):
    """Raw bytes and exact float32 values for F32 / F16 / BF16, with a few
    special values (signed zero, subnormals, infinities, extremes) up front."""
    v = rng.standard_normal(n).astype(f32)
    if type_name == "F32":
        v[:5] = [-0.0, 1e-40, -np.inf, 3.4e38, np.float32(1) / 3]
        return v.tobytes(), v
    if type_name == "F16":
        bits = v.astype(np.float16).view(np.uint16)
        bits[:8] = [0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x3555]
        return bits.tobytes(), bits.view(np.float16).astype(f32)
    bits = (v.view(np.uint32) >> 16).astype(np.uint16)   # BF16: top half of a float32
    bits[:6] = [0x8000, 0x0001, 0x7f7f, 0x7f80, 0xff80, 0x3eab]
    return bits.tobytes(), (bits.astype(np.uint32) << 16).view(f32)


DEQUANT = {"Q8_0": dq_q8_0, "Q4_0": dq_q4_0, "Q4_1": dq_q4_1, "Q5_0": dq_q5_0, "Q5_1": dq_q5_1,
           "Q4_K": dq_q4_k, "Q5_K": dq_q5_k, "Q6_K": dq_q6_k, "Q2_K": dq_q2_k, "Q3_K": dq_q3_k,
           "IQ4_NL": dq_iq4_nl, "IQ4_XS": dq_iq4_xs}


def cross_check(type_name, raw, vals):
    """When gguf-py is installed (pip install gguf), its dequantizer must agree."""
    try:
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize
    except ImportError:
        return
    ref = dequantize(np.frombuffer(raw, np.uint8), GGMLQuantizationType[type_name]).astype(f32).reshape(-1)
    assert np.array_equal(ref, vals), f"{type_name}: gguf-py disagrees"


def quant_types(rng):
    w = Writer(version=3, alignment=64)
    w.kv("general.architecture", STRING, "test")
    w.kv("general.alignment", U32, 64)
    # One key per value type; tests/test_gguf.c checks each.
    w.kv("test.u8", U8, 200).kv("test.i8", I8, -100).kv("test.u16", U16, 60000)
    w.kv("test.i16", I16, -30000).kv("test.u32", U32, 4000000000).kv("test.i32", I32, -2000000000)
    w.kv("test.f32", F32, 1.5).kv("test.bool", BOOL, True).kv("test.string", STRING, "h\u00e9llo")
    w.kv("test.u64", U64, 2**63 + 5).kv("test.i64", I64, -2**62).kv("test.f64", F64, 0.1)
    w.kv("test.array_i32", ARRAY, (I32, [1, -2, 3]))
    w.kv("test.array_str", ARRAY, (STRING, ["a", "bc", ""]))
    w.kv("test.nested", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["x"]), (ARRAY, [(F32, [])])]))
    w.kv("test.empty", ARRAY, (U64, []))
    n = ROW * ROWS
    expected = []
    rng2 = np.random.default_rng(20261207)
    for t in TYPES + TYPES_2:
        if t in ("F32", "F16", "BF16"):
            raw, vals = float_tensor(rng, t, n)
        else:
            raw = rand_blocks(rng if t in TYPES else rng2, t, n)
            vals = DEQUANT[t](raw)
            cross_check(t, raw, vals)
        assert vals.dtype == f32 and vals.shape == (n,)
        w.tensor(f"t.{t}", [ROW, ROWS], t, raw)
        expected.append(vals)
    return w.build(), np.concatenate(expected).astype("<f4").tobytes()


def quant_f32(values, type_name):
    """Encodes float32 values as Q8_0 (the only quantizer needed here: a simple
    round-to-nearest with d = amax / 127)."""
    assert type_name == "Q8_0"
    x = values.reshape(-1, 32).astype(np.float64)
    d = (np.abs(x).max(axis=1, keepdims=True) / 127).astype(np.float16)
    df = np.where(d.astype(np.float64) == 0, 1, d.astype(np.float64))
    q = np.clip(np.round(x / df), -127, 127).astype(np.int8)
    return np.concatenate([d.view(np.uint8), q.view(np.uint8)], axis=1).tobytes()


def tiny_llama(rng):
    """dim 32, 1 layer, 4 heads (2 kv, head_dim 8), ffn 64, 12 BPE tokens, tied
    embeddings, q/k/v biases. attn_k.weight is F32 with value 1000*row + col
    so the test can check the outermost-first shape; other tensors mix types."""
    dim, ffn, kv_dim = 32, 64, 16
    tokens = ["<|endoftext|>", "<s>", "a", "b", "c", "\u0120", "ab", "\u0120a", "bc", "abc", "\u00e9", "\u4e2d"]
    w = Writer(version=3)
    w.kv("general.architecture", STRING, "llama").kv("general.name", STRING, "tiny llama")
    w.kv("llama.embedding_length", U32, dim).kv("llama.block_count", U32, 1)
    w.kv("llama.attention.head_count", U32, 4).kv("llama.attention.head_count_kv", U32, 2)
    w.kv("llama.feed_forward_length", U32, ffn).kv("llama.context_length", U32, 128)
    w.kv("llama.attention.layer_norm_rms_epsilon", F32, 1e-6)
    w.kv("llama.rope.scaling.type", STRING, "linear").kv("llama.rope.scaling.factor", F32, 2.0)
    w.kv("tokenizer.ggml.model", STRING, "gpt2").kv("tokenizer.ggml.pre", STRING, "tiny-pre")
    w.kv("tokenizer.ggml.tokens", ARRAY, (STRING, tokens))
    w.kv("tokenizer.ggml.token_type", ARRAY, (I32, [3, 3] + [1] * (len(tokens) - 2)))
    w.kv("tokenizer.ggml.merges", ARRAY, (STRING, ["a b", "\u0120 a", "b c", "ab c"]))
    w.kv("tokenizer.ggml.bos_token_id", U32, 1).kv("tokenizer.ggml.eos_token_id", U32, 0)

    def f32t(shape_outer_first, values=None):
        n = int(np.prod(shape_outer_first))
        v = rng.standard_normal(n).astype(f32) if values is None else values.astype(f32)
        return v.tobytes()

    def ne(shape):
        return list(reversed(shape))

    V = len(tokens)
    emb = rng.standard_normal(V * dim).astype(f32)
    w.tensor("token_embd.weight", ne([V, dim]), "Q8_0", quant_f32(emb, "Q8_0"))
    w.tensor("output_norm.weight", [dim], "F32", f32t([dim]))
    w.tensor("blk.0.attn_norm.weight", [dim], "F32", f32t([dim]))
    w.tensor("blk.0.ffn_norm.weight", [dim], "F32", f32t([dim]))
    w.tensor("blk.0.attn_q.weight", ne([dim, dim]), "F16",
             rng.standard_normal(dim * dim).astype(np.float16).tobytes())
    k = np.arange(kv_dim)[:, None] * 1000 + np.arange(dim)[None, :]
    w.tensor("blk.0.attn_k.weight", ne([kv_dim, dim]), "F32", f32t([kv_dim, dim], k.reshape(-1)))
    w.tensor("blk.0.attn_v.weight", ne([kv_dim, dim]), "Q4_0", rand_blocks(rng, "Q4_0", kv_dim * dim))
    w.tensor("blk.0.attn_output.weight", ne([dim, dim]), "Q5_1", rand_blocks(rng, "Q5_1", dim * dim))
    w.tensor("blk.0.ffn_gate.weight", ne([ffn, dim]), "Q4_1", rand_blocks(rng, "Q4_1", ffn * dim))
    w.tensor("blk.0.ffn_up.weight", ne([ffn, dim]), "Q5_0", rand_blocks(rng, "Q5_0", ffn * dim))
    w.tensor("blk.0.ffn_down.weight", ne([dim, ffn]), "Q8_0", rand_blocks(rng, "Q8_0", dim * ffn))
    w.tensor("blk.0.attn_q.bias", [dim], "F32", f32t([dim]))
    w.tensor("blk.0.attn_k.bias", [kv_dim], "F32", f32t([kv_dim]))
    w.tensor("blk.0.attn_v.bias", [kv_dim], "BF16",
             (rng.standard_normal(kv_dim).astype(f32).view(np.uint32) >> 16).astype(np.uint16).tobytes())
    return w.build()


def main():
    rng = np.random.default_rng(20240611)
    gguf, expected = quant_types(rng)
    llama = tiny_llama(rng)
    os.makedirs(OUT, exist_ok=True)
    for name, data in [("quant_types.gguf", gguf), ("quant_types.expected.bin", expected),
                       ("quant_types_llama.gguf", llama)]:
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"wrote tests/fixtures/{name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
