"""Hugging Face helpers shared by the golden generators (make_golden.py, golden_smollm2.py,
make_gguf_goldens.py): loading a checkpoint, full forwards, greedy decoding with top-2 margins,
the cached-vs-full self-consistency check, the logits files' I/O, golden.json's "meta" and
Compare, which collects differences in --verify mode.

make_golden.py re-exports these names (make_gguf_goldens.py uses them as make_golden.X).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, GenerationConfig

# Tolerances of the self-consistency checks, relative to max(1, max |logit|).
CONSISTENCY_TOL = 1e-4


# ----------------------------------------------------------------------------- HF computations


def load_hf(folder: Path, device: str, **kwargs) -> torch.nn.Module:
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                 attn_implementation="eager", **kwargs)
    # generate() fills unset fields of the config it is given from these: clear eos there too.
    model.generation_config.eos_token_id = None
    model.config.eos_token_id = None
    return model.to(device).eval()


def greedy_config(n: int) -> GenerationConfig:
    # eos_token_id=None: no stopping and no eos suppression (min_new_tokens would ban eos and so
    # change the argmax); the continuation is the plain argmax chain an engine with ignore_eos gives.
    return GenerationConfig(do_sample=False, max_new_tokens=n, eos_token_id=None,
                            bos_token_id=None, pad_token_id=0, temperature=None, top_p=None,
                            top_k=None)


@torch.no_grad()
def forward_logits(model, ids: list[int], device: str) -> torch.Tensor:
    x = torch.tensor([ids], device=device)
    return model(input_ids=x, use_cache=False).logits[0].float()


@torch.no_grad()
def greedy(model, ids: list[int], n: int, device: str) -> tuple[list[int], list[float]]:
    x = torch.tensor([ids], device=device)
    out = model.generate(input_ids=x, attention_mask=torch.ones_like(x),
                         generation_config=greedy_config(n), output_logits=True,
                         return_dict_in_generate=True)
    tokens = out.sequences[0, len(ids):].tolist()
    margins = []
    for step_logits in out.logits:
        top2 = torch.topk(step_logits[0].float(), 2).values
        margins.append(float(top2[0] - top2[1]))
    assert len(tokens) == n, f"generate gave {len(tokens)} tokens, wanted {n}"
    return tokens, margins


@torch.no_grad()
def check_consistency(model, ids: list[int], gen: list[int], device: str, label: str,
                      min_first_chunk: int = 1) -> float:
    """Prefill-all vs. chunked prefill and token-by-token decode with past_key_values, and
    greedy tokens vs. the argmax of a full forward. Returns the worst relative difference."""
    seq = ids + gen[:-1]
    full = forward_logits(model, seq, device)
    scale = max(1.0, float(full.abs().max()))

    # Prefill the prompt in two chunks, then decode the continuation one token at a time.
    cache = None  # the first call creates it (works across transformers versions)
    split = min(len(ids), max(min_first_chunk, len(ids) // 2))
    parts = [ids[:split], ids[split:]] + [[t] for t in gen[:-1]]
    rows = []
    pos = 0
    for part in parts:
        if not part:
            continue
        x = torch.tensor([part], device=device)
        out = model(input_ids=x, past_key_values=cache, use_cache=True,
                    position_ids=torch.arange(pos, pos + len(part), device=device)[None])
        cache = out.past_key_values
        rows.append(out.logits[0].float())
        pos += len(part)
    incremental = torch.cat(rows)
    worst = float((incremental - full).abs().max()) / scale

    prompt_only = forward_logits(model, ids, device)
    worst = max(worst, float((prompt_only - full[: len(ids)]).abs().max()) / scale)
    assert worst < CONSISTENCY_TOL, f"{label}: cached vs. full logits differ by {worst:.3g} (rel)"

    argmax = full[len(ids) - 1:].argmax(-1).tolist()
    assert argmax == gen, f"{label}: greedy {gen} != argmax of full forward {argmax}"
    return worst


# ----------------------------------------------------------------------------- golden I/O


def write_logits(path: Path, logits: torch.Tensor) -> list[int]:
    arr = logits.detach().cpu().numpy().astype("<f4")
    arr.tofile(path)
    return list(arr.shape)


def read_logits(path: Path, shape: list[int]) -> np.ndarray:
    return np.fromfile(path, dtype="<f4").reshape(shape)


def meta(extra: dict | None = None) -> dict:
    m = {"generator": "tools/make_golden.py", "torch": torch.__version__,
         "transformers": transformers.__version__, "numpy": np.__version__,
         "attn_implementation": "eager", "dtype": "float32"}
    try:
        import gguf  # noqa: PLC0415
        from importlib.metadata import version  # noqa: PLC0415
        m["gguf"] = version("gguf")
    except Exception:  # gguf is needed only for the SmolLM2 fixture
        pass
    m.update(extra or {})
    return m


@dataclass
class Compare:
    """Collects differences between recomputed and stored goldens in --verify mode."""
    max_rel: float = 0.0
    failures: list = field(default_factory=list)

    def logits(self, label, got: np.ndarray, want: np.ndarray, tol: float) -> None:
        if got.shape != want.shape:
            self.failures.append(f"{label}: shape {got.shape} != {want.shape}")
            return
        rel = float(np.abs(got - want).max()) / max(1.0, float(np.abs(want).max()))
        self.max_rel = max(self.max_rel, rel)
        if rel > tol:
            self.failures.append(f"{label}: logits differ by {rel:.3g} (rel) > {tol}")

    def stored_logits(self, label, got: torch.Tensor, folder: Path, want: dict, tol: float) -> None:
        """Compares `got` with the logits file that a stored golden entry `want` names."""
        self.logits(label, got.detach().cpu().numpy(),
                    read_logits(folder / want["logits_file"], want["logits_shape"]), tol)

    def equal(self, label, got, want) -> None:
        if got != want:
            self.failures.append(f"{label}: {got} != {want}")

    def report(self) -> int:
        """Prints the largest difference and every failure; the exit status (1 on a failure)."""
        print(f"verify: largest relative logit difference {self.max_rel:.3g}")
        for f in self.failures:
            print("FAIL:", f)
        return 1 if self.failures else 0
