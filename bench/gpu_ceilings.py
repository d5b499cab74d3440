#!/usr/bin/env python3
"""The card's two ceilings, measured with PyTorch: a device-to-device copy (GB/s counting bytes
read + written) and a large bf16 matrix product (TFLOP/s). Median of repeated CUDA-event timings
after warm-up, on random data."""
import json
import sys

import torch


def timed(fn, reps):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e-3)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    n = 1 << 30  # 1 GiB of bf16 copied
    src = torch.randn(n // 2, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src), 20)
    copy_gbs = 2 * n / t / 1e9
    m = 8192
    x = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    t = timed(lambda: x @ w, 20)
    gemm = 2 * m ** 3 / t / 1e12
    res = dict(device=torch.cuda.get_device_name(), copy_GBps=copy_gbs, bf16_gemm_TFLOPs=gemm)
    print(json.dumps(res))
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(res, f)


if __name__ == "__main__":
    main()
