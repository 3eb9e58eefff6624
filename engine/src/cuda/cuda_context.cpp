// The one CUDA context: compute stream, cuBLAS handle, workspace.
#include "engine/cuda_context.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <atomic>
#include <mutex>

#include "engine/allocator.h"
#include "engine/error.h"
#include "kernels/counters.h"

namespace eng::cuda {
namespace {

struct Context {
  cudaStream_t stream = nullptr;
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
    cudaError_t err = cudaSetDevice(0);
    ENGINE_CHECK(err == cudaSuccess, "cudaSetDevice(0) failed: ", cudaGetErrorString(err));
    err = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
    ENGINE_CHECK(err == cudaSuccess, "cudaStreamCreate failed: ", cudaGetErrorString(err));
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

DeviceInfo device_info() {
  ENGINE_CHECK(available(), "device_info: no CUDA device is available");
  cudaDeviceProp prop{};
  cudaError_t err = cudaGetDeviceProperties(&prop, 0);
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
