#!/usr/bin/python3
"""Writes the malformed-input corpora tests/corpus/json/ and
tests/corpus/safetensors/. Every file must be refused by its parser with a
one-line error naming the file (tests/test_corpus.c); the files also seed the
fuzzers (fuzz/fuzz_json.c, fuzz/fuzz_safetensors.c)."""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")

JSON = {
    "empty.json": b"",
    "trailing_comma.json": b'{"a": [1, 2,], "b": 3}',
    "trailing_comma_obj.json": b'{"a": 1, "b": 2,}',
    "unterminated_string.json": b'{"model_type": "llama',
    "bad_escape.json": b'{"a": "x\\qy"}',
    "lone_surrogate.json": b'["\\ud800 alone"]',
    "low_surrogate_first.json": b'["\\udc00\\ud800"]',
    "invalid_utf8.json": b'{"tok": "\xc3\x28"}',
    "overlong_utf8.json": b'["\xe0\x80\xaf"]',
    "depth_bomb.json": b"[" * 5000,
    "leading_zero.json": b'{"vocab_size": 0123}',
    "control_char.json": b'{"a": "line\nbreak"}',
    "trailing_garbage.json": b'{"a": 1} x',
    "missing_colon.json": b'{"a" 1}',
    "huge_exponent.json": b"[1e99999]",
    "bare_word.json": b"{\"a\": True}",
}


def st(header, data=b"", raw_header=None, length=None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


SAFETENSORS = {
    "short.safetensors": b"\x10\x00\x00",
    "header_len_beyond_file.safetensors": st({"a": entry("F32", [1], 0, 4)}, b"\0" * 4, length=1 << 40),
    "header_len_huge.safetensors": struct.pack("<Q", (1 << 64) - 1) + b"{}",
    "header_not_json.safetensors": st(None, b"", raw_header=b"{this is not json}"),
    "header_not_object.safetensors": st(None, b"", raw_header=b"[1, 2, 3]"),
    "header_truncated_json.safetensors": st(None, b"", raw_header=b'{"a": {"dtype": "F32"'),
    "wrong_dtype.safetensors": st({"w": entry("Q4_0", [4], 0, 4)}, b"\0" * 4),
    "unconvertible_dtype.safetensors": st({"ids": entry("I64", [2], 0, 16)}, b"\0" * 16),
    "offsets_beyond_data.safetensors": st({"w": entry("F32", [4], 0, 16)}, b"\0" * 8),
    "offsets_reversed.safetensors": st({"w": entry("F32", [0], 8, 4)}, b"\0" * 8),
    "size_mismatch.safetensors": st({"w": entry("BF16", [2, 3], 0, 8)}, b"\0" * 8),
    "shape_overflow.safetensors": st({"w": entry("F32", [1 << 31, 1 << 31, 1 << 31], 0, 0)}),
    "negative_dim.safetensors": st({"w": entry("F16", [-1, 4], 0, 8)}, b"\0" * 8),
    "fractional_dim.safetensors": st({"w": entry("F16", [2.5], 0, 4)}, b"\0" * 4),
    "missing_offsets.safetensors": st({"w": {"dtype": "F32", "shape": [1]}}, b"\0" * 4),
    "three_offsets.safetensors": st({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}},
                                    b"\0" * 8),
    "metadata_not_object.safetensors": st({"__metadata__": "pt", "w": entry("F32", [1], 0, 4)}, b"\0" * 4),
    "entry_not_object.safetensors": st({"w": [1, 2]}),
}


def main():
    for sub, files in (("json", JSON), ("safetensors", SAFETENSORS)):
        d = os.path.join(ROOT, sub)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as fh:
                fh.write(data)


if __name__ == "__main__":
    main()
