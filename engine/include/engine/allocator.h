// Memory allocators.
//
// CPU: 64-byte aligned blocks with live / peak byte counters; released blocks of 1 MiB or
// more are cached by exact size (up to 1 GiB) so steady-state steps do not page-fault.
// CUDA: a caching allocator (see engine/src/cuda/caching_allocator.cpp): blocks are rounded
// to size buckets and kept on free lists after release, so a steady-state training step
// does no cudaMalloc. All work runs on the one compute stream, so a freed block can be
// reused by the next allocation immediately (stream order protects it). On OOM it frees
// every cached block and retries once.
#pragma once
#include <cstddef>
#include <cstdint>

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
}  // namespace cpu_alloc

namespace cuda {
// True when a CUDA device can be used. Any error from cudaGetDeviceCount counts as "no
// device". Queried lazily, never at static-initialisation time.
bool available();
int device_count();

namespace alloc {
void* allocate(size_t nbytes);
void release(void* p, size_t nbytes);
MemoryStats stats();
void reset_peak();
void empty_cache();  // gives every cached (free) block back to the driver
}  // namespace alloc

// Page-locked (pinned) host memory for batches that are copied to the device
// asynchronously (engine/src/cuda/pinned_allocator.cpp). A released block is cached; before
// it is handed out again, an event recorded on the compute stream at release time must
// have completed, so a copy that was still reading it cannot see it overwritten. Safe to
// call from several threads. Without a CUDA device (or in a CPU-only build) these are the
// plain CPU allocator.
namespace pinned {
void* allocate(size_t nbytes);
void release(void* p, size_t nbytes);
MemoryStats stats();
}  // namespace pinned
}  // namespace cuda

}  // namespace eng
