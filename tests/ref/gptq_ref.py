#!/usr/bin/python3
"""Reference GPTQ (src/quant/gptq.c) in float64 NumPy, written from the
formulas in docs/methods.md and nothing else: the inverse Hessian by
numpy.linalg.inv, its upper Cholesky factor by numpy.linalg.cholesky, and the
error of every column pushed onto all later columns at once (no lazy blocks,
no row tiles, no reversed-order factorization as in the C code).

Writes tests/fixtures/gptq_ref.bin: records `u32 n | n x float32`, in order
  W[R*C]  H[C*C]
and per case (see CASES): Q[R*C] codes[R*C] scale[R*ng] shift[R*ng] rel_err[1]
where rel_err = tr(dW H dW^T) / tr(W H W^T) with the undamped H.
"""
import os
import struct

import numpy as np

R, C, N, DAMP = 12, 80, 200, 0.01
CASES = [("sym", 32, 0), ("shift", 32, 0), ("uniform", 32, 3), ("shift", 80, 0), ("sym", 16, 0)]
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "gptq_ref.bin")

rng = np.random.default_rng(5)
W = (rng.standard_normal((R, C)) * 0.05).astype(np.float32)
# Correlated inputs (so error feedback matters), one column never reached.
X = rng.standard_normal((N, C)) @ (np.eye(C) + 0.3 * rng.standard_normal((C, C)))
X[:, 5] = 0.0
H = (X.T @ X).astype(np.float32)


def fit_sym(x, h, shift=0.0):
    """Exhaustive: every k (the k largest |x - shift| non-zero), best weighted error."""
    a = np.abs(x - shift)
    order = np.argsort(-a, kind="stable")
    best, alpha = None, 0.0
    for k in range(1, len(x) + 1):
        idx = order[:k]
        if h[idx].sum() <= 0:
            continue
        al = (h[idx] * a[idx]).sum() / h[idx].sum()
        rest = np.setdiff1d(np.arange(len(x)), idx)
        err = (h[idx] * (a[idx] - al) ** 2).sum() + (h[rest] * a[rest] ** 2).sum()
        if best is None or err < best - 1e-15:
            best, alpha = err, al
    return alpha


def fit_shift(x, h):
    g = (h * x).sum() / h.sum()
    a = fit_sym(x, h, g)
    for _ in range(10):
        if a <= 0:
            break
        t = np.clip(np.round((x - g) / a), -1, 1)
        A = np.array([[(h * t * t).sum(), (h * t).sum()], [(h * t).sum(), h.sum()]])
        b = np.array([(h * x * t).sum(), (h * x).sum()])
        det = np.linalg.det(A)
        if not det > 1e-12 * A[0, 0] * A[1, 1]:
            break
        na, ng = np.linalg.solve(A, b)
        if not na > 0:
            break
        same = na == a and ng == g
        a, g = na, ng
        if same:
            break
    return a, g


def fit_uniform(x, h, bits):
    L = 2 ** bits - 1
    mn, mx = min(x.min(), 0.0), max(x.max(), 0.0)
    best, out = None, (0.0, 0.0)
    for k in range(20):
        p = 1.0 - 0.025 * k
        lo, hi = p * mn, p * mx
        s = (hi - lo) / L
        if not s > 0:
            break
        z = np.round(-lo / s)
        c = np.clip(np.round(x / s) + z, 0, L)
        e = (h * (x - s * (c - z)) ** 2).sum()
        if best is None or e < best:
            best, out = e, (s, z)
    return out


def quant(grid, bits, w, s, z):
    if grid == "uniform":
        L = 2 ** bits - 1
        c = np.clip(np.round(w / max(s, 1e-8)) + z, 0, L)
        return max(s, 1e-8) * (c - z), c
    t = np.clip(np.round((w - z) / max(s, 1e-6)), -1, 1) if s > 0 or grid == "shift" else np.zeros_like(w)
    return max(s, 1e-6) * t + z, t


def gptq(grid, G, bits):
    W0 = W.astype(np.float64)
    Wk = W0.copy()
    Hd = H.astype(np.float64).copy()
    dead = np.diag(Hd) == 0
    Hd[dead, dead] = 1.0
    Wk[:, dead] = 0.0
    hdiag = np.diag(Hd).copy()
    Hd += DAMP * hdiag.mean() * np.eye(C)
    U = np.linalg.cholesky(np.linalg.inv(Hd)).T  # inv(H') = U^T U, U upper
    ng = (C + G - 1) // G
    Q, T = np.zeros((R, C)), np.zeros((R, C))
    scale, shift = np.zeros((R, ng)), np.zeros((R, ng))
    for i in range(C):
        g = i // G
        if i % G == 0:
            e = min(i + G, C)
            for r in range(R):
                x, h = Wk[r, i:e], hdiag[i:e]
                if grid == "sym":
                    scale[r, g] = fit_sym(x, h)
                elif grid == "shift":
                    scale[r, g], shift[r, g] = fit_shift(x, h)
                else:
                    scale[r, g], shift[r, g] = fit_uniform(x, h, bits)
        for r in range(R):
            Q[r, i], T[r, i] = quant(grid, bits, Wk[r, i], scale[r, g], shift[r, g])
        err = (Wk[:, i] - Q[:, i]) / U[i, i]
        Wk[:, i + 1:] -= np.outer(err, U[i, i + 1:])
    Hf = H.astype(np.float64)
    dW = W0 - Q
    rel = np.trace(dW @ Hf @ dW.T) / np.trace(W0 @ Hf @ W0.T)
    return Q, T, scale, shift, rel


recs = []


def put(a):
    a = np.asarray(a, dtype="<f4").ravel()
    recs.append(struct.pack("<I", a.size) + a.tobytes())


put(W)
put(H)
for grid, G, bits in CASES:
    Q, T, s, z, rel = gptq(grid, G, bits)
    put(Q), put(T), put(s), put(z), put([rel])
    print(f"{grid:8s} G={G:3d} bits={bits}: rel_err {rel:.5f}")
with open(OUT, "wb") as f:
    f.write(b"".join(recs))
print("wrote", OUT)
