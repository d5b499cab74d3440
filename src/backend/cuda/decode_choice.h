// The decode-kernel rule of DecodeKernel::Auto: which kernel runs a level whose entries all have
// one query row, as a small table keyed by (GQA group, head_dim, batch, mean context).
//
// Contract: the rules are tried in order and the first whose ranges all contain the level's
// values decides; no match means FlashInfer's CUDA-core decode. Ranges are inclusive; 0 as an
// upper bound means "no bound", 0 as head_dim means "any". The choice uses host data only (the
// plan's page counts), so it is made at plan time and is graph-safe. The table lives in
// decode_choice.cc (kDecodeRules): fill it from `nc_gpu_bench decode-choice`, which times both
// kernels per cell and prints the rule it would write.
//
// Graph-safe plans (decode steps replayed as CUDA graphs, one graph per batch size) have their own
// table, kGraphDecodeRules, whose context ranges are ignored: a graph serves every context of
// its batch size, and a kernel that changed with the context would remake the graph slot. Its
// default is empty (CUDA cores everywhere, as before the tables).
#pragma once
#include <span>

#include "backend/cuda/cuda_backend.h"

namespace nc::cuda_host {

struct DecodeRule {
  int min_group, max_group;  // q heads / kv heads
  int head_dim;              // 0: any
  int min_batch, max_batch;  // entries in the level
  int min_ctx, max_ctx;      // mean keys per entry (tokens)
  DecodeKernel kernel;       // CudaCores or TensorCores
};

// The rules in force (decode_choice.cc).
std::span<const DecodeRule> decode_rules();

// The kernel Auto picks for a level of `batch` one-row entries of `mean_ctx` keys on average.
DecodeKernel auto_decode_kernel(int group, int head_dim, int batch, int mean_ctx);

// The same for the own level of a graph-safe plan of `batch` entries (kGraphDecodeRules).
std::span<const DecodeRule> graph_decode_rules();
DecodeKernel graph_decode_kernel(int group, int head_dim, int batch);

}  // namespace nc::cuda_host
