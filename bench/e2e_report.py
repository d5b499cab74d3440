#!/usr/bin/env python3
"""Roofline of `nanocascade bench --json` results: decode-only steps against the copy bandwidth
((weights + KV read + logits written) / measured copy rate), steps with prefill against the GEMM
rate (matmul + attention FLOPs / measured bf16 GEMM rate), and where the wall time goes.

usage: e2e_report.py CONFIG.json CEILINGS.json BENCH.json [BENCH.json ...]"""
import json
import sys


def main():
    cfg = json.load(open(sys.argv[1]))
    ceil = json.load(open(sys.argv[2]))
    H, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    Hq, Hk = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim", H // Hq)
    I, V = cfg["intermediate_size"], cfg["vocab_size"]
    layer_params = H * Hq * D + 2 * H * Hk * D + Hq * D * H + 3 * H * I
    matmul_params = L * layer_params  # per token; lm_head only for sampled rows
    kv_bytes_per_token = L * 2 * Hk * D * 2
    bw = ceil["copy_GBps"] * 1e9
    flops_rate = ceil["bf16_gemm_TFLOPs"] * 1e12
    for path in sys.argv[3:]:
        b = json.load(open(path))
        print(f"== {path} (cuda graphs: {b['cuda_graphs']})")
        print(f"output tok/s {b['output_tokens'] / b['time_s']:.1f}, wall {b['time_s']:.2f} s, "
              f"{b['steps']} steps; device busy {b['device_s']:.2f} s, idle "
              f"{b['time_s'] - b['device_s']:.2f} s ({1e3 * (b['time_s'] - b['device_s']) / b['steps']:.3f} ms/step)")
        print(f"host per step: schedule+plan {1e3 * b['schedule_s'] / b['steps']:.3f} ms, "
              f"sampling+detok {1e3 * b['sample_s'] / b['steps']:.3f} ms, forward call "
              f"{1e3 * b['model_s'] / b['steps']:.3f} ms (includes waiting for the GPU)")
        d = b["decode"]
        if d["steps"]:
            batch = d["tokens"] / d["steps"]
            # Weights read once per step (tied embeddings: once, as lm_head); KV of every
            # context token; the logits written in float32.
            # (weight_bytes counts the float32 rope table too: only a few rows of it are read)
            weights = b["weight_bytes"] - cfg["max_position_embeddings"] * D * 4
            bytes_step = weights + d["kv_tokens"] / d["steps"] * kv_bytes_per_token + batch * V * 4
            floor = bytes_step / bw
            dev = d["device_s"] / d["steps"]
            wall = d["wall_s"] / d["steps"]
            print(f"decode-only: {d['steps']} steps, batch {batch:.1f}, kv {d['kv_tokens'] / d['steps']:.0f} "
                  f"tokens/step; bytes/step {bytes_step / 1e6:.1f} MB -> floor {1e3 * floor:.3f} ms; "
                  f"device {1e3 * dev:.3f} ms ({floor / dev:.2f} of roofline), wall {1e3 * wall:.3f} ms "
                  f"({floor / wall:.2f})")
        p = b["prefill"]
        if p["steps"]:
            flops = 2 * matmul_params * p["tokens"] + 4 * L * Hq * D * p["attn_pairs"]
            floor = flops / flops_rate
            print(f"with prefill: {p['steps']} steps, {p['tokens'] / p['steps']:.0f} tokens/step; "
                  f"{flops / 1e12:.2f} TFLOP -> floor {floor:.3f} s; device {p['device_s']:.3f} s "
                  f"({floor / p['device_s']:.2f} of roofline), wall {p['wall_s']:.3f} s "
                  f"({floor / p['wall_s']:.2f})")


if __name__ == "__main__":
    main()
