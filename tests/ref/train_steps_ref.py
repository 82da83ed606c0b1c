#!/usr/bin/python3
"""Loss trajectory of a few AdamW steps on tests/fixtures/tiny_llama.bin, in
PyTorch (float64): next-token cross-entropy, global-norm clipping at 1.0,
AdamW(lr 1e-2, betas (0.9, 0.95), eps 1e-8, weight decay 0.1).

Writes tests/fixtures/train_steps.bin:
  int32 steps, int32 B, int32 T, then per step int32 tokens[B, T+1],
  then float64 loss[steps] (each measured before that step's update).
"""
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import tiny_llama_ref as ref  # noqa: E402  (rebuilds the same weights, seed 1234)

STEPS, B, T = 4, 2, 12
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "train_steps.bin")


def params():
    W = ref.W
    out = [W["tok"], W["norm"], W["cls"]]
    for key in ["att_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"]:
        out += W[key]
    return out


def main():
    ps = params()
    for p in ps:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(ps, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    g = torch.Generator().manual_seed(99)
    batches = [torch.randint(0, ref.VOCAB, (B, T + 1), generator=g) for _ in range(STEPS)]
    losses = []
    for tokens in batches:
        opt.zero_grad()
        logits = torch.stack([ref.forward(tokens[b, :T]) for b in range(B)])
        loss = F.cross_entropy(logits.reshape(B * T, -1), tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ps, 1.0)
        opt.step()
        losses.append(loss.item())
    with open(OUT, "wb") as f:
        f.write(struct.pack("<3i", STEPS, B, T))
        for tokens in batches:
            f.write(tokens.int().numpy().tobytes())
        f.write(struct.pack(f"<{STEPS}d", *losses))
    print("losses", losses)


if __name__ == "__main__":
    main()
