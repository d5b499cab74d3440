#!/usr/bin/env python3
"""Hugging Face transformers' generate() on nano-vLLM's workload, for comparison with
`nanocascade bench`.

The model is random-initialised from a config (transformers' own init; only the shapes matter for
speed) in bf16 on the GPU, attention "sdpa", the default dynamic KV cache. The workload is
nano-vLLM's bench.py: Python's random seeded with 0 draws, per request, an input length in
[100, max_input] and that many token ids in [0, 10000], then an output length in
[100, max_output] per request. generate() has no per-request max_new_tokens, so each batch runs
max(output lengths of the batch) steps for every row (left-padded inputs, EOS suppressed with
min_new_tokens, temperature 0.6, no top-k/top-p); batches of --batch-size requests in workload
order (128 by default: all 256 at once ran out of memory on an 80 GB H100 in the dynamic cache's
growth, 2026-11-26). Reported: useful output tokens/s (each request's
own output length, what `nanocascade bench` counts) and raw generated tokens/s (every row, every
step). `--max-time` bounds each batch through generate()'s own max_time; the JSON says how many
steps ran.
"""
import argparse
import json
import random
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def workload(n, max_input, max_output, seed):
    random.seed(seed)
    prompts = [[random.randint(0, 10000) for _ in range(random.randint(100, max_input))]
               for _ in range(n)]
    outs = [random.randint(100, max_output) for _ in range(n)]
    return prompts, outs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--num-requests", type=int, default=256)
    ap.add_argument("--max-input", type=int, default=1024)
    ap.add_argument("--max-output", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--max-batches", type=int, default=0, help="0 = all")
    ap.add_argument("--max-time", type=float, default=0, help="seconds per batch, 0 = none")
    ap.add_argument("--json", default="")
    a = ap.parse_args()

    prompts, outs = workload(a.num_requests, a.max_input, a.max_output, 0)
    config = AutoConfig.from_pretrained(a.config)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16,
                                                 attn_implementation="sdpa")
    model.eval()
    pad = 0

    def batch_tensors(ps):
        n = max(len(p) for p in ps)
        ids = torch.full((len(ps), n), pad, dtype=torch.long)
        mask = torch.zeros((len(ps), n), dtype=torch.long)
        for i, p in enumerate(ps):  # left padding
            ids[i, n - len(p):] = torch.tensor(p)
            mask[i, n - len(p):] = 1
        return ids.cuda(), mask.cuda()

    def gen(ids, mask, new, max_time):
        kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=True, temperature=0.6,
                  top_k=0, top_p=1.0, pad_token_id=pad)
        if max_time:
            kw["max_time"] = max_time
        with torch.inference_mode():
            return model.generate(input_ids=ids, attention_mask=mask, **kw)

    ids, mask = batch_tensors(prompts[:2])  # warm-up
    gen(ids, mask, 8, 0)
    torch.cuda.synchronize()

    batches = []
    total_time = useful = generated = 0
    for b0 in range(0, a.num_requests, a.batch_size):
        if a.max_batches and len(batches) >= a.max_batches:
            break
        ps, os_ = prompts[b0:b0 + a.batch_size], outs[b0:b0 + a.batch_size]
        ids, mask = batch_tensors(ps)
        new = max(os_)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = gen(ids, mask, new, a.max_time)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        steps = out.shape[1] - ids.shape[1]
        u = sum(min(o, steps) for o in os_)
        batches.append(dict(requests=len(ps), padded_input=ids.shape[1], max_new_tokens=new,
                            steps_run=steps, time_s=dt, useful_tokens=u,
                            generated_tokens=steps * len(ps),
                            prompt_tokens=sum(len(p) for p in ps)))
        total_time += dt
        useful += u
        generated += steps * len(ps)
        print(f"batch {len(batches)}: {len(ps)} requests, padded input {ids.shape[1]}, "
              f"{steps}/{new} steps in {dt:.2f} s ({1e3 * dt / max(steps, 1):.2f} ms per step)",
              flush=True)
    res = dict(transformers=__import__("transformers").__version__, torch=torch.__version__,
               device=torch.cuda.get_device_name(), config=a.config, batches=batches,
               time_s=total_time, useful_tokens=useful, generated_tokens=generated,
               useful_tok_s=useful / total_time, generated_tok_s=generated / total_time)
    print(f"HF generate: {useful} useful output tokens ({generated} generated) in "
          f"{total_time:.2f} s: {useful / total_time:.1f} useful tok/s, "
          f"{generated / total_time:.1f} generated tok/s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
