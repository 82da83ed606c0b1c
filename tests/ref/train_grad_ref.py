#!/usr/bin/python3
"""Reference loss and parameter gradients of a tiny LLaMA, float64 PyTorch autograd.

Model: the committed llama2.c checkpoint tests/fixtures/tiny_llama.bin (written
by tiny_llama_ref.py: dim 48, 2 layers, 6 heads / 2 KV heads (GQA), hidden 100,
vocab 97, untied head, no biases). Its float32 weights are read here and
promoted to float64; the model is written independently of tern's C code (RoPE
rotates adjacent pairs (2i, 2i+1), as Meta's and llama2.c's model.py do).

Batch: B = 2 sequences of T = 12 random tokens, positions 0..T-1 in each, with
random targets. Loss: mean cross-entropy over all B*T tokens.

Writes tests/fixtures/train_grad.bin (little-endian), regenerate with
`/usr/bin/python3 tests/ref/train_grad_ref.py`:
  char[4]  "TGRD"
  int32    version (1), B, T, vocab, n_params
  int32    numel[n_params]
  int32    tokens[B*T], targets[B*T]      (row-major [B, T])
  float64  loss
  float32  grads, concatenated in tern's parameter order and layout
           (src/nn/llama_train.c): token_embd.weight [V, D], then per layer
           attn_norm [D], attn_q [D, D], attn_k [KVD, D], attn_v [KVD, D],
           attn_output [D, D], ffn_norm [D], ffn_gate [F, D], ffn_up [F, D],
           ffn_down [D, F], then output_norm [D], output [V, D]
           (PyTorch [out, in] order, as stored).
"""
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(__file__)
FIX = os.path.join(HERE, "..", "fixtures")
B, T = 2, 12
EPS, THETA = 1e-5, 10000.0


def load_llama2c(path):
    """llama2.c v0 checkpoint -> config dict and float64 weights (lists per layer)."""
    raw = open(path, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", raw[:28])
    assert vocab < 0, "expected an untied head"
    vocab = -vocab
    hd = dim // heads
    data = np.frombuffer(raw[28:], dtype="<f4")
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        t = torch.from_numpy(data[pos:pos + n].astype(np.float64).reshape(shape))
        pos += n
        return t

    kvd = kv_heads * hd
    W = {"tok": take(vocab, dim)}
    W["att_norm"] = [take(dim) for _ in range(layers)]
    W["wq"] = [take(dim, dim) for _ in range(layers)]
    W["wk"] = [take(kvd, dim) for _ in range(layers)]
    W["wv"] = [take(kvd, dim) for _ in range(layers)]
    W["wo"] = [take(dim, dim) for _ in range(layers)]
    W["ffn_norm"] = [take(dim) for _ in range(layers)]
    W["w1"] = [take(hidden, dim) for _ in range(layers)]  # gate
    W["w2"] = [take(dim, hidden) for _ in range(layers)]  # down
    W["w3"] = [take(hidden, dim) for _ in range(layers)]  # up
    W["norm"] = take(dim)
    take(seq * hd)  # unused RoPE tables
    W["cls"] = take(vocab, dim)
    assert pos == len(data)
    cfg = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab, hd=hd)
    return cfg, W


def rmsnorm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def rope(x, hd):
    # x: [B, T, heads, hd]; position t rotates pairs (2i, 2i+1) by t * theta^(-2i/hd)
    t = x.shape[1]
    inv = 1.0 / (THETA ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)).double()
    ang = torch.arange(t).double()[:, None] * inv[None, :]
    c, s = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)


def forward(cfg, W, tokens):
    bsz, t = tokens.shape
    H, KVH, hd = cfg["heads"], cfg["kv_heads"], cfg["hd"]
    x = W["tok"][tokens]
    mask = torch.full((t, t), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(cfg["layers"]):
        h = rmsnorm(x, W["att_norm"][l])
        q = rope((h @ W["wq"][l].T).view(bsz, t, H, hd), hd)
        k = rope((h @ W["wk"][l].T).view(bsz, t, KVH, hd), hd)
        v = (h @ W["wv"][l].T).view(bsz, t, KVH, hd)
        k = k.repeat_interleave(H // KVH, dim=2)
        v = v.repeat_interleave(H // KVH, dim=2)
        att = torch.einsum("bthd,bshd->bhts", q, k) / hd ** 0.5 + mask
        o = torch.einsum("bhts,bshd->bthd", att.softmax(-1), v).reshape(bsz, t, H * hd)
        x = x + o @ W["wo"][l].T
        h = rmsnorm(x, W["ffn_norm"][l])
        x = x + (torch.nn.functional.silu(h @ W["w1"][l].T) * (h @ W["w3"][l].T)) @ W["w2"][l].T
    return rmsnorm(x, W["norm"]) @ W["cls"].T


def tern_order(cfg, W):
    """Parameters in tern's order (see the module docstring)."""
    out = [W["tok"]]
    for l in range(cfg["layers"]):
        out += [W["att_norm"][l], W["wq"][l], W["wk"][l], W["wv"][l], W["wo"][l], W["ffn_norm"][l],
                W["w1"][l], W["w3"][l], W["w2"][l]]
    return out + [W["norm"], W["cls"]]


def main():
    torch.manual_seed(4321)
    cfg, W = load_llama2c(os.path.join(FIX, "tiny_llama.bin"))
    params = tern_order(cfg, W)
    for p in params:
        p.requires_grad_(True)
    tokens = torch.randint(0, cfg["vocab"], (B, T))
    targets = torch.randint(0, cfg["vocab"], (B, T))
    logits = forward(cfg, W, tokens)
    loss = torch.nn.functional.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1))
    loss.backward()
    path = os.path.join(FIX, "train_grad.bin")
    with open(path, "wb") as f:
        f.write(b"TGRD")
        f.write(struct.pack("<5i", 1, B, T, cfg["vocab"], len(params)))
        f.write(np.array([p.numel() for p in params], dtype="<i4").tobytes())
        f.write(tokens.numpy().astype("<i4").tobytes())
        f.write(targets.numpy().astype("<i4").tobytes())
        f.write(struct.pack("<d", loss.item()))
        for p in params:
            f.write(p.grad.numpy().astype("<f4").tobytes())
    print("wrote", path, os.path.getsize(path), "bytes; loss =", loss.item())


if __name__ == "__main__":
    main()
