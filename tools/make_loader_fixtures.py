#!/usr/bin/env python3
"""Writes the model-loader test fixtures into tests/fixtures/loader/ with reference tools
(the `safetensors` package, transformers, gguf-py), so the C++ tests check our readers against
files and values that our code did not produce.

Run from the repository root with the reference venv:
    /opt/refenv/bin/python tools/make_loader_fixtures.py

Outputs:
  dtypes.safetensors, dtypes.json      F32/F16/BF16 tensors (+ an I64 one) and their float values
  tiny-llama/    sharded BF16 Llama checkpoint (save_pretrained, config in transformers-5 style)
  tiny-qwen2/    single-file F32 Qwen2 checkpoint (q/k/v biases)
  tiny-qwen3/    single-file F16 Qwen3 checkpoint (qk-norm, tied embeddings)
  tiny_expected.json                   per-tensor shape, sum, index-weighted sum, first values
  configs/llama31_v5.json              Llama-3.1-8B config re-serialized by transformers 5
  tiny-llama.gguf                      tiny-llama's weights as an F32 GGUF (gguf-py writer) with
                                       llama.cpp's q/k row permutation applied; checked here by
                                       loading it back with transformers' GGUF loader
  llama3-rope.gguf, llama3_rope_expected.json
                                       metadata + rope_freqs.weight as llama.cpp's converter
                                       stores Llama-3 rope scaling, and transformers' inv_freq
  gguf_smollm2_rows.safetensors, gguf_smollm2_expected.json
                                       rows of SmolLM2's layer-0 weights and its config as
                                       transformers loads them from the Q4_1 GGUF (q/k unpermuted
                                       by transformers' own code)
The hand-written configs/*.json (real models' config.json files) are not generated here.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "loader")
GGUF_DIR = os.path.join(ROOT, "models")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def write_dtypes():
    tensors = {
        "f32": torch.tensor([[1.5, -2.25, 3.0], [1e-3, -0.0, 123456.789]], dtype=torch.float32),
        # 65504 is f16's largest finite value, 5.96e-8 its smallest subnormal.
        "f16": torch.tensor([0.5, -1.0, 65504.0, 5.960464477539063e-08, 0.333251953125, -7.5],
                            dtype=torch.float16),
        "bf16": torch.tensor([[1.0, -3.140625], [1e30, -2.5e-20]], dtype=torch.bfloat16),
        "scalar": torch.tensor(42.0, dtype=torch.float32),
        "empty": torch.zeros((0, 3), dtype=torch.float32),
        "i64": torch.tensor([7, -9], dtype=torch.int64),
    }
    save_file(tensors, os.path.join(OUT, "dtypes.safetensors"), metadata={"format": "pt", "note": "nanocascade"})
    expected = {
        name: {"dtype": str(t.dtype), "shape": list(t.shape),
               "values": t.float().flatten().tolist() if t.is_floating_point() else None}
        for name, t in tensors.items()
    }
    with open(os.path.join(OUT, "dtypes.json"), "w") as f:
        json.dump(expected, f, indent=1)


def tensor_summary(t):
    x = t.detach().to(torch.float64).flatten()
    idx = torch.arange(x.numel(), dtype=torch.float64)
    return {"shape": list(t.shape), "sum": float(x.sum()), "weighted_sum": float((x * idx).sum()),
            "first": x[:4].tolist()}


def write_tiny_models():
    from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                              Qwen3Config, Qwen3ForCausalLM)
    torch.manual_seed(1234)
    common = dict(hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=40, max_position_embeddings=64)
    models = {
        "tiny-llama": (LlamaForCausalLM(LlamaConfig(**common, rms_norm_eps=1e-5, rope_theta=50000.0,
                                                    tie_word_embeddings=False)),
                       torch.bfloat16, "3KB"),
        "tiny-qwen2": (Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False)),
                       torch.float32, None),
        "tiny-qwen3": (Qwen3ForCausalLM(Qwen3Config(**common, head_dim=8, tie_word_embeddings=True)),
                       torch.float16, None),
    }
    expected = {}
    for name, (model, dtype, shard) in models.items():
        model = model.to(dtype)
        # Random init leaves norms at 1 and biases at 0; perturb so the values mean something.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p.float()).to(dtype))
        kwargs = {"max_shard_size": shard} if shard else {}
        path = os.path.join(OUT, name)
        model.save_pretrained(path, **kwargs)
        for extra in ("generation_config.json",):
            if os.path.exists(os.path.join(path, extra)):
                os.remove(os.path.join(path, extra))
        sd = model.state_dict()
        if model.config.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        expected[name] = {k: tensor_summary(v) for k, v in sd.items()}
    with open(os.path.join(OUT, "tiny_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


def write_v5_config():
    from transformers import LlamaConfig
    with open(os.path.join(OUT, "configs", "llama31_8b.json")) as f:
        cfg = LlamaConfig(**json.load(f))
    with open(os.path.join(OUT, "configs", "llama31_v5.json"), "w") as f:
        f.write(cfg.to_json_string())


# Rows chosen to cover both rotary halves of the first heads and the last row.
def pick_rows(n):
    rows = [0, 1, 2, 31, 32, 33, 63, 64, 65, 100, n - 1]
    return sorted({r for r in rows if r < n})


def write_gguf_reference():
    from transformers import AutoConfig, AutoModelForCausalLM
    if not os.path.exists(os.path.join(GGUF_DIR, GGUF_NAME)):
        print(f"skipping GGUF reference: {GGUF_DIR}/{GGUF_NAME} not found", file=sys.stderr)
        return
    cfg = AutoConfig.from_pretrained(GGUF_DIR, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(GGUF_DIR, gguf_file=GGUF_NAME,
                                                 dtype=torch.float32)
    sd = model.state_dict()
    names = ["model.embed_tokens.weight", "model.norm.weight"] + [
        f"model.layers.0.{p}.weight" for p in
        ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
         "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm",
         "post_attention_layernorm")]
    rows_out, summary = {}, {}
    for name in names:
        t = sd[name].float()
        summary[name] = tensor_summary(t)
        if t.dim() == 2:
            rows = pick_rows(t.shape[0])
            rows_out[name + ".rows"] = t[rows, :64].contiguous()
            rows_out[name + ".row_ids"] = torch.tensor(rows, dtype=torch.float32)
        else:
            rows_out[name + ".rows"] = t.contiguous()
    save_file(rows_out, os.path.join(OUT, "gguf_smollm2_rows.safetensors"))
    rope = getattr(cfg, "rope_parameters", None) or {}
    expected = {
        "config": {
            "num_hidden_layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "intermediate_size": cfg.intermediate_size, "vocab_size": cfg.vocab_size,
            "max_position_embeddings": cfg.max_position_embeddings,
            "rope_theta": rope.get("rope_theta", getattr(cfg, "rope_theta", None)),
            "rms_norm_eps": cfg.rms_norm_eps, "tie_word_embeddings": cfg.tie_word_embeddings,
            "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        },
        "tensors": summary,
        "has_lm_head_in_state_dict": "lm_head.weight" in sd,
    }
    with open(os.path.join(OUT, "gguf_smollm2_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


# llama.cpp's converter permutes q/k rows for its interleaved rope: per head, rows go from
# [2, head_dim/2] to [head_dim/2, 2] order (HF row i * half + j -> file row 2 * j + i).
def llamacpp_permute(w, n_head):
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<part...>.weight
    return f"blk.{parts[2]}.{GGUF_NAMES['.'.join(parts[3:-1])]}.{parts[-1]}"


def write_llama_gguf_metadata(w, cfg, vocab_size):
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(vocab_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)


def write_tiny_llama_gguf():
    import gguf
    from transformers import AutoModelForCausalLM
    src = os.path.join(OUT, "tiny-llama")
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    cfg = model.config
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    path = os.path.join(OUT, "tiny-llama.gguf")
    w = gguf.GGUFWriter(path, "llama")
    write_llama_gguf_metadata(w, cfg, cfg.vocab_size)
    for name, t in sd.items():
        if "q_proj" in name:
            t = llamacpp_permute(t, cfg.num_attention_heads)
        elif "k_proj" in name:
            t = llamacpp_permute(t, cfg.num_key_value_heads)
        w.add_tensor(gguf_name(name), np.ascontiguousarray(t, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    # The reference check: transformers' own GGUF reader must give back the original weights.
    back = AutoModelForCausalLM.from_pretrained(OUT, gguf_file="tiny-llama.gguf",
                                                dtype=torch.float32).state_dict()
    for name, t in sd.items():
        assert np.array_equal(back[name].numpy(), t), name


def write_llama3_rope_gguf():
    import gguf
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    cfg = LlamaConfig(hidden_size=64, num_attention_heads=1, num_key_value_heads=1,
                      intermediate_size=8, num_hidden_layers=1, vocab_size=8,
                      max_position_embeddings=131072, rope_parameters=rope)
    inv_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    head_dim = 64
    base = 1.0 / (rope["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    # llama.cpp's rope_freqs: per-frequency divisors, as its converter computes them.
    lo_wl = rope["original_max_position_embeddings"] / rope["low_freq_factor"]
    hi_wl = rope["original_max_position_embeddings"] / rope["high_freq_factor"]
    factors = []
    for f in base.tolist():
        wl = 2 * np.pi / f
        if wl < hi_wl:
            factors.append(1.0)
        elif wl > lo_wl:
            factors.append(rope["factor"])
        else:
            s = (rope["original_max_position_embeddings"] / wl - rope["low_freq_factor"]) / (
                rope["high_freq_factor"] - rope["low_freq_factor"])
            factors.append(1.0 / ((1 - s) / rope["factor"] + s))
    factors = np.array(factors, dtype=np.float32)
    # Cross-check against transformers: base / factors is its llama3 inv_freq.
    assert np.allclose(base.numpy() / factors, inv_freq.numpy(), rtol=1e-6), "rope_freqs formula"
    path = os.path.join(OUT, "llama3-rope.gguf")
    w = gguf.GGUFWriter(path, "llama")
    write_llama_gguf_metadata(w, cfg, 8)
    w.add_tensor("rope_freqs.weight", factors)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(OUT, "llama3_rope_expected.json"), "w") as f:
        json.dump({"rope_parameters": rope, "head_dim": head_dim,
                   "inv_freq": inv_freq.double().tolist()}, f, indent=1)


def main():
    os.makedirs(os.path.join(OUT, "configs"), exist_ok=True)
    write_dtypes()
    write_tiny_models()
    write_v5_config()
    write_tiny_llama_gguf()
    write_llama3_rope_gguf()
    write_gguf_reference()
    print("wrote", OUT)


if __name__ == "__main__":
    main()
