#!/usr/bin/env python3
"""A random LLaMA-shaped GGUF for the peer benchmark (bench/peer-llamacpp.sh).

Weights are N(0, 0.02) (norms 1), written tensor by tensor in F32 or BF16 so a
2B-parameter model never has to fit in memory as F32. The tokenizer (and its
metadata) is copied from a GGUF that has one (SmolLM2's, vocabulary 49152), so
both engines load the file as a normal model.

usage: make_model.py {768,1b,2b} TOKENIZER_GGUF OUT.gguf [--type f32|bf16] [--seed S]
"""
import argparse

import numpy as np
import gguf

SHAPES = {  # dim, layers, FFN, heads, KV heads: every width a multiple of 256
    "768": (768, 12, 2048, 12, 4),
    "1b": (2048, 16, 5632, 32, 32),
    "2b": (2560, 30, 6912, 20, 5),
}


def copy_tokenizer(src, w):
    r = gguf.GGUFReader(src)
    for name, f in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            etype = f.types[1]
            if etype == gguf.GGUFValueType.STRING:
                vals = [bytes(f.parts[i]).decode("utf-8", "surrogateescape") for i in f.data]
            else:
                vals = [f.parts[i].tolist()[0] for i in f.data]
            w.add_key_value(name, vals, vtype, sub_type=etype)
        elif vtype == gguf.GGUFValueType.STRING:
            w.add_key_value(name, bytes(f.parts[f.data[0]]).decode("utf-8"), vtype)
        else:
            w.add_key_value(name, f.parts[f.data[0]].tolist()[0], vtype)
    vocab = len(r.fields["tokenizer.ggml.tokens"].data)
    return vocab


def to_bf16(a):
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=SHAPES)
    ap.add_argument("tokenizer")
    ap.add_argument("out")
    ap.add_argument("--type", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    dim, layers, ffn, heads, kv_heads = SHAPES[a.shape]
    hd = dim // heads
    w = gguf.GGUFWriter(a.out, "llama")
    vocab = copy_tokenizer(a.tokenizer, w)
    w.add_name(f"random-llama-{a.shape}")
    w.add_context_length(2048)
    w.add_embedding_length(dim)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if a.type == "f32" else gguf.LlamaFileType.MOSTLY_BF16)

    tensors = [("token_embd.weight", (vocab, dim)), ("output_norm.weight", (dim,)), ("output.weight", (vocab, dim))]
    for i in range(layers):
        b = f"blk.{i}."
        tensors += [(b + "attn_norm.weight", (dim,)), (b + "attn_q.weight", (dim, dim)),
                    (b + "attn_k.weight", (kv_heads * hd, dim)), (b + "attn_v.weight", (kv_heads * hd, dim)),
                    (b + "attn_output.weight", (dim, dim)), (b + "ffn_norm.weight", (dim,)),
                    (b + "ffn_gate.weight", (ffn, dim)), (b + "ffn_up.weight", (ffn, dim)),
                    (b + "ffn_down.weight", (dim, ffn))]
    rng = np.random.default_rng(a.seed)

    def make(name, shape):
        if len(shape) == 1:
            return np.ones(shape, np.float32)
        return rng.standard_normal(shape, np.float32) * np.float32(0.02)

    def stored(name, shape):  # norms stay F32, as converters write them
        return "bf16" if a.type == "bf16" and len(shape) == 2 else "f32"

    for name, shape in tensors:
        t = stored(name, shape)
        n = int(np.prod(shape))
        w.add_tensor_info(name, shape, np.dtype(np.float32 if t == "f32" else np.uint16), n * (4 if t == "f32" else 2),
                          raw_dtype=gguf.GGMLQuantizationType.F32 if t == "f32" else gguf.GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape in tensors:
        x = make(name, shape)
        w.write_tensor_data(x if stored(name, shape) == "f32" else to_bf16(x))
    w.close()


if __name__ == "__main__":
    main()
