#!/usr/bin/python3
"""Writes tests/fixtures/tiny_hf/: a tiny random LLaMA in Hugging Face layout
(config.json, two BF16 safetensors shards + index, byte-level BPE
tokenizer.json, tokenizer_config.json), and tests/fixtures/tiny_hf.expected.bin:
every tensor as tern must load it (tern names, q/k rows permuted to the
interleaved RoPE layout).

The safetensors files are written by hand from the format description (no
safetensors package). Run with Debian's /usr/bin/python3 (torch + numpy).

tiny_hf.expected.bin:
  b"TERNEXP1", u32 count, then per tensor:
  u32 name length, name, u32 ndim, i64 dims[ndim], u16 values[numel]
Each value is the high 16 bits of the expected float32; all values are
bf16-representable (checked below), so widening them by << 16 is exact and
halves the file.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
OUT = os.path.join(ROOT, "tiny_hf")

DIM, LAYERS, HEADS, KV_HEADS, HIDDEN = 32, 2, 4, 2, 48
HD = DIM // HEADS


def bytes_to_unicode():
    """GPT-2's byte -> printable character map used by byte-level BPE."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def make_tokenizer():
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    sp = b2u[ord(" ")]  # 'Ġ'
    pairs = [("t", "h"), ("h", "e"), ("th", "e"), (sp, "t"), (sp + "t", "he"), ("i", "n"), (sp, "a"), ("e", "r"),
             ("o", "n"), (sp, "s"), ("a", "n"), ("r", "e"), (sp, "w"), ("o", "u"), (sp + "a", "n"),
             ("an", "d"), (sp + "an", "d"), (sp, "o"), ("e", "d"), ("in", "g"), (sp, "b"),
             (sp + "w", "a"), ("s", "t"), (b2u[0xC3], b2u[0xA9]),
             (sp, b2u[0xC3] + b2u[0xA9])]
    merges = []
    for k, (a, b) in enumerate(pairs):
        assert a in vocab and b in vocab, (a, b)
        vocab.setdefault(a + b, len(vocab))
        # Both spellings HF has used: "a b" strings (older) and [a, b] pairs.
        merges.append(f"{a} {b}" if k % 2 == 0 else [a, b])
    added = []
    for content, special in [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
                             ("<think>", False)]:
        added.append({"id": len(vocab), "content": content, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": not special, "special": special})
        vocab[content] = len(vocab)
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False,
                  # HF writes only the base vocabulary here; added tokens extend it.
                  "vocab": {t: i for t, i in vocab.items() if i < added[0]["id"]},
                  "merges": merges},
    }
    return tok, len(vocab)


def safetensors_bytes(tensors):
    """tensors: list of (name, dtype string, shape, raw bytes)."""
    header, data, off = {"__metadata__": {"format": "pt"}}, b"", 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the reference writer pads the header to 8 bytes
    return struct.pack("<Q", len(h)) + h + data


def rope_permute(w, heads):
    """HF rotate-half rows -> interleaved pairs: tern row 2i = HF row i, 2i+1 = HF row i + hd/2."""
    out = np.empty_like(w)
    for h in range(heads):
        for i in range(HD // 2):
            out[h * HD + 2 * i] = w[h * HD + i]
            out[h * HD + 2 * i + 1] = w[h * HD + i + HD // 2]
    # Same as llama.cpp's convert_hf_to_gguf.py permute (reshape + swapaxes).
    alt = w.reshape(heads, 2, HD // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    assert np.array_equal(out, alt)
    return out


def check_rope_direction(wq, wk):
    """Attention scores with HF's rotate_half RoPE on the HF weights must equal
    interleaved-pair RoPE on the permuted weights: proves the direction."""
    x = np.random.RandomState(1).randn(DIM)
    pos_q, pos_k = 5, 2
    inv = 10000.0 ** (-np.arange(0, HD, 2) / HD)

    def hf_rope(v, pos):
        v = v.reshape(-1, HD)
        cos, sin = np.cos(pos * np.concatenate([inv, inv])), np.sin(pos * np.concatenate([inv, inv]))
        rot = np.concatenate([-v[:, HD // 2:], v[:, :HD // 2]], axis=1)
        return v * cos + rot * sin

    def tern_rope(v, pos):
        v = v.reshape(-1, HD // 2, 2)
        c, s = np.cos(pos * inv), np.sin(pos * inv)
        return np.stack([v[..., 0] * c - v[..., 1] * s, v[..., 0] * s + v[..., 1] * c], -1).reshape(-1, HD)

    q_hf, k_hf = hf_rope(wq @ x, pos_q), hf_rope(wk @ x, pos_k)
    q_t, k_t = tern_rope(rope_permute(wq, HEADS) @ x, pos_q), tern_rope(rope_permute(wk, KV_HEADS) @ x, pos_k)
    for h in range(HEADS):
        g = h // (HEADS // KV_HEADS)
        assert abs(q_hf[h] @ k_hf[g] - q_t[h] @ k_t[g]) < 1e-9
    # And the wrong direction would not agree (the check can fail).
    q_bad = tern_rope(wq @ x, pos_q)
    assert abs(q_hf[0] @ k_hf[0] - q_bad[0] @ k_t[0]) > 1e-6


def main():
    os.makedirs(OUT, exist_ok=True)
    tok, vocab_size = make_tokenizer()
    gen = torch.Generator().manual_seed(1234)

    def rnd(*shape):
        return (torch.randn(*shape, generator=gen) * 0.5).to(torch.bfloat16)

    # HF tensors in checkpoint order, each bf16.
    hf = {"model.embed_tokens.weight": rnd(vocab_size, DIM)}
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        hf[p + "self_attn.q_proj.weight"] = rnd(HEADS * HD, DIM)
        hf[p + "self_attn.q_proj.bias"] = rnd(HEADS * HD)
        hf[p + "self_attn.k_proj.weight"] = rnd(KV_HEADS * HD, DIM)
        hf[p + "self_attn.k_proj.bias"] = rnd(KV_HEADS * HD)
        hf[p + "self_attn.v_proj.weight"] = rnd(KV_HEADS * HD, DIM)
        hf[p + "self_attn.v_proj.bias"] = rnd(KV_HEADS * HD)
        hf[p + "self_attn.o_proj.weight"] = rnd(DIM, HEADS * HD)
        hf[p + "self_attn.o_proj.bias"] = rnd(DIM)
        hf[p + "mlp.gate_proj.weight"] = rnd(HIDDEN, DIM)
        hf[p + "mlp.up_proj.weight"] = rnd(HIDDEN, DIM)
        hf[p + "mlp.down_proj.weight"] = rnd(DIM, HIDDEN)
        hf[p + "input_layernorm.weight"] = rnd(DIM)
        hf[p + "post_attention_layernorm.weight"] = rnd(DIM)
    hf["model.norm.weight"] = rnd(DIM)
    hf["lm_head.weight"] = rnd(vocab_size, DIM)

    def raw_bf16(t):
        return t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()

    # Shard 1: embeddings + layer 0 (+ an unused F32 buffer tern must skip);
    # shard 2: the rest.
    shards = {"model-00001-of-00002.safetensors": [], "model-00002-of-00002.safetensors": []}
    weight_map = {}
    for name, t in hf.items():
        f = "model-00001-of-00002.safetensors" if name.startswith(("model.embed", "model.layers.0.")) \
            else "model-00002-of-00002.safetensors"
        shards[f].append((name, "BF16", tuple(t.shape), raw_bf16(t)))
        weight_map[name] = f
    inv = (1.0 / 10000 ** (np.arange(0, HD, 2) / HD)).astype("<f4")
    shards["model-00001-of-00002.safetensors"].append(
        ("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", inv.shape, inv.tobytes()))
    weight_map["model.layers.0.self_attn.rotary_emb.inv_freq"] = "model-00001-of-00002.safetensors"
    total = 0
    for f, ts in shards.items():
        with open(os.path.join(OUT, f), "wb") as fh:
            fh.write(safetensors_bytes(ts))
        total += sum(len(t[3]) for t in ts)
    with open(os.path.join(OUT, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh, separators=(",", ":"))

    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": DIM,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "intermediate_size": HIDDEN, "vocab_size": vocab_size, "max_position_embeddings": 256,
        "rope_theta": 10000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": False,
        "attention_bias": True, "mlp_bias": False, "hidden_act": "silu",
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "bos_token_id": vocab_size - 4, "eos_token_id": vocab_size - 2, "torch_dtype": "bfloat16",
        "_name_or_path": "tern/tiny-hf-fixture",
    }
    with open(os.path.join(OUT, "config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
    with open(os.path.join(OUT, "tokenizer.json"), "w") as fh:
        json.dump(tok, fh, separators=(",", ":"))  # ensure_ascii: non-ASCII symbols become \u escapes
    tok_cfg = {"add_bos_token": True, "add_prefix_space": False,
               "bos_token": {"content": "<|endoftext|>", "lstrip": False, "normalized": False,
                             "rstrip": False, "single_word": False},
               "eos_token": "<|im_end|>", "pad_token": None, "unk_token": None,
               "model_max_length": 256, "tokenizer_class": "GPT2Tokenizer"}
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as fh:
        json.dump(tok_cfg, fh, indent=2)

    # Expected tern tensors.
    f32 = {n: t.float().numpy() for n, t in hf.items()}
    check_rope_direction(f32["model.layers.0.self_attn.q_proj.weight"].astype(np.float64),
                         f32["model.layers.0.self_attn.k_proj.weight"].astype(np.float64))
    expected = [("token_embd.weight", f32["model.embed_tokens.weight"])]
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        for hn, tn in names.items():
            for kind in ("weight", "bias"):
                if p + hn + "." + kind not in f32:
                    continue
                w = f32[p + hn + "." + kind]
                if tn == "attn_q":
                    w = rope_permute(w, HEADS)
                elif tn == "attn_k":
                    w = rope_permute(w, KV_HEADS)
                expected.append((f"blk.{l}.{tn}.{kind}", w))
        expected.append((f"blk.{l}.attn_norm.weight", f32[p + "input_layernorm.weight"]))
        expected.append((f"blk.{l}.ffn_norm.weight", f32[p + "post_attention_layernorm.weight"]))
    expected.append(("output_norm.weight", f32["model.norm.weight"]))
    expected.append(("output.weight", f32["lm_head.weight"]))
    out = bytearray(b"TERNEXP1" + struct.pack("<I", len(expected)))
    for name, w in expected:
        bits = np.ascontiguousarray(w, dtype="<f4").view("<u4")
        assert not (bits & 0xFFFF).any(), name  # exactly bf16-representable
        out += struct.pack("<I", len(name)) + name.encode() + struct.pack("<I", w.ndim)
        out += struct.pack(f"<{w.ndim}q", *w.shape) + (bits >> 16).astype("<u2").tobytes()
    with open(os.path.join(ROOT, "tiny_hf.expected.bin"), "wb") as fh:
        fh.write(out)
    print(f"wrote {OUT} ({vocab_size} tokens, {len(expected)} tensors)", file=sys.stderr)


if __name__ == "__main__":
    main()
