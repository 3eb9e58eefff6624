// Memory allocators.
//
// CPU: 64-byte aligned blocks with live / peak byte counters; released blocks of 1 MiB or
// more are cached by size (rounded up to an eighth of their power of two; up to 1 GiB) so
// steady-state steps do not page-fault. The cache is bounded by the live high-water mark:
// live + cached never exceeds the most live bytes the process has held, counted in block
// sizes (cached blocks are freed, least recently released first, to keep it so).
// CUDA: a caching allocator (see engine/src/cuda/caching_allocator.cpp): blocks are rounded
// to size buckets and kept on free lists after release, so a steady-state training step
// does no cudaMalloc. On OOM it frees every cached block and retries once.
//
// The stream rule (both CUDA allocators). The engine has two streams: the compute stream
// (cuda::stream()) and the copy stream (cuda::copy_stream(), uploads). A block may be handed
// out again only when no work that may still touch it is queued on another stream:
//  1. A device block belongs to the stream it was allocated for: the compute stream, or
//     the stream an alloc::StreamGuard names on this thread. After release it is reused
//     only by allocations for that same stream; stream order then protects it (any later
//     kernel that writes it is queued after the work that used it).
//  2. Using a block on any other stream must be declared with record_stream(p, s) (as
//     PyTorch's Tensor.record_stream). At release the allocator records an event on each
//     such stream, and the block stays unavailable until every one of those events has
//     completed (polled with cudaEventQuery at the next allocations).
//  3. Pinned host blocks: release records an event on the compute stream and on every
//     stream named by pinned::record_stream; the block is reused only when all have
//     completed (an asynchronous copy may still be reading it).
// So a block written by a copy still queued on the copy stream is never given to the
// compute stream, and a block the compute stream still reads is never refilled by the copy
// stream. cuda::upload (cuda_context.h) follows the rule for its source and result.
//
// The graph rule (CUDA graphs, engine/cuda_graph.h; PyTorch's graph-private pools are the
// model). A capture (begin_capture .. end_capture, one at a time) owns a private pool:
//  4. While a capture runs on stream s, an allocation for s never reaches the driver: it
//     takes a free block of the pool, else a cached free block of s of the same rounded size
//     (which moves into the pool); if there is none it fails with a one-line error saying
//     to run the work once before capturing (a warm-up fills the cache with exactly the
//     sizes the capture asks for). No event is recorded or queried and nothing is freed to
//     the driver during a capture (both are illegal there).
//  5. Every block handed out during the capture belongs to the pool, and so does every block
//     released during it (a released block the graph has used may be read again by every
//     replay). While the pool is alive (its GraphPool handle is held by the Graph), a pool
//     block released by the host returns to the pool, never to the general free lists: no
//     allocation outside the pool can get an address the graph reads or writes. A block
//     released during the capture may be handed out again later in the same capture
//     (stream order inside the graph protects it).
//     When the handle dies (the Graph is destroyed) the pool's free blocks return to the
//     general lists (blocks released in the capture that another stream had used take the
//     rule 2 path), and its live blocks go there when they are released.
// The caller keeps alive the tensors allocated before the capture that the graph reads
// (static inputs, weights): the graph holds addresses, not tensors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/common.h"

namespace eng {

struct MemoryStats {
  size_t allocated = 0;       // bytes handed out and not yet returned
  size_t reserved = 0;        // bytes held from the driver (allocated + cached); CPU: = allocated
  size_t peak_allocated = 0;  // high-water mark of `allocated` since the last reset
  size_t num_device_allocs = 0;  // calls that reached malloc / cudaMalloc
};

namespace cpu_alloc {
void* allocate(size_t nbytes);
void release(void* p, size_t nbytes);
MemoryStats stats();
void reset_peak();
void empty_cache();  // frees every cached block
// empty_cache() and then malloc_trim(0) (glibc): gives free heap pages back to the system,
// e.g. after training before a long evaluation. Safe at any time.
void trim();
// The cache's capacity in bytes (default 1 GiB; 0 disables caching); shrinking it frees
// cached blocks at once. For tests and memory-tight deployments.
void set_cache_limit(size_t bytes);
size_t cache_limit();
// How far (percent of the live high-water mark) live + cached may exceed the high-water mark
// (default 0, or ENGINE_CPU_CACHE_SLACK_PCT, 0 .. 1000): more slack, fewer page faults, more
// resident memory (engine/src/cpu_allocator.cpp).
void set_cache_slack_percent(size_t percent);
// The most live bytes the process has held, counted in block sizes (never reset): live +
// cached stays within it (plus the slack).
size_t live_high_water();
}  // namespace cpu_alloc

namespace cuda {
// True when a CUDA device can be used. Any error from cudaGetDeviceCount counts as "no
// device". Queried lazily, never at static-initialisation time.
bool available();
int device_count();

namespace alloc {
void* allocate(size_t nbytes);  // for the compute stream, or the StreamGuard's stream
void release(void* p, size_t nbytes);
MemoryStats stats();
void reset_peak();
void empty_cache();  // gives every cached (free) block back to the driver
// Declares that the block starting at p (from allocate) is used on stream s (rule 2); a
// no-op for its own stream or an unknown pointer.
void record_stream(void* p, kern::Stream s);
// While alive, allocations made by this thread are for stream s (rule 1). Nests.
class StreamGuard {
 public:
  explicit StreamGuard(kern::Stream s);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  kern::Stream previous_;
};
// The graph rule (4, 5). begin_capture(s) starts a capture's private pool for allocations
// for stream s and returns the handle that keeps the pool alive; end_capture() ends the
// capture mode (the pool lives on with its handle). Used by cuda::Graph.
class GraphPool;
std::shared_ptr<GraphPool> begin_capture(kern::Stream s);
void end_capture();
bool capturing();      // a capture is under way
size_t graph_pools();  // pools alive (for tests)
}  // namespace alloc

// Page-locked (pinned) host memory for batches that are copied to the device
// asynchronously (engine/src/cuda/pinned_allocator.cpp). A released block is cached; before
// it is handed out again, the events recorded at release time (rule 3) must have
// completed, so a copy that was still reading it cannot see it overwritten. Safe to call
// from several threads. Without a CUDA device (or in a CPU-only build) these are the
// plain CPU allocator.
namespace pinned {
void* allocate(size_t nbytes);
void release(void* p, size_t nbytes);
MemoryStats stats();
void record_stream(void* p, kern::Stream s);  // an asynchronous copy reads p on stream s
}  // namespace pinned

// For tests only: with the stream rule off, both allocators behave as if there were one
// stream (a released block is reusable at once by any stream; pinned blocks wait for the
// compute stream only), so a test can show that the rule is what keeps its data correct.
namespace testing {
void set_stream_rule(bool on);
bool stream_rule();
}  // namespace testing
}  // namespace cuda

}  // namespace eng
