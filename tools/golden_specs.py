"""Tiny fixture specs for make_golden.py: the spec type and the attention-variant models.

make_golden.py keeps the Llama/Qwen specs; this file adds Gemma 2, Gemma 3, Mistral, Phi-3
(plain and longrope) and Qwen3-MoE, each with the config rewrites that give it the spelling of its checkpoints
on the Hub, and "ablations": variants of the config that must change the logits (a sliding
window, a soft cap, a rope base) or must leave them unchanged (longrope's short factors), so a
fixture cannot pass an engine that ignores the feature it is there to test. docs/golden.md says
what each fixture exercises.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import Gemma2Config, Gemma3TextConfig, MistralConfig, Phi3Config, Qwen3MoeConfig

# Window of the sliding-window layers: shorter than the 19- and 40-token prompts, longer than the
# 7-token one. HF's mask lets query i see keys j with i - WINDOW < j <= i (WINDOW keys, itself
# included), i.e. FlashInfer's window_left = WINDOW - 1.
WINDOW = 8
# The scaled-rope fixtures (tiny-llama: llama3, tiny-deepseek-v2-lite: YaRN, both over 64
# original positions of 256) add a 120-token prompt: its positions and its greedy continuation's
# run to 136, past the original context.
LONG_ROPE_PROMPT_LENGTHS = (7, 19, 40, 120)


@dataclass
class Ablation:
    """A config change and what it must do to the logits of the prompts `prompts` (indices).

    expect="differ": max |logit difference| of some position must exceed min_diff in every one of
    those prompts (the feature bites). expect="same": every logit within min_diff (the feature is
    idle there, e.g. longrope's short factors when every forward is longer than the original
    context)."""
    what: str
    mutate: callable  # config -> None, in place
    prompts: tuple = (1, 2)
    expect: str = "differ"
    min_diff: float = 1e-3


@dataclass
class TinySpec:
    name: str
    make_config: callable
    seed: int
    # "hub": rewrite config.json the way checkpoints on the Hub spell rope (top-level rope_theta,
    # rope_scaling, torch_dtype), which transformers 5 still reads; "v5": keep what
    # save_pretrained wrote (rope_parameters, dtype). The C++ reader must handle both.
    config_style: str = "v5"
    dtype: torch.dtype = torch.float32
    max_shard_size: str | None = None
    weights_from: str | None = None  # reuse another spec's weights (same seed, same shapes)
    extras: dict = field(default_factory=dict)
    # Rewrites config.json in "hub" style instead of make_golden.hubify_config (models whose Hub
    # configs spell rope differently, e.g. Gemma 3's rope_local_base_freq).
    hubify: callable | None = None
    # Mean of the drawn norm weights, by parameter name: 1 (x * w), or about 0 for Gemma, whose
    # RMSNorm scales by (1 + w).
    norm_center: callable = lambda name: 1.0
    # Config attributes, beyond the common ones, that must read back from config.json as meant.
    check_keys: tuple = ()
    ablations: list = field(default_factory=list)
    # Smallest first chunk of the chunked-prefill self-check (longrope: longer than the original
    # context, so that HF picks the long factors in that forward too).
    min_first_chunk: int = 1
    # Prompt lengths (make_golden.TINY_PROMPT_LENGTHS when None). A longer last prompt takes the
    # positions past a scaled rope's original context (issue #13: llama3 and YaRN at long
    # positions).
    prompt_lengths: tuple | None = None


def gemma_norm_center(name: str) -> float:
    """Gemma scales by (1 + w): most norms get w ~ N(0, 0.2^2) (scale about 1). The post-attention
    and post-feedforward norms get w ~ 2 + N(0, 0.2^2) (scale about 3): otherwise the embedding,
    multiplied by sqrt(hidden) and tied to the head, dominates the residual stream and greedy
    decoding just repeats the last token."""
    return 2.0 if ".post_" in name else 0.0


def _no_window(config) -> None:
    config.sliding_window = 1 << 20


def _set(attr, value):
    def mutate(config):
        setattr(config, attr, value)
    return mutate


# ----------------------------------------------------------------------------- Mistral


def mistral_config() -> MistralConfig:
    # head_dim 64 x 4 heads: q is 256 wide, hidden 64 (head_dim != hidden/heads, as Mistral Nemo;
    # 64 rather than 32 because the CUDA backend takes head_dim 64, 96, 128 and 256).
    return MistralConfig(
        vocab_size=512, hidden_size=64, head_dim=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=WINDOW,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6})


# ----------------------------------------------------------------------------- Gemma 2

GEMMA2_LAYERS = ["sliding_attention", "full_attention"] * 2


def gemma2_config() -> Gemma2Config:
    # Caps small enough that tanh is far from linear on these random weights (checked by the
    # ablations); query_pre_attn_scalar 64 != head_dim 256 (scores scaled by 64^-1/2, not 256^-1/2).
    return Gemma2Config(
        vocab_size=512, hidden_size=64, head_dim=256, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=64, sliding_window=WINDOW, layer_types=list(GEMMA2_LAYERS),
        attn_logit_softcapping=5.0, final_logit_softcapping=8.0,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


# ----------------------------------------------------------------------------- Gemma 3

GEMMA3_LAYERS = ["sliding_attention"] * 5 + ["full_attention"]


def gemma3_rope() -> dict:
    # The 4B+ checkpoints: local layers rope base 1e4, global layers 1e6 with linear scaling 8.
    return {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}}


def gemma3_config() -> Gemma3TextConfig:
    return Gemma3TextConfig(
        vocab_size=512, hidden_size=64, head_dim=64, intermediate_size=64, num_hidden_layers=6,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=96, sliding_window=WINDOW, layer_types=list(GEMMA3_LAYERS),
        bos_token_id=None, eos_token_id=None, pad_token_id=None, rope_parameters=gemma3_rope())


def hubify_gemma3(path: Path) -> None:
    """Gemma 3's Hub spelling: rope_theta (global), rope_local_base_freq, rope_scaling (global
    layers only), sliding_window_pattern beside layer_types, torch_dtype."""
    cfg = json.loads(path.read_text())
    rope = cfg.pop("rope_parameters")
    full, local = dict(rope["full_attention"]), rope["sliding_attention"]
    cfg["rope_theta"] = full.pop("rope_theta")
    cfg["rope_local_base_freq"] = local["rope_theta"]
    cfg["rope_scaling"] = full
    cfg["sliding_window_pattern"] = 6
    cfg.pop("_sliding_window_pattern", None)  # a private attribute save_pretrained leaks
    cfg["torch_dtype"] = cfg.pop("dtype")
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _gemma3_global_unscaled(config) -> None:
    config.rope_parameters["full_attention"] = {"rope_type": "default", "rope_theta": 1e6}


def _gemma3_local_global_base(config) -> None:
    config.rope_parameters["sliding_attention"]["rope_theta"] = 1e6


# ----------------------------------------------------------------------------- Phi-3

PHI3_MAX_POS = 128
PHI3_ORIGINAL_MAX = 4  # longrope: every golden forward (>= 5 positions) is longer than this


def phi3_config() -> Phi3Config:
    # head_dim 96 = 192 / 2; one layer keeps the fixture under 1.5 MB with hidden 192.
    return Phi3Config(
        vocab_size=512, hidden_size=192, intermediate_size=48, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=PHI3_MAX_POS,
        original_max_position_embeddings=PHI3_MAX_POS, rms_norm_eps=1e-5,
        tie_word_embeddings=False, sliding_window=None,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def longrope_factors() -> tuple[list[float], list[float]]:
    """48 (head_dim / 2) factors each, shaped like Phi-3's: short near 1, long growing with the
    dimension index (low frequencies stretched most)."""
    rng = np.random.default_rng(2024)
    short = 1.0 + 0.15 * rng.random(48)
    long = np.geomspace(1.0, 24.0, 48) * (1.0 + 0.1 * rng.random(48))
    return [round(float(x), 4) for x in short], [round(float(x), 4) for x in long]


def phi3_longrope_config() -> Phi3Config:
    short, long = longrope_factors()
    return Phi3Config(
        vocab_size=512, hidden_size=192, intermediate_size=48, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=PHI3_MAX_POS,
        original_max_position_embeddings=PHI3_ORIGINAL_MAX, rms_norm_eps=1e-5,
        tie_word_embeddings=False, sliding_window=None,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
        rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                         "short_factor": short, "long_factor": long})


def hubify_phi3(path: Path) -> None:
    """Phi-3's Hub spelling: rope_theta, original_max_position_embeddings and (if any)
    partial_rotary_factor top-level; rope_scaling {"type": "longrope", short_factor,
    long_factor} or null; torch_dtype."""
    cfg = json.loads(path.read_text())
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    rope.pop("partial_rotary_factor", None)  # 1.0, Phi3Config's default
    original = rope.pop("original_max_position_embeddings", None)
    if original is not None:
        cfg["original_max_position_embeddings"] = original
    kind = rope.pop("rope_type", "default")
    cfg["rope_scaling"] = None if kind == "default" else {"type": kind, **rope}
    cfg["torch_dtype"] = cfg.pop("dtype")
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _short_is_long(config) -> None:
    config.rope_parameters["short_factor"] = list(config.rope_parameters["long_factor"])


def _long_is_short(config) -> None:
    config.rope_parameters["long_factor"] = list(config.rope_parameters["short_factor"])


def _attention_factor_one(config) -> None:
    config.rope_parameters["attention_factor"] = 1.0


# ----------------------------------------------------------------------------- Qwen3-MoE


def qwen3_moe_config() -> Qwen3MoeConfig:
    # 8 experts, top-2 renormalised (as Qwen3-30B-A3B), expert MLPs of 32; layer 0 dense through
    # mlp_only_layers (its MLP of intermediate_size 64), layer 1 sparse.
    return Qwen3MoeConfig(
        vocab_size=512, hidden_size=64, head_dim=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-6, tie_word_embeddings=False, num_experts=8, num_experts_per_tok=2,
        moe_intermediate_size=32, norm_topk_prob=True, decoder_sparse_step=1,
        mlp_only_layers=[0], bos_token_id=None, eos_token_id=None, pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6})


def qwen3_moe_sparse_config() -> Qwen3MoeConfig:
    # Every layer sparse, as Qwen3-30B-A3B, layer 0 included; smaller than tiny-qwen3-moe.
    # (Meant for a model.gguf too, since llama.cpp's converter refuses dense layers in a qwen3moe
    # file; but its Qwen2-MoE vocabulary path wants a GPT-2 style tokenizer that
    # make_gguf_goldens.py's SentencePiece filler does not give: not converted yet.)
    return Qwen3MoeConfig(
        vocab_size=512, hidden_size=32, head_dim=16, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        rms_norm_eps=1e-6, tie_word_embeddings=False, num_experts=8, num_experts_per_tok=2,
        moe_intermediate_size=16, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6})


def qwen3_moe_hd64_config() -> Qwen3MoeConfig:
    # Every layer sparse with head_dim 64, so that the CUDA backend (attention head dims
    # 64/128/256 and JIT dims, not 32 or 16) serves it too: 2 heads, 1 kv head (GQA 2), 8 experts
    # of 16, top-2 renormalised; vocabulary 256 to stay small.
    return Qwen3MoeConfig(
        vocab_size=256, hidden_size=64, head_dim=64, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        rms_norm_eps=1e-6, tie_word_embeddings=False, num_experts=8, num_experts_per_tok=2,
        moe_intermediate_size=16, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6})


def hubify_qwen3_moe(path: Path) -> None:
    """Qwen3-30B-A3B's Hub spelling: rope_theta, rope_scaling null, torch_dtype, and
    "num_experts" (transformers 5 writes its alias num_local_experts)."""
    cfg = json.loads(path.read_text())
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = None
    cfg["torch_dtype"] = cfg.pop("dtype")
    cfg["num_experts"] = cfg.pop("num_local_experts")
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- the specs

_WINDOW_KEYS = ("sliding_window", "layer_types")
_GEMMA_KEYS = _WINDOW_KEYS + ("query_pre_attn_scalar", "attn_logit_softcapping",
                              "final_logit_softcapping", "hidden_activation")
_PHI3_KEYS = ("original_max_position_embeddings", "max_position_embeddings", "sliding_window")
_MOE_KEYS = ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob",
             "decoder_sparse_step", "mlp_only_layers")

NEW_SPECS = [
    TinySpec("tiny-mistral", mistral_config, seed=1004, config_style="v5",
             check_keys=_WINDOW_KEYS,
             ablations=[Ablation("no sliding window", _no_window)]),
    TinySpec("tiny-gemma2", gemma2_config, seed=1005, config_style="hub",
             norm_center=gemma_norm_center, check_keys=_GEMMA_KEYS,
             ablations=[Ablation("no sliding window", _no_window),
                        Ablation("no attention soft cap", _set("attn_logit_softcapping", None),
                                 prompts=(0, 1, 2), min_diff=1e-2),
                        Ablation("no final soft cap", _set("final_logit_softcapping", None),
                                 prompts=(0, 1, 2), min_diff=1e-2),
                        Ablation("query_pre_attn_scalar = head_dim",
                                 _set("query_pre_attn_scalar", 256), prompts=(0, 1, 2))]),
    TinySpec("tiny-gemma3", gemma3_config, seed=1006, config_style="hub", hubify=hubify_gemma3,
             norm_center=gemma_norm_center, check_keys=_GEMMA_KEYS,
             ablations=[Ablation("no sliding window", _no_window),
                        Ablation("global rope without linear scaling", _gemma3_global_unscaled,
                                 prompts=(0, 1, 2)),
                        Ablation("local rope base 1e6 (the global one)",
                                 _gemma3_local_global_base, prompts=(0, 1, 2))]),
    TinySpec("tiny-phi3", phi3_config, seed=1007, config_style="hub", hubify=hubify_phi3,
             check_keys=_PHI3_KEYS),
    TinySpec("tiny-phi3-longrope", phi3_longrope_config, seed=1007, config_style="hub",
             hubify=hubify_phi3, weights_from="tiny-phi3", check_keys=_PHI3_KEYS,
             min_first_chunk=PHI3_ORIGINAL_MAX + 1,
             ablations=[Ablation("short factors = long factors (HF used the long ones)",
                                 _short_is_long, prompts=(0, 1, 2), expect="same",
                                 min_diff=1e-5),
                        Ablation("long factors = short factors", _long_is_short,
                                 prompts=(0, 1, 2)),
                        Ablation("attention factor 1", _attention_factor_one,
                                 prompts=(0, 1, 2))]),
    TinySpec("tiny-qwen3-moe", qwen3_moe_config, seed=1008, config_style="hub",
             hubify=hubify_qwen3_moe, check_keys=_MOE_KEYS,
             ablations=[Ablation("norm_topk_prob off", _set("norm_topk_prob", False),
                                 prompts=(0, 1, 2)),
                        Ablation("top-1 routing", _set("num_experts_per_tok", 1),
                                 prompts=(0, 1, 2))]),
    TinySpec("tiny-qwen3-moe-sparse", qwen3_moe_sparse_config, seed=1009, config_style="hub",
             hubify=hubify_qwen3_moe, check_keys=_MOE_KEYS,
             ablations=[Ablation("top-1 routing", _set("num_experts_per_tok", 1),
                                 prompts=(0, 1, 2))]),
    TinySpec("tiny-qwen3-moe-hd64", qwen3_moe_hd64_config, seed=1010, config_style="hub",
             hubify=hubify_qwen3_moe, check_keys=_MOE_KEYS,
             ablations=[Ablation("top-1 routing", _set("num_experts_per_tok", 1),
                                 prompts=(0, 1, 2))]),
]


# ----------------------------------------------------------------------------- DeepSeek (MLA)

def _deepseek_common(q_lora_rank, rope: dict, first_dense: int = 2, **moe) -> dict:
    # MLA: 4 heads of qk_nope 16 + qk_rope 8, values 16 wide, a 32-wide latent. Layers before
    # first_dense are dense; the others MoE (4 experts of 32, top-2, one shared expert), with the
    # routing fields in `moe`. first_dense 2: every layer dense, the expert fields unused.
    fields = dict(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=32, q_lora_rank=q_lora_rank,
        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, max_position_embeddings=256,
        rms_norm_eps=1e-6, tie_word_embeddings=False,
        n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, rope_parameters=rope)
    fields.update(first_k_dense_replace=first_dense, **moe)
    return fields


def deepseek_yarn(mscale: float, mscale_all_dim: float) -> dict:
    # YaRN as DeepSeek-V2's checkpoints set it (factor 40 over 4096 there), shrunk: factor 4 over
    # 64 original positions; beta_fast/beta_slow put the ramp inside the 4 rope frequencies.
    return {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
            "original_max_position_embeddings": 64, "beta_fast": 32, "beta_slow": 1,
            "mscale": mscale, "mscale_all_dim": mscale_all_dim}


def deepseek_v2_lite_config():
    from transformers import DeepseekV2Config
    return DeepseekV2Config(**_deepseek_common(None, deepseek_yarn(0.707, 0.707)))


def deepseek_v2_config():
    from transformers import DeepseekV2Config
    # Layer 1 is MoE with V2's group-limited greedy routing (2 groups of 2 experts, 1 group kept).
    return DeepseekV2Config(**_deepseek_common(
        24, deepseek_yarn(0.707, 0.707), first_dense=1, n_shared_experts=1,
        topk_method="group_limited_greedy", n_group=2, topk_group=1, routed_scaling_factor=1.5))


def deepseek_v3_config():
    # mscale != mscale_all_dim: the cos/sin attention factor differs from 1 as well.
    from transformers import DeepseekV3Config
    # Layer 1 is MoE with V3's routing: sigmoid scores plus the correction bias (noaux_tc), 2 groups
    # ranked by their top-2 sum, 1 kept, top-k renormalised and scaled by 2.5.
    return DeepseekV3Config(**_deepseek_common(
        24, deepseek_yarn(1.0, 0.8), first_dense=1, n_shared_experts=1, n_group=2, topk_group=1,
        norm_topk_prob=True, routed_scaling_factor=2.5), rope_interleave=True,
        # As DeepSeek-V3's Hub config spells them (transformers' V3 router always does this;
        # llama.cpp's converter writes expert_gating_func only from scoring_func).
        scoring_func="sigmoid", topk_method="noaux_tc")


def _no_yarn(config) -> None:
    config.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0}


def _no_mscale_all_dim(config) -> None:
    config.rope_parameters["mscale_all_dim"] = 0


_MLA_KEYS = ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
             "first_k_dense_replace", "n_routed_experts", "n_shared_experts", "n_group",
             "topk_group", "routed_scaling_factor")

NEW_SPECS += [
    TinySpec("tiny-deepseek-v2-lite", deepseek_v2_lite_config, seed=1101, config_style="v5",
             prompt_lengths=LONG_ROPE_PROMPT_LENGTHS,
             check_keys=_MLA_KEYS,
             ablations=[Ablation("no yarn", _no_yarn, prompts=(0, 1, 2)),
                        Ablation("no mscale_all_dim", _no_mscale_all_dim, prompts=(0, 1, 2))]),
    TinySpec("tiny-deepseek-v2", deepseek_v2_config, seed=1102, config_style="hub",
             check_keys=_MLA_KEYS + ("topk_method",),
             ablations=[Ablation("greedy routing (no group limit)", _set("topk_method", "greedy"),
                                 prompts=(1, 2))]),
    TinySpec("tiny-deepseek-v3", deepseek_v3_config, seed=1103, config_style="v5",
             check_keys=_MLA_KEYS + ("rope_interleave",),
             ablations=[Ablation("rope_interleave false", _set("rope_interleave", False),
                                 prompts=(0, 1, 2)),
                        Ablation("topk_group 2 (no group limit)", _set("topk_group", 2),
                                 prompts=(1, 2))]),
]
