// The one CUDA context: compute and copy streams, cuBLAS handle, workspace; events and
// the upload on the copy stream.
#include "engine/cuda_context.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <atomic>
#include <mutex>

#include "engine/allocator.h"
#include "engine/error.h"
#include "engine/tensor.h"
#include "kernels/counters.h"

namespace eng::cuda {
namespace {

std::atomic<int> g_device_index{0};
std::atomic<bool> g_context_made{false};

struct Context {
  cudaStream_t stream = nullptr;
  cudaStream_t copy_stream = nullptr;
  cublasHandle_t blas = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  bool tf32 = false;
};

Context& ctx() {
  static Context* c = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    ENGINE_CHECK(available(), "CUDA requested but no CUDA device is available");
    auto* n = new Context();  // lives for the process: handles outlive static teardown
    const int index = g_device_index.load();
    cudaError_t err = cudaSetDevice(index);
    ENGINE_CHECK(err == cudaSuccess, "cudaSetDevice(", index, ") failed: ", cudaGetErrorString(err));
    g_context_made = true;
    err = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
    ENGINE_CHECK(err == cudaSuccess, "cudaStreamCreate failed: ", cudaGetErrorString(err));
    err = cudaStreamCreateWithFlags(&n->copy_stream, cudaStreamNonBlocking);
    ENGINE_CHECK(err == cudaSuccess, "cudaStreamCreate (copy stream) failed: ", cudaGetErrorString(err));
    cublasStatus_t st = cublasCreate(&n->blas);
    ENGINE_CHECK(st == CUBLAS_STATUS_SUCCESS, "cublasCreate failed (status ", static_cast<int>(st), ")");
    cublasSetStream(n->blas, n->stream);
    cublasSetMathMode(n->blas, CUBLAS_DEFAULT_MATH);  // TF32 off: exact float GEMMs
    c = n;
  });
  return *c;
}

}  // namespace

kern::Stream stream() { return ctx().stream; }
kern::Stream copy_stream() { return ctx().copy_stream; }
kern::BlasHandle blas() { return ctx().blas; }

void* workspace(size_t nbytes) {
  Context& c = ctx();
  if (nbytes > c.workspace_bytes) {
    if (c.workspace) alloc::release(c.workspace, c.workspace_bytes);
    // Forget the released block before allocating: if allocate throws (OOM), a later call
    // must not hand out the block the cache may already have given to someone else.
    c.workspace = nullptr;
    c.workspace_bytes = 0;
    c.workspace = alloc::allocate(nbytes);
    c.workspace_bytes = nbytes;
  }
  return c.workspace;
}

void synchronize() {
  if (!available()) return;
  kern::counters::add_host_sync();
  cudaError_t err = cudaStreamSynchronize(ctx().stream);
  ENGINE_CHECK(err == cudaSuccess, "CUDA error: ", cudaGetErrorString(err));
}

void fail_no_cuda() { ENGINE_FAIL("no CUDA device is available"); }

bool tf32_enabled() { return ctx().tf32; }

namespace {
std::atomic<bool> g_deterministic{false};
}
bool deterministic() { return g_deterministic.load(); }
void set_deterministic(bool on) { g_deterministic.store(on); }

void set_tf32(bool on) {
  Context& c = ctx();
  c.tf32 = on;
  cublasSetMathMode(c.blas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
}

void set_device_index(int index) {
  const int n = device_count();
  ENGINE_CHECK(index >= 0 && index < n, "CUDA device ", index, " does not exist (this machine shows ", n,
               n == 1 ? " device)" : " devices)");
  ENGINE_CHECK(!g_context_made.load() || index == g_device_index.load(), "CUDA device ", index,
               ": the context is already bound to device ", g_device_index.load(), " (choose it before any CUDA use)");
  g_device_index = index;
  // Current for this thread at once, so that allocations made before the context (the
  // caching allocator's) land on the chosen device too.
  const cudaError_t err = cudaSetDevice(index);
  ENGINE_CHECK(err == cudaSuccess, "cudaSetDevice(", index, ") failed: ", cudaGetErrorString(err));
}

int device_index() { return g_device_index.load(); }

DeviceInfo device_info() {
  ENGINE_CHECK(available(), "device_info: no CUDA device is available");
  cudaDeviceProp prop{};
  cudaError_t err = cudaGetDeviceProperties(&prop, g_device_index.load());
  ENGINE_CHECK(err == cudaSuccess, "cudaGetDeviceProperties failed: ", cudaGetErrorString(err));
  DeviceInfo info;
  info.name = prop.name;
  info.sm_count = prop.multiProcessorCount;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.l2_bytes = static_cast<size_t>(prop.l2CacheSize);
  info.total_memory = prop.totalGlobalMem;
  return info;
}

}  // namespace eng::cuda

// ---- events and uploads ----------------------------------------------------------------------
namespace eng::cuda {
namespace {
cudaEvent_t as_event(void* e) { return static_cast<cudaEvent_t>(e); }
void check_event(cudaError_t err, const char* what) {
  ENGINE_CHECK(err == cudaSuccess, "CUDA event: ", what, " failed: ", cudaGetErrorString(err));
}
}  // namespace

Event::~Event() {
  if (event_) cudaEventDestroy(as_event(event_));
}
Event::Event(Event&& other) noexcept : event_(other.event_) { other.event_ = nullptr; }
Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_) cudaEventDestroy(as_event(event_));
    event_ = other.event_;
    other.event_ = nullptr;
  }
  return *this;
}
void Event::record(kern::Stream s) {
  ENGINE_CHECK(available(), "Event::record: no CUDA device is available");
  if (!event_) {
    cudaEvent_t e = nullptr;
    check_event(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
    event_ = e;
  }
  check_event(cudaEventRecord(as_event(event_), s), "cudaEventRecord");
}
void Event::wait_on(kern::Stream s) const {
  ENGINE_CHECK(available(), "Event::wait_on: no CUDA device is available");
  if (event_) check_event(cudaStreamWaitEvent(s, as_event(event_), 0), "cudaStreamWaitEvent");
}
bool Event::query() const {
  if (!event_) return true;
  const cudaError_t err = cudaEventQuery(as_event(event_));
  if (err == cudaErrorNotReady) {
    cudaGetLastError();  // an answer, not an error
    return false;
  }
  check_event(err, "cudaEventQuery");
  return true;
}
void Event::synchronize() const {
  if (event_) check_event(cudaEventSynchronize(as_event(event_)), "cudaEventSynchronize");
}

Tensor upload(const Tensor& host) {
  ENGINE_CHECK(host.device().is_cpu(), "upload: the source must be a CPU tensor (got ", host.device().str(), ")");
  ENGINE_CHECK(host.is_contiguous(), "upload: the source must be contiguous (shape ", shape_str(host.sizes()), ")");
  ENGINE_CHECK(available(), "upload: no CUDA device is available");
  const kern::Stream copy = copy_stream();
  Tensor dev;
  {
    alloc::StreamGuard guard(copy);  // rule 1: the block belongs to the copy stream
    dev = empty(host.sizes(), TensorOptions(host.dtype()).device(Device::cuda()));
  }
  const size_t nbytes = static_cast<size_t>(host.numel()) * dtype_size(host.dtype());
  if (nbytes > 0) {
    const cudaError_t err = cudaMemcpyAsync(dev.raw_data(), host.raw_data(), nbytes, cudaMemcpyHostToDevice, copy);
    ENGINE_CHECK(err == cudaSuccess, "upload: cudaMemcpyAsync of ", nbytes, " bytes failed: ", cudaGetErrorString(err));
    kern::counters::add_bytes_h2d(nbytes);
    if (host.storage()->pinned()) {
      pinned::record_stream(host.storage()->data(), copy);  // rule 3
    } else {
      kern::counters::add_host_sync();  // the driver stages pageable memory: the host waits
    }
  }
  alloc::record_stream(dev.storage()->data(), stream());  // rule 2: the compute stream reads it
  Event done;
  done.record(copy);
  done.wait_on(stream());
  return dev;  // `done` may be destroyed now: the wait is already queued
}

}  // namespace eng::cuda
