#!/usr/bin/python3
"""Reference LAMBADA metrics for the tiny random LLaMA (tests/fixtures/tiny_llama.bin),
in float64 with PyTorch, as lm-evaluation-harness's lambada_openai computes them:
each item is one (context, continuation) loglikelihood request scored from scratch;
acc = 1 when every continuation token is the argmax of the logits before it
(`is_greedy`), with the sample standard error; ppl = exp(-mean over items of the
continuation's summed log-likelihood) (lm-eval's `perplexity` aggregation).

Items are token ids (the model has no tokenizer): half of them continue the
context with the model's own greedy tokens (so acc is not trivially 0), the
others with random tokens; one continuation is greedy except its last token.

Writes tests/fixtures/eval_lambada.bin (regenerate with
`/usr/bin/python3 tests/ref/lambada_ref.py`), little-endian:
  int32 n_items
  per item: int32 n_ctx, int32 ctx[n_ctx], int32 n_cont, int32 cont[n_cont],
            float64 loglik, int32 greedy
  float64 acc, acc_se, ppl
"""
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import tiny_llama_ref as ref  # noqa: E402  (the committed checkpoint's weights)
from eval_ref import loglik as score  # noqa: E402  (one request scored from scratch: sum and is_greedy)

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "eval_lambada.bin")
BOS = 1


def greedy_tokens(ctx, n):
    seq = list(ctx)
    for _ in range(n):
        seq.append(int(ref.forward(torch.tensor(seq))[-1].argmax()))
    return seq[len(ctx):]


def main():
    g = torch.Generator().manual_seed(2024)
    r = lambda n: torch.randint(3, ref.VOCAB, (n,), generator=g).tolist()
    items = []
    for k, (n_ctx, n_cont) in enumerate([(8, 1), (12, 3), (5, 2), (20, 1), (3, 4), (30, 2), (10, 1), (15, 5)]):
        ctx = [BOS] + r(n_ctx)
        cont = greedy_tokens(ctx, n_cont) if k % 2 == 0 else r(n_cont)
        items.append((ctx, cont))
    ctx = [BOS] + r(9)  # greedy but for the last token
    cont = greedy_tokens(ctx, 2)
    cont[-1] = (cont[-1] + 1) % ref.VOCAB
    items.append((ctx, cont))
    lls, greedy = [], []
    with open(OUT, "wb") as f:
        f.write(struct.pack("<i", len(items)))
        for ctx, cont in items:
            ll, gr = score(ctx, cont)
            lls.append(ll)
            greedy.append(float(gr))
            f.write(struct.pack(f"<i{len(ctx)}i", len(ctx), *ctx))
            f.write(struct.pack(f"<i{len(cont)}i", len(cont), *cont))
            f.write(struct.pack("<di", ll, int(gr)))
        t = torch.tensor(greedy, dtype=torch.float64)
        acc, acc_se = t.mean().item(), t.std(unbiased=True).item() / math.sqrt(len(items))
        ppl = math.exp(-sum(lls) / len(lls))
        f.write(struct.pack("<3d", acc, acc_se, ppl))
    print(f"wrote {OUT}: {len(items)} items, acc {acc:.4f} ± {acc_se:.4f}, ppl {ppl:.4f}")


if __name__ == "__main__":
    main()
