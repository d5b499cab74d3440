#!/usr/bin/env python3
"""NCCL's own all-reduce bus bandwidth on this machine's GPUs (issue #21's reference), through
PyTorch's NCCL backend, one process per GPU, as nccl-tests reports it: busbw = bytes / time *
2 (n - 1) / n. Sizes: the engine's per-layer messages (rows x hidden x 2 bytes for the Llama-3
8B/70B hidden sizes at batch 1, 64, 256) and 1 GiB. Prints one JSON line per (ranks, bytes).

    python3 bench/nccl_busbw.py --ranks 2 4
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, n, sizes, port, out):
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=n)
    torch.cuda.set_device(rank)
    for nbytes in sizes:
        x = torch.ones(nbytes // 2, dtype=torch.bfloat16, device="cuda")
        iters = 200 if nbytes < (64 << 20) else 20
        for _ in range(5):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        t = (time.perf_counter() - t0) / iters
        if rank == 0:
            busbw = nbytes / t * 2 * (n - 1) / n / 1e9
            out.put({"ranks": n, "bytes": nbytes, "us": t * 1e6, "busbw_GBps": busbw})
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, nargs="+", default=[2])
    ap.add_argument("--port", type=int, default=29533)
    a = ap.parse_args()
    sizes = sorted({rows * hidden * 2 for rows in (1, 64, 256) for hidden in (4096, 8192)} |
                   {1 << 30})
    for n in a.ranks:
        if n > torch.cuda.device_count():
            print(json.dumps({"ranks": n, "skipped": f"{torch.cuda.device_count()} GPUs"}))
            continue
        q = mp.get_context("spawn").SimpleQueue()
        mp.spawn(worker, args=(n, sizes, a.port + n, q), nprocs=n, join=True)
        while not q.empty():
            print(json.dumps(q.get()), flush=True)


if __name__ == "__main__":
    main()
