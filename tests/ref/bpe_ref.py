#!/usr/bin/python3
"""Independent Python reference for tern's byte-level BPE tokenizer.

Written separately from src/tok/*.c and in a different style: the
pre-tokenizer regexes run on Python's own regex engine (`re`), with \\p{L},
\\p{N} and \\s spelled out as character classes built from unicodedata, and
BPE is GPT-2's original "merge every occurrence of the best bigram" loop.
The vocabulary and merges are read straight from SmolLM2's GGUF file with a
minimal GGUF metadata reader (no gguf package needed).

Writes into tests/fixtures/:
  smollm2_bpe.expected  hex(text) TAB ids   (SmolLM2, pre "smollm", no BOS)
  smollm2_bpe.pretok    kind TAB hex(text) TAB piece byte lengths, for the
                        gpt2, smollm and llama3 pre-tokenizers

Run from the repository root:
    /usr/bin/python3 tests/ref/bpe_ref.py [model.gguf] [shared-data-dir]
The model path defaults to what scripts/get-model.sh prints.
"""
import os
import re
import struct
import subprocess
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures")

# ---------------------------------------------------------------- GGUF reader

GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class Reader:
    def __init__(self, f):
        self.f = f

    def take(self, fmt):
        n = struct.calcsize(fmt)
        return struct.unpack(fmt, self.f.read(n))[0]

    def string(self):
        n = self.take("<Q")
        return self.f.read(n).decode("utf-8", errors="surrogateescape")

    def value(self, vtype):
        if vtype in GGUF_SCALARS:
            return self.take(GGUF_SCALARS[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype = self.take("<I")
            n = self.take("<Q")
            return [self.value(etype) for _ in range(n)]
        raise ValueError("unknown GGUF value type %d" % vtype)


def read_gguf_metadata(path):
    with open(path, "rb") as f:
        r = Reader(f)
        if f.read(4) != b"GGUF":
            raise ValueError("%s: not a GGUF file" % path)
        version = r.take("<I")
        if version not in (2, 3):
            raise ValueError("%s: GGUF version %d" % (path, version))
        r.take("<Q")  # tensor count
        n_kv = r.take("<Q")
        meta = {}
        for _ in range(n_kv):
            key = r.string()
            meta[key] = r.value(r.take("<I"))
        return meta


# ------------------------------------------------------ character classes


def class_body(pred):
    """Regex character-class body (no brackets) of all code points matching pred."""
    parts, start = [], None
    for cp in range(0x110001):
        ok = (cp < 0xD800 or 0xDFFF < cp < 0x110000) and pred(chr(cp))
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            lo, hi = re.escape(chr(start)), re.escape(chr(cp - 1))
            parts.append(lo if start == cp - 1 else lo + "-" + hi)
            start = None
    return "".join(parts)


L = class_body(lambda c: unicodedata.category(c).startswith("L"))
N = class_body(lambda c: unicodedata.category(c).startswith("N"))
# \s as regex engines define it (Unicode White_Space): str.isspace() minus the
# C0 separators U+001C..U+001F it also accepts.
S = class_body(lambda c: c.isspace() and not ("\x1c" <= c <= "\x1f"))

GPT2 = re.compile(
    r"'s|'t|'re|'ve|'m|'ll|'d"
    rf"| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])|[{S}]+"
)
DIGIT_SPLIT = re.compile(rf"[{N}]|[^{N}]+")
# (?i:...) written out for ASCII only, as tern does (no U+017F long s).
LLAMA3 = re.compile(
    r"'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
    rf"|[^\r\n{L}{N}]?[{L}]+|[{N}]{{1,3}}| ?[^{S}{L}{N}]+[\r\n]*|[{S}]*[\r\n]+|[{S}]+(?![^{S}])|[{S}]+"
)


def find_all(rx, text):
    pieces = [m.group(0) for m in rx.finditer(text)]
    assert "".join(pieces) == text, "regex left gaps in %r" % text
    return pieces


def pretokenize(kind, text):
    if kind == "gpt2":
        return find_all(GPT2, text)
    if kind == "llama3":
        return find_all(LLAMA3, text)
    if kind == "smollm":
        out = []
        for chunk in find_all(DIGIT_SPLIT, text):
            out += [chunk] if re.fullmatch(rf"[{N}]", chunk) else find_all(GPT2, chunk)
        return out
    raise ValueError(kind)


# ------------------------------------------------------------ byte-level BPE


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class BPE:
    def __init__(self, meta):
        self.tokens = meta["tokenizer.ggml.tokens"]
        self.types = meta.get("tokenizer.ggml.token_type", [1] * len(self.tokens))
        self.pre = meta.get("tokenizer.ggml.pre", "gpt2")
        self.vocab = {}
        for i, t in enumerate(self.tokens):
            self.vocab.setdefault(t, i)
        self.ranks = {}
        for i, m in enumerate(meta["tokenizer.ggml.merges"]):
            self.ranks.setdefault(tuple(m.split(" ", 1)), i)
        self.byte_map = bytes_to_unicode()
        specials = sorted((t for t, ty in zip(self.tokens, self.types) if ty in (3, 4) and t),
                          key=lambda t: -len(t))
        self.special_rx = re.compile("|".join(map(re.escape, specials))) if specials else None

    def bpe(self, word):
        word = list(word)
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return [self.vocab[w] for w in word]

    def encode_plain(self, text):
        ids = []
        for piece in pretokenize(self.pre, text):
            ids += self.bpe("".join(self.byte_map[b] for b in piece.encode("utf-8")))
        return ids

    def encode(self, text):
        if not self.special_rx:
            return self.encode_plain(text)
        ids, pos = [], 0
        for m in self.special_rx.finditer(text):
            ids += self.encode_plain(text[pos:m.start()])
            ids.append(self.vocab[m.group(0)])
            pos = m.end()
        return ids + self.encode_plain(text[pos:])

    def decode(self, ids):
        inv = {c: b for b, c in self.byte_map.items()}
        out = bytearray()
        for i in ids:
            t = self.tokens[i]
            if self.types[i] in (3, 4):
                out += t.encode("utf-8")
            else:
                out += bytes(inv[c] for c in t)
        return out.decode("utf-8")


# ---------------------------------------------------------------- samples

SAMPLES = [
    "Hello world",
    "Hello, world! How are you today?",
    "",
    " ",
    "   ",
    " leading space",
    "trailing space ",
    "two  spaces   three    four",
    "  both ends  ",
    "line one\nline two\n",
    "\n\nblank lines\n\n\n",
    "a  \n  b",
    "tabs\tand\t\ttabs",
    "windows\r\nline\r\nendings\r\n",
    "12345",
    "3.14159",
    "Numbers: 0 1 2 3 12345 3.14159 -42 1,000,000 2024-01-31",
    "x=1234567890",
    "Punctuation!?.,;:'\"()[]{}<>-_=+*&^%$#@~`|\\/",
    "don't won't they're I've we'll she'd it's",
    "DON'T WE'LL IT'S 'Tis the season's",
    "''quoted'' and 's alone",
    "Café crème brûlée, naïve façade.",
    "Straße, Größe, Übung",
    "Привет, мир!",
    "日本語のテキスト",
    "中文字符测试",
    "한국어 텍스트",
    "emoji 😀🎉👍 mixed",
    "👨‍👩‍👧 family",
    "Ελληνικά",
    "مرحبا بالعالم ٣٤٥",
    "superscripts ²³ and roman Ⅻ and fractions ½",
    "ideographic\u3000space and nbsp\u00a0here",
    "zero\u200bwidth",
    "<|im_start|>user\nHi<|im_end|>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text<|endoftext|>more text",
    "<|im_start|<|im_end|>>",
    "def add(a, b):\n    return a + b\n",
    "for (int i = 0; i < n; i++) {\n\tsum += x[i];\n}",
    "if x == 1:\n        print(\"hello\")  # comment\n",
    "    indented\n        more\n",
    "<html><body class=\"main\">Hi</body></html>",
    "https://example.com/path?query=1&b=2",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "supercalifragilisticexpialidocious",
    "The the THE tHe",
    "Ġ literal G with dot and Ċ",
]

PRETOK_EXTRA = [
    "\x1c\x1d\x1e\x1f separators",
    "next\u0085line and\u2028ls",
    "(hello) [world] {x}",
    "'s's 'S 'RE 'Ve 'll 'LL",
    "   \n\n  x",
    "\n \n \n",
    "a\n\n\nb",
    "1234567 12 1",
    "x  ",
    " \t x",
    "!!! ???\n\n",
    "ab12cd34",
]


def read_lines(path, n, skip=0):
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= skip + n:
                break
            if i >= skip:
                out.append(line)
    return out


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else None
    if not model:
        model = subprocess.check_output([os.path.join(ROOT, "scripts", "get-model.sh")], text=True).strip()
    data = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("TERN_DATA", os.path.join(ROOT, "..", "shared"))
    meta = read_gguf_metadata(model)
    assert meta["tokenizer.ggml.model"] == "gpt2", meta["tokenizer.ggml.model"]
    bpe = BPE(meta)
    assert bpe.pre == "smollm", bpe.pre
    cases = SAMPLES + read_lines(os.path.join(data, "data/wikitext-2-raw/wiki.test.raw"), 25)
    cases += read_lines(os.path.join(data, "data/brown/brown.txt"), 25, skip=100)
    with open(os.path.join(OUT, "smollm2_bpe.expected"), "w") as f:
        for text in cases:
            ids = bpe.encode(text)
            assert bpe.decode(ids) == text
            f.write("%s\t%s\n" % (text.encode().hex(), " ".join(map(str, ids))))
    with open(os.path.join(OUT, "smollm2_bpe.pretok"), "w") as f:
        for kind in ("gpt2", "smollm", "llama3"):
            for text in SAMPLES + PRETOK_EXTRA:
                lens = [len(p.encode("utf-8")) for p in pretokenize(kind, text)]
                f.write("%s\t%s\t%s\n" % (kind, text.encode().hex(), " ".join(map(str, lens))))
    print("wrote %d BPE cases; %d specials; pre %s" % (len(cases), sum(t in (3, 4) for t in bpe.types), bpe.pre))


if __name__ == "__main__":
    main()
