"""Router margin check for a tiny Qwen3-MoE fixture (docs/golden.md, "MoE router margins").
Qwen3-MoE routers only (Qwen3MoeTopKRouter: softmax top-k, optionally renormalised).

A GPU runs bf16 activations; a token whose k-th and (k+1)-th router logits are closer than bf16's
rounding of the router input can pick another expert there, a discrete jump in the logits. This
runs the fixture's golden prompts (prompt + the first `decode` greedy tokens, weights rounded to
bf16 as the GPU tests do) on the CPU: in f32 as is (the reference); with the router's input
rounded to bf16; with the whole model in bf16 (torch's bf16, a stand-in for the GPU's); with the
decisions flipped whose gap is below the bf16 model's largest router logit shift; and with only
each layer's narrowest decision flipped. It prints the routing decisions that differ from the
reference and the logits' worst row relative L2 error for each, and per layer the smallest gap
between the k-th and (k+1)-th router logit and the bf16 model's largest router logit shift.

usage: moe_router_margins.py FIXTURE_DIR [--decode 8]
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM


def run(model, seqs, round_router, flip_below=None):
    """Logits per sequence, and per layer the top-k sets and k-th/(k+1)-th gaps."""
    routes, gaps, rlog, hooks = {}, {}, {}, []
    for li, layer in enumerate(model.model.layers):
        gate = getattr(layer.mlp, "gate", None)
        if gate is None or not hasattr(gate, "top_k"):
            continue
        orig = gate.forward

        def fwd(h, _orig=orig, _li=li, _gate=gate):
            if round_router:
                h = h.to(torch.bfloat16).to(torch.float32)
            logits = torch.nn.functional.linear(h.reshape(-1, _gate.hidden_dim).to(_gate.weight.dtype),
                                                _gate.weight)
            srt = logits.sort(dim=-1, descending=True).values
            k = _gate.top_k
            gaps.setdefault(_li, []).append((srt[:, k - 1] - srt[:, k]).min().item())
            rlog.setdefault(_li, []).append(logits.float().clone())
            out = _orig(h)
            if flip_below is not None and _li in flip_below:
                out = flipped(logits, k, flip_below[_li], _gate.norm_topk_prob, out)
            routes.setdefault(_li, []).append(out[2].sort(dim=-1).values.clone())
            return out

        gate.forward = fwd
        hooks.append((gate, orig))
    logits = []
    with torch.no_grad():
        for s in seqs:
            logits.append(model(torch.tensor([s])).logits[0].float())
    for gate, orig in hooks:
        gate.forward = orig
    return logits, routes, gaps, rlog


def flipped(logits, k, below, renorm, out):
    """Routing with the k-th expert swapped for the (k+1)-th where their logits are closer than
    `below` (the decisions a bf16 rounding can flip)."""
    probs = torch.softmax(logits.float(), dim=-1)
    vals, idx = probs.topk(k + 1, dim=-1)
    srt = logits.float().sort(dim=-1, descending=True).values
    risky = (srt[:, k - 1] - srt[:, k]) < below
    idx, vals = idx.clone(), vals.clone()
    idx[risky, k - 1], vals[risky, k - 1] = idx[risky, k], vals[risky, k]
    idx, vals = idx[:, :k], vals[:, :k]
    if renorm:
        vals = vals / vals.sum(dim=-1, keepdim=True)
    FLIPS.append(int(risky.sum()))
    return out[0], vals.to(out[1].dtype), idx


FLIPS = []


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("fixture")
    ap.add_argument("--decode", type=int, default=8)
    args = ap.parse_args()
    d = Path(args.fixture)
    golden = json.loads((d / "golden.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    seqs = [g["ids"] + g["greedy"][: args.decode] for g in golden["prompts"]]
    base, r0, g0, l0 = run(model, seqs, False)
    bf, r1, _, l1 = run(model, seqs, True)
    report(d.name, "a bf16 router input", base, r0, bf, r1)
    bf16_model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16).eval()
    full, r2, _, l2 = run(bf16_model, seqs, False)
    report(d.name, "the whole model in bf16", base, r0, full, r2)
    shifts = {li: max((a - b).abs().max().item() for a, b in zip(l0[li], l2[li])) for li in l0}
    fl, *_ = run(model, seqs, False, shifts)
    worst = max(rel(b[i], a[i]) for a, b in zip(base, fl) for i in range(a.shape[0]))
    print(f"{d.name}: flipping the {sum(FLIPS)} decisions whose gap is below the layer's bf16 "
          f"router logit shift: worst row logits rel error {worst:.2e}")
    for li in sorted(g0):
        FLIPS.clear()
        one, *_ = run(model, seqs, False, {li: min(g0[li]) * (1 + 1e-6)})
        worst = max(rel(b[i], a[i]) for a, b in zip(base, one) for i in range(a.shape[0]))
        print(f"{d.name}: flipping layer {li}'s narrowest decision ({sum(FLIPS)} flipped): "
              f"worst row logits rel error {worst:.2e}")
    for li in sorted(g0):
        shift = max((a - b).abs().max().item() for a, b in zip(l0[li], l2[li]))
        print(f"  layer {li}: smallest k-th/(k+1)-th router logit gap {min(g0[li]):.3e}; "
              f"largest router logit shift under a bf16 model {shift:.3e}")
    return 0


def report(name, what, base, r0, other, r1):
    flips = total = 0
    for li in r0:
        for a, b in zip(r0[li], r1[li]):
            flips += int((a != b).any(dim=-1).sum())
            total += a.shape[0]
    worst = max(rel(b[i], a[i]) for a, b in zip(base, other) for i in range(a.shape[0]))
    print(f"{name}: routing decisions differing with {what}: {flips}/{total}; "
          f"worst row logits rel error {worst:.2e}")


if __name__ == "__main__":
    sys.exit(main())
