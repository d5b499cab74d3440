#!/usr/bin/env python3
"""Reference data for the tokenizer tests (tests/test_tokenizer.cc, tests/test_chat_template.cc).

Run with the reference venv:  /opt/refenv/bin/python tools/make_tokenizer_fixtures.py
Writes tests/fixtures/tokenizer/:
  smollm2_encodings.json   texts and the ids Hugging Face transformers gives them with SmolLM2's
                           tokenizer loaded from the GGUF (AutoTokenizer(gguf_file=...)).
  smollm2_small/           a truncated SmolLM2 tokenizer.json (the first tokens and the merges among
                           them, with SmolLM2's real pre-tokenizer) + tokenizer_config.json, and
                           expected.json: ids from the `tokenizers` library on that file.
  chat_templates.json      conversations rendered by transformers' Jinja chat-template renderer with
                           SmolLM2's template (from the GGUF), Qwen2's ChatML template (from
                           ggml-vocab-qwen2.gguf), Llama-3's and Llama-2's templates.
With --full-json DIR it also saves the whole SmolLM2 tokenizer (tokenizer.json, ~2 MB, too big to
commit) into DIR; tests/test_tokenizer.cc compares it to the GGUF when NC_SMOLLM2_HF_DIR=DIR.
"""
import argparse
import json
import os

from gguf import GGUFReader
from tokenizers import Tokenizer as HfTokenizer
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
MODEL_DIR = os.path.join(ROOT, "models")
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
TESTDATA = os.path.join(ROOT, "..", "shared", "testdata", "tokenizer")

TEXTS = [
    "Hello world",
    " Hello, y'all! How are you? I'm fine; they'll see.",
    "The year 2024 had 366 days and 1234567 seconds... or 3.14159?",
    "def f(x):\n    return x**2  # square\n\n\tprint(f(12))\n",
    "Ünïcödé: naïve café, Ελληνικά, русский, 日本語のテキスト, 한국어, العربية",
    "Emoji: 🦙🚀 👩‍👩‍👧 ✅ 🇫🇷",
    "   leading and trailing spaces   \n\n\n  ",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more <repo_name> and <|im_end|>",
    "",
]

# Llama-3-8B-Instruct's and Llama-2-chat's chat_template (tokenizer_config.json of the models).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a color."}],
    [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "  And 3+3? \n"},
    ],
    [
        {"role": "system", "content": "\nBe kind.\n"},
        {"role": "user", "content": "Écris un haïku 🌸"},
        {"role": "assistant", "content": " Pétales au vent,\nle printemps s'en va. "},
    ],
]


def gguf_string(path, key):
    field = GGUFReader(path).fields[key]
    return field.contents()


def make_encodings(tok):
    cases = [{"text": t, "ids": tok(t, add_special_tokens=False).input_ids} for t in TEXTS]
    with open(os.path.join(OUT, "smollm2_encodings.json"), "w", encoding="utf-8") as f:
        json.dump({"source": f"transformers AutoTokenizer from {SMOLLM2}", "cases": cases}, f,
                  ensure_ascii=False, indent=1)


def make_small_json(tok, keep_tokens=3000):
    """SmolLM2's tokenizer cut to its first keep_tokens ids (merge results come in merge order,
    so the first merges only use these). The pre-tokenizer is SmolLM2's own tokenizer.json's:
    digits one by one, then ByteLevel (transformers' GGUF loader drops the Digits step)."""
    full = json.loads(tok.backend_tokenizer.to_str())
    vocab = {t: i for t, i in full["model"]["vocab"].items() if i < keep_tokens}
    merges = [m for m in full["model"]["merges"]
              if m[0] in vocab and m[1] in vocab and (m[0] + m[1]) in vocab]
    full["model"]["vocab"] = vocab
    full["model"]["merges"] = merges
    full["added_tokens"] = [a for a in full["added_tokens"] if a["id"] < keep_tokens]
    full["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": True},
        ],
    }
    d = os.path.join(OUT, "smollm2_small")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(full, f, ensure_ascii=False, separators=(",", ":"))
    config = {
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "unk_token": tok.unk_token,
        "chat_template": tok.chat_template,
    }
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    small = HfTokenizer.from_file(os.path.join(d, "tokenizer.json"))
    cases = [{"text": t, "ids": small.encode(t, add_special_tokens=False).ids} for t in TEXTS]
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"source": "tokenizers.Tokenizer.from_file(tokenizer.json)", "cases": cases}, f,
                  ensure_ascii=False, indent=1)


def make_chat_templates():
    templates = [
        ("smollm2", gguf_string(os.path.join(MODEL_DIR, SMOLLM2), "tokenizer.chat_template"),
         "<|im_start|>", "<|im_end|>"),
        ("qwen2", gguf_string(os.path.join(TESTDATA, "ggml-vocab-qwen2.gguf"),
                              "tokenizer.chat_template"), "<|endoftext|>", "<|endoftext|>"),
        ("llama3", LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
        ("llama2", LLAMA2_TEMPLATE, "<s>", "</s>"),
    ]
    out = []
    for name, template, bos, eos in templates:
        renders = []
        for conv in CONVERSATIONS:
            for gen in (True, False):
                text, _ = render_jinja_template(conversations=[conv], chat_template=template,
                                                add_generation_prompt=gen, bos_token=bos,
                                                eos_token=eos)
                renders.append({"messages": conv, "add_generation_prompt": gen,
                                "text": text[0]})
        out.append({"name": name, "template": template, "bos": bos, "eos": eos,
                    "renders": renders})
    with open(os.path.join(OUT, "chat_templates.json"), "w", encoding="utf-8") as f:
        json.dump({"source": "transformers.utils.chat_template_utils.render_jinja_template",
                   "templates": out}, f, ensure_ascii=False, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full-json", help="also save the whole SmolLM2 tokenizer here")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=SMOLLM2)
    make_encodings(tok)
    make_small_json(tok)
    make_chat_templates()
    if args.full_json:
        tok.save_pretrained(args.full_json)


if __name__ == "__main__":
    main()
