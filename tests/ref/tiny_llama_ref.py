#!/usr/bin/python3
"""Reference logits for a tiny random LLaMA, computed in float64 with PyTorch.

Writes (committed fixtures, regenerate with `/usr/bin/python3 tests/ref/tiny_llama_ref.py`):
  tests/fixtures/tiny_llama.bin         llama2.c v0 checkpoint (untied head: negative vocab)
  tests/fixtures/tiny_llama.logits.bin  int32 n, int32 vocab, int32 tokens[n], float32 logits[n, vocab]
  tests/fixtures/tiny_llama.ppl.bin     int32 ctx, int32 bos, int32 n, int32 tokens[n],
                                        float64 ppl, float64 ppl_se, float64 mean_nll, int64 scored

The model is written independently of tern's C code: RoPE rotates adjacent
pairs (2i, 2i+1), as Meta's and llama2.c's reference model.py do.
"""
import os
import struct

import torch

torch.manual_seed(1234)
DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, SEQ = 48, 100, 2, 6, 2, 97, 64
HD = DIM // HEADS
EPS, THETA = 1e-5, 10000.0
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def rand(*shape, scale=0.3):
    return (torch.randn(*shape, dtype=torch.float64) * scale).float().double()


W = {
    "tok": rand(VOCAB, DIM, scale=1.0),
    "att_norm": [1 + rand(DIM, scale=0.1) for _ in range(LAYERS)],
    "wq": [rand(DIM, DIM) for _ in range(LAYERS)],
    "wk": [rand(KV_HEADS * HD, DIM) for _ in range(LAYERS)],
    "wv": [rand(KV_HEADS * HD, DIM) for _ in range(LAYERS)],
    "wo": [rand(DIM, DIM) for _ in range(LAYERS)],
    "ffn_norm": [1 + rand(DIM, scale=0.1) for _ in range(LAYERS)],
    "w1": [rand(HIDDEN, DIM) for _ in range(LAYERS)],
    "w2": [rand(DIM, HIDDEN) for _ in range(LAYERS)],
    "w3": [rand(HIDDEN, DIM) for _ in range(LAYERS)],
    "norm": 1 + rand(DIM, scale=0.1),
    "cls": rand(VOCAB, DIM),
}


def rmsnorm(x, w, eps=EPS):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, hd=HD, theta=THETA):
    # x: [T, heads, hd]; rotate pairs (2i, 2i+1) by pos * theta^(-2i/hd)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)).double()
    ang = pos[:, None].double() * inv[None, :]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def forward(tokens):
    T = len(tokens)
    pos = torch.arange(T)
    x = W["tok"][tokens]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(LAYERS):
        h = rmsnorm(x, W["att_norm"][l])
        q = rope((h @ W["wq"][l].T).view(T, HEADS, HD), pos)
        k = rope((h @ W["wk"][l].T).view(T, KV_HEADS, HD), pos)
        v = (h @ W["wv"][l].T).view(T, KV_HEADS, HD)
        rep = HEADS // KV_HEADS
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) / HD ** 0.5 + mask
        o = torch.einsum("hts,shd->thd", att.softmax(-1), v).reshape(T, DIM)
        x = x + o @ W["wo"][l].T
        h = rmsnorm(x, W["ffn_norm"][l])
        x = x + (torch.nn.functional.silu(h @ W["w1"][l].T) * (h @ W["w3"][l].T)) @ W["w2"][l].T
    return rmsnorm(x, W["norm"]) @ W["cls"].T


def write_checkpoint(path):
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, -VOCAB, SEQ))
        put = lambda t: f.write(t.float().contiguous().numpy().tobytes())
        put(W["tok"])
        for key in ["att_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"]:
            for t in W[key]:
                put(t)
        put(W["norm"])
        put(torch.zeros(SEQ * HD))  # llama2.c's unused RoPE tables
        put(W["cls"])


def write_ppl_fixture(path, ctx=16, bos=1):
    """llama.cpp's perplexity protocol, written from its description: chunks of
    ctx tokens, first token of each chunk replaced by BOS, positions
    ctx/2 .. ctx-2 predict the following original token."""
    tokens = torch.randint(0, VOCAB, (3 * ctx + 5,))  # 3 full chunks + a remainder that is ignored
    nlls = []
    for c in range(len(tokens) // ctx):
        chunk = tokens[c * ctx:(c + 1) * ctx].clone()
        chunk[0] = bos
        logp = forward(chunk).log_softmax(-1)
        for i in range(ctx // 2, ctx - 1):
            nlls.append(-logp[i, tokens[c * ctx + i + 1]].item())
    nll = torch.tensor(nlls, dtype=torch.float64)
    mean = nll.mean().item()
    ppl = float(torch.exp(torch.tensor(mean)))
    se = ppl * (nll.var(unbiased=False).item() / (len(nlls) - 1)) ** 0.5
    with open(path, "wb") as f:
        f.write(struct.pack("<3i", ctx, bos, len(tokens)))
        f.write(tokens.int().numpy().tobytes())
        f.write(struct.pack("<3dq", ppl, se, mean, len(nlls)))


def main():
    os.makedirs(OUT, exist_ok=True)
    write_checkpoint(os.path.join(OUT, "tiny_llama.bin"))
    tokens = torch.randint(0, VOCAB, (20,))
    logits = forward(tokens)
    with open(os.path.join(OUT, "tiny_llama.logits.bin"), "wb") as f:
        f.write(struct.pack("<2i", len(tokens), VOCAB))
        f.write(tokens.int().numpy().tobytes())
        f.write(logits.float().numpy().tobytes())
    write_ppl_fixture(os.path.join(OUT, "tiny_llama.ppl.bin"))
    print("wrote tiny_llama fixtures; logits[0,:4] =", logits[0, :4].tolist())


if __name__ == "__main__":
    main()
