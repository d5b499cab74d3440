// A step's ForwardInput as bytes (issue #21): tensor parallelism's rank 0 owns the scheduler and
// sends each step's plan to the other ranks (Communicator::broadcast), which run it as received.
// The plan is plain host arrays, so the encoding is their int32 values in a fixed order, each
// array preceded by its length; it round-trips exactly.
//
// Contract: decode_forward_input(encode_forward_input(x)) == x, field by field (token ids,
// positions, every attention level's CSR arrays and causal flag, logit rows, sparse budgets, KV
// page shifts). Bytes that end early, carry trailing bytes or a negative or oversized length
// are an nc::Error naming what was being read; nothing is read past the end.
#pragma once
#include <cstddef>
#include <span>
#include <vector>

#include "model/llama.h"

namespace nc {

std::vector<std::byte> encode_forward_input(const ForwardInput& in);
ForwardInput decode_forward_input(std::span<const std::byte> bytes);

}  // namespace nc
