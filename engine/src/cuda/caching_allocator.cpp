// CUDA caching allocator.
//
// Requests are rounded up to a bucket (512 B granularity below 1 MiB, 2 MiB above), and a
// released block goes onto the free list of its exact rounded size instead of back to the
// driver. The next request of that size for the same stream reuses it without cudaMalloc.
// The stream rule (engine/allocator.h): free lists are kept per stream, so a block freed by
// the host may be handed out again at once to its own stream (stream order protects it);
// a block that was also used on other streams (record_stream) first waits, on a pending
// list, for the events recorded on those streams at release.
// When cudaMalloc fails, every cached block is freed and the call retried once.
// CUDA graphs (rules 4 and 5 of engine/allocator.h): while a capture runs, allocations are
// served from the capture's private pool or the cache, never from the driver, no event is
// recorded or queried, and every block handed out or released belongs to the pool until
// the pool (held by the Graph) dies.
#include <cuda_runtime.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/allocator.h"
#include "engine/cuda_context.h"
#include "engine/error.h"
#include "kernels/counters.h"

namespace eng::cuda::testing {
namespace {
std::atomic<bool> g_stream_rule{true};
}
void set_stream_rule(bool on) { g_stream_rule.store(on); }
bool stream_rule() { return g_stream_rule.load(); }
}  // namespace eng::cuda::testing

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

// A graph's private pool (rule 5).
struct PoolState {
  bool alive = true;                            // false once its GraphPool is destroyed
  kern::Stream stream = nullptr;                // the capturing stream: every block is its own
  std::map<size_t, std::vector<void*>> free_blocks;  // by rounded size
  struct Retired {                              // released in capture, from another stream
    void* ptr;
    size_t size;
    kern::Stream stream;
    std::vector<kern::Stream> used_on;
  };
  std::vector<Retired> retired;                 // never reused while the pool lives
};

struct LiveBlock {
  size_t size = 0;                  // rounded
  kern::Stream stream = nullptr;    // the stream it was allocated for
  std::vector<kern::Stream> used_on;  // other streams (record_stream)
  std::shared_ptr<PoolState> pool;  // the graph pool it belongs to, if any
};

// A released block waiting for the events recorded on the other streams that used it.
struct PendingBlock {
  void* ptr = nullptr;
  size_t size = 0;
  kern::Stream stream = nullptr;
  std::vector<cudaEvent_t> events;
};

using Key = std::pair<kern::Stream, size_t>;  // (owning stream, rounded size)

struct State {
  std::mutex mu;
  std::map<Key, std::vector<void*>> free_blocks;   // cached blocks, per stream and size
  std::unordered_map<void*, LiveBlock> live;       // handed out
  std::vector<PendingBlock> pending;               // released, other-stream uses unfinished
  MemoryStats stats;
  std::shared_ptr<PoolState> capture;              // the pool of the capture under way
  size_t live_pools = 0;
};

State& state() {
  static State* s = new State();  // never destroyed: storages may outlive static teardown
  return *s;
}

thread_local kern::Stream t_alloc_stream = nullptr;  // set by StreamGuard; null: compute

// The stream an allocation is for. With the rule off every block is the compute stream's.
kern::Stream alloc_stream() {
  if (!testing::stream_rule()) return nullptr;
  return t_alloc_stream ? t_alloc_stream : cuda::stream();
}

// Moves the pending blocks whose events have all completed to the free lists.
void collect_pending_locked(State& s) {
  for (size_t i = 0; i < s.pending.size();) {
    PendingBlock& b = s.pending[i];
    bool done = true;
    for (cudaEvent_t e : b.events)
      if (cudaEventQuery(e) != cudaSuccess) done = false;  // keep querying: each may progress
    if (!done) {
      cudaGetLastError();  // clear cudaErrorNotReady
      ++i;
      continue;
    }
    for (cudaEvent_t e : b.events) cudaEventDestroy(e);
    s.free_blocks[{b.stream, b.size}].push_back(b.ptr);
    s.pending.erase(s.pending.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

void free_cached_locked(State& s) {
  if (s.capture) return;  // no synchronisation and no cudaFree may happen in a capture
  if (!s.pending.empty()) {
    cudaDeviceSynchronize();  // every pending block's events complete
    kern::counters::add_host_sync();
    collect_pending_locked(s);
  }
  for (auto& [key, blocks] : s.free_blocks) {
    for (void* p : blocks) {
      cudaFree(p);
      kern::counters::add_host_sync();  // cudaFree waits for the device
      s.stats.reserved -= key.second;
    }
  }
  s.free_blocks.clear();
}

void hand_out_locked(State& s, void* p, LiveBlock b) {
  s.stats.allocated += b.size;
  if (s.stats.allocated > s.stats.peak_allocated) s.stats.peak_allocated = s.stats.allocated;
  s.live[p] = std::move(b);
}

// Rule 4: the pool's own free blocks, else a cached block of the capturing stream (which
// moves into the pool), never the driver.
void* allocate_in_capture_locked(State& s, size_t nbytes, size_t size) {
  PoolState& pool = *s.capture;
  void* p = nullptr;
  auto pit = pool.free_blocks.find(size);
  if (pit != pool.free_blocks.end() && !pit->second.empty()) {
    p = pit->second.back();
    pit->second.pop_back();
  } else {
    auto it = s.free_blocks.find({pool.stream, size});
    ENGINE_CHECK(it != s.free_blocks.end() && !it->second.empty(), "CUDA graph capture: allocating ", nbytes,
                 " bytes would call cudaMalloc during the capture; run the captured work once before capturing "
                 "(a warm-up) so that the caching allocator holds its blocks");
    p = it->second.back();
    it->second.pop_back();
  }
  hand_out_locked(s, p, LiveBlock{size, pool.stream, {}, s.capture});
  return p;
}

}  // namespace

StreamGuard::StreamGuard(kern::Stream st) : previous_(t_alloc_stream) { t_alloc_stream = st; }
StreamGuard::~StreamGuard() { t_alloc_stream = previous_; }

void record_stream(void* p, kern::Stream st) {
  if (!p) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.live.find(p);
  if (it == s.live.end()) return;
  LiveBlock& b = it->second;
  if (st == b.stream || (b.stream == nullptr && st == cuda::stream())) return;
  for (kern::Stream u : b.used_on)
    if (u == st) return;
  b.used_on.push_back(st);
}

void* allocate(size_t nbytes) {
  const kern::Stream owner = alloc_stream();
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  const size_t size = round_size(nbytes);
  if (s.capture && owner == s.capture->stream) return allocate_in_capture_locked(s, nbytes, size);
  if (!s.pending.empty() && !s.capture) collect_pending_locked(s);  // no event query in a capture
  void* p = nullptr;
  auto it = s.free_blocks.find({owner, size});
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
  hand_out_locked(s, p, LiveBlock{size, owner, {}, nullptr});
  return p;
}

namespace {
// Rules 1-3: back to the owning stream's free list, or pending on events.
void release_general_locked(State& s, void* p, LiveBlock b) {
  if (b.used_on.empty() || !testing::stream_rule()) {
    s.free_blocks[{b.stream, b.size}].push_back(p);
    return;
  }
  PendingBlock pb{p, b.size, b.stream, {}};
  for (kern::Stream st : b.used_on) {
    cudaEvent_t e = nullptr;
    if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess || cudaEventRecord(e, st) != cudaSuccess) {
      cudaGetLastError();
      if (e) cudaEventDestroy(e);
      cudaStreamSynchronize(st);  // cannot track it: wait for that stream instead
      continue;
    }
    pb.events.push_back(e);
  }
  s.pending.push_back(std::move(pb));
}
}  // namespace

void release(void* p, size_t) {
  if (!p) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.live.find(p);
  if (it == s.live.end()) return;  // not ours: ignore rather than corrupt the lists
  LiveBlock b = std::move(it->second);
  s.live.erase(it);
  s.stats.allocated -= b.size;
  if (s.capture) {  // rule 5: released during a capture, the block joins its pool
    PoolState& pool = *s.capture;
    if (b.stream == pool.stream && b.used_on.empty())
      pool.free_blocks[b.size].push_back(p);  // stream order protects it inside the graph
    else
      pool.retired.push_back({p, b.size, b.stream, std::move(b.used_on)});  // kept out of reach
    return;
  }
  if (b.pool && b.pool->alive) {  // a pool block stays in its pool while the graph lives
    b.pool->free_blocks[b.size].push_back(p);
    return;
  }
  release_general_locked(s, p, std::move(b));
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

// ---- CUDA graph pools (rules 4 and 5) --------------------------------------------------------
namespace eng::cuda::alloc {

class GraphPool {
 public:
  explicit GraphPool(std::shared_ptr<PoolState> p) : pool(std::move(p)) {}
  ~GraphPool() {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.capture == pool) s.capture.reset();
    pool->alive = false;  // live blocks released from now on take the general path
    for (auto& [size, blocks] : pool->free_blocks)
      for (void* p : blocks) s.free_blocks[{pool->stream, size}].push_back(p);
    for (auto& r : pool->retired)
      release_general_locked(s, r.ptr, LiveBlock{r.size, r.stream, std::move(r.used_on), nullptr});
    pool->free_blocks.clear();
    pool->retired.clear();
    --s.live_pools;
  }
  std::shared_ptr<PoolState> pool;
};

std::shared_ptr<GraphPool> begin_capture(kern::Stream st) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  ENGINE_CHECK(!s.capture, "CUDA graph capture: another capture is already under way (one at a time)");
  auto pool = std::make_shared<PoolState>();
  pool->stream = st;
  s.capture = pool;
  ++s.live_pools;
  return std::make_shared<GraphPool>(pool);
}

void end_capture() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.capture.reset();
}

bool capturing() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.capture != nullptr;
}

size_t graph_pools() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.live_pools;
}

}  // namespace eng::cuda::alloc
