// CPU allocator: 64-byte aligned blocks (cache lines, AVX-512 loads) with byte counters.
#include <atomic>
#include <cstdlib>
#include <new>

#include "engine/allocator.h"
#include "engine/error.h"

namespace eng::cpu_alloc {
namespace {
constexpr size_t kAlign = 64;
std::atomic<size_t> g_allocated{0};
std::atomic<size_t> g_peak{0};
std::atomic<size_t> g_calls{0};
}  // namespace

void* allocate(size_t nbytes) {
  size_t rounded = (nbytes + kAlign - 1) / kAlign * kAlign;
  if (rounded == 0) rounded = kAlign;
  void* p = std::aligned_alloc(kAlign, rounded);
  if (!p) ENGINE_FAIL("out of host memory allocating ", nbytes, " bytes");
  size_t now = g_allocated.fetch_add(nbytes) + nbytes;
  size_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
  ++g_calls;
  return p;
}

void release(void* p, size_t nbytes) {
  if (!p) return;
  std::free(p);
  g_allocated.fetch_sub(nbytes);
}

MemoryStats stats() {
  MemoryStats s;
  s.allocated = g_allocated.load();
  s.reserved = s.allocated;
  s.peak_allocated = g_peak.load();
  s.num_device_allocs = g_calls.load();
  return s;
}

void reset_peak() { g_peak.store(g_allocated.load()); }

}  // namespace eng::cpu_alloc
