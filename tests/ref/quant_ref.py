#!/usr/bin/python3
"""Reference values for tern's quantization methods (src/quant), from PyTorch.

Writes tests/fixtures/quant_ref.bin: a sequence of records, each
  u32 n | n x float32
in this order:
  W[6*40]  upstream dL/dw_eff[6*40]  upstream dL/dextra[6]  teq scales s[40]
  then for each case below:
    w_eff[240]  extra[6]  dL/dw[240]  n_p params[n_p]  dL/dparams[n_p]
Cases: absmean, twn, tequila (lambda 0.1), dlt (init params, LSQ scale on),
rtn b3 asym, rtn b4 sym, teq b3 asym, teq b3 sym, teq inner absmean.
Group size 16 over 40 columns: groups of 16, 16 and a shorter last one of 8.

Each method is written the straightforward autograd way (straight-through
estimators as x + (q - x).detach()), independently of the C code's
hand-written backward.
"""
import os
import struct

import torch

torch.manual_seed(11)
R, C, G = 6, 40, 16
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "quant_ref.bin")
recs = []


def put(t):
    t = torch.as_tensor(t, dtype=torch.float32).detach().flatten()
    recs.append(struct.pack("<I", t.numel()) + t.numpy().astype("<f4").tobytes())


def groups(cols):
    return [(s, min(s + G, cols)) for s in range(0, cols, G)]


def ste(x, q):
    return x + (q - x).detach()


def absmean_q(w):
    a = w.abs().mean().clamp(min=1e-8).detach()
    return a * torch.clamp(torch.round(w / a), -1, 1)


def twn_q(w):
    delta = 0.7 * w.abs().mean()
    mask = (w.abs() > delta).float()
    a = (w.abs() * mask).sum() / mask.sum() if mask.sum() > 0 else torch.tensor(0.0)
    return (a * torch.sign(w) * mask).detach()


def rtn_q(w, bits, sym):
    w = w.detach()
    if sym:
        qmax = 2 ** (bits - 1) - 1
        scale = w.abs().max() / qmax
        return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale
    mn, mx = torch.clamp(w.min(), max=0), torch.clamp(w.max(), min=0)
    levels = 2 ** bits - 1
    scale = (mx - mn) / levels
    z = torch.round(-mn / scale)
    q = torch.clamp(torch.round(w / scale) + z, 0, levels)
    return (q - z) * scale


W = torch.randn(R, C) * 0.05
W[0, 3] = 0.0  # a weight exactly at zero
GU = torch.randn(R, C)
DE = torch.randn(R)
S = torch.exp(0.3 * torch.randn(C))
put(W), put(GU), put(DE), put(S)


def emit(weff, extra, params=None):
    """Loss = <GU, w_eff> + <DE, extra>; writes forward values and gradients."""
    loss = (GU * weff).sum() + (DE * extra).sum()
    leaves = [w_leaf] + ([params] if params is not None else [])
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    dw = grads[0] if grads[0] is not None else torch.zeros(R, C)
    put(weff), put(extra), put(dw)
    if params is None:
        put(torch.zeros(0)), put(torch.zeros(0))
    else:
        put(params), put(grads[1])


def rowwise(fn):
    rows = []
    for r in range(R):
        rows.append(torch.cat([fn(w_leaf[r, s:e]) for s, e in groups(C)]))
    return torch.stack(rows)


# absmean, twn: straight-through.
w_leaf = W.clone().requires_grad_()
emit(rowwise(lambda w: ste(w, absmean_q(w))), torch.zeros(R))
w_leaf = W.clone().requires_grad_()
emit(rowwise(lambda w: ste(w, twn_q(w))), torch.zeros(R))

# tequila: absmean codes with inclusive thresholds, dead-zone bias C_j = lam * sum_D w.
LAM = 0.1
w_leaf = W.clone().requires_grad_()
weff_rows, extra = [], []
for r in range(R):
    parts, c = [], 0.0
    for s, e in groups(C):
        w = w_leaf[r, s:e]
        a = w.abs().mean().detach()
        t = (w >= a / 2).float() - (w <= -a / 2).float()
        parts.append(ste(w, a * t.detach()))
        c = c + (w * (t == 0).float().detach()).sum()
    weff_rows.append(torch.cat(parts))
    extra.append(LAM * c)
emit(torch.stack(weff_rows), torch.stack(extra))

# dlt: init gamma = group mean, alpha = TWN scale of the centred group; LSQ.
n_g = len(groups(C))
alpha0, gamma0 = torch.zeros(R, n_g), torch.zeros(R, n_g)
for r in range(R):
    for g, (s, e) in enumerate(groups(C)):
        w = W[r, s:e]
        gamma0[r, g] = w.mean()
        c = w - w.mean()
        d = 0.7 * c.abs().mean()
        alpha0[r, g] = c.abs()[c.abs() > d].mean()
params = torch.cat([alpha0.flatten(), gamma0.flatten()]).requires_grad_()
w_leaf = W.clone().requires_grad_()
alpha_p, gamma_p = params[: R * n_g].view(R, n_g), params[R * n_g:].view(R, n_g)
rows = []
for r in range(R):
    parts = []
    for g, (s, e) in enumerate(groups(C)):
        gs = 1.0 / (e - s) ** 0.5  # LSQ gradient scale
        a = alpha_p[r, g] * gs + (alpha_p[r, g] - alpha_p[r, g] * gs).detach()
        c = gamma_p[r, g] * gs + (gamma_p[r, g] - gamma_p[r, g] * gs).detach()
        a = a.clamp(min=1e-6)
        w = w_leaf[r, s:e]
        wt = (w - c) / a
        inside = (wt.abs() <= 1).detach()
        t = torch.clamp(torch.round(wt), -1, 1).detach()
        rr = torch.where(inside, wt + (t - wt).detach(), t)
        parts.append(a * rr + c)
    rows.append(torch.cat(parts))
emit(torch.stack(rows), torch.zeros(R), params)

# rtn: straight-through.
for bits, sym in ((3, False), (4, True)):
    w_leaf = W.clone().requires_grad_()
    emit(rowwise(lambda w: ste(w, rtn_q(w, bits, sym))), torch.zeros(R))


# teq: w_eff = Q(W diag(s)) diag(1/max(s, 1e-5)), Q straight-through; W frozen.
def teq_case(q):
    global w_leaf
    w_leaf = W.clone()  # frozen: no gradient
    s = S.clone().requires_grad_()
    ws = W * s
    rows = []
    for r in range(R):
        rows.append(torch.cat([ste(ws[r, a:b], q(ws[r, a:b])) for a, b in groups(C)]))
    weff = torch.stack(rows) / s.clamp(min=1e-5)
    loss = (GU * weff).sum()
    (ds,) = torch.autograd.grad(loss, [s])
    put(weff), put(torch.zeros(R)), put(torch.zeros(R, C)), put(S), put(ds)


teq_case(lambda w: rtn_q(w, 3, False))
teq_case(lambda w: rtn_q(w, 3, True))
teq_case(lambda w: absmean_q(w.detach()))


# uniform (b = 3): learnable s, z per group, init = the rtn grid;
# w_eff = a*(clamp(round(w/a) + round(z), 0, L) - round(z)), a = max(s, 1e-8), rounding straight-through.
def uniform_case(bits):
    global w_leaf
    L = 2 ** bits - 1
    s0, z0 = torch.zeros(R, n_g), torch.zeros(R, n_g)
    for r in range(R):
        for g, (a, b) in enumerate(groups(C)):
            w = W[r, a:b]
            mn, mx = torch.clamp(w.min(), max=0), torch.clamp(w.max(), min=0)
            s0[r, g] = (mx - mn) / L
            z0[r, g] = torch.round(-mn / s0[r, g])
    params = torch.cat([s0.flatten(), z0.flatten()]).requires_grad_()
    w_leaf = W.clone().requires_grad_()
    sp, zp = params[: R * n_g].view(R, n_g), params[R * n_g:].view(R, n_g)
    rows = []
    for r in range(R):
        parts = []
        for g, (a, b) in enumerate(groups(C)):
            sc = sp[r, g].clamp(min=1e-8)
            zr = torch.clamp(ste(zp[r, g], torch.round(zp[r, g])), 0, L)
            x = w_leaf[r, a:b] / sc
            q = torch.round(x).detach() + torch.round(zp[r, g]).clamp(0, L).detach()
            # clamp's pass-through region decided on the exact integers (x + (q - x) can miss them by an ulp)
            inside = (q >= 0) & (q <= L)
            u = ste(x, torch.round(x)) + zr
            parts.append(sc * (torch.where(inside, u, torch.clamp(q, 0, L)) - zr))
        rows.append(torch.cat(parts))
    emit(torch.stack(rows), torch.zeros(R), params)


uniform_case(3)

with open(OUT, "wb") as f:
    f.write(b"".join(recs))
print("wrote", OUT, len(recs), "records")
