"""Writes tests/data/fp8/e4m3fn.txt: PyTorch's float8_e4m3fn, the reference for core/fp8.h.

Run with /work/venv-golden/bin/python (torch 2.15, CPU). Two sections, values as Python's
float.hex():
  code <byte> <value>      every one of the 256 codes decoded by torch (nan for 0x7f, 0xff);
  cvt <input> <byte>       torch's float32 -> float8_e4m3fn conversion of inputs chosen to hit
                           every rounding case: each midpoint between neighbouring codes (ties),
                           the float32 values just either side of it, the codes themselves, values
                           past 448 and infinities (torch saturates them to +-448, as CUDA's
                           __NV_SATFINITE conversion does), and seeded random values.
"""
import math
import random
import sys

import numpy as np
import torch


def to_code(x: float) -> int:
    t = torch.tensor([x], dtype=torch.float32).to(torch.float8_e4m3fn)
    return int(t.view(torch.uint8)[0])


def main(path: str) -> None:
    codes = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float().tolist()
    finite = sorted({v for v in codes if not math.isnan(v)})
    inputs = list(finite)
    for a, b in zip(finite, finite[1:]):
        mid = np.float32((a + b) / 2)
        inputs += [float(mid), float(np.nextafter(mid, np.float32(-1e9))),
                   float(np.nextafter(mid, np.float32(1e9)))]
    inputs += [449.0, 463.9, 464.0, 464.1, 479.0, 480.0, 1e6, math.inf, -math.inf, 2.0**-12,
               -(2.0**-11), 1e-30, -0.0]
    rng = random.Random(17)
    inputs += [rng.gauss(0, 1) * 10 ** rng.uniform(-3, 2.5) for _ in range(500)]
    with open(path, "w") as f:
        for i, v in enumerate(codes):
            f.write(f"code {i} {'nan' if math.isnan(v) else float(v).hex()}\n")
        for x in inputs:
            x32 = float(np.float32(x))
            f.write(f"cvt {x32.hex()} {to_code(x32)}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/fp8/e4m3fn.txt")
