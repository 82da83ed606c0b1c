#!/usr/bin/python3
"""Independent numpy reading of a GGUF model (SmolLM2-135M Q4_1 by default).

Prints the llama metadata, the tokenizer facts and a few dequantized values of
token_embd.weight (Q8_0) and blk.0.attn_q.weight (Q4_1) as C initialisers for tests/test_gguf_model.c. Written from
the GGUF format description only (no ggml / gguf-py), so it checks tern's C
reader against a second implementation.

usage: /usr/bin/python3 tests/ref/gguf_model_ref.py [MODEL.gguf]
(default: the path printed by scripts/get-model.sh)
"""
import os
import struct
import subprocess
import sys

import numpy as np

SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
          10: "<Q", 11: "<q", 12: "<d"}
# type id -> (name, elements per block, bytes per block)
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
         6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 12: ("Q4_K", 256, 144),
         13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 30: ("BF16", 1, 2)}


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.buf[self.pos:self.pos + n]
        self.pos += n
        return s.decode("utf-8", errors="replace")

    def value(self, t):
        if t in SCALAR:
            return self.take(SCALAR[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError(f"bad value type {t}")


def parse(buf):
    r = Reader(buf)
    assert buf[:4] == b"GGUF"
    r.pos = 4
    version, n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    kv = {}
    for _ in range(n_kv):
        k = r.string()
        kv[k] = r.value(r.take("<I"))
    tensors = {}
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        tensors[name] = (ne, r.take("<I"), r.take("<Q"))
    align = kv.get("general.alignment", 32)
    data_start = (r.pos + align - 1) // align * align
    return version, kv, tensors, data_start


def dequant_q4_1(raw, n):
    blocks = np.frombuffer(raw, dtype=np.uint8)[: n // 32 * 20].reshape(-1, 20)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 4:20]
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float32)
    return (q * d + m).reshape(-1)


def dequant_q8_0(raw, n):
    blocks = np.frombuffer(raw, dtype=np.uint8)[: n // 32 * 34].reshape(-1, 34)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 2:34].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(-1)


DEQUANT = {"Q4_1": dequant_q4_1, "Q8_0": dequant_q8_0}


def print_values(buf, tensors, data_start, name, picks):
    ne, t, off = tensors[name]
    kind = TYPES[t][0]
    n = ne[0] * ne[1]
    w = DEQUANT[kind](buf[data_start + off:], n).reshape(ne[1], ne[0])  # outermost first
    print(f"// {{row, col, value}} of {name} ({kind}, shape {ne[1]}x{ne[0]}), "
          "from tests/ref/gguf_model_ref.py")
    for row, col in picks:
        v = w[row, col]
        print(f"    {{{row}, {col}, {float(v)!r}f}}, // bits 0x{np.float32(v).view(np.uint32):08x}")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else subprocess.check_output(
        [os.path.join(os.path.dirname(__file__), "../../scripts/get-model.sh")]).decode().strip()
    buf = open(path, "rb").read()
    version, kv, tensors, data_start = parse(buf)
    print(f"version {version}, {len(tensors)} tensors, data at {data_start}")
    for k, v in kv.items():
        if isinstance(v, list):
            print(f"  {k}: array[{len(v)}] {v[:3]}")
        else:
            print(f"  {k}: {v!r}")
    types = {}
    for name, (ne, t, off) in tensors.items():
        kind = TYPES.get(t, (str(t),))[0]
        types[kind] = types.get(kind, 0) + 1
    print("tensor types:", types)
    print_values(buf, tensors, data_start, "token_embd.weight",
                 [(0, 0), (0, 1), (1, 31), (2, 575), (100, 300), (1234, 77), (49151, 0), (49151, 575)])
    print_values(buf, tensors, data_start, "blk.0.attn_q.weight",
                 [(0, 0), (5, 17), (63, 32), (575, 575)])


if __name__ == "__main__":
    main()
