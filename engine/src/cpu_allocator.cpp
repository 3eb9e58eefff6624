// CPU allocator: 64-byte aligned blocks (cache lines, AVX-512 loads) with byte counters, and
// a cache of large blocks.
//
// Why a cache: glibc serves large requests with mmap and returns them with munmap, so every
// training step paid for its big activations and im2col buffers again in page faults
// (zeroing fresh pages): TinySSD at input 256 spent ~12% of its time there. A released block
// of at least kCacheMin bytes goes onto a free list of its exact rounded size, and the next
// request of that size takes it back. The cache holds at most kCacheMax bytes; a block that
// would overflow it is freed instead. Small blocks go straight to malloc / free.
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "engine/allocator.h"
#include "engine/error.h"

namespace eng::cpu_alloc {
namespace {
constexpr size_t kAlign = 64;
constexpr size_t kCacheMin = size_t(1) << 20;  // 1 MiB
constexpr size_t kCacheMax = size_t(1) << 30;  // 1 GiB of cached (free) blocks at most

std::atomic<size_t> g_allocated{0};
std::atomic<size_t> g_peak{0};
std::atomic<size_t> g_calls{0};

struct Cache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;  // rounded size -> blocks
  size_t bytes = 0;                                  // total size of the cached blocks
};
Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may be released during exit
  return *c;
}

size_t round_up(size_t nbytes) {
  const size_t r = (nbytes + kAlign - 1) / kAlign * kAlign;
  return r == 0 ? kAlign : r;
}

void count_allocation(size_t nbytes) {
  const size_t now = g_allocated.fetch_add(nbytes) + nbytes;
  size_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}
}  // namespace

void* allocate(size_t nbytes) {
  const size_t rounded = round_up(nbytes);
  if (rounded >= kCacheMin) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(rounded);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.bytes -= rounded;
      count_allocation(nbytes);
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlign, rounded);
  if (!p) {
    empty_cache();  // give cached blocks back and try once more
    p = std::aligned_alloc(kAlign, rounded);
  }
  if (!p) ENGINE_FAIL("out of host memory allocating ", nbytes, " bytes");
  count_allocation(nbytes);
  ++g_calls;
  return p;
}

void release(void* p, size_t nbytes) {
  if (!p) return;
  g_allocated.fetch_sub(nbytes);
  const size_t rounded = round_up(nbytes);
  if (rounded >= kCacheMin) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.bytes + rounded <= kCacheMax) {
      c.free_blocks[rounded].push_back(p);
      c.bytes += rounded;
      return;
    }
  }
  std::free(p);
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [size, blocks] : c.free_blocks)
    for (void* p : blocks) std::free(p);
  c.free_blocks.clear();
  c.bytes = 0;
}

MemoryStats stats() {
  MemoryStats s;
  s.allocated = g_allocated.load();
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    s.reserved = s.allocated + c.bytes;
  }
  s.peak_allocated = g_peak.load();
  s.num_device_allocs = g_calls.load();
  return s;
}

void reset_peak() { g_peak.store(g_allocated.load()); }

}  // namespace eng::cpu_alloc
