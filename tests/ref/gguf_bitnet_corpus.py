#!/usr/bin/python3
"""Bad llama.cpp "bitnet" GGUF files for tests/corpus/gguf (test_corpus, fuzz_gguf).

A tiny valid bitnet model (gguf-py, as llama.cpp's converter lays it out: bitnet.*
keys, attn_sub_norm/ffn_sub_norm, F16 ternary linears, optional per-tensor
.scale) with one thing broken per file; tern must refuse each with a one-line
error naming the file. Run: python3 tests/ref/gguf_bitnet_corpus.py
"""
import os

import numpy as np

import gguf

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus", "gguf")
D, H, V = 32, 32, 16


def write(name, drop=(), scale=None, head_count_kv=2):
    w = gguf.GGUFWriter(os.path.join(OUT, name), "bitnet")
    w.add_context_length(64)
    w.add_embedding_length(D)
    w.add_block_count(1)
    w.add_feed_forward_length(H)
    w.add_head_count(2)
    w.add_head_count_kv(head_count_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(V)
    rng = np.random.default_rng(5)
    t = {"token_embd.weight": rng.standard_normal((V, D), dtype=np.float32),
         "output_norm.weight": np.ones(D, np.float32)}
    for n in ("attn_norm", "ffn_norm", "attn_sub_norm"):
        t[f"blk.0.{n}.weight"] = np.ones(D, np.float32)
    t["blk.0.ffn_sub_norm.weight"] = np.ones(H, np.float32)
    for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
        t[f"blk.0.{n}.weight"] = (rng.integers(-1, 2, (D, D)) * 0.25).astype(np.float16)
    if scale is not None:
        t["blk.0.attn_q.scale"] = np.asarray(scale, np.float32)
    for k, v in t.items():
        if k not in drop:
            w.add_tensor(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    write("bitnet_missing_sub_norm.gguf", drop=("blk.0.attn_sub_norm.weight",))
    write("bitnet_scale_two_values.gguf", scale=[0.5, 0.5])
    write("bitnet_scale_zero.gguf", scale=[0.0])
    write("bitnet_scale_nan.gguf", scale=[float("nan")])
    write("bitnet_bad_head_count_kv.gguf", head_count_kv=3)


if __name__ == "__main__":
    main()
