#!/usr/bin/env python3
"""Oracle fixtures for running llama.cpp's ternary / 1-2 bit GGUF types packed
(tests/test_lowbit.c): a tiny random LLaMA whose seven linears cover every
type and repack path, its dequantized twin, and float64 PyTorch logits.

tests/fixtures/lowbit_llama.gguf       dim 256, 1 layer, 4 heads (2 kv, head_dim 64),
                                       ffn 256, 64 tokens, tied Q8_0 embedding:
    blk.0.attn_q       TQ1_0  gguf-py quantize()
    blk.0.attn_k       TQ2_0  gguf-py quantize()
    blk.0.ffn_gate     TQ2_0  gguf-py quantize()
    blk.0.attn_v       Q2_0   (ggml id 42) ggml's quantize_row_q2_0_ref, ported below
    blk.0.ffn_up       Q2_0   codes chosen directly, code 2 (field 3) included: the
                              2-bit case (ggml's own quantizer never writes code 2,
                              its absmax d keeps |w/d| <= 1)
    blk.0.ffn_down     Q1_0   (ggml id 41) ggml's quantize_row_q1_0_ref, ported below
    blk.0.attn_output  Q4_0   ternary fallback blocks as `tern export --fallback q4_0`
                              writes them (q = T + 8, d = alpha)
    token_embd         Q8_0   gguf-py quantize()
  gguf-py 0.19 has quantizers for TQ1_0 / TQ2_0 / Q4_0 / Q8_0 but none for Q1_0
  (only its block size) or Q2_0 (not even the id): those two are encoded and
  decoded here from ggml's block_q1_0 / block_q2_0 (ggml-common.h) and
  quantize_row_q*_0_ref / dequantize_row_q*_0 (ggml-quants.c, llama.cpp as
  vendored in llama-cpp-python 0.3.36).
tests/fixtures/lowbit_llama.f16.gguf   the same model with every linear dequantized
                                       (gguf-py dequantize() for TQ1_0 / TQ2_0 /
                                       Q4_0, the ports for Q1_0 / Q2_0), stored F16
                                       (d * q with fp16 d and q in -1..2 is exact
                                       in fp16, so the twin holds exactly the
                                       dequantized values at half the size of F32),
                                       and the embedding dequantized to F32.
tests/fixtures/lowbit_llama.ref.bin    int32 n, int32 vocab, int32 tokens[n],
                                       float32 logits[n, vocab] of the dequantized
                                       model in float64 PyTorch (RoPE on adjacent
                                       pairs, as GGUF / tern); then int32 ctx,
                                       int32 bos, int32 m, int32 ppl_tokens[m].

tests/corpus/gguf/lowbit_*.gguf: malformed files for tests/test_corpus.c and the
fuzzer's seeds (gguf_corpus.py's minimal llama plus one bad tensor): a TQ2_0
field 3 (code 2, refused naming the tensor), truncated Q2_0 / Q1_0 data, a Q1_0
row that is not a whole 128-block. Run after gguf_corpus.py (which empties
that directory).

Deterministic. usage: python3 tests/ref/lowbit_gguf_ref.py (needs gguf >= 0.19,
numpy, torch; the tests need no Python).
"""
import os
import struct
import sys

import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gguf_corpus import base, write_files  # noqa: E402
from gguf_writer import ARRAY, F32, I32, STRING, U32, Writer  # noqa: E402
from tiny_llama_ref import rmsnorm, rope  # noqa: E402  (PyTorch reference ops; RoPE on adjacent pairs)

OUT = os.path.join(HERE, "..", "fixtures")
DIM, HEADS, KV_HEADS, FFN, VOCAB, CTX = 256, 4, 2, 256, 64, 128
HD = DIM // HEADS
EPS, THETA = 1e-5, 10000.0
Q1_0_ID, Q2_0_ID = 41, 42
f32 = np.float32


# ---- Q1_0 / Q2_0 from ggml-quants.c ----------------------------------------

def q1_0_quantize(x):
    """quantize_row_q1_0_ref: blocks of 128, d = mean |x| (fp16), bit j of
    qs[j/8] (LSB first) set when x >= 0; block = fp16 d, qs[16]."""
    b = x.reshape(-1, 128).astype(f32)
    d = (np.abs(b).sum(axis=1, dtype=f32) / f32(128)).astype(np.float16)
    bits = (b >= 0).astype(np.uint8).reshape(-1, 16, 8)
    qs = (bits << np.arange(8, dtype=np.uint8)).sum(axis=2).astype(np.uint8)
    return np.concatenate([d.view(np.uint8).reshape(-1, 2), qs], axis=1)


def q1_0_dequantize(blocks):
    d = blocks[:, :2].copy().view(np.float16).astype(f32)
    bits = (blocks[:, 2:, None] >> np.arange(8, dtype=np.uint8)) & 1
    return np.where(bits.reshape(-1, 128) == 1, d, -d).reshape(-1)


def q2_0_encode(q, d):
    """block_q2_0 from codes q in -1..2 [nb, 64] and fp16 d [nb]: fp16 d, then
    value j in bits 2(j%4).. of qs[j/4] as q + 1."""
    u = (q + 1).astype(np.uint8).reshape(-1, 16, 4)
    qs = (u << (2 * np.arange(4, dtype=np.uint8))).sum(axis=2).astype(np.uint8)
    return np.concatenate([d.astype(np.float16).view(np.uint8).reshape(-1, 2), qs], axis=1)


def q2_0_quantize(x):
    """quantize_row_q2_0_ref: d = max |x| per 64, q = clamp(round(x/d) + 1, 0, 3)."""
    b = x.reshape(-1, 64).astype(f32)
    amax = np.abs(b).max(axis=1)
    inv = np.where(amax > 0, f32(1) / np.where(amax > 0, amax, 1), 0).astype(f32)
    q = np.clip(np.floor(np.abs(b * inv[:, None]) + f32(0.5)) * np.sign(b * inv[:, None]) + 1, 0, 3) - 1
    return q2_0_encode(q.astype(np.int8), amax.astype(np.float16))


def q2_0_dequantize(blocks):
    d = blocks[:, :2].copy().view(np.float16).astype(f32)
    u = (blocks[:, 2:, None] >> (2 * np.arange(4, dtype=np.uint8))) & 3
    return ((u.reshape(-1, 64).astype(f32) - 1) * d).reshape(-1)


# ---- tern's Q4_0 ternary fallback (q = T + 8, d = alpha) -------------------

def q4_0_ternary(T, d):
    u = (T.reshape(-1, 32) + 8).astype(np.uint8)
    qs = (u[:, :16] | (u[:, 16:] << 4)).astype(np.uint8)
    return np.concatenate([d.astype(np.float16).view(np.uint8).reshape(-1, 2), qs], axis=1)


def ternary(rng, rows, cols, block, p0=0.4):
    """d * T with T dense-ish in {-1, 0, 1} and one fp16 d per block (every
    block reaches |T| = 1, so absmax / mean rules recover d)."""
    T = rng.choice([-1, 0, 1], size=(rows, cols), p=[(1 - p0) / 2, p0, (1 - p0) / 2]).astype(np.int8)
    T.reshape(-1, block)[:, 0] = 1
    d = rng.uniform(0.02, 0.12, rows * cols // block).astype(np.float16)
    return T, d, (d.astype(f32)[:, None] * T.reshape(-1, block).astype(f32)).reshape(rows, cols)


def linears(rng):
    """name -> (rows, cols, ggml type id or name, raw bytes, dequantized float32 [rows, cols])."""
    out = {}

    def gguf_py(name, rows, cols, qt):
        _, _, x = ternary(rng, rows, cols, 256)
        q = quantize(x, qt)
        back = dequantize(q, qt).reshape(rows, cols)
        assert np.array_equal(back, x), name  # absmax recovered exactly d and T
        out[name] = (rows, cols, int(qt), q.tobytes(), back)

    gguf_py("attn_q", DIM, DIM, Q.TQ1_0)
    gguf_py("attn_k", KV_HEADS * HD, DIM, Q.TQ2_0)
    gguf_py("ffn_gate", FFN, DIM, Q.TQ2_0)
    # Q2_0 by ggml's reference quantizer, on random weights (codes -1..1).
    x = rng.standard_normal((KV_HEADS * HD, DIM)).astype(f32) * f32(0.05)
    q = q2_0_quantize(x)
    out["attn_v"] = (KV_HEADS * HD, DIM, Q2_0_ID, q.tobytes(), q2_0_dequantize(q).reshape(KV_HEADS * HD, DIM))
    # Q2_0 with code 2: levels {-1, 0, 1, 2} * d.
    codes = rng.choice([-1, 0, 1, 2], size=(FFN * DIM // 64, 64), p=[0.3, 0.3, 0.3, 0.1]).astype(np.int8)
    d = rng.uniform(0.02, 0.08, FFN * DIM // 64).astype(np.float16)
    q = q2_0_encode(codes, d)
    out["ffn_up"] = (FFN, DIM, Q2_0_ID, q.tobytes(), q2_0_dequantize(q).reshape(FFN, DIM))
    # Q1_0 by ggml's reference quantizer, on random weights.
    x = rng.standard_normal((DIM, FFN)).astype(f32) * f32(0.05)
    q = q1_0_quantize(x)
    out["ffn_down"] = (DIM, FFN, Q1_0_ID, q.tobytes(), q1_0_dequantize(q).reshape(DIM, FFN))
    # tern's Q4_0 ternary fallback, checked against gguf-py's Q4_0 dequantizer.
    T, d, x = ternary(rng, DIM, DIM, 32)
    q = q4_0_ternary(T, d)
    back = dequantize(q, Q.Q4_0).reshape(DIM, DIM)
    assert np.array_equal(back, x)
    out["attn_output"] = (DIM, DIM, "Q4_0", q.tobytes(), back)
    return out


def header(w, tokens):
    w.kv("general.architecture", STRING, "llama").kv("general.name", STRING, "lowbit llama")
    w.kv("llama.embedding_length", U32, DIM).kv("llama.block_count", U32, 1)
    w.kv("llama.attention.head_count", U32, HEADS).kv("llama.attention.head_count_kv", U32, KV_HEADS)
    w.kv("llama.feed_forward_length", U32, FFN).kv("llama.context_length", U32, CTX)
    w.kv("llama.attention.layer_norm_rms_epsilon", F32, EPS).kv("llama.rope.freq_base", F32, THETA)
    w.kv("tokenizer.ggml.model", STRING, "gpt2").kv("tokenizer.ggml.pre", STRING, "default")
    w.kv("tokenizer.ggml.tokens", ARRAY, (STRING, tokens))
    w.kv("tokenizer.ggml.token_type", ARRAY, (I32, [3] + [1] * (len(tokens) - 1)))
    w.kv("tokenizer.ggml.merges", ARRAY, (STRING, []))
    w.kv("tokenizer.ggml.bos_token_id", U32, 0).kv("tokenizer.ggml.eos_token_id", U32, 0)


def forward(W, tokens):
    T = len(tokens)
    pos = torch.arange(T)
    x = W["token_embd"][tokens]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    h = rmsnorm(x, W["attn_norm"], EPS)
    q = rope((h @ W["attn_q"].T).view(T, HEADS, HD), pos, HD, THETA)
    k = rope((h @ W["attn_k"].T).view(T, KV_HEADS, HD), pos, HD, THETA).repeat_interleave(HEADS // KV_HEADS, dim=1)
    v = (h @ W["attn_v"].T).view(T, KV_HEADS, HD).repeat_interleave(HEADS // KV_HEADS, dim=1)
    att = torch.einsum("thd,shd->hts", q, k) / HD ** 0.5 + mask
    x = x + torch.einsum("hts,shd->thd", att.softmax(-1), v).reshape(T, DIM) @ W["attn_output"].T
    h = rmsnorm(x, W["ffn_norm"], EPS)
    x = x + (torch.nn.functional.silu(h @ W["ffn_gate"].T) * (h @ W["ffn_up"].T)) @ W["ffn_down"].T
    return rmsnorm(x, W["output_norm"], EPS) @ W["token_embd"].T


def main():
    rng = np.random.default_rng(20261206)
    tokens = ["<s>"] + [chr(ord("!") + i) for i in range(VOCAB - 1)]
    emb = rng.standard_normal((VOCAB, DIM)).astype(f32) * f32(0.05)  # logits of a few units: a finite perplexity
    emb_q = quantize(emb, Q.Q8_0)
    emb_deq = dequantize(emb_q, Q.Q8_0).reshape(VOCAB, DIM).astype(f32)
    norms = {n: (1 + 0.1 * rng.standard_normal(DIM)).astype(f32) for n in ("attn_norm", "ffn_norm", "output_norm")}
    lin = linears(rng)

    packed, twin = Writer(), Writer()
    for w in (packed, twin):
        header(w, tokens)
    packed.tensor("token_embd.weight", [DIM, VOCAB], "Q8_0", emb_q.tobytes())
    twin.tensor("token_embd.weight", [DIM, VOCAB], "F32", emb_deq.tobytes())
    for w in (packed, twin):
        w.tensor("output_norm.weight", [DIM], "F32", norms["output_norm"].tobytes())
        w.tensor("blk.0.attn_norm.weight", [DIM], "F32", norms["attn_norm"].tobytes())
        w.tensor("blk.0.ffn_norm.weight", [DIM], "F32", norms["ffn_norm"].tobytes())
    for name, (rows, cols, qt, raw, deq) in lin.items():
        packed.tensor(f"blk.0.{name}.weight", [cols, rows], qt, raw)
        h = deq.astype(np.float16)
        assert np.array_equal(h.astype(f32), deq), name  # exact in fp16
        twin.tensor(f"blk.0.{name}.weight", [cols, rows], "F16", h.tobytes())

    W = {n: torch.from_numpy(v[4].astype(np.float64)) for n, v in lin.items()}
    W["token_embd"] = torch.from_numpy(emb_deq.astype(np.float64))
    W.update({n: torch.from_numpy(v.astype(np.float64)) for n, v in norms.items()})
    toks = rng.integers(1, VOCAB, 24)
    logits = forward(W, torch.from_numpy(toks)).float().numpy()
    ppl_ctx, ppl_tokens = 32, rng.integers(1, VOCAB, 3 * 32 + 3)

    files = {"lowbit_llama.gguf": packed.build(), "lowbit_llama.f16.gguf": twin.build(),
             "lowbit_llama.ref.bin": struct.pack("<2i", len(toks), VOCAB) + toks.astype("<i4").tobytes()
             + logits.astype("<f4").tobytes() + struct.pack("<3i", ppl_ctx, 0, len(ppl_tokens))
             + ppl_tokens.astype("<i4").tobytes()}
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"wrote tests/fixtures/{name} ({len(data)} bytes)")
    print("logits[0, :4] =", logits[0, :4].tolist())


def corpus():
    rng = np.random.default_rng(41)
    files = {}
    tq2 = rng.integers(0, 3, (2, 64), dtype=np.uint8) * 0  # all fields 0 .. then one field 3
    tq2 = np.concatenate([tq2, np.full((2, 2), 0x3c, np.uint8)], axis=1)  # d = 1.0
    tq2[1, 7] = 0x0c  # value 32 + 7 of row 1: field 3
    files["lowbit_tq2_code3.gguf"] = base(tensors=[("extra.weight", [256, 2], 35, tq2.tobytes())])
    for name, tid, ne in (("q2_0", Q2_0_ID, [64, 2]), ("q1_0", Q1_0_ID, [128, 2])):
        data = rng.integers(0, 256, 2 * 18, dtype=np.uint8).tobytes()
        whole = base(tensors=[("extra.weight", ne, tid, data)])
        files[f"lowbit_{name}_truncated.gguf"] = whole[:len(whole) - (-len(data) % 32) - 10]
    files["lowbit_q1_0_row_not_128.gguf"] = base(tensors=[("extra.weight", [64, 2], Q1_0_ID, bytes(18))])
    write_files(files)


if __name__ == "__main__":
    main()
    corpus()
