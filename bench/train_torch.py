#!/usr/bin/python3
"""PyTorch baseline for tern's training throughput: the same LLaMA step
(forward, next-token cross-entropy, backward, clip, AdamW) on a model of the
same shape, in float32 on CPU with the same thread count. Weights are random:
speed does not depend on their values.

usage: train_torch.py --dim D --layers L --heads H --kv-heads K --hidden F --vocab V
                      [--tied] --batch B --seq T --steps N --threads N
Prints one JSON line: {"tokens_per_s": ..., "step_s": [...]}.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.h, self.kv, self.hd = a.heads, a.kv_heads, a.dim // a.heads
        self.attn_norm = nn.Parameter(torch.ones(a.dim))
        self.ffn_norm = nn.Parameter(torch.ones(a.dim))
        self.q = nn.Linear(a.dim, a.heads * self.hd, bias=False)
        self.k = nn.Linear(a.dim, a.kv_heads * self.hd, bias=False)
        self.v = nn.Linear(a.dim, a.kv_heads * self.hd, bias=False)
        self.o = nn.Linear(a.heads * self.hd, a.dim, bias=False)
        self.gate = nn.Linear(a.dim, a.hidden, bias=False)
        self.up = nn.Linear(a.dim, a.hidden, bias=False)
        self.down = nn.Linear(a.hidden, a.dim, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.attn_norm
        q = self.q(h).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.kv, self.hd).transpose(1, 2)
        rot = lambda t: torch.cat([-t[..., self.hd // 2:], t[..., :self.hd // 2]], -1)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        rep = self.h // self.kv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        x = x + self.o((att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D))
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.ffn_norm
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed = nn.Embedding(a.vocab, a.dim)
        self.blocks = nn.ModuleList(Block(a) for _ in range(a.layers))
        self.norm = nn.Parameter(torch.ones(a.dim))
        self.head = None if a.tied else nn.Linear(a.dim, a.vocab, bias=False)
        hd = a.dim // a.heads
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.arange(a.seq).float()[:, None] * inv[None]
        self.cos = torch.cat([ang.cos(), ang.cos()], -1)
        self.sin = torch.cat([ang.sin(), ang.sin()], -1)
        self.mask = torch.full((a.seq, a.seq), float("-inf")).triu(1)

    def forward(self, tokens):
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.norm
        return x @ self.embed.weight.T if self.head is None else self.head(x)


def main():
    p = argparse.ArgumentParser()
    for k in ["dim", "layers", "heads", "kv-heads", "hidden", "vocab", "batch", "seq", "steps", "threads"]:
        p.add_argument("--" + k, type=int, required=True)
    p.add_argument("--tied", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Llama(a)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
    times = []
    for _ in range(a.steps + 1):  # the first step is a warm-up
        tokens = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, a.vocab), tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    steady = times[1:]
    print(json.dumps({"tokens_per_s": a.batch * a.seq * len(steady) / sum(steady), "step_s": steady,
                      "torch": torch.__version__, "threads": a.threads}))


if __name__ == "__main__":
    main()
