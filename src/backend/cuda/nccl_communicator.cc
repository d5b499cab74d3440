// Tensor parallelism's GPU collectives over NCCL (backend/nccl.h). NCCL is loaded with dlopen:
// the header (from the nvidia-nccl-cu13 wheel, tools/setup.sh) gives the types and signatures,
// the library is found at run time, so a binary without tensor parallelism never needs it.
#include "backend/nccl.h"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "backend/cuda/cuda_backend.h"
#include "core/error.h"

#ifdef NC_HAVE_NCCL_HEADER
#include <nccl.h>

namespace nc {
namespace {

// The NCCL entry points this file calls, resolved once.
struct NcclApi {
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) init_rank = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
  decltype(&ncclAllGather) all_gather = nullptr;
  decltype(&ncclCommAbort) abort = nullptr;
  decltype(&ncclCommDestroy) destroy = nullptr;
  decltype(&ncclCommGetAsyncError) async_error = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
};

template <typename F>
void resolve(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  NC_CHECK_AS(ErrorKind::Unsupported, fn != nullptr, "NCCL: the library has no {}", name);
}

// NC_NCCL_LIBRARY, then the copy tools/setup.sh unpacked, then the system's libnccl.so.2.
void* open_nccl() {
  std::string tried;
  const char* env = std::getenv("NC_NCCL_LIBRARY");
  for (const char* path : {env, NC_NCCL_LIBRARY_PATH, "libnccl.so.2"}) {
    if (!path || !*path) continue;
    if (void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)) return lib;
    tried += fmt::format("{}{} ({})", tried.empty() ? "" : ", ", path, dlerror());
  }
  fail_as(ErrorKind::Unsupported,
          "NCCL: cannot load the library (tried {}); install the nvidia-nccl-cu13 wheel or set "
          "NC_NCCL_LIBRARY to its libnccl.so.2",
          tried);
}

const NcclApi& nccl() {
  static std::once_flag once;
  static NcclApi api;
  static std::string error;
  std::call_once(once, [] {
    try {
      void* lib = open_nccl();
      resolve(lib, "ncclGetUniqueId", api.get_unique_id);
      resolve(lib, "ncclCommInitRank", api.init_rank);
      resolve(lib, "ncclAllReduce", api.all_reduce);
      resolve(lib, "ncclAllGather", api.all_gather);
      resolve(lib, "ncclCommAbort", api.abort);
      resolve(lib, "ncclCommDestroy", api.destroy);
      resolve(lib, "ncclCommGetAsyncError", api.async_error);
      resolve(lib, "ncclGetErrorString", api.error_string);
    } catch (const Error& e) {
      error = e.what();
    }
  });
  NC_CHECK_AS(ErrorKind::Unsupported, error.empty(), "{}", error);
  return api;
}

void check_nccl(ncclResult_t r, const char* what) {
  NC_CHECK(r == ncclSuccess, "NCCL {}: {}", what, nccl().error_string(r));
}

void check_cuda(cudaError_t e, const char* what) {
  NC_CHECK(e == cudaSuccess, "tensor parallel {}: {}", what, cudaGetErrorString(e));
}

ncclDataType_t nccl_type(DType t, const char* what) {
  switch (t) {
    case DType::F32:
      return ncclFloat32;
    case DType::BF16:
      return ncclBfloat16;
    case DType::F16:
      return ncclFloat16;
    default:
      break;
  }
  fail("tensor parallel {}: dtype {} (f32, bf16 or f16)", what, dtype_name(t));
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Backend& cuda, std::unique_ptr<Communicator> control, const NcclUniqueId& id)
      : control_(std::move(control)),
        device_(cuda_device_of(cuda)),
        stream_(static_cast<cudaStream_t>(cuda_stream_of(cuda))) {
    ncclUniqueId uid;
    static_assert(sizeof(uid) == sizeof(NcclUniqueId));
    std::memcpy(&uid, id.data(), sizeof(uid));
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    check_nccl(nccl().init_rank(&comm_, control_->size(), uid, control_->rank()),
               "ncclCommInitRank");
    watchdog_ = std::thread([this] { watch(); });
  }
  ~NcclCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      stopping_ = true;
    }
    watch_cv_.notify_all();
    watchdog_.join();
    // A failed group's kernels may wait on a rank that is gone: abort before anything syncs.
    if (!failure().empty()) abort_nccl();
    if (scratch_) cudaFree(scratch_);
    if (!aborted_.exchange(true)) nccl().destroy(comm_);
  }

  int rank() const override { return control_->rank(); }
  int size() const override { return control_->size(); }

  void all_reduce_sum(Tensor x) override {
    expect_device(x, "all_reduce_sum");
    check_nccl(nccl().all_reduce(x.data(), x.data(), size_t(x.numel()),
                                 nccl_type(x.dtype(), "all_reduce_sum"), ncclSum, live(), stream_),
               "all_reduce_sum");
  }

  // NCCL gathers rank-major ([size, R, C]); the contract wants the ranks' columns side by side
  // ([R, size * C]): gathered into the scratch, then one strided copy per rank.
  void all_gather(const Tensor& x, Tensor out) override {
    expect_device(x, "all_gather");
    expect_device(out, "all_gather output");
    NC_CHECK(x.ndim() == 2, "tensor parallel all_gather: x {} is not [rows, columns]",
             shape_str(x.shape()));
    out.expect_shape({x.dim(0), size() * x.dim(1)}, "tensor parallel all_gather output");
    out.expect_dtype(x.dtype(), "tensor parallel all_gather output");
    const size_t part = x.nbytes();
    ensure_scratch(part * size_t(size()));
    check_nccl(nccl().all_gather(x.data(), scratch_, size_t(x.numel()),
                                 nccl_type(x.dtype(), "all_gather"), live(), stream_),
               "all_gather");
    const size_t rows = size_t(x.dim(0)), row = rows ? part / rows : 0;
    for (int r = 0; r < size(); ++r)
      check_cuda(cudaMemcpy2DAsync(static_cast<std::byte*>(out.data()) + size_t(r) * row,
                                   row * size_t(size()),
                                   static_cast<std::byte*>(scratch_) + size_t(r) * part, row, row,
                                   rows, cudaMemcpyDeviceToDevice, stream_),
                 "all_gather copy");
  }

  void broadcast(std::vector<std::byte>& bytes, int root, Wait wait = Wait::Bounded) override {
    std::lock_guard<std::mutex> lock(control_mu_);
    control_->broadcast(bytes, root, wait);
  }

  void abort(const std::string& why) override {
    {
      std::lock_guard<std::mutex> lock(control_mu_);
      control_->abort(why);
    }
    abort_nccl();  // a rank stuck in a collective returns
  }

  std::string failure() override {
    std::string why;
    {
      std::lock_guard<std::mutex> lock(control_mu_);
      why = control_->failure();
    }
    if (why.empty()) why = nccl_error();
    if (why.empty()) {
      std::lock_guard<std::mutex> w(why_mu_);
      why = watchdog_why_;
    }
    return why;
  }

 private:
  // While a pass runs, rank 0 waits in a stream sync that a dead rank would make endless: every
  // 200 ms this thread looks at the control links (rank 0; a rank that failed or whose process
  // ended) and at NCCL's own error state, and aborts the NCCL group if either says so, which
  // ends the waiting kernels. The other ranks learn of rank 0's end from their own links.
  void watch() {
    std::unique_lock<std::mutex> lock(watch_mu_);
    while (!watch_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; })) {
      if (aborted_) continue;
      std::string why = nccl_error();
      std::unique_lock<std::mutex> control(control_mu_, std::try_to_lock);
      if (why.empty() && control.owns_lock() && rank() == 0) why = control_->failure();
      if (why.empty()) continue;
      {
        std::lock_guard<std::mutex> w(why_mu_);
        watchdog_why_ = why;
      }
      abort_nccl();
    }
  }
  std::string nccl_error() {
    if (aborted_) return {};
    ncclResult_t async = ncclSuccess;
    if (nccl().async_error(comm_, &async) == ncclSuccess && async != ncclSuccess)
      return fmt::format("NCCL: {}", nccl().error_string(async));
    return {};
  }
  void abort_nccl() {
    if (!aborted_.exchange(true)) nccl().abort(comm_);
  }

  ncclComm_t live() const {
    NC_CHECK(!aborted_, "tensor parallel: the NCCL communicator was aborted: {}",
             control_->failure());
    return comm_;
  }
  void expect_device(const Tensor& t, const char* what) const {
    NC_CHECK(t.defined() && t.device() == Device::CUDA && t.is_contiguous(),
             "tensor parallel {}: NCCL takes contiguous device tensors", what);
  }
  // Grows outside graph capture only: a captured pass must not allocate.
  void ensure_scratch(size_t bytes) {
    if (bytes <= scratch_bytes_) return;
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    check_cuda(cudaStreamIsCapturing(stream_, &status), "capture query");
    NC_CHECK(status == cudaStreamCaptureStatusNone,
             "tensor parallel all_gather: {} bytes of scratch needed inside a graph capture "
             "(reserve_gather made {})",
             bytes, scratch_bytes_);
    if (scratch_) check_cuda(cudaFree(scratch_), "cudaFree");  // waits for the device
    scratch_ = nullptr;
    check_cuda(cudaMalloc(&scratch_, bytes), "all_gather scratch");
    scratch_bytes_ = bytes;
  }

 public:
  void reserve_gather(int64_t bytes) override { ensure_scratch(size_t(bytes)); }

 private:
  std::unique_ptr<Communicator> control_;
  std::mutex control_mu_;  // the control group is used by this rank's thread and the watchdog
  int device_;
  cudaStream_t stream_;
  ncclComm_t comm_ = nullptr;
  std::atomic<bool> aborted_{false};  // comm_ aborted or destroyed: never used again
  std::thread watchdog_;
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool stopping_ = false;
  std::mutex why_mu_;
  std::string watchdog_why_;  // why the watchdog aborted the group
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

}  // namespace

bool nccl_built() {
  return true;
}

NcclUniqueId nccl_unique_id() {
  ncclUniqueId uid;
  check_nccl(nccl().get_unique_id(&uid), "ncclGetUniqueId");
  NcclUniqueId out;
  std::memcpy(out.data(), &uid, sizeof(uid));
  return out;
}

std::unique_ptr<Communicator> make_nccl_communicator(Backend& cuda,
                                                     std::unique_ptr<Communicator> control,
                                                     const NcclUniqueId& id) {
  return std::make_unique<NcclCommunicator>(cuda, std::move(control), id);
}

}  // namespace nc

#else  // no NCCL header at build time

namespace nc {

bool nccl_built() {
  return false;
}

NcclUniqueId nccl_unique_id() {
  fail_as(ErrorKind::Unsupported, "NCCL: this build has no NCCL header (run tools/setup.sh)");
}

std::unique_ptr<Communicator> make_nccl_communicator(Backend&, std::unique_ptr<Communicator>,
                                                     const NcclUniqueId&) {
  fail_as(ErrorKind::Unsupported, "NCCL: this build has no NCCL header (run tools/setup.sh)");
}

}  // namespace nc
#endif
