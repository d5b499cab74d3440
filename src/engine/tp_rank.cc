// One rank of a tensor-parallel group (engine/tp_rank.h).
#include "engine/tp_rank.h"

#include <cstring>

#include "core/error.h"
#include "model/forward_wire.h"
#include "model/tensor_parallel.h"

namespace nc {
namespace {

std::vector<std::byte> command(TpCommand c, const std::vector<int32_t>& args) {
  std::vector<std::byte> out(1 + args.size() * sizeof(int32_t));
  out[0] = std::byte(c);
  if (!args.empty()) std::memcpy(out.data() + 1, args.data(), args.size() * sizeof(int32_t));
  return out;
}

// The command's n int32 arguments; errors name the command when the bytes are short.
std::vector<int32_t> args_of(std::span<const std::byte> payload, size_t n, const char* what) {
  NC_CHECK(payload.size() == n * sizeof(int32_t),
           "tensor parallel: a {} command of {} bytes (expected {})", what, payload.size(),
           n * sizeof(int32_t));
  std::vector<int32_t> args(n);
  std::memcpy(args.data(), payload.data(), payload.size());
  return args;
}

// Runs one command; returns false on Stop.
bool run_command(StepModel& shard, std::span<const std::byte> bytes) {
  NC_CHECK(!bytes.empty(), "tensor parallel: an empty command from rank 0");
  const auto payload = bytes.subspan(1);
  switch (TpCommand(bytes[0])) {
    case TpCommand::Reserve: {
      const auto a = args_of(payload, 2, "reserve");
      shard.reserve(a[0], a[1]);
      return true;
    }
    case TpCommand::AllocateKv: {
      const auto a = args_of(payload, 3, "allocate_kv");
      NC_CHECK(a[2] == int(KVLayout::NHD) || a[2] == int(KVLayout::HND),
               "tensor parallel: KV layout {} from rank 0", a[2]);
      shard.allocate_kv(a[0], a[1], KVLayout(a[2]));
      return true;
    }
    case TpCommand::Forward:
      // The pass is queued (run, on the CPU); its logits stay unread: rank 0 samples.
      (void)shard.forward_async(decode_forward_input(payload));
      return true;
    case TpCommand::Stop:
      return false;
  }
  fail("tensor parallel: unknown command {} from rank 0", int(bytes[0]));
}

}  // namespace

std::vector<std::byte> tp_reserve_command(int max_tokens, int max_rows) {
  return command(TpCommand::Reserve, {max_tokens, max_rows});
}

std::vector<std::byte> tp_allocate_kv_command(int num_pages, int page_size, KVLayout layout) {
  return command(TpCommand::AllocateKv, {num_pages, page_size, int32_t(layout)});
}

std::vector<std::byte> tp_forward_command(const ForwardInput& in) {
  std::vector<std::byte> out = command(TpCommand::Forward, {});
  const std::vector<std::byte> plan = encode_forward_input(in);
  out.insert(out.end(), plan.begin(), plan.end());
  return out;
}

std::vector<std::byte> tp_stop_command() {
  return command(TpCommand::Stop, {});
}

TpSource load_tp_source(const std::string& path, const StepModelOptions& o) {
  TpSource s;
  if (o.dummy_weights) {
    s.full = load_model_config(path);
  } else {
    s.loaded = load_model(path);  // weights mapped from the file; each rank copies its slices
    s.full = s.loaded->config;
  }
  // fp8: refused by shard. The served positions stay max_position: each node's ranks read their
  // own command line, and rope tables sized by one node's --max-model-len could refuse positions
  // rank 0 serves.
  apply_quantization_option(o.quantization, s.full);
  return s;
}

std::unique_ptr<LlamaStepModel> make_tp_shard(const TpSource& source, const StepModelOptions& o,
                                              int rank, int size,
                                              std::unique_ptr<Backend> backend) {
  const ModelConfig cfg = shard_config(source.full, rank, size);
  auto model =
      source.loaded
          ? std::make_unique<LlamaModel>(
                cfg, shard_weights(source.full, source.loaded->weights, rank, size), *backend)
          : std::make_unique<LlamaModel>(cfg, RandomWeights{o.dummy_seed + uint64_t(rank)},
                                         *backend);
  configure_llama_model(*model, o);
  return std::make_unique<LlamaStepModel>(std::move(backend), std::move(model));
}

void serve_tp_rank(StepModel& shard, Communicator& comm) {
  try {
    for (;;) {
      std::vector<std::byte> bytes;
      comm.broadcast(bytes, 0, Communicator::Wait::Unbounded);  // idle until rank 0's next step
      if (!run_command(shard, bytes)) return;
    }
  } catch (const std::exception& e) {
    comm.abort(e.what());
    throw;
  }
}

}  // namespace nc
