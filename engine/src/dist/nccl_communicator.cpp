// The nccl Communicator (engine/dist/communicator.h): CUDA tensors through NCCL on a stream
// of its own, ordered against the compute stream with events; host data through the MPI
// communicator it was built from.
//
// The stream and event scheme of one collective on a CUDA tensor t:
//   1. an event recorded on the compute stream (after the work that produced t) is waited
//      on by the NCCL stream: NCCL reads t only once it is written;
//   2. t's block is marked as used on the NCCL stream (engine/allocator.h, rule 2), so that
//      freeing t while NCCL may still read or write it cannot hand the block to anyone else;
//   3. the NCCL call is queued on the NCCL stream, then a `done` event is recorded there;
//   4. Work::wait() (at once for the blocking calls) makes the compute stream wait on `done`
//      and queues the scale on the compute stream. The host never waits: the compute stream
//      goes on with work that does not need t while NCCL runs.
// Host-side calls (barrier, all_gather_bytes, CPU tensors) first wait on the host for the
// NCCL stream (so every rank's host calls come after its earlier device collectives), then
// go to the MPI communicator. That host wait polls cudaEventQuery and ncclCommGetAsyncError
// against timeout_seconds(): on a timeout or an NCCL error the comm is aborted and an
// eng::Error names the rank and the call. Every call first checks the comm's asynchronous
// error, so an error found while the host was not waiting shows at the next call.
#include "nccl_communicator.h"

#include <chrono>
#include <cstring>
#include <sstream>
#include <thread>

#include "engine/error.h"

#if defined(ENGINE_HAVE_NCCL) && defined(ENGINE_WITH_CUDA)
#include <cuda_runtime.h>
#include <nccl.h>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/ops.h"
#include "kernels/counters.h"
#endif

namespace eng::dist {

#if defined(ENGINE_HAVE_NCCL) && defined(ENGINE_WITH_CUDA)

bool nccl_available() { return true; }

namespace {

ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::bf16: return ncclBfloat16;
    default: ENGINE_FAIL("nccl communicator: no NCCL type for ", dtype_name(dt));
  }
}

class NcclCommunicator;

// An all-reduce queued on the NCCL stream; wait() orders the compute stream after it.
class NcclWork final : public Work {
 public:
  NcclWork(NcclCommunicator* comm, Tensor t, double scale, cuda::Event done)
      : comm_(comm), t_(std::move(t)), scale_(scale), done_(std::move(done)) {}
  void wait() override;

 private:
  NcclCommunicator* comm_;
  Tensor t_;
  double scale_;
  cuda::Event done_;
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> host, int local_rank) : host_(std::move(host)), local_rank_(local_rank) {
    ENGINE_CHECK(host_ != nullptr, "nccl communicator: no MPI communicator to build it from");
    ENGINE_CHECK(cuda::available(), "rank ", host_->rank(), ": the nccl backend needs a CUDA device, and none is available");
    set_timeout(host_->timeout_seconds());
    // Rank 0's unique id reaches every rank through MPI.
    ncclUniqueId id;
    std::vector<uint8_t> mine;
    if (host_->rank() == 0) {
      check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      mine.assign(reinterpret_cast<const uint8_t*>(&id), reinterpret_cast<const uint8_t*>(&id) + sizeof id);
    }
    const auto all = host_->all_gather_bytes(mine);
    ENGINE_CHECK(!all.empty() && all[0].size() == sizeof id, "rank ", rank(), ": nccl communicator: rank 0 sent a unique id of ",
                 all.empty() ? 0 : all[0].size(), " bytes, expected ", sizeof id);
    std::memcpy(&id, all[0].data(), sizeof id);
    cuda::stream();  // the CUDA context (and its device) first
    const cudaError_t err = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
    ENGINE_CHECK(err == cudaSuccess, "rank ", rank(), ": nccl communicator: cudaStreamCreate failed: ", cudaGetErrorString(err));
    check(ncclCommInitRank(&comm_, size(), id, rank()), "ncclCommInitRank");
  }

  ~NcclCommunicator() override {
    if (comm_) {
      try {
        host_wait("shutdown");
        ncclCommDestroy(comm_);
      } catch (const std::exception&) {
        if (comm_) ncclCommAbort(comm_);  // host_wait aborted it already when it threw
      }
    }
    if (stream_) cudaStreamDestroy(stream_);
  }

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  int local_rank() const override { return local_rank_; }
  std::string backend() const override { return "nccl"; }

  void all_reduce(Tensor& t, double scale) override {
    check_tensor(t, "all_reduce");
    if (!t.is_cuda()) {
      host_wait("all_reduce");
      host().all_reduce(t, scale);
      return;
    }
    all_reduce_async(t, scale)->wait();
  }

  std::unique_ptr<Work> all_reduce_async(Tensor& t, double scale) override {
    check_tensor(t, "all_reduce");
    if (!t.is_cuda()) {  // CPU: done on the host now; nothing left to wait for
      all_reduce(t, scale);
      return std::make_unique<NcclWork>(this, Tensor(), 1.0, cuda::Event());
    }
    ENGINE_CHECK(scale == 1.0 || is_floating(t.dtype()) || t.dtype() == DType::bf16, "rank ", rank(),
                 ": all_reduce: a scale of ", scale, " on an ", dtype_name(t.dtype()), " tensor (shape ",
                 shape_str(t.sizes()), "); integers are summed only");
    before_call(t, "all_reduce");
    if (t.numel() > 0)
      check(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), ncclSum,
                          comm_, stream_),
            "all_reduce");
    return std::make_unique<NcclWork>(this, t, scale, after_call());
  }

  void broadcast(Tensor& t, int root) override {
    ENGINE_CHECK(root >= 0 && root < size(), "rank ", rank(), ": broadcast: root ", root, " is not a rank of [0, ", size(), ")");
    check_tensor(t, "broadcast");
    if (!t.is_cuda()) {
      host_wait("broadcast");
      host().broadcast(t, root);
      return;
    }
    before_call(t, "broadcast");
    if (t.numel() > 0)
      check(ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), root, comm_,
                          stream_),
            "broadcast");
    after_call().wait_on(cuda::stream());
  }

  Tensor all_gather(const Tensor& t) override {
    check_tensor(t, "all_gather");
    if (!t.is_cuda()) {
      host_wait("all_gather");
      return host().all_gather(t);
    }
    Shape shape = t.sizes();
    shape.insert(shape.begin(), size());
    Tensor out = empty(shape, TensorOptions(t.dtype()).device(Device::cuda()));  // for the compute stream
    before_call(t, "all_gather");
    cuda::alloc::record_stream(out.storage()->data(), stream_);  // written on the NCCL stream
    if (t.numel() > 0)
      check(ncclAllGather(t.raw_data(), out.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), comm_,
                          stream_),
            "all_gather");
    after_call().wait_on(cuda::stream());
    return out;
  }

  void barrier() override {
    host_wait("barrier");
    host().barrier();
  }

  std::vector<std::vector<uint8_t>> all_gather_bytes(const std::vector<uint8_t>& mine) override {
    host_wait("all_gather_bytes");
    return host().all_gather_bytes(mine);
  }

  // Work::wait(): the compute stream waits for `done`, then t is scaled on it.
  void finish(Tensor& t, double scale, const cuda::Event& done) {
    if (!t.defined()) return;
    check_async("all_reduce");
    done.wait_on(cuda::stream());
    if (scale != 1.0) {
      NoGradGuard no_grad;
      t.copy_(mul_scalar(t, scale));
    }
  }

 private:
  Communicator& host() {
    host_->set_timeout(timeout_seconds());
    return *host_;
  }

  void check_tensor(const Tensor& t, const char* what) const {
    ENGINE_CHECK(t.defined(), "rank ", rank(), ": ", what, ": undefined tensor");
    ENGINE_CHECK(t.is_contiguous(), "rank ", rank(), ": ", what, ": the tensor (shape ", shape_str(t.sizes()),
                 ") is not contiguous");
    const DType dt = t.dtype();
    ENGINE_CHECK(dt == DType::f32 || dt == DType::f64 || dt == DType::i32 || dt == DType::i64 || dt == DType::bf16,
                 "rank ", rank(), ": ", what, ": ", dtype_name(dt), " tensor (shape ", shape_str(t.sizes()),
                 "); the nccl backend takes f32, f64, i32, i64 or bf16");
  }

  // Steps 1 and 2 of the scheme: the NCCL stream after the compute stream, t's block marked.
  void before_call(const Tensor& t, const char* what) {
    ENGINE_CHECK(comm_ != nullptr, "rank ", rank(), ": ", what, ": the NCCL communicator was aborted after an earlier error");
    check_async(what);
    cuda::Event ready;
    ready.record(cuda::stream());
    ready.wait_on(stream_);
    cuda::alloc::record_stream(t.storage()->data(), stream_);
  }
  cuda::Event after_call() {
    cuda::Event done;
    done.record(stream_);
    return done;
  }

  void check(ncclResult_t r, const char* what) {
    if (r == ncclSuccess) return;
    const std::string detail = ncclGetLastError(comm_);
    ENGINE_FAIL("rank ", host_->rank(), ": ", what, ": NCCL error ", static_cast<int>(r), " (", ncclGetErrorString(r), ")",
                detail.empty() ? "" : ": ", detail);
  }

  void abort_comm() {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
  }

  // Throws (after aborting the comm) when NCCL reports an asynchronous error.
  void check_async(const char* what) {
    ENGINE_CHECK(comm_ != nullptr, "rank ", rank(), ": ", what, ": the NCCL communicator was aborted after an earlier error");
    ncclResult_t e = ncclSuccess;
    check(ncclCommGetAsyncError(comm_, &e), what);
    if (e == ncclSuccess || e == ncclInProgress) return;
    const std::string detail = ncclGetLastError(comm_);
    abort_comm();
    ENGINE_FAIL("rank ", rank(), ": ", what, ": NCCL failed: ", ncclGetErrorString(e), detail.empty() ? "" : " (",
                detail, detail.empty() ? "" : ")", " (one of the ranks died or called another collective)");
  }

  // The host waits for everything queued on the NCCL stream, at most timeout_seconds().
  void host_wait(const char* what) {
    ENGINE_CHECK(comm_ != nullptr, "rank ", rank(), ": ", what, ": the NCCL communicator was aborted after an earlier error");
    check_async(what);
    cuda::Event all;
    all.record(stream_);
    kern::counters::add_host_sync();
    const auto start = std::chrono::steady_clock::now();
    for (int polls = 0; !all.query(); ++polls) {
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_seconds()) {
        abort_comm();
        std::ostringstream s;
        s.precision(3);
        s << waited;
        ENGINE_FAIL("rank ", rank(), ": ", what, " waited ", s.str(), " s for the other ranks (one of them died or hangs)");
      }
      check_async(what);
      if (polls < 100) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    check_async(what);
  }

  std::unique_ptr<Communicator> host_;
  int local_rank_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

void NcclWork::wait() {
  if (waited_) return;
  waited_ = true;
  comm_->finish(t_, scale_, done_);
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host, int local_rank) {
  return std::make_unique<NcclCommunicator>(std::move(host), local_rank);
}

#else  // no NCCL in this build

bool nccl_available() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator>, int) {
  ENGINE_FAIL("the nccl backend is unavailable: this build has no NCCL (it needs CUDA, nccl.h and libnccl, and MPI; "
              "use the mpi backend)");
}

#endif

}  // namespace eng::dist
