#!/usr/bin/env python3
"""GGUF copies of the tiny attention-variant fixtures, made by llama.cpp's own converter.

For each of tiny-mistral, tiny-gemma2, tiny-gemma3, tiny-phi3 and tiny-phi3-longrope (written by
make_golden.py), this runs llama.cpp's convert_hf_to_gguf.py (--outtype f32) on a copy of the
fixture folder and writes <fixture>/model.gguf. The converter, not this script, decides the tensor
names, Gemma's +1 on norm weights, Phi-3's fused tensors and rope factor tensors, and so on, so an
engine's GGUF mapping is checked against llama.cpp's rather than against our reading of it.

The converter wants a tokenizer. The fixtures have none (their prompts are token ids), so a
SentencePiece BPE model with exactly the fixtures' 512 ids is trained here, deterministically, on
seeded random text, and put into the temporary copy only. The GGUF holds its 512 pieces; they mean
nothing and only fill the vocabulary the format requires.

A GGUF says less than config.json. Where llama.cpp's reading of the GGUF differs from the HF model
(see GGUF_READING), <fixture>/gguf_golden.json and gguf_logits_<i>.bin hold HF's outputs with the
config changed to that reading, for the same prompt ids; elsewhere golden.json holds for the GGUF.

  python tools/make_gguf_goldens.py                 # write model.gguf (+ gguf goldens)
  python tools/make_gguf_goldens.py --verify        # reconvert, recompute, compare; write nothing
  python tools/make_gguf_goldens.py --llama-cpp DIR # a llama.cpp tree instead of the sdist's
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers

import make_golden as mg

REPO = Path(__file__).resolve().parent.parent
SDIST = Path("/tmp/sdist/llama_cpp_python-0.3.36.tar.gz")
SDIST_LLAMA_CPP = "llama_cpp_python-0.3.36/vendor/llama.cpp"
# From the sdist's CHANGELOG (its newest "update llama.cpp" entry).
LLAMA_CPP_VERSION = "llama-cpp-python 0.3.36 sdist, vendored llama.cpp ggml-org/llama.cpp@0c1e57098"

FIXTURES = ("tiny-mistral", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-phi3-longrope")


def _no_window(config) -> None:
    config.sliding_window = None


def _scale_by_head_dim(config) -> None:
    config.query_pre_attn_scalar = config.head_dim


# What llama.cpp (the version above) makes of the GGUF where it differs from config.json:
#  - tiny-mistral: general.architecture "llama", which has no sliding-window key: no window.
#  - Gemma 2 / 3: query_pre_attn_scalar is not written; llama.cpp scales scores by
#    1/sqrt(head_dim) (1/sqrt(hidden/heads) only for the 27B models, told apart by layer count).
#    The sliding pattern is not written either: llama.cpp assumes every 2nd (Gemma 2, from layer
#    0) and 5 of 6 (Gemma 3) layers sliding, which is what the fixtures' layer_types say.
GGUF_READING = {
    "tiny-mistral": ("sliding_window = None (the llama architecture has no window key)",
                     _no_window),
    "tiny-gemma2": ("query_pre_attn_scalar = head_dim (not in the GGUF; llama.cpp scales by "
                    "1/sqrt(head_dim) except for the 27B)", _scale_by_head_dim),
    "tiny-gemma3": ("query_pre_attn_scalar = head_dim (not in the GGUF; llama.cpp scales by "
                    "1/sqrt(head_dim) except for the 27B)", _scale_by_head_dim),
}


# llama.cpp's vocabulary loader looks these up by name in a model called "phi3" (and fails
# without them), so the Phi-3 GGUFs' filler vocabulary has them as user-defined pieces.
EXTRA_PIECES = {"tiny-phi3": ("<|endoftext|>",), "tiny-phi3-longrope": ("<|endoftext|>",)}


def tokenizer_model(extra: tuple = ()) -> bytes:
    """A 512-piece SentencePiece BPE model (3 specials, `extra`, 256 byte pieces, then merges and
    characters), trained single-threaded on seeded text: the same bytes every run."""
    import sentencepiece as spm  # noqa: PLC0415

    rng = np.random.default_rng(7)
    letters = np.array(list("etaoinshrdlucmfwygpbvkxqjz"))
    p = np.linspace(2.0, 0.2, 26)
    p /= p.sum()
    lines = [" ".join("".join(rng.choice(letters, rng.integers(1, 9), p=p)) for _ in range(12))
             for _ in range(3000)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=512, model_type="bpe",
        byte_fallback=True, num_threads=1, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, user_defined_symbols=list(extra), minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    assert sp.vocab_size() == 512, f"tokenizer has {sp.vocab_size()} pieces, want 512"
    return buf.getvalue()


def llama_cpp_tree(arg: Path | None, scratch: Path) -> Path:
    if arg:
        return arg
    with tarfile.open(SDIST) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith(SDIST_LLAMA_CPP + "/") and
                   (m.name.endswith(".py") or "/gguf-py/" in m.name)]
        tar.extractall(scratch, members=members, filter="data")
    return scratch / SDIST_LLAMA_CPP


def convert(llama_cpp: Path, fixture: Path, tok: bytes, out: Path, scratch: Path) -> None:
    src = scratch / fixture.name
    shutil.copytree(fixture, src, ignore=shutil.ignore_patterns("*.gguf", "*golden*", "*.bin"))
    (src / "tokenizer.model").write_bytes(tok)
    env = dict(os.environ, PYTHONPATH=str(llama_cpp / "gguf-py"), NO_LOCAL_GGUF="")
    cmd = [sys.executable, "convert_hf_to_gguf.py", str(src), "--outtype", "f32",
           "--outfile", str(out)]
    run = subprocess.run(cmd, cwd=llama_cpp, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{fixture.name}: convert_hf_to_gguf.py failed:\n{run.stderr[-4000:]}")


def gguf_goldens(name: str, folder: Path, device: str, verify: mg.Compare | None) -> None:
    """HF's outputs under llama.cpp's reading of the GGUF (GGUF_READING), for golden.json's ids."""
    what, mutate = GGUF_READING[name]
    config = transformers.AutoConfig.from_pretrained(folder)
    mutate(config)
    model = mg.load_hf(folder, device, config=config)
    base = json.loads((folder / "golden.json").read_text())
    stored = json.loads((folder / "gguf_golden.json").read_text()) if verify else None
    prompts = []
    for i, p in enumerate(base["prompts"]):
        ids = p["ids"]
        gen, margins = mg.greedy(model, ids, mg.TINY_GREEDY, device)
        label = f"{name} gguf prompt {i}"
        worst = mg.check_consistency(model, ids, gen, device, label)
        logits = mg.forward_logits(model, ids, device)
        entry = {"ids": ids, "logits_file": f"gguf_logits_{i}.bin",
                 "logits_shape": list(logits.shape), "greedy": gen,
                 "greedy_margins": [round(m, 6) for m in margins]}
        if verify:
            want = stored["prompts"][i]
            verify.equal(f"{label} greedy", gen, want["greedy"])
            verify.logits(label, logits.cpu().numpy(),
                          mg.read_logits(folder / want["logits_file"], want["logits_shape"]),
                          tol=1e-4)
        else:
            mg.write_logits(folder / entry["logits_file"], logits)
        change = float((logits.cpu() - torch.from_numpy(mg.read_logits(
            folder / p["logits_file"], p["logits_shape"]))).abs().max())
        print(f"  {label}: consistency={worst:.2g} min_margin={min(margins):.4f} "
              f"distinct={len(set(gen))} max |logit - golden.json's| = {change:.3g}")
        prompts.append(entry)
    golden = {"prompts": prompts, "meta": mg.meta({
        "model": f"{name}/model.gguf", "gguf_reading": what, "llama_cpp": LLAMA_CPP_VERSION,
        "note": "HF outputs with config.json changed to what llama.cpp reads from model.gguf; "
                "logits of all prompt positions; greedy = argmax chain, no eos stopping"})}
    if not verify:
        (folder / "gguf_golden.json").write_text(json.dumps(golden, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--llama-cpp", type=Path, default=None,
                    help=f"llama.cpp tree with convert_hf_to_gguf.py (default: from {SDIST})")
    ap.add_argument("--only", default="", help="comma list of fixture names")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verify", action="store_true",
                    help="reconvert and recompute; compare with the committed files")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    names = [n for n in FIXTURES if not args.only or n in args.only.split(",")]
    verify = mg.Compare() if args.verify else None
    toks = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        llama_cpp = llama_cpp_tree(args.llama_cpp, scratch)
        for name in names:
            folder = args.out / name
            target = scratch / f"{name}.gguf" if verify else folder / "model.gguf"
            extra = EXTRA_PIECES.get(name, ())
            if extra not in toks:
                toks[extra] = tokenizer_model(extra)
            convert(llama_cpp, folder, toks[extra], target, scratch)
            digest = hashlib.sha256(target.read_bytes()).hexdigest()[:16]
            print(f"{name}: model.gguf {target.stat().st_size} bytes, sha256 {digest}...")
            if verify and target.read_bytes() != (folder / "model.gguf").read_bytes():
                verify.failures.append(f"{name}: reconverted model.gguf differs from the file")
            if name in GGUF_READING:
                gguf_goldens(name, folder, args.device, verify)
    if verify:
        print(f"verify: largest relative logit difference {verify.max_rel:.3g}")
        for f in verify.failures:
            print("FAIL:", f)
        return 1 if verify.failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
