// CPU allocator: 64-byte aligned blocks (cache lines, AVX-512 loads) with byte counters, and
// a cache of large blocks.
//
// Why a cache: glibc serves large requests with mmap and returns them with munmap, so every
// training step paid for its big activations and im2col buffers again in page faults
// (zeroing fresh pages): TinySSD at input 256 spent ~12% of its time there. A released block
// of at least kCacheMin bytes goes onto a free list of its rounded size, and the next
// request of that size takes it back. The cache holds at most kCacheMax bytes; a block that
// would overflow it is freed instead. Small blocks go straight to malloc / free. (Large
// sizes are rounded to eighths of their power of two, round_up, so nearby sizes share.)
//
// The bound (issue 17): the cache never makes the allocator hold more than the live peak.
// `hwm` is the high-water mark of live bytes over the process, counted in block sizes (a
// large request is rounded up by at most 12.5%, see round_up; not reset by reset_peak);
// before an allocation that misses the cache, cached blocks are freed (least recently
// released first) until
// live + cached + the new block <= max(hwm, live + the new block). So reserved (live +
// cached) stays at or below the largest live total the process has needed, instead of
// growing by every distinct block size ever released (a training step whose sizes change
// from step to step, or inference after training, used to keep up to 1 GiB more). A steady
// state that asks for the same sizes each step still finds all of them cached. (Only large
// allocations evict: blocks under 1 MiB are allowed on top without touching the cache.) trim() frees
// every cached block and asks malloc to return its free pages to the system (malloc_trim),
// for a caller that has finished a phase (training -> evaluation) and wants RSS to drop.
//
// The price of the bound: a block released before the step's peak is evicted when the peak
// needs the room, and the next step faults its pages in again (TinySSD at batch 4: about
// 110 MB of pages a step re-faulted, 259k minor faults in 6 steps against 95k unbounded).
// ENGINE_CPU_CACHE_SLACK_PCT=P (0 .. 1000, default 0) lets live + cached reach (1 + P/100)
// times the high-water mark instead (P = 50 gave the unbounded fault count; SSD300's training
// step then held 1163 MiB above the bare process instead of 821).
//
// A request takes the smallest cached block of at least its rounded size and at most twice
// it (best fit; live then counts the whole block), which keeps more of a step's working set
// in the cache under the bound.
//
// Blocks of 8 MiB or more are 2 MiB-aligned and marked MADV_HUGEPAGE (transparent huge pages,
// where the kernel allows them): a fresh block costs one fault per 2 MiB instead of one per
// 4 KiB (TinySSD step at batch 4: 105k minor faults in 6 steps instead of 198k).
//
// Large blocks (the cached sizes, >= 1 MiB) come straight from mmap and go back with munmap
// (on POSIX systems): their pages return to the system the moment the allocator frees them.
// Through malloc they did not always: glibc raises its mmap threshold after the first free
// of a large block (up to 32 MiB), after which blocks of that size come from the heap and a
// freed one in the middle of it stays resident. SSD300's training step at batch 4 held
// about 300 MB more than its live peak that way.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <cstdlib>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define ENGINE_CPU_ALLOC_MMAP 1
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <map>
#include <unordered_map>
#include <string>
#include <mutex>
#include <new>
#include <vector>

#include "engine/allocator.h"
#include "engine/error.h"

namespace eng::cpu_alloc {
namespace {
constexpr size_t kAlign = 64;
constexpr size_t kCacheMin = size_t(1) << 20;  // 1 MiB
constexpr size_t kCacheMax = size_t(1) << 30;
constexpr size_t kHuge = size_t(2) << 20;     // a transparent huge page (x86-64)
constexpr size_t kHugeMin = size_t(8) << 20;  // blocks from here on use huge pages  // 1 GiB of cached (free) blocks at most

std::atomic<size_t> g_allocated{0};
std::atomic<size_t> g_peak{0};
std::atomic<size_t> g_calls{0};
std::atomic<size_t> g_live{0};         // live bytes counted in block sizes (rounded)
std::atomic<size_t> g_hwm{0};          // high-water mark of g_live, never reset
std::atomic<size_t> g_cached{0};       // mirror of Cache::bytes for a lock-free check
std::atomic<size_t> g_limit{kCacheMax};  // cache capacity (set_cache_limit)

struct Cached {
  void* p;
  uint64_t seq;  // release order: eviction frees the oldest first
};
struct Cache {
  std::mutex mu;
  std::map<size_t, std::vector<Cached>> free_blocks;  // rounded size -> blocks, oldest first
  size_t bytes = 0;                                   // total size of the cached blocks
  uint64_t seq = 0;
  // Blocks handed out for a smaller request (best fit, below): pointer -> block size.
  std::unordered_map<void*, size_t> oversized;
};
Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may be released during exit
  return *c;
}

// A block of `rounded` bytes (a multiple of kAlign): mmap for the large (cached) sizes,
// aligned_alloc for the rest; nullptr when the system has no memory.
void* system_alloc(size_t rounded) {
#ifdef ENGINE_CPU_ALLOC_MMAP
  if (rounded >= kHugeMin) {
    // 2 MiB-aligned and marked for transparent huge pages: a fresh block then costs one
    // fault per 2 MiB instead of one per 4 KiB. The mapping is trimmed to exactly
    // [aligned, aligned + rounded) so that munmap(p, rounded) releases all of it.
    const size_t span = rounded + kHuge;
    void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const uintptr_t base = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = (base + kHuge - 1) / kHuge * kHuge;
    if (aligned > base) munmap(raw, aligned - base);
    const uintptr_t end = base + span, used_end = aligned + rounded;
    if (end > used_end) munmap(reinterpret_cast<void*>(used_end), end - used_end);
    void* p = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
  }
  if (rounded >= kCacheMin) {
    void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;  // page-aligned, so 64-byte aligned
  }
#endif
  return std::aligned_alloc(kAlign, rounded);
}
void system_free(void* p, size_t rounded) {
#ifdef ENGINE_CPU_ALLOC_MMAP
  if (rounded >= kCacheMin) {
    munmap(p, rounded);
    return;
  }
#endif
  (void)rounded;
  std::free(p);
}

// Small blocks: a multiple of kAlign. Large (cached) blocks: a multiple of 1/8 of the
// power of two at or below the size (at most 12.5% over, of which only what a tensor writes
// becomes resident), so tensors whose sizes differ a little from step to step (targets,
// matched anchors) share cached blocks instead of each missing the cache.
size_t round_up(size_t nbytes) {
  const size_t r = (nbytes + kAlign - 1) / kAlign * kAlign;
  if (r < kCacheMin) return r == 0 ? kAlign : r;
  size_t top = kCacheMin;
  while (top <= r / 2) top *= 2;  // the largest power of two <= r
  const size_t step = top / 8;
  return (r + step - 1) / step * step;
}

void count_allocation(size_t nbytes, size_t rounded) {
  const size_t live = g_live.fetch_add(rounded) + rounded;
  const size_t now = g_allocated.fetch_add(nbytes) + nbytes;
  size_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
  size_t hwm = g_hwm.load();
  while (live > hwm && !g_hwm.compare_exchange_weak(hwm, live)) {
  }
}

// Frees cached blocks, least recently released first, until the cache holds at most `keep`
// bytes. Caller holds c.mu.
void evict_locked(Cache& c, size_t keep) {
  while (c.bytes > keep && !c.free_blocks.empty()) {
    auto oldest = c.free_blocks.begin();
    for (auto it = c.free_blocks.begin(); it != c.free_blocks.end(); ++it)
      if (it->second.front().seq < oldest->second.front().seq) oldest = it;
    auto& blocks = oldest->second;
    system_free(blocks.front().p, oldest->first);
    blocks.erase(blocks.begin());
    c.bytes -= oldest->first;
    if (blocks.empty()) c.free_blocks.erase(oldest);
  }
  g_cached.store(c.bytes);
}

// ENGINE_CPU_CACHE_SLACK_PCT: digits only, 0 .. 1000 (checked before conversion), read once.
size_t read_slack_env() {
  const char* s = std::getenv("ENGINE_CPU_CACHE_SLACK_PCT");
  if (!s) return 0;
  const std::string v(s);
  bool ok = !v.empty() && v.size() <= 4;
  for (char ch : v) ok = ok && ch >= '0' && ch <= '9';
  ENGINE_CHECK(ok && std::stoul(v) <= 1000, "ENGINE_CPU_CACHE_SLACK_PCT: expected an integer 0 .. 1000 (percent "
               "of the live high-water mark the cache may add), got '", v, "'");
  return std::stoul(v);
}
std::atomic<size_t> g_slack{~size_t(0)};  // ~0: not read yet
size_t slack_percent() {
  size_t v = g_slack.load();
  if (v == ~size_t(0)) {
    v = read_slack_env();
    g_slack.store(v);
  }
  return v;
}

// Before a fresh block of `rounded` bytes: keep live + cached + rounded within the live
// high-water mark (or within live + rounded when that is a new high), plus the slack.
void make_room(size_t rounded) {
  if (g_cached.load() == 0) return;
  const size_t live = g_live.load() + rounded;
  const size_t mark = std::max(g_hwm.load(), live);
  const size_t hwm = mark + mark / 100 * slack_percent();  // >= live
  if (live + g_cached.load() <= hwm) return;
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  evict_locked(c, hwm - live);
}
}  // namespace

void* allocate(size_t nbytes) {
  const size_t rounded = round_up(nbytes);
  if (rounded >= kCacheMin) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    // Best fit: the smallest cached block of at least the rounded size and at most twice it
    // (its already-resident pages serve the request; live counts the whole block).
    auto it = c.free_blocks.lower_bound(rounded);
    if (it != c.free_blocks.end() && it->first <= 2 * rounded) {
      const size_t block = it->first;
      void* p = it->second.back().p;  // the most recently released (warmest) block
      it->second.pop_back();
      if (it->second.empty()) c.free_blocks.erase(it);
      if (block != rounded) c.oversized[p] = block;
      c.bytes -= block;
      g_cached.store(c.bytes);
      count_allocation(nbytes, block);
      return p;
    }
  }
  if (rounded >= kCacheMin) make_room(rounded);  // small blocks never evict (cheap path)
  void* p = system_alloc(rounded);
  if (!p) {
    empty_cache();  // give cached blocks back and try once more
    p = system_alloc(rounded);
  }
  if (!p) ENGINE_FAIL("out of host memory allocating ", nbytes, " bytes");
  count_allocation(nbytes, rounded);
  ++g_calls;
  return p;
}

void release(void* p, size_t nbytes) {
  if (!p) return;
  g_allocated.fetch_sub(nbytes);
  size_t block = round_up(nbytes);
  if (block >= kCacheMin) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    auto o = c.oversized.find(p);
    if (o != c.oversized.end()) {
      block = o->second;
      c.oversized.erase(o);
    }
    g_live.fetch_sub(block);
    if (c.bytes + block <= g_limit.load()) {
      c.free_blocks[block].push_back({p, c.seq++});
      c.bytes += block;
      g_cached.store(c.bytes);
      return;
    }
  } else {
    g_live.fetch_sub(block);
  }
  system_free(p, block);
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  evict_locked(c, 0);
}

void trim() {
  empty_cache();
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

size_t live_high_water() { return g_hwm.load(); }

void set_cache_slack_percent(size_t percent) {
  ENGINE_CHECK(percent <= 1000, "cpu_alloc::set_cache_slack_percent: expected 0 .. 1000, got ", percent);
  g_slack.store(percent);
}

void set_cache_limit(size_t bytes) {
  g_limit.store(bytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  evict_locked(c, bytes);
}
size_t cache_limit() { return g_limit.load(); }

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
