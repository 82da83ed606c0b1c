#!/usr/bin/python3
"""Reference values for tern's losses and AdamW, from PyTorch (float64).

Writes tests/fixtures/train_small.bin: a flat sequence of float64 arrays, in
this order (shapes fixed below):
  student[N,V] teacher[N,V] targets[N] (as float64; -1 = ignored)
  ce, d_ce/d_student[N,V]
  kl(tau=2), d_kl/d_student[N,V]
  fs[N,D] ft[N,D] cos_loss d_cos/d_fs[N,D] mse d_mse/d_fs[N,D]
  adamw: p0[P], grads[S,P], params after each step [S,P]
"""
import os
import struct

import torch
import torch.nn.functional as F

torch.manual_seed(7)
N, V, D, P, S, TAU = 5, 11, 9, 37, 5, 2.0
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "train_small.bin")
chunks = []


def put(t):
    chunks.append(torch.as_tensor(t, dtype=torch.float64).flatten())


student = torch.randn(N, V, dtype=torch.float64) * 2
teacher = torch.randn(N, V, dtype=torch.float64) * 2
targets = torch.tensor([3, -1, 0, 10, 7])
put(student), put(teacher), put(targets)

s = student.clone().requires_grad_()
ce = F.cross_entropy(s, targets, ignore_index=-1)
ce.backward()
put(ce.detach()), put(s.grad)

s = student.clone().requires_grad_()
kl = F.kl_div(F.log_softmax(s / TAU, -1), F.log_softmax(teacher / TAU, -1), log_target=True,
              reduction="batchmean") * TAU * TAU
kl.backward()
put(kl.detach()), put(s.grad)

fs = torch.randn(N, D, dtype=torch.float64)
ft = torch.randn(N, D, dtype=torch.float64)
put(fs), put(ft)
x = fs.clone().requires_grad_()
cos = (1 - F.cosine_similarity(x, ft, dim=-1)).mean()
cos.backward()
put(cos.detach()), put(x.grad)
x = fs.clone().requires_grad_()
mse = F.mse_loss(x, ft)
mse.backward()
put(mse.detach()), put(x.grad)

# AdamW in float32, as tern runs it.
p = torch.randn(P, dtype=torch.float32)
put(p)
param = torch.nn.Parameter(p.clone())
opt = torch.optim.AdamW([param], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
grads = torch.randn(S, P, dtype=torch.float32)
put(grads)
for k in range(S):
    param.grad = grads[k].clone()
    opt.step()
    put(param.detach())

with open(OUT, "wb") as f:
    for c in chunks:
        f.write(c.numpy().tobytes())
print("wrote", OUT, sum(len(c) for c in chunks), "float64 values")
