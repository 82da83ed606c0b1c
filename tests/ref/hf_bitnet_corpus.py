#!/usr/bin/python3
"""Bad BitNet Hugging Face models for tests/corpus/hf (test_corpus, fuzz_hf).

Each file is fuzz/fuzz_hf.c's container: u32 little-endian length of the
config.json text, the text, then one safetensors file. The base is a tiny
valid BitNetForCausalLM (1 layer, hidden 32, packed 2-bit linears +
weight_scale, transformers' pack_weights layout); every file breaks one thing,
and tern must refuse it with a one-line error naming the file. The valid base
itself is tests/fixtures/tiny_bitnet_min.hf.
Run: python3 tests/ref/hf_bitnet_corpus.py
"""
import json
import os
import struct

import torch
from safetensors.torch import save

from transformers.integrations.bitnet import pack_weights

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus", "hf")
D, H, V = 32, 32, 16
CFG = {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "hidden_size": D, "num_hidden_layers": 1,
       "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": H, "vocab_size": V,
       "hidden_act": "relu2", "tie_word_embeddings": True,
       "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                               "quantization_mode": "offline"}}
LIN = {"self_attn.q_proj": (D, D), "self_attn.k_proj": (D, D), "self_attn.v_proj": (D, D),
       "self_attn.o_proj": (D, D), "mlp.gate_proj": (H, D), "mlp.up_proj": (H, D), "mlp.down_proj": (D, H)}


def base():
    g = torch.Generator().manual_seed(7)
    t = {"model.embed_tokens.weight": torch.randn(V, D, generator=g).to(torch.bfloat16),
         "model.norm.weight": torch.ones(D, dtype=torch.bfloat16)}
    p = "model.layers.0."
    for n in ("input_layernorm", "post_attention_layernorm", "self_attn.attn_sub_norm"):
        t[p + n + ".weight"] = torch.ones(D, dtype=torch.bfloat16)
    t[p + "mlp.ffn_sub_norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    for n, shape in LIN.items():
        t[p + n + ".weight"] = pack_weights(torch.randint(-1, 2, shape, generator=g, dtype=torch.int8))
        t[p + n + ".weight_scale"] = torch.tensor([0.125], dtype=torch.bfloat16)
    return t


def write(name, tensors, cfg=CFG, out=OUT):
    text = json.dumps(cfg).encode()
    with open(os.path.join(out, name), "wb") as f:
        f.write(struct.pack("<I", len(text)) + text + save(tensors))


def with_cfg(**quant):
    c = json.loads(json.dumps(CFG))
    c["quantization_config"].update(quant)
    return c


def main():
    os.makedirs(OUT, exist_ok=True)
    # The valid base (test_bitnet loads it; fuzz_hf's seed).
    write("tiny_bitnet_min.hf", base(), out=os.path.join(OUT, "..", "..", "fixtures"))
    q = "model.layers.0.self_attn.q_proj."
    t = base(); del t[q + "weight_scale"]; write("bitnet_missing_weight_scale.hf", t)
    t = base(); t[q + "weight"] = t[q + "weight"].reshape(4, 64); write("bitnet_packed_shape_mismatch.hf", t)
    t = base(); t[q + "weight"] = t[q + "weight"][:7].clone(); write("bitnet_packed_rows_short.hf", t)
    t = base(); t[q + "weight"] = torch.zeros(D, D); write("bitnet_float_weight_offline.hf", t)
    t = base(); t[q + "weight_scale"] = torch.zeros(1, dtype=torch.bfloat16); write("bitnet_weight_scale_zero.hf", t)
    t = base(); t[q + "weight_scale"] = torch.ones(2, dtype=torch.bfloat16); write("bitnet_weight_scale_two.hf", t)
    t = base(); t[q + "weight_scale"] = torch.ones(1, dtype=torch.uint8); write("bitnet_weight_scale_u8.hf", t)
    t = base(); t[q + "weight"][3, 5] = 0xFF; write("bitnet_code_3.hf", t)
    write("bitnet_linear_class_unknown.hf", base(), with_cfg(linear_class="fastlinear"))
    write("bitnet_use_rms_norm.hf", base(), with_cfg(use_rms_norm=True))
    write("bitnet_quant_method_gptq.hf", base(), with_cfg(quant_method="gptq"))
    write("bitnet_not_converted_q.hf", base(), with_cfg(modules_to_not_convert=["model.layers.0.self_attn.q_proj"]))
    c = dict(CFG); del c["quantization_config"]; write("bitnet_no_quantization_config.hf", base(), c)
    c = dict(CFG); c["hidden_act"] = "gelu"; write("bitnet_hidden_act_gelu.hf", base(), c)
    t = base(); del t["model.layers.0.mlp.ffn_sub_norm.weight"]; write("bitnet_missing_sub_norm.hf", t)
    with open(os.path.join(OUT, "container_truncated.hf"), "wb") as f:
        f.write(struct.pack("<I", 1000) + b"{}")


if __name__ == "__main__":
    main()
