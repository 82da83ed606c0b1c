#!/usr/bin/python3
"""Reference per-choice log-likelihoods and zero-shot metrics for the tiny
random LLaMA (tests/fixtures/tiny_llama.bin), in float64 with PyTorch.

Each choice is scored from scratch on the whole sequence context + continuation
(no KV cache), as lm-evaluation-harness scores a "multiple_choice" request:
the sum over continuation tokens of log softmax(logits[pos - 1])[token].
acc = argmax of the sums, acc_norm = argmax of sum / norm_len (first index on
ties), standard errors = sample std (n - 1) / sqrt(n).

The model has no tokenizer, so items are token-id sequences chosen to exercise
tern's cache sharing: one shared context (ARC-like), contexts that differ only
at the end (WinoGrande-like), a single-token context, one-token
continuations, and choices that share a prefix.

Writes tests/fixtures/eval_tiny.bin (regenerate with
`/usr/bin/python3 tests/ref/eval_ref.py`), little-endian:
  int32 n_items
  per item: int32 n_choices, int32 gold,
            per choice: int32 n_ctx, int32 ctx[n_ctx], int32 n_cont, int32 cont[n_cont],
                        float64 norm_len, float64 loglik, int32 greedy
  float64 acc, acc_se, acc_norm, acc_norm_se
"""
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import tiny_llama_ref as ref  # noqa: E402  (builds the same weights, seed 1234)

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "eval_tiny.bin")
BOS = 1


def loglik(ctx, cont):
    seq = torch.tensor(ctx + cont)
    logp = ref.forward(seq).log_softmax(-1)
    total, greedy = 0.0, True
    for i, tok in enumerate(cont):
        row = logp[len(ctx) - 1 + i]
        total += row[tok].item()
        greedy &= bool(row[tok] >= row.max())
    return total, greedy


def make_items(g):
    r = lambda n: torch.randint(3, ref.VOCAB, (n,), generator=g).tolist()
    items = []
    # ARC-like: one context, four continuations of different lengths.
    ctx = [BOS] + r(12)
    items.append(([ctx] * 4, [r(3), r(1), r(5), r(2)], 2))
    # The same context again with choices sharing a prefix.
    common = r(2)
    items.append(([ctx] * 3, [common + r(2), common + r(1), common], 0))
    # WinoGrande-like: contexts differ in their last token(s), shared continuation.
    pre = [BOS] + r(9)
    cont = r(4)
    items.append(([pre + r(1), pre + r(2)], [cont, cont], 1))
    # Single-token context (BOS only); one-token continuations.
    items.append(([[BOS]] * 3, [r(1), r(1), r(1)], 1))
    # A longer context (near the model's 64 positions) and two choices.
    long_ctx = [BOS] + r(50)
    items.append(([long_ctx] * 2, [r(6), r(7)], 0))
    # Unrelated contexts per choice.
    items.append(([[BOS] + r(5), [BOS] + r(8)], [r(2), r(3)], 0))
    return items


def mean_se(xs):
    n = len(xs)
    t = torch.tensor(xs, dtype=torch.float64)
    return t.mean().item(), (t.std(unbiased=True).item() / n ** 0.5) if n > 1 else 0.0


def main():
    # The imported module must reproduce the committed checkpoint's logits.
    with open(os.path.join(os.path.dirname(OUT), "tiny_llama.logits.bin"), "rb") as f:
        n, vocab = struct.unpack("<2i", f.read(8))
        toks = list(struct.unpack(f"<{n}i", f.read(4 * n)))
        want = torch.tensor(struct.unpack(f"<{n * vocab}f", f.read(4 * n * vocab))).view(n, vocab).double()
    assert (ref.forward(torch.tensor(toks)) - want).abs().max() < 1e-4, "tiny_llama_ref no longer matches"

    g = torch.Generator().manual_seed(77)
    items = make_items(g)
    acc, acc_norm = [], []
    with open(OUT, "wb") as f:
        f.write(struct.pack("<i", len(items)))
        for ctxs, conts, gold in items:
            f.write(struct.pack("<2i", len(ctxs), gold))
            lls, norms = [], []
            for ctx, cont in zip(ctxs, conts):
                ll, greedy = loglik(ctx, cont)
                norm = float(3 * len(cont) + 1)  # stands in for the choice's byte length
                lls.append(ll)
                norms.append(ll / norm)
                f.write(struct.pack(f"<i{len(ctx)}i", len(ctx), *ctx))
                f.write(struct.pack(f"<i{len(cont)}i", len(cont), *cont))
                f.write(struct.pack("<2di", norm, ll, int(greedy)))
            acc.append(float(max(range(len(lls)), key=lambda i: (lls[i], -i)) == gold))
            acc_norm.append(float(max(range(len(norms)), key=lambda i: (norms[i], -i)) == gold))
        a, a_se = mean_se(acc)
        an, an_se = mean_se(acc_norm)
        f.write(struct.pack("<4d", a, a_se, an, an_se))
    print(f"wrote {OUT}: {len(items)} items, acc {a:.4f} ± {a_se:.4f}, acc_norm {an:.4f} ± {an_se:.4f}")


if __name__ == "__main__":
    main()
