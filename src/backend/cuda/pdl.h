// Programmatic dependent launch (PDL, Hopper): whether our small kernels of a decode step, and
// the attention kernels (FlashInfer's decode, prefill and ragged kernels and their split-KV
// merge, our FP8 decode: AttnIO::pdl, the own level only), are launched so that each may start
// while the kernel before it in the stream finishes (pdl.cuh has the launch and the device-side
// calls).
//
// Contract: pdl_enabled() is true when the process-wide switch is on and the current device has
// compute capability 9.x (the switch starts from the environment: NC_PDL=1 turns it on, 0 off;
// unset, kPdlByDefault); set_pdl_enabled() changes the switch (tests, benchmarks' A/B) for
// launches made after it. A CUDA graph keeps the launches as they were captured.
// Results never depend on the switch: a kernel launched this way waits for its predecessor
// (griddepcontrol.wait) before it touches anything that kernel may write. Plain host functions.
#pragma once

namespace nc::cuda {

// On: measured 2026-12-06 on an H100 (nc_gpu_bench decode-b1, batch 1: 1.406 -> 1.294 ms a
// token on the Qwen3-0.6B shape, 6.186 -> 6.058 on Llama-3-8B's), and the whole GPU suite passed
// with it on; the attention kernels with it since 2026-12-07 (H100: sparse decode at 32k x 16 x
// 2048 0.79-0.80 -> 0.82 of its floor, FP8 decode at 2,048 tokens +1-2%; the suite passed).
// NC_PDL=0 turns it off.
inline constexpr bool kPdlByDefault = true;

bool pdl_enabled();
void set_pdl_enabled(bool on);

}  // namespace nc::cuda
