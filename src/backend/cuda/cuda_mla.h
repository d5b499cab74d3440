// The CUDA backend's MLA ops (Backend::head_linear, mla_rope_norm, mla_attention and the plan of an
// AttentionShape with latent_dim > 0): argument checks, the plan's device arrays, and the level
// loop with its LSE merge, over the kernels of mla.cu (kernels.h). The CPU reference is
// backend/cpu/cpu_mla.h; docs/models.md "MLA" describes the cache and the absorbed form.
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/mla_graph.h"  // graph-safe plans (MlaGraphSlots)

namespace nc::cuda_host {

class CudaMlaPlan;  // mla_plan.h

// A device copy of a plan's host array, in stream order (at least one element: an empty array
// still gets a valid pointer).
Tensor mla_plan_array(const std::shared_ptr<Context>& ctx, std::vector<int32_t> v);
// The MLA ops' argument checks (nc::Error naming `what` or the pages): a bf16 contiguous
// [rows, cols] tensor; a bf16 page tensor holding the shape's pool.
void expect_mla_rows(const Tensor& t, int64_t rows, int64_t cols, const char* what);
void expect_mla_pages(const Tensor& kv_pages, const AttentionShape& shape);
void mla_head_linear(Context& ctx, const Tensor& x, const Tensor& w, Tensor out);
void mla_rope_norm(Context& ctx, const Tensor& q, const Tensor& kv_a, const Tensor& kv_norm,
                   float eps, const Tensor& positions, const Tensor& cos_sin, bool interleaved,
                   int nope_dim, Tensor q_mla, Tensor latent);
// An eager plan: every level's CSR arrays and each token's append slot, copied to the device
// (mla_plan.h; graph-safe plans: mla_graph.h).
std::unique_ptr<AttentionPlan> plan_mla(const std::shared_ptr<Context>& ctx,
                                        const AttentionStep& step, const AttentionShape& shape);
// plan_mla's parts, for plans that need only some of them (the expanded form: the whole step's
// append slots, the absorbed rest's levels): the shape's and the step's checks (nc::Error), each
// token's append slot, every level's arrays and FlashInfer's plans. A plan without append slots
// attends over pages that already hold its rows' latents.
std::unique_ptr<CudaMlaPlan> mla_plan_base(const AttentionStep& step, const AttentionShape& shape);
void add_mla_append_slots(const std::shared_ptr<Context>& ctx, const AttentionStep& step,
                          CudaMlaPlan& plan);
void add_mla_levels(const std::shared_ptr<Context>& ctx, const AttentionStep& step,
                    CudaMlaPlan& plan);
bool is_mla_plan(const AttentionPlan& plan);
// nc::Error unless `plan` came from plan_mla or MlaGraphSlots::plan.
void run_mla(const std::shared_ptr<Context>& ctx, const AttentionPlan& plan, const Tensor& q_mla,
             const Tensor& latent, Tensor kv_pages, Tensor out);

}  // namespace nc::cuda_host
