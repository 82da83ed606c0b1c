#!/usr/bin/env python3
"""Oracle fixtures for llama.cpp's ternary block types TQ1_0 (ggml id 34) and
TQ2_0 (id 35), made with gguf-py (`pip install gguf`; its numpy quantize /
dequantize are the reference): tests/test_tq.c checks tern's reader and block
encoders against them bit for bit. Needs gguf (>= 0.10) and numpy; the tests
themselves need no Python.

tests/fixtures/tq_blocks.gguf (written by gguf-py's GGUFWriter), per TYPE in
TQ1_0, TQ2_0, each 3 rows x 256 (3 blocks):
  TYPE.codes           I8   intended codes T in {-1, 0, 1}: row 0 dense, row 1
                            sparse, row 2 all zero
  TYPE.scales          F16  one scale d per row (fp16-exact; 0 for the zero row)
  TYPE.quant           TYPE gguf-py's quantize() of the floats d * T (its absmax
                            rule recovers exactly d and T, so these are the bytes a
                            correct encoder writes for T and d)
  TYPE.quant.expected  F32  gguf-py's dequantize() of TYPE.quant
  TYPE.raw             TYPE random bytes with random fp16 d (negative ones too):
                            every byte value, TQ1_0 bytes >= 243 and TQ2_0 fields
                            of 3 included, so decoding is checked on all inputs
  TYPE.raw.expected    F32  gguf-py's dequantize() of TYPE.raw

tests/corpus/gguf/tq*.gguf: malformed files for tests/test_corpus.c (written
with tests/ref/gguf_writer.py on gguf_corpus.py's minimal llama). Run this
script after gguf_corpus.py, which empties that directory.

Deterministic: the same bytes every run.
usage: python3 tests/ref/gen_tq.py   (e.g. in a venv with `pip install gguf`)
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gguf_corpus import base, write_files  # noqa: E402

FIXTURE = os.path.join(HERE, "..", "fixtures", "tq_blocks.gguf")
ROWS, COLS = 3, 256
BYTES = {Q.TQ1_0: 54, Q.TQ2_0: 66}


def codes(rng):
    t = np.zeros((ROWS, COLS), np.int8)
    t[0] = rng.integers(-1, 2, COLS)
    t[1] = np.where(rng.random(COLS) < 0.1, rng.choice([-1, 1], COLS), 0)
    t[0, 0], t[1, 5] = 1, -1  # every nonzero row reaches |T| = 1, so absmax = d
    return t


def raw_blocks(rng, qtype):
    blocks = rng.integers(0, 256, (ROWS, BYTES[qtype]), dtype=np.uint8)
    d = (rng.uniform(0.01, 3.0, ROWS) * rng.choice([-1.0, 1.0], ROWS)).astype(np.float16)
    d[0] = abs(d[0])
    blocks[:, -2:] = d.view(np.uint8).reshape(ROWS, 2)  # d is the block's last two bytes
    if qtype == Q.TQ1_0:
        blocks[0, :48] = np.arange(208, 256, dtype=np.uint8)  # the bytes no encoder writes (243..255)
    else:
        blocks[0, :64] = 0xff  # every field 3
    return blocks


def fixture():
    rng = np.random.default_rng(20240534)
    w = gguf.GGUFWriter(FIXTURE, "test")
    w.add_description("TQ1_0 / TQ2_0 oracle fixtures (tests/ref/gen_tq.py)")
    for qtype in (Q.TQ1_0, Q.TQ2_0):
        name = qtype.name
        t = codes(rng)
        d = rng.uniform(0.001, 2.0, ROWS).astype(np.float16)
        d[2] = 0
        x = d.astype(np.float32)[:, None] * t.astype(np.float32)
        q = quantize(x, qtype)
        assert q.shape == (ROWS, BYTES[qtype])
        back = dequantize(q, qtype)
        assert np.array_equal(back, x), name  # gguf-py recovered exactly d and T
        raw = raw_blocks(rng, qtype)
        w.add_tensor(f"{name}.codes", t)
        w.add_tensor(f"{name}.scales", d)
        w.add_tensor(f"{name}.quant", q, raw_dtype=qtype)
        w.add_tensor(f"{name}.quant.expected", back.astype(np.float32))
        w.add_tensor(f"{name}.raw", raw, raw_dtype=qtype)
        w.add_tensor(f"{name}.raw.expected", dequantize(raw, qtype).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {FIXTURE} ({os.path.getsize(FIXTURE)} bytes)")


def corpus():
    rng = np.random.default_rng(7)
    files = {}
    for qtype, tid in ((Q.TQ1_0, 34), (Q.TQ2_0, 35)):
        nb = 2
        data = rng.integers(0, 256, nb * BYTES[qtype], dtype=np.uint8).tobytes()
        whole = base(tensors=[("extra.weight", [256, nb], tid, data)])
        pad = -len(data) % 32
        # The extra tensor's data ends the file: cut into it (past the padding).
        files[f"tq{1 if qtype == Q.TQ1_0 else 2}_truncated.gguf"] = whole[:len(whole) - pad - 20]
    # A TQ2_0 row that is not a whole 256-block.
    files["tq2_row_not_256.gguf"] = base(tensors=[("extra.weight", [64, 4], 35, bytes(66))])
    write_files(files)


if __name__ == "__main__":
    fixture()
    corpus()
