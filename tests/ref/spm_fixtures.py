#!/usr/bin/python3
"""Builds the SentencePiece fixtures for tests/test_tokenizer_spm.c.

Trains a small SentencePiece BPE model (vocab 800, byte_fallback, identity
normalisation, extra whitespace kept) on part of TinyStories plus some
non-ASCII lines, then writes into tests/fixtures/:
  spm_small.model     the SentencePiece model itself
  spm_small.tok.bin   the same vocabulary in llama2.c's tokenizer.bin format,
                      exported the way llama2.c's tokenizer.py does it
  spm_small.expected  one case per line: hex(text) TAB ids TAB hex(decode(ids)),
                      the last being "=" when decode gives the text back
                      with ids from sentencepiece's own encode() (no BOS)

Run from the repository root (needs Debian's python3-sentencepiece):
    /usr/bin/python3 tests/ref/spm_fixtures.py [shared-data-dir]
"""
import os
import struct
import sys

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TERN_DATA", os.path.join(ROOT, "..", "shared"))
OUT = os.path.join(ROOT, "tests", "fixtures")

# Non-ASCII lines so some multi-byte characters become pieces; characters
# absent from them (most CJK, emoji) must go through byte fallback.
EXTRA = [
    "Café au lait, crème brûlée, naïve façade, déjà vu, über, señor, smörgåsbord.",
    "Le garçon a mangé une pomme. Ça va très bien, merci ! Où est la gare ?",
    "Die Straße ist schön. Größe, Übung, Ärger, Öl.",
    "Мама мыла раму. Привет, как дела?",
    "東京は日本の首都です。",
    "Ελληνικά γράμματα: α β γ δ.",
] * 20

SAMPLES = [
    "Hello world",
    "Once upon a time, there was a little girl named Lily.",
    "hello",
    "",
    " ",
    "  ",
    " leading space",
    "trailing space ",
    "two  spaces   three    four",
    "  both ends  ",
    "line one\nline two\n",
    "\n\nblank lines\n\n\n",
    "tabs\tand\ttabs",
    "Numbers: 0 1 2 3 12345 3.14159 -42 1,000,000",
    "Punctuation!?.,;:'\"()[]{}<>-_=+*&^%$#@~`|\\/",
    "don't won't they're I've we'll she'd it's",
    "Café crème brûlée, naïve façade.",
    "Straße, Größe, Übung",
    "Привет, мир!",
    "日本語のテキスト",
    "中文字符测试",
    "한국어 텍스트",
    "emoji 😀🎉👍 mixed",
    "👨‍👩‍👧 family",
    "Ελληνικά",
    "مرحبا بالعالم",
    "mixed ünïcödé and ASCII",
    "<s> not a control token </s>",
    "<0x41> looks like a byte token",
    "a",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "The the THE tHe",
    "supercalifragilisticexpialidocious",
    "x" * 5 + " " * 7 + "y",
    "\u2581 literal lower one eighth block",
    "end with newline\n",
    "Lily and Ben went to the park. They played on the swings and slides.",
    "\"Why?\" she asked. \"Because,\" he said.",
    "naïve café — em dash – en dash … ellipsis",
    "zero\u200bwidth\u00a0nbsp",
    # Odd runs: the same pair at several places, so ties must go leftmost.
    "ooo eee lll sss ttt mmm nnn ... !!! ---",
    "Booo! Weee! Hmmm... Zzzzz",
    "rrrrrrr aaaaaaa eeeeeee",
]


def read_lines(path, n):
    with open(path, encoding="utf-8") as f:
        return [f.readline().rstrip("\n") for _ in range(n)]


def train():
    with open(os.path.join(DATA, "data/tinystories/valid-sample.txt"), encoding="utf-8") as f:
        stories = [l.rstrip("\n") for l in f if l.strip()]
    lines = stories[: len(stories) * 2 // 3] + EXTRA
    prefix = os.path.join(OUT, "spm_small")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=prefix,
        model_type="bpe",
        vocab_size=800,
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        num_threads=1,
        minloglevel=2,
    )
    os.remove(prefix + ".vocab")
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def export_llama2c(sp, path):
    """llama2.c tokenizer.py export: ▁ back to ' ', BOS/EOS spelled \\n<s>\\n."""
    tokens, scores = [], []
    for i in range(sp.get_piece_size()):
        t = sp.id_to_piece(i)
        if i == sp.bos_id():
            t = "\n<s>\n"
        elif i == sp.eos_id():
            t = "\n</s>\n"
        tokens.append(t.replace("\u2581", " ").encode("utf-8"))
        scores.append(sp.get_score(i))
    with open(path, "wb") as f:
        f.write(struct.pack("I", max(len(t) for t in tokens)))
        for b, s in zip(tokens, scores):
            f.write(struct.pack("fI", s, len(b)))
            f.write(b)


def main():
    sp = train()
    export_llama2c(sp, os.path.join(OUT, "spm_small.tok.bin"))
    cases = SAMPLES + read_lines(os.path.join(DATA, "data/wikitext-2-raw/wiki.test.raw"), 50)
    with open(os.path.join(OUT, "spm_small.expected"), "w") as f:
        for text in cases:
            ids = sp.encode(text)
            dec = sp.decode(ids)
            dec_col = "=" if dec == text else dec.encode().hex()
            f.write("%s\t%s\t%s\n" % (text.encode().hex(), " ".join(map(str, ids)), dec_col))
    print("wrote %d cases, vocab %d" % (len(cases), sp.get_piece_size()))


if __name__ == "__main__":
    main()
