"""tests/fixtures/tiny-llama-fp8: tiny-llama's weights as a Hugging Face FP8 checkpoint, with a
float32 reference of the FP8 arithmetic nanocascade's CPU backend emulates (backend/fp8_weight.h).

Checkpoint: every linear weight of the decoder stored as float8_e4m3fn with a `weight_scale`
beside it, in the layouts checkpoints use: layer 0 per output channel ([out, 1] for q/k/v/o,
[out] for the MLP), layer 1 per tensor (a scalar) with static `input_scale`s on q/k/v (different
per part: the fused q/k/v uses their largest) and on down_proj; config.json says
quantization_config {"quant_method": "fp8"}. Embeddings, norms and lm_head stay float32.

Reference: transformers' LlamaForCausalLM from the same folder's float32 weights with each linear
module replaced by Fp8Linear below: per token s = max|x| / 448 (or the static input scale),
x_q = float(e4m3(x / s)) by torch's float8_e4m3fn cast, out = (x_q @ (code values)^T) * s * scale.
golden.json holds the tiny-llama prompts, their logits (logits_<i>.bin, float32 [T, V]) and 16
greedy tokens after each, as tools/make_golden.py writes them.

  /work/venv-golden/bin/python tools/make_fp8_fixture.py
"""
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "tests/fixtures/tiny-llama"
OUT = REPO / "tests/fixtures/tiny-llama-fp8"
E4M3_MAX = 448.0
GREEDY = 16
STATIC = {"model.layers.1.self_attn.q_proj": 0.021, "model.layers.1.self_attn.k_proj": 0.017,
          "model.layers.1.self_attn.v_proj": 0.019, "model.layers.1.mlp.down_proj": 0.05}


class Fp8Linear(torch.nn.Module):
    def __init__(self, codes, scale, input_scale):
        super().__init__()
        self.w = codes.float()  # exact e4m3 values
        self.scale = scale.reshape(-1).expand(codes.shape[0]).float()
        self.input_scale = input_scale

    def forward(self, x):
        if self.input_scale is not None:
            s = torch.full_like(x[..., :1], self.input_scale)
        else:
            amax = x.abs().amax(dim=-1, keepdim=True)
            s = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
        xq = (x / s).to(torch.float8_e4m3fn).float()
        return (xq @ self.w.t()) * s * self.scale


def quantize(w, per_channel):
    amax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax().reshape(())
    s = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
    return (w / s).to(torch.float8_e4m3fn), s.float()


def main():
    weights = load_file(SRC / "model.safetensors")
    out = {}
    fused_static = {}
    for name, w in weights.items():
        prefix = name[: -len(".weight")]
        if not name.startswith("model.layers.") or "norm" in name:
            out[name] = w
            continue
        layer0 = name.startswith("model.layers.0.")
        codes, s = quantize(w, per_channel=layer0)
        if layer0 and ".mlp." in name:
            s = s.reshape(-1)  # [out]
        out[name] = codes
        out[prefix + ".weight_scale"] = s
        if prefix in STATIC:
            out[prefix + ".input_scale"] = torch.tensor(STATIC[prefix], dtype=torch.float32)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    save_file(out, OUT / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((SRC / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8", "activation_scheme": "dynamic"}
    (OUT / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    model = AutoModelForCausalLM.from_pretrained(SRC, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    for name in [n for n in out if n.endswith(".weight_scale")]:
        prefix = name[: -len(".weight_scale")]
        static = STATIC.get(prefix)
        if prefix.endswith(("q_proj", "k_proj", "v_proj")) and prefix.startswith("model.layers.1."):
            base = prefix.rsplit(".", 1)[0]
            static = max(STATIC[base + p] for p in (".q_proj", ".k_proj", ".v_proj"))
        parent, child = prefix.rsplit(".", 1)
        setattr(model.get_submodule(parent), child,
                Fp8Linear(out[prefix + ".weight"], out[name], static))
    golden_src = json.loads((SRC / "golden.json").read_text())
    prompts = []
    with torch.no_grad():
        for i, p in enumerate(golden_src["prompts"]):
            ids = torch.tensor([p["ids"]])
            logits = model(ids).logits[0].float().contiguous()
            (OUT / f"logits_{i}.bin").write_bytes(logits.numpy().tobytes())
            seq = list(p["ids"])
            greedy = []
            for _ in range(GREEDY):
                nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
                greedy.append(nxt)
                seq.append(nxt)
            prompts.append({"ids": p["ids"], "logits_file": f"logits_{i}.bin",
                            "logits_shape": list(logits.shape), "greedy": greedy})
    (OUT / "golden.json").write_text(json.dumps({"prompts": prompts}, indent=1) + "\n")


if __name__ == "__main__":
    main()
