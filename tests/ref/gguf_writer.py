"""A small GGUF v2/v3 writer for tern's test fixtures and malformed corpus.

Written from the GGUF format description: "GGUF", u32 version, u64 tensor
count, u64 metadata count, metadata (string key, u32 type, value), tensor infos
(string name, u32 n_dims, u64 ne[] innermost first, u32 type, u64 offset),
padding to the alignment, then the tensor data. Strings are a u64 length and
the bytes. Everything little-endian.
"""
import struct

# Metadata value types.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
        U64: "<Q", I64: "<q", F64: "<d"}

# ggml tensor types: id, values per block, bytes per block.
GGML = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20),
        "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q4_K": (12, 256, 144),
        "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "BF16": (30, 1, 2),
        "Q2_K": (10, 256, 84), "Q3_K": (11, 256, 110), "IQ4_NL": (20, 32, 18), "IQ4_XS": (23, 256, 136)}


def gstr(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    return struct.pack("<Q", len(s)) + s


def encode(vtype, value):
    """Encodes a value of `vtype`; arrays are (element_type, [items])."""
    if vtype == STRING:
        return gstr(value)
    if vtype == ARRAY:
        etype, items = value
        return struct.pack("<IQ", etype, len(items)) + b"".join(encode(etype, x) for x in items)
    return struct.pack(_FMT[vtype], value)


class Writer:
    def __init__(self, version=3, alignment=32):
        self.version, self.alignment = version, alignment
        self.kvs, self.tensors = [], []

    def kv(self, key, vtype, value):
        self.kvs.append((key, vtype, value))
        return self

    def tensor(self, name, ne, type_name, raw, offset=None):
        """ne innermost first (GGUF order); raw: the encoded bytes. A type name
        not in GGML may be given as an int id (raw is then taken as is);
        `offset` overrides the computed data offset (for malformed files)."""
        if isinstance(type_name, int):
            tid = type_name
        else:
            tid, block, size = GGML[type_name]
            n = 1
            for d in ne:
                n *= d
            assert ne[0] % block == 0 and len(raw) == n // block * size, (name, len(raw))
        self.tensors.append((name, list(ne), tid, bytes(raw), offset))
        return self

    def build(self):
        a = self.alignment
        out = b"GGUF" + struct.pack("<IQQ", self.version, len(self.tensors), len(self.kvs))
        for key, vtype, value in self.kvs:
            out += gstr(key) + struct.pack("<I", vtype) + encode(vtype, value)
        offset, data = 0, b""
        for name, ne, tid, raw, forced in self.tensors:
            out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
            out += struct.pack("<IQ", tid, offset if forced is None else forced)
            data += raw + b"\0" * (-len(raw) % a)
            offset = len(data)
        out += b"\0" * (-len(out) % a)
        return out + data
