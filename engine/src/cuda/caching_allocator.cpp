// CUDA caching allocator.
//
// Requests are rounded up to a bucket (512 B granularity below 1 MiB, 2 MiB above), and a
// released block goes onto the free list of its exact rounded size instead of back to the
// driver. The next request of that size reuses it without cudaMalloc. All kernels run on
// the one compute stream, so a block freed by the host may be handed out again at once:
// any later kernel that writes it is ordered after the kernels that read it.
// When cudaMalloc fails, every cached block is freed and the call retried once.
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/allocator.h"
#include "engine/error.h"
#include "kernels/counters.h"

namespace eng::cuda {

bool available() {
  // Asked on every call: cheap, and nothing runs at static-init time. Any error (no driver,
  // no device, insufficient driver) means "no device".
  // A function-local static: initialised once, thread-safely (every Storage asks this,
  // possibly from several threads at once).
  static const bool ok = [] {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear it
      n = 0;
    }
    return n > 0;
  }();
  return ok;
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

namespace alloc {
namespace {

size_t round_size(size_t n) {
  if (n == 0) n = 1;
  constexpr size_t kSmall = 512, kLarge = 2u << 20;
  if (n < (1u << 20)) return (n + kSmall - 1) / kSmall * kSmall;
  return (n + kLarge - 1) / kLarge * kLarge;
}

struct State {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;   // rounded size -> cached blocks
  std::unordered_map<void*, size_t> live;             // pointer -> rounded size
  MemoryStats stats;
};

State& state() {
  static State* s = new State();  // never destroyed: storages may outlive static teardown
  return *s;
}

void free_cached_locked(State& s) {
  for (auto& [size, blocks] : s.free_blocks) {
    for (void* p : blocks) {
      cudaFree(p);
      kern::counters::add_host_sync();  // cudaFree waits for the device
      s.stats.reserved -= size;
    }
  }
  s.free_blocks.clear();
}

}  // namespace

void* allocate(size_t nbytes) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  size_t size = round_size(nbytes);
  void* p = nullptr;
  auto it = s.free_blocks.find(size);
  if (it != s.free_blocks.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
  } else {
    cudaError_t err = cudaMalloc(&p, size);
    if (err != cudaSuccess) {
      cudaGetLastError();
      free_cached_locked(s);  // release-and-retry
      err = cudaMalloc(&p, size);
      if (err != cudaSuccess) {
        cudaGetLastError();
        ENGINE_FAIL("CUDA out of memory allocating ", nbytes, " bytes (allocated ", s.stats.allocated,
                    ", reserved ", s.stats.reserved, "): ", cudaGetErrorString(err));
      }
    }
    s.stats.reserved += size;
    ++s.stats.num_device_allocs;
    kern::counters::add_device_alloc();
  }
  s.live[p] = size;
  s.stats.allocated += size;
  if (s.stats.allocated > s.stats.peak_allocated) s.stats.peak_allocated = s.stats.allocated;
  return p;
}

void release(void* p, size_t) {
  if (!p) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.live.find(p);
  if (it == s.live.end()) return;  // not ours: ignore rather than corrupt the lists
  size_t size = it->second;
  s.live.erase(it);
  s.stats.allocated -= size;
  s.free_blocks[size].push_back(p);
}

MemoryStats stats() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.stats;
}

void reset_peak() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.stats.peak_allocated = s.stats.allocated;
}

void empty_cache() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  free_cached_locked(s);
}

}  // namespace alloc
}  // namespace eng::cuda
