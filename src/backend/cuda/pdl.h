// Programmatic dependent launch (PDL, Hopper): whether our small kernels of a decode step are
// launched so that each may start while the kernel before it in the stream finishes (pdl.cuh
// has the launch and the device-side calls).
//
// Contract: pdl_enabled() is true when the process-wide switch is on and the current device has
// compute capability 9.x (the switch starts from the environment: NC_PDL=1 turns it on, 0 off;
// unset, kPdlByDefault); set_pdl_enabled() changes the switch (tests, benchmarks' A/B) for
// launches made after it. A CUDA graph keeps the launches as they were captured.
// Results never depend on the switch: a kernel launched this way waits for its predecessor
// (griddepcontrol.wait) before it touches anything that kernel may write. Plain host functions.
#pragma once

namespace nc::cuda {

// Off until the PDL launches have run on a GPU (written 2026-12-05 without one; the GPU suite
// turns it on, tests/gpu/test_cuda_fused.cc): opt in with NC_PDL=1.
inline constexpr bool kPdlByDefault = false;

bool pdl_enabled();
void set_pdl_enabled(bool on);

}  // namespace nc::cuda
