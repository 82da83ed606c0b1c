#!/usr/bin/python3
"""BitNet b1.58 fixtures and their Hugging Face logits (tests/test_bitnet.c).

Writes two tiny checkpoints the way the published ones are stored, and the
logits Hugging Face transformers computes for them:

  tests/fixtures/tiny_bitnet/        BitNetForCausalLM, quantization_config
      {quant_method: bitnet, linear_class: autobitlinear, quantization_mode:
      offline} as in microsoft/bitnet-b1.58-2B-4T; tied embeddings.
  tests/fixtures/tiny_bitnet_llama/  LlamaForCausalLM with {quant_method: bitnet}
      and the default linear_class "bitlinear" (the Falcon3-1.58bit style);
      RoPE given as transformers 5's rope_parameters (theta 50000).
  tests/fixtures/tiny_bitnet_online/ BitNetForCausalLM with quantization_mode
      "online" (as microsoft/bitnet-b1.58-2B-4T-bf16): bf16 master weights that
      AutoBitLinear ternarizes in every forward (WeightQuant: s = 1/max(mean|W|,
      1e-5) per tensor, W -> clamp(round(W s), -1, 1) / s); 1 layer.
  tests/fixtures/tiny_bitnet.gguf    the tiny_bitnet weights as llama.cpp's
      converter writes the "bitnet" architecture (gguf-py: general.architecture
      bitnet, bitnet.* keys, blk.N.attn_sub_norm / ffn_sub_norm, q/k rows in
      Hugging Face order since llama.cpp runs bitnet with NEOX RoPE, output
      tied to token_embd): layer 0's linears as F16 values T*a, layer 1's as
      F32 codes T with the optional blk.N.*.scale tensors (a, multiplied).
      No tokenizer. llama.cpp's bitnet graph gates the FFN with SiLU, so its
      oracle is the same HF model with hidden_act "silu".
  tests/fixtures/tiny_bitnet_tq.gguf  the same layout for a 1-layer model of
      width 256 (TQ blocks are 256 wide) with the linears quantized as the
      converter's --outtype tq2_0 / tq1_0 does (gguf-py quants): q/k/v/o TQ2_0,
      gate/up/down TQ1_0, token_embd F16; oracle: its HF twin (written to a
      temporary directory) with hidden_act "silu".
  tests/fixtures/tiny_bitnet*.logits.bin: int32 n_seq, int32 vocab, then per
      sequence int32 n, int32 tokens[n], float32 logits[n, vocab].

Storage (transformers/integrations/bitnet.py, pack_weights/unpack_weights):
each decoder linear's weight [out, in] holds ternary T in {-1,0,1}; it is
stored as uint8 [out/4, in] where byte (r, c) holds T+1 of rows r, r+out/4,
r+2out/4, r+3out/4 (column c) in bits 0-1, 2-3, 4-5, 6-7; plus `weight_scale`
of shape [1] (bf16 here, as in the published checkpoint).
  autobitlinear (offline): W = T * weight_scale (AutoBitLinear multiplies).
  bitlinear:               W = T / weight_scale (BitLinear divides).
Activations of every converted linear: s = 127 / max(max|x_token|, 1e-5),
x -> clamp(round_half_even(x s), -128, 127) / s, per token (ActQuant /
BitLinear.activation_quant). lm_head is not converted.

The logits come from transformers' own loading (from_pretrained with the
bitnet quantizer: needs `accelerate`) and forward in float32 (torch.compile
disabled, which changes nothing numerically); the script checks the loaded
modules are AutoBitLinear / BitLinear with the codes written.
Run: TORCHDYNAMO_DISABLE=1 python3 tests/ref/bitnet_ref.py
"""
import json
import os
import shutil
import struct

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from transformers import AutoModelForCausalLM  # noqa: E402
from transformers.integrations.bitnet import AutoBitLinear, BitLinear, pack_weights, unpack_weights  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
TOK = os.path.join(FIX, "tiny_hf")  # reuse its byte-level BPE tokenizer (281 tokens + 4 added)

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
SEQS = [[281, 5, 17, 200, 33, 99, 7, 150], [281, 42], [3, 3, 3, 250, 1, 0, 284, 12, 77, 61, 5]]


def base_config(arch, model_type):
    return {
        "architectures": [arch], "model_type": model_type,
        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 96, "vocab_size": 285, "max_position_embeddings": 128,
        "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "bos_token_id": 281, "eos_token_id": 283,
        "torch_dtype": "bfloat16", "attention_bias": False,
    }


def bf16(t):
    return t.to(torch.bfloat16)


def make(name, cfg, g):
    out = os.path.join(FIX, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    D, H, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = D // cfg["num_attention_heads"]
    qd, kvd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = {"self_attn.q_proj": (qd, D), "self_attn.k_proj": (kvd, D), "self_attn.v_proj": (kvd, D),
              "self_attn.o_proj": (D, qd), "mlp.gate_proj": (H, D), "mlp.up_proj": (H, D),
              "mlp.down_proj": (D, H)}
    divide = cfg["quantization_config"].get("linear_class", "bitlinear") == "bitlinear"
    online = cfg["quantization_config"].get("quantization_mode") == "online"
    bitnet = cfg["model_type"] == "bitnet"
    sd, codes = {}, {}
    sd["model.embed_tokens.weight"] = bf16(torch.randn(V, D, generator=g))
    sd["model.norm.weight"] = bf16(1 + 0.1 * torch.randn(D, generator=g))
    if not cfg.get("tie_word_embeddings"):
        sd["lm_head.weight"] = bf16(0.1 * torch.randn(V, D, generator=g))
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = bf16(1 + 0.1 * torch.randn(D, generator=g))
        sd[p + "post_attention_layernorm.weight"] = bf16(1 + 0.1 * torch.randn(D, generator=g))
        if bitnet:
            sd[p + "self_attn.attn_sub_norm.weight"] = bf16(1 + 0.1 * torch.randn(D, generator=g))
            sd[p + "mlp.ffn_sub_norm.weight"] = bf16(1 + 0.1 * torch.randn(H, generator=g))
        for lin in LINEARS:
            rows, cols = shapes[lin]
            t = torch.randint(-1, 2, (rows, cols), generator=g, dtype=torch.int8)
            codes[p + lin] = t.clone()
            # mean|W| of a trained layer ~ 1/sqrt(cols); divide-style stores its reciprocal.
            a = float(torch.empty(1).uniform_(0.6, 1.4, generator=g)) / cols ** 0.5
            if online:  # a float master weight (about a/cols^0.5 in size)
                sd[p + lin + ".weight"] = bf16(a * torch.randn(rows, cols, generator=g))
                continue
            sd[p + lin + ".weight"] = pack_weights(t.clone())
            sd[p + lin + ".weight_scale"] = bf16(torch.tensor([1 / a if divide else a]))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOK, fn), os.path.join(out, fn))
    return out, codes


def check_loaded(model, codes, cls):
    if cls is None:
        return
    for name, t in codes.items():
        mod = model.get_submodule(name)
        assert isinstance(mod, cls), (name, type(mod))
        w = mod.weight
        if cls is BitLinear:  # keeps the packed bytes; unpack with the integration's own code
            w = unpack_weights(w, dtype=torch.float32)
        assert torch.equal(w.float(), t.float()), name


def logits_file(path, model, vocab):
    with open(path, "wb") as f:
        f.write(struct.pack("<ii", len(SEQS), vocab))
        for s in SEQS:
            with torch.no_grad():
                lg = model(torch.tensor([s])).logits[0].float().numpy()
            f.write(struct.pack("<i", len(s)) + np.asarray(s, np.int32).tobytes() + lg.astype(np.float32).tobytes())


def write_gguf(hf_dir, path, tq=False):
    import gguf
    from safetensors.torch import load_file
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    sd = load_file(os.path.join(hf_dir, "model.safetensors"))
    D, H = cfg["hidden_size"], cfg["intermediate_size"]
    w = gguf.GGUFWriter(path, "bitnet")
    w.add_name("tern tiny bitnet gguf")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(D)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(H)
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)  # as BitnetModel.set_gguf_parameters
    w.add_rope_scaling_factor(1.0)
    f32 = lambda t: t.float().numpy()
    emb = f32(sd["model.embed_tokens.weight"])
    w.add_tensor("token_embd.weight", emb.astype(np.float16) if tq else emb)
    w.add_tensor("output_norm.weight", f32(sd["model.norm.weight"]))
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    norms = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.attn_sub_norm": "attn_sub_norm", "mlp.ffn_sub_norm": "ffn_sub_norm"}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        for hf, g in norms.items():
            w.add_tensor(f"blk.{l}.{g}.weight", f32(sd[p + hf + ".weight"]))
        for hf, g in names.items():
            t = unpack_weights(sd[p + hf + ".weight"], dtype=torch.float32)
            a = sd[p + hf + ".weight_scale"].float()
            if tq:
                qt = gguf.GGMLQuantizationType.TQ2_0 if g.startswith("attn") else gguf.GGMLQuantizationType.TQ1_0
                w.add_tensor(f"blk.{l}.{g}.weight", gguf.quants.quantize((t * a).numpy(), qt), raw_dtype=qt)
            elif l == 0:
                w.add_tensor(f"blk.{l}.{g}.weight", (t * a).numpy().astype(np.float16))
            else:
                w.add_tensor(f"blk.{l}.{g}.weight", t.numpy())
                w.add_tensor(f"blk.{l}.{g}.scale", a.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    g = torch.Generator().manual_seed(1158)
    cfg = base_config("BitNetForCausalLM", "bitnet")
    cfg.update({"hidden_act": "relu2", "tie_word_embeddings": True, "_name_or_path": "tern/tiny-bitnet",
                "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                        "quantization_mode": "offline"}})
    out, codes = make("tiny_bitnet", cfg, g)
    m = torch.nn.Module.float(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32))  # bf16 codes/scales widen exactly
    check_loaded(m, codes, AutoBitLinear)
    logits_file(out + ".logits.bin", m, cfg["vocab_size"])
    write_gguf(out, out + ".gguf")
    m = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, hidden_act="silu")
    m = torch.nn.Module.float(m)
    assert m.config.hidden_act == "silu"
    logits_file(out + "_gguf.logits.bin", m, cfg["vocab_size"])

    # TQ GGUF: a width-256 twin, its HF form only in a temporary directory.
    import tempfile
    cfg = base_config("BitNetForCausalLM", "bitnet")
    cfg.update({"hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 1, "hidden_act": "relu2",
                "tie_word_embeddings": True,
                "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                        "quantization_mode": "offline"}})
    with tempfile.TemporaryDirectory() as tmp:
        global FIX
        fix, FIX = FIX, tmp
        out, codes = make("tq", cfg, torch.Generator().manual_seed(256))
        FIX = fix
        sd = load_file(os.path.join(out, "model.safetensors"))  # F16-exact embedding, as the GGUF stores it
        sd["model.embed_tokens.weight"] = sd["model.embed_tokens.weight"].to(torch.float16).to(torch.bfloat16)
        save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
        write_gguf(out, os.path.join(FIX, "tiny_bitnet_tq.gguf"), tq=True)
        m = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, hidden_act="silu")
        logits_file(os.path.join(FIX, "tiny_bitnet_tq.logits.bin"), torch.nn.Module.float(m), cfg["vocab_size"])

    cfg = base_config("BitNetForCausalLM", "bitnet")
    cfg.update({"hidden_act": "relu2", "tie_word_embeddings": True, "_name_or_path": "tern/tiny-bitnet-online",
                "num_hidden_layers": 1,
                "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                        "quantization_mode": "online"}})
    out, codes = make("tiny_bitnet_online", cfg, torch.Generator().manual_seed(2026))  # the others keep their draws
    m = torch.nn.Module.float(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32))
    mod = m.get_submodule("model.layers.0.self_attn.q_proj")
    assert isinstance(mod, AutoBitLinear) and mod.online_quant
    logits_file(out + ".logits.bin", m, cfg["vocab_size"])

    cfg = base_config("LlamaForCausalLM", "llama")
    # transformers 5 spelling of the RoPE settings (save_pretrained writes it).
    del cfg["rope_theta"]
    cfg["rope_parameters"] = {"rope_theta": 50000.0, "rope_type": "default"}
    cfg.update({"hidden_act": "silu", "tie_word_embeddings": False, "_name_or_path": "tern/tiny-bitnet-llama",
                "quantization_config": {"quant_method": "bitnet"}})
    out, codes = make("tiny_bitnet_llama", cfg, g)
    m = torch.nn.Module.float(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32))  # bf16 codes/scales widen exactly
    check_loaded(m, codes, BitLinear)
    logits_file(out + ".logits.bin", m, cfg["vocab_size"])


if __name__ == "__main__":
    main()
