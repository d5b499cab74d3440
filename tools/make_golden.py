#!/usr/bin/env python3
"""Golden reference data for nanocascade's model tests, computed with Hugging Face transformers.

Writes, under --out (default tests/fixtures):
  tiny-llama/, tiny-qwen2/, tiny-qwen3/   tiny random-weight float32 checkpoints + golden outputs
  tiny-llama-sharded/                     tiny-llama's weights in several safetensors shards
  tiny-qwen3-bf16/                        tiny-qwen3's weights rounded to bfloat16
  tiny-mistral/, tiny-gemma2/, tiny-gemma3/, tiny-phi3/, tiny-phi3-longrope/
                                          attention variants (specs in golden_specs.py)
  smollm2/                                goldens of models/SmolLM2-135M-Instruct.Q4_1.gguf

Each folder holds golden.json ({"prompts": [{"ids", "logits_file", "logits_shape", "greedy", ...}]})
and logits_<i>.bin (raw little-endian float32, row-major [T, V]). docs/golden.md describes them.

Weights are drawn with numpy's PCG64 (stable across numpy versions), not with transformers'
initializers, so the checkpoints do not depend on the transformers version. Nothing is downloaded.

This file holds the CLI and the tiny models (configs, seeded weights, checkpoints, goldens and
their checks); golden_specs.py the attention-variant specs, golden_hf.py the shared Hugging Face
helpers (loading, forward, greedy, self-consistency, logits I/O, meta, Compare; re-exported here for
make_gguf_goldens.py) and golden_smollm2.py the SmolLM2 goldens.

  python tools/make_golden.py                  # write everything (CPU)
  python tools/make_golden.py --verify         # recompute from the committed files, compare
  python tools/make_golden.py --device cuda --only tiny --verify   # e.g. on the GPU machine
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

# Also make_gguf_goldens.py's API (it imports this file as mg): keep these names importable here.
from golden_hf import (Compare, check_consistency, forward_logits, greedy, load_hf, meta,
                       read_logits, write_logits)
from golden_smollm2 import make_smollm2
from golden_specs import LONG_ROPE_PROMPT_LENGTHS, NEW_SPECS, TinySpec

REPO = Path(__file__).resolve().parent.parent

# A tiny model's prompt is redrawn while some greedy step's top-2 margin is below this, so that
# float32 rounding differences (about 1e-5 here) in another engine cannot flip a greedy token.
TINY_MIN_MARGIN = 1e-2
# ... and while its greedy continuation has fewer distinct tokens than this (a loop on one token
# would let a broken engine pass on luck).
TINY_MIN_DISTINCT = 8
TINY_PROMPT_LENGTHS = (7, 19, 40)
TINY_GREEDY = 16


# ----------------------------------------------------------------------------- tiny models


def llama_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None,
        pad_token_id=None,
        rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64})


def qwen2_config() -> Qwen2Config:
    return Qwen2Config(
        vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6})


def qwen3_config() -> Qwen3Config:
    return Qwen3Config(
        vocab_size=512, hidden_size=64, head_dim=32, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6})


TINY_SPECS = [
    TinySpec("tiny-llama", llama_config, seed=1001, config_style="hub",
             prompt_lengths=LONG_ROPE_PROMPT_LENGTHS),
    TinySpec("tiny-qwen2", qwen2_config, seed=1002, config_style="hub"),
    TinySpec("tiny-qwen3", qwen3_config, seed=1003, config_style="v5"),
    TinySpec("tiny-llama-sharded", llama_config, seed=1001, config_style="hub",
             max_shard_size="200KB", weights_from="tiny-llama"),
    TinySpec("tiny-qwen3-bf16", qwen3_config, seed=1003, config_style="v5",
             dtype=torch.bfloat16, weights_from="tiny-qwen3"),
] + NEW_SPECS


def random_weights(model: torch.nn.Module, seed: int,
                   norm_center=lambda name: 1.0) -> dict[str, np.ndarray]:
    """Seeded weights of a realistic shape of distribution but a scale that makes logits differ.

    Linear weights ~ N(0, 0.15^2) (about 1/sqrt(hidden), so activations keep their scale),
    embeddings and the head ~ N(0, 0.3^2) (logits with a std of about 2), norm weights
    ~ 1 + N(0, 0.2^2) and biases ~ N(0, 0.3^2), so that a missing norm weight or bias shows.
    norm_center(name) gives the mean of each norm weight (Gemma's norms scale by (1 + w)).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, p in sorted(model.named_parameters()):
        shape = tuple(p.shape)
        if name.endswith("norm.weight"):
            w = norm_center(name) + 0.2 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            w = 0.3 * rng.standard_normal(shape)
        elif "embed_tokens" in name or name.startswith("lm_head"):
            w = 0.3 * rng.standard_normal(shape)
        else:
            w = 0.15 * rng.standard_normal(shape)
        out[name] = w.astype(np.float32)
    return out


def save_kwargs() -> dict:
    # transformers 4 needs safe_serialization=True for safetensors; 5 always writes them.
    params = inspect.signature(transformers.PreTrainedModel.save_pretrained).parameters
    return {"safe_serialization": True} if "safe_serialization" in params else {}


def hubify_config(path: Path) -> None:
    """Rewrites a transformers-5 config.json into the spelling of configs on the Hub."""
    cfg = json.loads(path.read_text())
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def write_tiny_checkpoint(spec: TinySpec, folder: Path, weights: dict[str, np.ndarray]) -> None:
    config = spec.make_config()
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                             attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(weights[name]))
    model.to(spec.dtype)
    if folder.exists():
        shutil.rmtree(folder)
    kwargs = save_kwargs()
    if spec.max_shard_size:
        kwargs["max_shard_size"] = spec.max_shard_size
    model.save_pretrained(folder, **kwargs)
    if spec.config_style == "hub":
        (spec.hubify or hubify_config)(folder / "config.json")


def prompt_lengths(spec: TinySpec) -> tuple:
    return spec.prompt_lengths or TINY_PROMPT_LENGTHS


def tiny_prompt(spec: TinySpec, index: int, attempt: int, vocab: int) -> list[int]:
    rng = np.random.default_rng([spec.seed, index, attempt])
    return rng.integers(0, vocab, prompt_lengths(spec)[index]).tolist()


# ----------------------------------------------------------------------------- tiny goldens


def tiny_goldens(spec: TinySpec, folder: Path, device: str, verify: Compare | None) -> dict:
    model = load_hf(folder, device)
    vocab = model.config.vocab_size
    stored = json.loads((folder / "golden.json").read_text()) if verify else None
    prompts = []
    for i in range(len(prompt_lengths(spec))):
        if verify:  # recompute on the stored prompt, never redraw
            ids = stored["prompts"][i]["ids"]
            gen, margins = greedy(model, ids, TINY_GREEDY, device)
        else:
            for attempt in range(100):
                ids = tiny_prompt(spec, i, attempt, vocab)
                gen, margins = greedy(model, ids, TINY_GREEDY, device)
                if min(margins) >= TINY_MIN_MARGIN and len(set(gen)) >= TINY_MIN_DISTINCT:
                    break
            else:
                raise RuntimeError(f"{spec.name}: no prompt {i} with greedy margins >= "
                                   f"{TINY_MIN_MARGIN} and {TINY_MIN_DISTINCT} distinct tokens")
        label = f"{spec.name} prompt {i}"
        worst = check_consistency(model, ids, gen, device, label, spec.min_first_chunk)
        logits = forward_logits(model, ids, device)
        entry = {"ids": ids, "logits_file": f"logits_{i}.bin", "logits_shape": list(logits.shape),
                 "greedy": gen, "greedy_margins": [round(m, 6) for m in margins]}
        if verify:
            want = stored["prompts"][i]
            verify.equal(f"{label} greedy", gen, want["greedy"])
            verify.stored_logits(label, logits, folder, want, tol=1e-4)
        else:
            write_logits(folder / entry["logits_file"], logits)
            if not attempt == 0:
                entry["prompt_redraws"] = attempt
        distinct = len(set(gen))
        print(f"  {label}: T={len(ids)} consistency={worst:.2g} greedy={gen} distinct={distinct} "
              f"min_margin={min(margins):.4f} logits_std={float(logits.std()):.3f}")
        prompts.append(entry)
    return {"prompts": prompts, "meta": meta({
        "model": spec.name, "weights_dtype": str(spec.dtype).replace("torch.", ""),
        "config_style": spec.config_style, "weight_seed": spec.seed,
        "note": "logits of all prompt positions; greedy = argmax chain, no eos stopping"})}


def make_tiny(out: Path, device: str, only: set[str], verify: Compare | None) -> None:
    weights_by_name = {}
    for spec in TINY_SPECS:
        folder = out / spec.name
        source = spec.weights_from or spec.name
        if source not in weights_by_name:
            skeleton = AutoModelForCausalLM.from_config(spec.make_config(), dtype=torch.float32)
            weights_by_name[source] = random_weights(skeleton, spec.seed, spec.norm_center)
        weights = weights_by_name[source]
        if only and spec.name not in only and "tiny" not in only:
            continue
        print(f"{spec.name}:")
        if verify:
            check_stored_weights(spec, folder, weights, verify)
        else:
            write_tiny_checkpoint(spec, folder, weights)
            check_stored_weights(spec, folder, weights, None)
        golden = tiny_goldens(spec, folder, device, verify)
        if not verify:
            (folder / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
        if spec.max_shard_size and not verify:  # the same model, only split into shards
            same_goldens(out / spec.weights_from, folder)
        if spec.name == "tiny-llama":
            check_rope_scaling_matters(folder, golden, device)
        check_ablations(spec, folder, device, verify)


def check_ablations(spec: TinySpec, folder: Path, device: str, verify: Compare | None) -> None:
    """Each ablation (golden_specs.Ablation) changes the config as read from the folder, and the
    logits of its prompts must move by more than min_diff ("differ") or stay within it ("same")."""
    golden = json.loads((folder / "golden.json").read_text())
    for ab in spec.ablations:
        config = transformers.AutoConfig.from_pretrained(folder)
        ab.mutate(config)
        model = load_hf(folder, device, config=config)
        diffs = []
        for i in ab.prompts:
            p = golden["prompts"][i]
            got = forward_logits(model, p["ids"], device).cpu().numpy()
            want = read_logits(folder / p["logits_file"], p["logits_shape"])
            diffs.append(float(np.abs(got - want).max()))
        ok = (min(diffs) > ab.min_diff) if ab.expect == "differ" else (max(diffs) <= ab.min_diff)
        shown = ", ".join(f"{d:.3g}" for d in diffs)
        print(f"  {spec.name}: {ab.what}: max |logit change| per prompt {ab.prompts} = {shown} "
              f"(want {'>' if ab.expect == 'differ' else '<='} {ab.min_diff})")
        if not ok:
            msg = f"{spec.name}: ablation '{ab.what}' gave changes {shown}"
            if verify is None:
                raise AssertionError(msg)
            verify.failures.append(msg)


def check_rope_scaling_matters(folder: Path, golden: dict, device: str) -> None:
    """Plain rope instead of llama3's must change the logits clearly, or the fixture would not
    catch an engine that ignores rope_scaling."""
    config = transformers.AutoConfig.from_pretrained(folder)
    config.rope_parameters = {"rope_type": "default",
                              "rope_theta": config.rope_parameters["rope_theta"]}
    plain = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=torch.float32,
                                                 attn_implementation="eager").to(device).eval()
    p = golden["prompts"][-1]
    got = forward_logits(plain, p["ids"], device).cpu().numpy()
    want = read_logits(folder / p["logits_file"], p["logits_shape"])
    diff = float(np.abs(got - want).max())
    print(f"  tiny-llama: plain rope changes the last prompt's logits by up to {diff:.3f}")
    assert diff > 0.1, "llama3 rope scaling barely matters for tiny-llama's prompts"


def check_stored_weights(spec: TinySpec, folder: Path, weights: dict, verify: Compare | None):
    """The checkpoint on disk, read back by HF as float32, holds exactly our weights (rounded to
    the checkpoint's dtype). Catches a changed RNG, a bad shard index, a lost tied head."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    # The (possibly hub-spelled) config.json reads back as the config we meant.
    want_cfg, got_cfg = spec.make_config(), model.config
    for key in ("rope_parameters", "tie_word_embeddings", "head_dim", "num_key_value_heads",
                "intermediate_size", "rms_norm_eps", "vocab_size") + spec.check_keys:
        got, want = getattr(got_cfg, key, None), getattr(want_cfg, key, None)
        if key == "rope_parameters" and isinstance(got, dict) and got.get("type"):
            got = {k: v for k, v in got.items() if k != "type"}  # Phi-3's alias of rope_type
        if got != want:
            msg = f"{spec.name}: config {key} reads back as {got}"
            if verify is None:
                raise AssertionError(msg)
            verify.failures.append(msg)
    for name, p in model.named_parameters():
        want = torch.from_numpy(weights[name]).to(spec.dtype).float()
        if not torch.equal(p.detach(), want):
            msg = f"{spec.name}: stored {name} differs from the seeded weights"
            if verify is None:
                raise AssertionError(msg)
            verify.failures.append(msg)
    if spec.max_shard_size:
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        shards = set(index["weight_map"].values())
        assert len(shards) >= 2, f"{spec.name}: only {len(shards)} shard(s)"


def same_goldens(a: Path, b: Path) -> None:
    ga, gb = (json.loads((p / "golden.json").read_text())["prompts"] for p in (a, b))
    for pa, pb in zip(ga, gb):
        assert pa["ids"] == pb["ids"] and pa["greedy"] == pb["greedy"], f"{b} != {a}"
        la = read_logits(a / pa["logits_file"], pa["logits_shape"])
        lb = read_logits(b / pb["logits_file"], pb["logits_shape"])
        assert np.array_equal(la, lb), f"{b} logits != {a} logits"


# ----------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--gguf", type=Path,
                    default=REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (float32 either way)")
    ap.add_argument("--only", default="", help="comma list: tiny, smollm2, or fixture names")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    ap.add_argument("--verify", action="store_true",
                    help="recompute from the stored checkpoints and compare; write nothing")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    # float32 must mean float32 on the GPU too (no TF32 GEMMs).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    only = {s for s in args.only.split(",") if s}
    verify = Compare() if args.verify else None
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"numpy {np.__version__}, device {args.device}")
    if not only or (only - {"smollm2"}):
        make_tiny(args.out, args.device, only - {"smollm2"}, verify)
    if not only or "smollm2" in only:
        if not args.gguf.exists():
            print(f"smollm2: {args.gguf} not found, skipped", file=sys.stderr)
            if only:
                return 1
        else:
            make_smollm2(args.out, args.gguf, args.device, verify)
    return verify.report() if verify else 0


if __name__ == "__main__":
    sys.exit(main())
