"""SmolLM2 goldens for make_golden.py: outputs of models/SmolLM2-135M-Instruct.Q4_1.gguf as
transformers reads it (dequantized to float32), for plain-text and chat-template prompts.

Writes <out>/smollm2/golden.json and logits_<i>.bin (last prompt position only); docs/golden.md
describes them.
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer

from golden_hf import (Compare, check_consistency, forward_logits, greedy, load_hf, meta,
                       write_logits)

SMOLLM2_GREEDY = 32

SMOLLM2_PROMPTS = [
    {"text": "The capital of France is"},
    {"text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    {"text": "Ünïcödé, emoji 🙂 and  double  spaces\tand tabs are split into bytes:"},
    {"messages": [{"role": "user", "content": "What is the capital of France?"}]},
    {"messages": [{"role": "system", "content": "You are a concise assistant."},
                  {"role": "user", "content": "Write a haiku about the sea."}]},
]


def chat_ids(tok, messages) -> tuple[str, list[int]]:
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    via_template = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if not isinstance(via_template, list):  # a BatchEncoding in transformers 5
        via_template = via_template["input_ids"]
    assert via_template == ids, "apply_chat_template(tokenize=True) disagrees with tok(text)"
    return text, ids


def make_smollm2(out: Path, gguf_path: Path, device: str, verify: Compare | None) -> None:
    folder = out / "smollm2"
    print(f"smollm2 ({gguf_path}):")
    kwargs = {"gguf_file": gguf_path.name}
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    model = load_hf(gguf_path.parent, device, **kwargs)
    stored = json.loads((folder / "golden.json").read_text()) if verify else None
    if not verify:
        folder.mkdir(parents=True, exist_ok=True)
    prompts = []
    for i, p in enumerate(SMOLLM2_PROMPTS):
        entry = {}
        if "messages" in p:
            text, ids = chat_ids(tok, p["messages"])
            entry.update(text=text, messages=p["messages"], chat_template=True,
                         add_special_tokens=False)
        else:
            text = p["text"]
            ids = tok(text)["input_ids"]  # HF's default, add_special_tokens=True
            assert ids == tok(text, add_special_tokens=False)["input_ids"], \
                "SmolLM2's tokenizer is expected to add no BOS"
            entry.update(text=text, chat_template=False, add_special_tokens=True)
        label = f"smollm2 prompt {i}"
        gen, margins = greedy(model, ids, SMOLLM2_GREEDY, device)
        worst = check_consistency(model, ids, gen, device, label)
        last = forward_logits(model, ids, device)[-1:]
        entry.update(ids=ids, logits_file=f"logits_{i}.bin", logits_shape=list(last.shape),
                     logits_position=len(ids) - 1, greedy=gen,
                     greedy_text=tok.decode(gen), greedy_margins=[round(m, 5) for m in margins])
        if verify:
            want = stored["prompts"][i]
            verify.equal(f"{label} ids", ids, want["ids"])
            verify.equal(f"{label} greedy", gen, want["greedy"])
            verify.stored_logits(label, last, folder, want, tol=1e-4)
        else:
            write_logits(folder / entry["logits_file"], last)
        low = sorted(range(len(margins)), key=lambda k: margins[k])[:3]
        print(f"  {label}: T={len(ids)} consistency={worst:.2g} greedy={tok.decode(gen)!r}\n"
              f"    smallest margins: " + ", ".join(f"step {k}: {margins[k]:.4f}" for k in low))
        prompts.append(entry)
    golden = {"prompts": prompts, "meta": meta({
        "model": gguf_path.name, "loader": "AutoModelForCausalLM.from_pretrained(gguf_file=...), "
        "dequantized to float32 by transformers (q/k un-permuted)",
        "tokenizer": "AutoTokenizer.from_pretrained(gguf_file=...)",
        "note": "logits of the last prompt position only; greedy = argmax chain, no eos stopping"})}
    if not verify:
        (folder / "golden.json").write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
