// MLA's expanded form on CUDA (mla_form.h says what the two forms are and when the expanded one
// pays; backend/cpu/cpu_mla.h is the reference).
//
// Plan (eager steps; graph plans are decode steps and stay absorbed): plan_mla's plan of the whole
// step as before (what mla_attention runs), plus, where the form setting (NC_MLA_FORM) and the
// cost rule send own-level entries to the expanded form, their part: each expanded entry's step
// rows and the flat page slot of each of its keys (its shared levels' keys, then its own: under
// one causal mask aligned at the end that is exactly the levels' masks, so no merge), and
// FlashInfer's plan of a causal ragged prefill over them (the JIT's ragged_causal kernel at head
// dims Dn + Dr and Dv); and plan_mla's plan of the other rows as a step of their own (every level
// restricted to them). Entries stay absorbed
// where the head dims do not fit the ragged kernel (multiples of 16, at most 256), where the JIT
// cannot provide it (no nvcc and no cached object: logged once), and beyond a budget of
// decompressed K/V bytes a step (kExpandedBytes) that keeps a long context's expansion bounded.
//
// Run (Backend::mla_attention_values): every row's latent appended to its slot; the expanded
// entries' cached rows gathered from the pages, projected into keys [W_UK c | k_pe] and values
// W_UV c (two cuBLAS strided-batched GEMMs over the heads), their queries [q_nope | rope(q_pe)],
// the ragged attention, its rows scattered into attn; the absorbed entries' rows gathered and run
// through the absorbed form (head_linear, mla_attention, head_linear), then scattered back.
#pragma once
#include <memory>

#include "backend/backend.h"
#include "backend/cuda/attn_registry.h"
#include "backend/cuda/cuda_context.h"

namespace nc::cuda_host {

// The decompressed keys and values one step may hold (bytes, bf16).
inline constexpr int64_t kExpandedBytes = int64_t(1) << 30;

std::unique_ptr<AttentionPlan> plan_mla_step(const std::shared_ptr<Context>& ctx,
                                             AttnRegistry& registry, const AttentionStep& step,
                                             const AttentionShape& shape);

// Backend::mla_attention_values over a plan_mla_step plan with expanded entries; false (nothing
// done: the caller runs the absorbed form) when the plan has none.
bool run_mla_expanded(const std::shared_ptr<Context>& ctx, const AttentionPlan& plan,
                      const Tensor& q, const Tensor& q_mla, const Tensor& latent, Tensor kv_pages,
                      const Tensor& w_uk_t, const Tensor& w_uv, Tensor o_lat, Tensor attn);

// Tests: how many rows of the plan's step run expanded (0: none, or not an MLA plan).
int64_t mla_expanded_rows(const AttentionPlan& plan);

}  // namespace nc::cuda_host
