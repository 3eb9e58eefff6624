// Pinned (page-locked) host memory with a cache, for batches copied to the device with
// cudaMemcpyAsync.
//
// The hazard: the host may release a batch while a copy from it is still queued on the
// compute stream. So a released block is not free at once: release() records a CUDA event
// on the compute stream, and allocate() only reuses a cached block whose event has
// completed (cudaEventQuery), otherwise it asks the driver for a new block. Sizes are
// rounded up (4 KiB below 1 MiB, 2 MiB above) and blocks are kept by rounded size, so the
// padded targets of batches with different numbers of boxes share a few sizes and a steady
// state makes no cudaHostAlloc. Without a device, the plain CPU allocator serves every call.
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/allocator.h"
#include "engine/cuda_context.h"
#include "engine/error.h"
#include "kernels/counters.h"

namespace eng::cuda::pinned {
namespace {

struct CachedBlock {
  void* ptr = nullptr;
  cudaEvent_t released = nullptr;  // recorded on the compute stream at release time
};

struct State {
  std::mutex mu;
  std::map<size_t, std::vector<CachedBlock>> free_blocks;  // size -> released blocks
  std::unordered_map<void*, size_t> live;                   // pointer -> size
  MemoryStats stats;
};

State& state() {
  static State* s = new State();  // never destroyed: blocks may be released during exit
  return *s;
}

size_t round_size(size_t n) {
  const size_t unit = n < (size_t(1) << 20) ? size_t(4096) : size_t(2) << 20;
  return (n + unit - 1) / unit * unit;
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) ENGINE_FAIL("pinned host memory: ", what, ": ", cudaGetErrorString(err));
}

}  // namespace

void* allocate(size_t nbytes) {
  if (!available()) return cpu_alloc::allocate(nbytes);
  nbytes = round_size(nbytes == 0 ? 1 : nbytes);
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.free_blocks.find(nbytes);
  if (it != s.free_blocks.end()) {
    auto& blocks = it->second;
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (cudaEventQuery(blocks[i].released) != cudaSuccess) continue;  // a copy may still read it
      CachedBlock b = blocks[i];
      blocks.erase(blocks.begin() + static_cast<std::ptrdiff_t>(i));
      check(cudaEventDestroy(b.released), "cudaEventDestroy");
      s.live[b.ptr] = nbytes;
      s.stats.allocated += nbytes;
      s.stats.peak_allocated = std::max(s.stats.peak_allocated, s.stats.allocated);
      return b.ptr;
    }
    cudaGetLastError();  // clear cudaErrorNotReady from the queries
  }
  void* p = nullptr;
  check(cudaHostAlloc(&p, nbytes, cudaHostAllocDefault), "cudaHostAlloc");
  s.live[p] = nbytes;
  s.stats.allocated += nbytes;
  s.stats.reserved += nbytes;
  s.stats.peak_allocated = std::max(s.stats.peak_allocated, s.stats.allocated);
  ++s.stats.num_device_allocs;
  kern::counters::add_pinned_alloc();
  return p;
}

void release(void* p, size_t nbytes) {
  if (p == nullptr) return;
  State& s = state();
  std::unique_lock<std::mutex> lock(s.mu);
  auto it = s.live.find(p);
  if (it == s.live.end()) {  // came from the CPU allocator (no device)
    lock.unlock();
    cpu_alloc::release(p, nbytes);
    return;
  }
  const size_t size = it->second;
  s.live.erase(it);
  s.stats.allocated -= size;
  CachedBlock b{p, nullptr};
  check(cudaEventCreateWithFlags(&b.released, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaEventRecord(b.released, stream()), "cudaEventRecord");
  s.free_blocks[size].push_back(b);
}

MemoryStats stats() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.stats;
}

}  // namespace eng::cuda::pinned
