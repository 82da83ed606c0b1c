#!/usr/bin/python3
"""Reference logits for tests/fixtures/tiny_hf, computed the way Hugging Face's
LlamaForCausalLM does: weights as stored (no permutation), rotate-half RoPE with
llama3 frequency scaling, q/k/v/o biases, GQA. float64 throughout.

Writes tests/fixtures/tiny_hf.logits.bin: int32 n, int32 vocab, int32 tokens[n],
float32 logits[n, vocab]. tern must match after its own loading (which permutes
Q/K rows into the adjacent-pair RoPE layout).
"""
import json
import math
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(__file__)
DIR = os.path.join(HERE, "..", "fixtures", "tiny_hf")


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[8 + n + b:8 + n + e]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype=np.float32)
        else:
            raise ValueError(info["dtype"])
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).astype(np.float64))
    return out


def llama3_inv_freq(cfg, hd):
    rs = cfg["rope_scaling"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    inv = inv.double()
    factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / hi) & (wavelen <= old / lo)
    return torch.where(medium, smoothed, scaled)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def main():
    cfg = json.load(open(os.path.join(DIR, "config.json")))
    index = json.load(open(os.path.join(DIR, "model.safetensors.index.json")))
    W = {}
    for shard in sorted(set(index["weight_map"].values())):
        W.update(read_safetensors(os.path.join(DIR, shard)))
    D, L, H, KV = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    HD, V, eps = D // H, cfg["vocab_size"], cfg["rms_norm_eps"]
    torch.manual_seed(3)
    tokens = torch.randint(0, V, (24,))
    T = len(tokens)
    ang = torch.arange(T).double()[:, None] * llama3_inv_freq(cfg, HD)[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    norm = lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    lin = lambda x, p: x @ W[p + ".weight"].T + (W[p + ".bias"] if p + ".bias" in W else 0)
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    x = W["model.embed_tokens.weight"][tokens]
    for l in range(L):
        p = f"model.layers.{l}."
        h = norm(x, W[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").view(T, H, HD)
        k = lin(h, p + "self_attn.k_proj").view(T, KV, HD)
        v = lin(h, p + "self_attn.v_proj").view(T, KV, HD)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        att = (torch.einsum("thd,shd->hts", q, k) / math.sqrt(HD) + mask).softmax(-1)
        x = x + lin(torch.einsum("hts,shd->thd", att, v).reshape(T, D), p + "self_attn.o_proj")
        h = norm(x, W[p + "post_attention_layernorm.weight"])
        x = x + lin(torch.nn.functional.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    logits = norm(x, W["model.norm.weight"]) @ W["lm_head.weight"].T
    with open(os.path.join(HERE, "..", "fixtures", "tiny_hf.logits.bin"), "wb") as f:
        f.write(struct.pack("<2i", T, V))
        f.write(tokens.int().numpy().tobytes())
        f.write(logits.float().numpy().tobytes())
    print("wrote tiny_hf.logits.bin", logits[0, :3].tolist())


if __name__ == "__main__":
    main()
