#!/usr/bin/env python3
"""Golden ids for Gemma's vocabulary from Hugging Face `tokenizers` (tests/test_tokenizer_gemma.cc).

Run in a venv with tokenizers + gguf (e.g. tokenizers 0.23.3, gguf 0.18):
    python tools/make_gemma_tokenizer_golden.py
Reads third_party/llama-vocab/ggml-vocab-gemma-4.gguf (tools/setup.sh unpacks it from the
llama-cpp-python sdist) and builds the tokenizer the way Gemma's tokenizer.json defines it:
model BPE over the GGUF's tokens and merges with byte_fallback, normalizer Replace(' ' -> U+2581),
no pre-tokenizer, the GGUF's control and user-defined tokens as added tokens. Writes
tests/data/gemma_tokenizer_golden.json: {texts: [{text, ids}], source, tokenizers_version}.
"""
import json
import os

import tokenizers
from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, normalizers
from tokenizers.models import BPE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF = os.path.join(ROOT, "third_party", "llama-vocab", "ggml-vocab-gemma-4.gguf")
OUT = os.path.join(ROOT, "tests", "data", "gemma_tokenizer_golden.json")

TEXTS = [
    "Hello world",
    " Hello world",
    "Hello  world   with   spaces ",
    "The year 2024 had 366 days and 1234567 seconds... or 3.14159?",
    "def f(x):\n    return x**2  # square\n\n\tprint(f(12))\n",
    "line one\nline two\n\nline four\n\n\n\nend",
    "\n",
    "\n\n\n",
    "   ",
    "Ünïcödé: naïve café, Ελληνικά, русский, 日本語のテキスト, 한국어, العربية, हिन्दी",
    "Emoji: 🦙🚀 👩‍👩‍👧 ✅ 🇫🇷 and rare 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀",
    "<start_of_turn>user\nnot a marker here<end_of_turn>",
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it",
    "MixedCASE camelCase snake_case kebab-case SCREAMING_CASE",
    "https://example.com/path?query=1&x=2#frag",
    "\u00a0non-breaking\u3000ideographic\u2003em space",
    "tabs\tand\r\ncarriage returns\r\n",
    "",
]


def field_strings(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def field_ints(reader, key):
    f = reader.fields[key]
    return [int(f.parts[i][0]) for i in f.data]


def main():
    r = GGUFReader(GGUF)
    tokens = field_strings(r, "tokenizer.ggml.tokens")
    types = field_ints(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field_strings(r, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    unk = tokens[int(r.fields["tokenizer.ggml.unknown_token_id"].parts[-1][0])]
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token=unk,
                        fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    # Control (3) and user-defined (4) tokens are added tokens, as in Gemma's tokenizer.json.
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == 3])
    tok.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                    for i, t in enumerate(types) if t == 4])
    cases = []
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids})
    with open(OUT, "w", encoding="utf-8") as f:  # one case a line
        f.write('{\n  "source": "ggml-vocab-gemma-4.gguf (llama-cpp-python 0.3.36 sdist)",\n')
        f.write(f'  "tokenizers_version": "{tokenizers.__version__}",\n  "texts": [\n')
        f.write(",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n  ]\n}\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
