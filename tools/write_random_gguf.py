#!/usr/bin/env python3
"""Writes a GGUF with seeded random weights of a Qwen3 shape, for llama.cpp's llama-batched-bench.

    python3 tools/write_random_gguf.py OUT.gguf [--config configs/qwen3-0.6b.json]
        [--layers N] [--hidden N] [--heads N] [--kv-heads N] [--head-dim N] [--ffn N]
        [--vocab N] [--dtype f16|bf16|f32] [--seed S] [--std 0.02]

The shape comes from a Hugging Face config.json (default configs/qwen3-0.6b.json); any flag
overrides one field (e.g. a tiny model: --layers 2 --hidden 256 --heads 4 --kv-heads 2
--head-dim 64 --ffn 512). The layout is the one llama.cpp's "qwen3" architecture loads: separate
attn_q/attn_k/attn_v (no bias), per-head attn_q_norm/attn_k_norm, no output.weight (tied
embeddings). Linear and embedding weights are N(0, std) (default 0.02), norms are 1, so
activations stay O(1) in f16. Matrices are written in --dtype (default f16: llama.cpp's CUDA path
handles F16 weights everywhere; bf16 works too), 1-D norm weights in f32 as llama.cpp's own
converter writes them.

The tokenizer is the smallest one llama.cpp accepts: tokenizer.ggml.model = "none" with
qwen3.vocab_size set, which llama.cpp fills with that many placeholder tokens. Such a model
cannot tokenize text; llama-batched-bench feeds random token ids, so it does not need to.

Only numpy and llama.cpp's own gguf-py are needed: gguf-py is imported from
third_party/llama.cpp/gguf-py (see tools/fetch_llamacpp.sh; --gguf-py or $NC_GGUF_PY elsewhere).
Tensors are streamed to the file one at a time, so memory stays at about one tensor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def import_gguf(gguf_py: Path):
    if not (gguf_py / "gguf" / "__init__.py").is_file():
        sys.exit(f"write_random_gguf: no gguf-py at {gguf_py} (run tools/fetch_llamacpp.sh)")
    sys.path.insert(0, str(gguf_py))
    try:
        import yaml  # noqa: F401  (gguf-py's metadata module imports it)
    except ImportError:
        # Only gguf.metadata's model-card reader uses yaml; nothing here calls it.
        sys.modules["yaml"] = types.ModuleType("yaml")
    import gguf

    return gguf


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="GGUF file to write")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "qwen3-0.6b.json",
                   help="Hugging Face config.json giving the shape")
    p.add_argument("--layers", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--kv-heads", type=int)
    p.add_argument("--head-dim", type=int)
    p.add_argument("--ffn", type=int)
    p.add_argument("--vocab", type=int)
    p.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--std", type=float, default=0.02)
    p.add_argument("--gguf-py", type=Path,
                   default=Path(os.environ.get("NC_GGUF_PY",
                                               REPO / "third_party" / "llama.cpp" / "gguf-py")))
    return p.parse_args()


def model_shape(args: argparse.Namespace) -> dict:
    cfg = json.loads(args.config.read_text())
    shape = {
        "layers": cfg["num_hidden_layers"],
        "hidden": cfg["hidden_size"],
        "heads": cfg["num_attention_heads"],
        "kv_heads": cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
        "head_dim": cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"]),
        "ffn": cfg["intermediate_size"],
        "vocab": cfg["vocab_size"],
        "ctx": cfg.get("max_position_embeddings", 4096),
        "rope_theta": float(cfg.get("rope_theta", 1e6)),
        "rms_eps": float(cfg.get("rms_norm_eps", 1e-6)),
    }
    if not cfg.get("tie_word_embeddings", True):
        print("write_random_gguf: note: config has untied embeddings; writing tied ones anyway",
              file=sys.stderr)
    for key in ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab"):
        override = getattr(args, key)
        if override is not None:
            shape[key] = override
    if shape["heads"] % shape["kv_heads"] != 0:
        sys.exit("write_random_gguf: heads must be a multiple of kv-heads")
    return shape


def tensor_plan(gguf, shape: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape [rows=out, cols=in], kind) in file order; kind is 'w' or 'norm'."""
    arch = gguf.MODEL_ARCH.QWEN3
    T = gguf.MODEL_TENSOR

    def name(t, layer=None):
        n = gguf.TENSOR_NAMES[t]
        assert t in gguf.MODEL_TENSORS[arch], f"{n} is not a qwen3 tensor in this gguf-py"
        return (n.format(bid=layer) if layer is not None else n) + ".weight"

    h, hd, ffn = shape["hidden"], shape["head_dim"], shape["ffn"]
    q_dim, kv_dim = shape["heads"] * hd, shape["kv_heads"] * hd
    plan = [(name(T.TOKEN_EMBD), (shape["vocab"], h), "w")]
    for i in range(shape["layers"]):
        plan += [
            (name(T.ATTN_NORM, i), (h,), "norm"),
            (name(T.ATTN_Q, i), (q_dim, h), "w"),
            (name(T.ATTN_K, i), (kv_dim, h), "w"),
            (name(T.ATTN_V, i), (kv_dim, h), "w"),
            (name(T.ATTN_Q_NORM, i), (hd,), "norm"),
            (name(T.ATTN_K_NORM, i), (hd,), "norm"),
            (name(T.ATTN_OUT, i), (h, q_dim), "w"),
            (name(T.FFN_NORM, i), (h,), "norm"),
            (name(T.FFN_GATE, i), (ffn, h), "w"),
            (name(T.FFN_UP, i), (ffn, h), "w"),
            (name(T.FFN_DOWN, i), (h, ffn), "w"),
        ]
    plan.append((name(T.OUTPUT_NORM), (h,), "norm"))
    return plan


def to_storage(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 array -> the array written for --dtype (bf16 as its uint16 bit patterns)."""
    if dtype == "f32":
        return x
    if dtype == "f16":
        return x.astype(np.float16)
    # bf16: round to nearest even on the upper 16 bits of the float32 pattern.
    bits = x.view(np.uint32)
    bits = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (bits >> np.uint32(16)).astype(np.uint16)


def main() -> None:
    args = parse_args()
    gguf = import_gguf(args.gguf_py)
    shape = model_shape(args)
    plan = tensor_plan(gguf, shape)

    ftype = {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
             "f32": gguf.LlamaFileType.ALL_F32}[args.dtype]
    w = gguf.GGUFWriter(args.out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN3])
    w.add_name(f"random-qwen3-{shape['layers']}l-{shape['hidden']}h-seed{args.seed}")
    w.add_context_length(shape["ctx"])
    w.add_embedding_length(shape["hidden"])
    w.add_block_count(shape["layers"])
    w.add_feed_forward_length(shape["ffn"])
    w.add_head_count(shape["heads"])
    w.add_head_count_kv(shape["kv_heads"])
    w.add_key_length(shape["head_dim"])
    w.add_value_length(shape["head_dim"])
    w.add_rope_freq_base(shape["rope_theta"])
    w.add_layer_norm_rms_eps(shape["rms_eps"])
    w.add_vocab_size(shape["vocab"])
    w.add_file_type(ftype)
    w.add_tokenizer_model("none")

    # Each tensor has its own stream (seed, index), so a tensor's values do not depend on the
    # dtype or on which tensors come before it.
    def values(index: int, numpy_shape: tuple[int, ...], kind: str) -> np.ndarray:
        if kind == "norm":
            return np.ones(numpy_shape, dtype=np.float32)
        rng = np.random.default_rng([args.seed, index])
        x = rng.standard_normal(numpy_shape, dtype=np.float32)
        x *= np.float32(args.std)
        return x

    for index, (tname, numpy_shape, kind) in enumerate(plan):
        n_elem = int(np.prod(numpy_shape))
        if kind == "norm":
            w.add_tensor_info(tname, numpy_shape, np.dtype(np.float32), n_elem * 4)
        else:
            itemsize = 4 if args.dtype == "f32" else 2
            raw = gguf.GGMLQuantizationType.BF16 if args.dtype == "bf16" else None
            np_dtype = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}[args.dtype]
            w.add_tensor_info(tname, numpy_shape, np.dtype(np_dtype), n_elem * itemsize,
                              raw_dtype=raw)

    start = time.time()
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    n_params = 0
    for index, (tname, numpy_shape, kind) in enumerate(plan):
        x = values(index, numpy_shape, kind)
        n_params += x.size
        if kind != "norm":
            x = to_storage(x, args.dtype)
        w.write_tensor_data(x)
    w.close()
    size = args.out.stat().st_size
    print(f"write_random_gguf: {args.out}: qwen3 {shape['layers']} layers, hidden {shape['hidden']}, "
          f"heads {shape['heads']}/{shape['kv_heads']} x {shape['head_dim']}, ffn {shape['ffn']}, "
          f"vocab {shape['vocab']}, {n_params / 1e6:.1f} M params, {args.dtype}, "
          f"{size / 2**20:.1f} MiB in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
