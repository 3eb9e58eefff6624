// Process-wide counters of the work the CUDA side asks of the device and the driver, so that
// tests and `ssd_train --profile` can assert what a step costs. Relaxed atomics, always on
// (one uncontended add per launch, a few ns); header-only, so every library can count
// without a link dependency. A CPU-only build never increments them: they stay 0.
//
// What is counted, and where (the engine reads them with eng::cuda::counters(),
// engine/include/engine/counters.h):
//   launches       every hand-written kernel launch (KERN_LAUNCH_CHECK, kernels/cuda_check.h),
//                  and one per cuBLAS / cuDNN compute call made by the engine (a library call
//                  may run several kernels inside; cudnnFind*Ex counts one). Memsets are not
//                  counted.
//   host_syncs     every point where the host waits for the device: the synchronous copies
//                  (kern::cuda::memcpy_h2d / memcpy_d2h), cudaStreamSynchronize,
//                  cudaEventSynchronize, cudaDeviceSynchronize, eng::cuda::synchronize(),
//                  cudnnFind*AlgorithmEx (it times its trials) and cudaFree (it waits for
//                  the device).
//   device_allocs  cudaMalloc calls (the caching allocator asking the driver)
//   pinned_allocs  cudaHostAlloc calls (the pinned host allocator asking the driver)
//   bytes_h2d      bytes copied host -> device (synchronous or asynchronous)
//   bytes_d2h      bytes copied device -> host
#pragma once
#include <atomic>
#include <cstdint>

namespace kern::counters {

struct Values {
  uint64_t launches = 0;
  uint64_t host_syncs = 0;
  uint64_t device_allocs = 0;
  uint64_t pinned_allocs = 0;
  uint64_t bytes_h2d = 0;
  uint64_t bytes_d2h = 0;
};

namespace detail {
// C++17 inline variables: one instance per process, constant-initialised (no static-init
// order question), shared by the nvcc- and g++-compiled objects.
inline std::atomic<uint64_t> launches{0};
inline std::atomic<uint64_t> host_syncs{0};
inline std::atomic<uint64_t> device_allocs{0};
inline std::atomic<uint64_t> pinned_allocs{0};
inline std::atomic<uint64_t> bytes_h2d{0};
inline std::atomic<uint64_t> bytes_d2h{0};
}  // namespace detail

inline void add_launches(uint64_t n = 1) { detail::launches.fetch_add(n, std::memory_order_relaxed); }
inline void add_host_sync() { detail::host_syncs.fetch_add(1, std::memory_order_relaxed); }
inline void add_device_alloc() { detail::device_allocs.fetch_add(1, std::memory_order_relaxed); }
inline void add_pinned_alloc() { detail::pinned_allocs.fetch_add(1, std::memory_order_relaxed); }
inline void add_bytes_h2d(uint64_t n) { detail::bytes_h2d.fetch_add(n, std::memory_order_relaxed); }
inline void add_bytes_d2h(uint64_t n) { detail::bytes_d2h.fetch_add(n, std::memory_order_relaxed); }

// A snapshot (each counter read on its own: exact when no other thread is counting).
inline Values read() {
  Values v;
  v.launches = detail::launches.load(std::memory_order_relaxed);
  v.host_syncs = detail::host_syncs.load(std::memory_order_relaxed);
  v.device_allocs = detail::device_allocs.load(std::memory_order_relaxed);
  v.pinned_allocs = detail::pinned_allocs.load(std::memory_order_relaxed);
  v.bytes_h2d = detail::bytes_h2d.load(std::memory_order_relaxed);
  v.bytes_d2h = detail::bytes_d2h.load(std::memory_order_relaxed);
  return v;
}

}  // namespace kern::counters
