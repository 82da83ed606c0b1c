#!/usr/bin/python3
"""Writes tests/corpus/gguf/: small malformed GGUF files, one defect each.

tests/test_corpus.c feeds every file to tern_gguf_parse_model and requires a
one-line error naming the file (and, under ASan/UBSan, no invalid access).
Most files are a minimal valid LLaMA (built by `base()`, which tern loads) with
one thing broken; the header attacks are written byte by byte.
usage: /usr/bin/python3 tests/ref/gguf_corpus.py
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_writer import ARRAY, F32, I32, STRING, U32, U64, Writer, gstr  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus", "gguf")
DIM, FFN, HEADS, KV, VOCAB = 8, 16, 2, 1, 4
HD = DIM // HEADS


def f32(n, start=0.0):
    return struct.pack(f"<{n}f", *[start + 0.01 * i for i in range(n)])


def base(arch="llama", tokenizer="gpt2", tokens=None, bos=1, extra_kv=(), tensors=None, alignment=None,
         drop_kv=()):
    """A complete 1-layer LLaMA (dim 8) with a 4-token BPE vocabulary."""
    w = Writer()
    kvs = [("general.architecture", STRING, arch),
           ("llama.embedding_length", U32, DIM), ("llama.block_count", U32, 1),
           ("llama.attention.head_count", U32, HEADS), ("llama.attention.head_count_kv", U32, KV),
           ("llama.feed_forward_length", U32, FFN), ("llama.context_length", U32, 64),
           ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
           ("tokenizer.ggml.model", STRING, tokenizer),
           ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens or ["<eos>", "<bos>", "a", "b"])),
           ("tokenizer.ggml.merges", ARRAY, (STRING, ["a b"])),
           ("tokenizer.ggml.bos_token_id", U32, bos), ("tokenizer.ggml.eos_token_id", U32, 0)]
    if alignment is not None:
        w.alignment = alignment if alignment & (alignment - 1) == 0 else 32
        kvs.append(("general.alignment", U32, alignment))
    for k in [k for k in kvs if k[0] not in drop_kv] + list(extra_kv):
        w.kv(*k)
    shapes = {"token_embd.weight": [DIM, VOCAB], "output_norm.weight": [DIM],
              "blk.0.attn_norm.weight": [DIM], "blk.0.ffn_norm.weight": [DIM],
              "blk.0.attn_q.weight": [DIM, DIM], "blk.0.attn_k.weight": [DIM, KV * HD],
              "blk.0.attn_v.weight": [DIM, KV * HD], "blk.0.attn_output.weight": [DIM, DIM],
              "blk.0.ffn_gate.weight": [DIM, FFN], "blk.0.ffn_up.weight": [DIM, FFN],
              "blk.0.ffn_down.weight": [FFN, DIM]}
    for name, ne in shapes.items():
        n = 1
        for d in ne:
            n *= d
        w.tensor(name, ne, "F32", f32(n))
    for t in tensors or []:
        w.tensor(*t)
    return w.build()


def header(version=3, n_tensors=0, n_kv=0):
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def kv_raw(key, vtype, payload):
    return gstr(key) + struct.pack("<I", vtype) + payload


def nested_arrays(depth):
    """An array holding an array holding ... `depth` levels deep."""
    inner = struct.pack("<IQ", U32, 0)
    for _ in range(depth - 1):
        inner = struct.pack("<IQ", ARRAY, 1) + inner
    return inner


def files():
    good = base()
    yield "empty.gguf", b""
    yield "bad_magic.gguf", b"GGML" + good[4:]
    yield "version1.gguf", good[:4] + struct.pack("<I", 1) + good[8:]
    yield "big_endian.gguf", good[:4] + struct.pack(">I", 3) + good[8:]
    yield "truncated_header.gguf", good[:13]
    yield "huge_tensor_count.gguf", header(n_tensors=2**60) + good[24:]
    yield "huge_kv_count.gguf", header(n_kv=2**62) + good[24:]
    yield "huge_string_length.gguf", header(n_kv=1) + struct.pack("<Q", 2**63) + b"general.name"
    yield "huge_value_string.gguf", header(n_kv=1) + kv_raw("general.name", STRING, struct.pack("<Q", 2**40) + b"x")
    yield "bad_value_type.gguf", header(n_kv=1) + kv_raw("general.name", 13, b"\0" * 8)
    yield "bad_array_type.gguf", header(n_kv=1) + kv_raw("x", ARRAY, struct.pack("<IQ", 77, 1) + b"\0" * 8)
    yield "nested_array_bomb.gguf", header(n_kv=1) + kv_raw("x", ARRAY, nested_arrays(200))
    yield "array_count_bomb.gguf", header(n_kv=1) + kv_raw("x", ARRAY, struct.pack("<IQ", ARRAY, 2**50) +
                                                              struct.pack("<IQ", U32, 0) * 4)
    yield "duplicate_key.gguf", header(n_kv=2) + kv_raw("k", U32, b"\1\0\0\0") * 2
    yield "not_llama.gguf", base(arch="falcon")
    yield "missing_block_count.gguf", base(drop_kv=("llama.block_count",))
    yield "wrong_key_type.gguf", base(drop_kv=("llama.block_count",),
                                      extra_kv=[("llama.block_count", STRING, "one")])
    yield "bad_alignment.gguf", base(alignment=48)
    yield "tensor_outside_file.gguf", base(tensors=[("extra.weight", [8], "F32", f32(8), 2**40)])
    yield "tensor_offset_wraps.gguf", base(tensors=[("extra.weight", [8], "F32", f32(8), 2**64 - 32)])
    yield "misaligned_offset.gguf", base(tensors=[("extra.weight", [8], "F32", f32(8), 4)])
    yield "duplicate_tensor.gguf", base(tensors=[("blk.0.attn_q.weight", [DIM, DIM], "F32", f32(DIM * DIM))])
    yield "dims_overflow.gguf", base(tensors=[("extra.weight", [2**32, 2**32, 2**32], 0, b"")])
    yield "zero_dim.gguf", base(tensors=[("extra.weight", [8, 0], 0, b"")])
    yield "unknown_tensor_type.gguf", base(tensors=[("extra.weight", [32], 99, b"\0" * 32)])
    yield "unsupported_q8k.gguf", base(tensors=[("extra.weight", [256], 15, b"\0" * 292)])  # Q8_K
    yield "row_not_block_multiple.gguf", base(tensors=[("extra.weight", [48], "F32", f32(48))]).replace(
        struct.pack("<Q", 48) + struct.pack("<I", 0), struct.pack("<Q", 48) + struct.pack("<I", 8), 1)
    yield "unknown_tokenizer.gguf", base(tokenizer="bert")
    yield "bad_utf8_token.gguf", base(tokens=["<eos>", "<bos>", "a", "\xff"]).replace(b"\xc3\xbf", b"\xff\xfe", 1)
    yield "token_id_out_of_range.gguf", base(bos=1000)
    yield "scores_count_mismatch.gguf", base(extra_kv=[("tokenizer.ggml.scores", ARRAY, (F32, [0.0] * 3))])
    yield "token_type_wrong_type.gguf", base(extra_kv=[("tokenizer.ggml.token_type", ARRAY, (U64, [1] * 4))])
    yield "bad_token_type.gguf", base(extra_kv=[("tokenizer.ggml.token_type", ARRAY, (I32, [3, 3, 1, 9]))])
    yield "vocab_larger_than_model.gguf", base(extra_kv=[("llama.vocab_size", I32, 3)])
    yield "shape_mismatch.gguf", base().replace(b"blk.0.ffn_down.weight", b"blk.0.ffn_down.weighX")


def write_files(files):
    """Writes {name: bytes} into tests/corpus/gguf/ (the other corpus scripts too)."""
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files ({sum(map(len, files.values()))} bytes) to tests/corpus/gguf/")


def main():
    if "--base" in sys.argv:  # the valid model the defects start from, for checking by hand
        sys.stdout.buffer.write(base())
        return
    # Overwrite, never clear: other generators (gguf_bitnet_corpus.py,
    # lowbit_gguf_ref.py, gen_tq.py, ...) write into the same folder. A case
    # renamed or dropped here leaves its old file: delete that by hand.
    os.makedirs(OUT, exist_ok=True)
    write_files(dict(files()))


if __name__ == "__main__":
    main()
