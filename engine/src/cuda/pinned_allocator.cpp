// Pinned (page-locked) host memory with a cache, for batches copied to the device with
// cudaMemcpyAsync.
//
// The hazard: the host may release a batch while a copy from it is still queued on the
// compute stream or on the copy stream. So a released block is not free at once: release()
// records a CUDA event on the compute stream and on every stream named by record_stream()
// for that block (rule 3 in engine/allocator.h), and allocate() only reuses a cached block
// whose events have all completed (cudaEventQuery), otherwise it asks the driver for a new
// block. Sizes are rounded up (4 KiB below 1 MiB, 2 MiB above) and blocks are kept by
// rounded size, so the padded targets of batches with different numbers of boxes share a
// few sizes and a steady state makes no cudaHostAlloc. Without a device, the plain CPU
// allocator serves every call.
// During a CUDA graph capture (alloc::capturing()) a release records no event: an event
// recorded on the capturing compute stream would become part of the graph and could never
// be queried. The block waits on a deferred list until the first allocate() after the
// capture, which records its events then (later events are only more conservative).
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/allocator.h"
#include "engine/cuda_context.h"
#include "engine/error.h"
#include "kernels/counters.h"

namespace eng::cuda::pinned {
namespace {

struct CachedBlock {
  void* ptr = nullptr;
  std::vector<cudaEvent_t> released;  // recorded at release on each stream that used it
};

struct LiveBlock {
  size_t size = 0;
  std::vector<kern::Stream> used_on;  // streams other than the compute stream
};

struct State {
  std::mutex mu;
  std::map<size_t, std::vector<CachedBlock>> free_blocks;  // size -> released blocks
  std::unordered_map<void*, LiveBlock> live;                // handed out
  std::vector<std::pair<void*, LiveBlock>> deferred;        // released during a capture
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

// Rule 3: events on the compute stream and the streams that used the block, then cached.
void cache_locked(State& s, void* p, const LiveBlock& live) {
  CachedBlock b{p, {}};
  std::vector<kern::Stream> streams{stream()};
  if (testing::stream_rule()) streams.insert(streams.end(), live.used_on.begin(), live.used_on.end());
  for (kern::Stream st : streams) {
    cudaEvent_t e = nullptr;
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
    b.released.push_back(e);
    check(cudaEventRecord(e, st), "cudaEventRecord");
  }
  s.free_blocks[live.size].push_back(std::move(b));
}

}  // namespace

void* allocate(size_t nbytes) {
  if (!available()) return cpu_alloc::allocate(nbytes);
  nbytes = round_size(nbytes == 0 ? 1 : nbytes);
  const bool capturing = alloc::capturing();
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!capturing && !s.deferred.empty()) {
    for (const auto& [p, live] : s.deferred) cache_locked(s, p, live);
    s.deferred.clear();
  }
  auto it = s.free_blocks.find(nbytes);
  if (it != s.free_blocks.end()) {
    auto& blocks = it->second;
    for (size_t i = 0; i < blocks.size(); ++i) {
      bool done = true;
      for (cudaEvent_t e : blocks[i].released)
        if (cudaEventQuery(e) != cudaSuccess) done = false;  // a copy may still read it
      if (!done) continue;
      CachedBlock b = blocks[i];
      blocks.erase(blocks.begin() + static_cast<std::ptrdiff_t>(i));
      for (cudaEvent_t e : b.released) check(cudaEventDestroy(e), "cudaEventDestroy");
      s.live[b.ptr] = LiveBlock{nbytes, {}};
      s.stats.allocated += nbytes;
      s.stats.peak_allocated = std::max(s.stats.peak_allocated, s.stats.allocated);
      return b.ptr;
    }
    cudaGetLastError();  // clear cudaErrorNotReady from the queries
  }
  void* p = nullptr;
  check(cudaHostAlloc(&p, nbytes, cudaHostAllocDefault), "cudaHostAlloc");
  s.live[p] = LiveBlock{nbytes, {}};
  s.stats.allocated += nbytes;
  s.stats.reserved += nbytes;
  s.stats.peak_allocated = std::max(s.stats.peak_allocated, s.stats.allocated);
  ++s.stats.num_device_allocs;
  kern::counters::add_pinned_alloc();
  return p;
}

void release(void* p, size_t nbytes) {
  if (p == nullptr) return;
  const bool capturing = available() && alloc::capturing();
  State& s = state();
  std::unique_lock<std::mutex> lock(s.mu);
  auto it = s.live.find(p);
  if (it == s.live.end()) {  // came from the CPU allocator (no device)
    lock.unlock();
    cpu_alloc::release(p, nbytes);
    return;
  }
  const LiveBlock live = std::move(it->second);
  s.live.erase(it);
  s.stats.allocated -= live.size;
  if (capturing) {
    s.deferred.emplace_back(p, live);
    return;
  }
  cache_locked(s, p, live);
}

void record_stream(void* p, kern::Stream st) {
  if (p == nullptr) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.live.find(p);
  if (it == s.live.end() || st == stream()) return;
  for (kern::Stream u : it->second.used_on)
    if (u == st) return;
  it->second.used_on.push_back(st);
}

MemoryStats stats() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.stats;
}

}  // namespace eng::cuda::pinned
