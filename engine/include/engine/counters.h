// What the device side has cost so far: kernel launches, host synchronisations, driver
// allocations and bytes copied each way (process-wide, since start). Take two snapshots
// and subtract them to get the cost of what ran in between:
//
//   const eng::cuda::Counters before = eng::cuda::counters();
//   step();
//   const eng::cuda::Counters cost = eng::cuda::counters() - before;
//   REQUIRE(cost.host_syncs == 0);
//
// The counting itself lives in the kernel layer (kernels/counters.h, which lists exactly
// what counts where); it is always on and costs one relaxed atomic add per event. In a
// CPU-only build every counter stays 0. Counters are process-wide: work another thread
// queues in between (a second model, the loader's pinned allocations) is counted too.
//
// Timing events (for per-phase times on the device): eng::cuda::TimingEvent (ordering events
// between streams are eng::cuda::Event in engine/cuda_context.h).
#pragma once
#include <cstdint>
#include <string>

namespace eng::cuda {

struct Counters {
  uint64_t launches = 0;       // kernel launches + cuBLAS / cuDNN calls + CUDA graph replays (one each)
  uint64_t host_syncs = 0;     // times the host waited for the device
  uint64_t device_allocs = 0;  // cudaMalloc calls (caching allocator misses)
  uint64_t pinned_allocs = 0;  // cudaHostAlloc calls (pinned allocator misses)
  uint64_t bytes_h2d = 0;      // bytes copied host -> device
  uint64_t bytes_d2h = 0;      // bytes copied device -> host

  uint64_t driver_allocs() const { return device_allocs + pinned_allocs; }
  // The cost between two snapshots (`later - earlier`, field by field).
  Counters operator-(const Counters& earlier) const;
  bool operator==(const Counters& o) const;
  bool operator!=(const Counters& o) const { return !(*this == o); }
  // "launches 812, host syncs 0, driver allocs 0 (device 0, pinned 0), h2d 1.2 MB, d2h 0 B"
  std::string str() const;
};

// A snapshot of the process-wide counters.
Counters counters();

// A CUDA event with timing, recorded on the compute stream. Needs a device (throws
// without one). Copying is not allowed; moving is.
class TimingEvent {
 public:
  TimingEvent();
  ~TimingEvent();
  TimingEvent(const TimingEvent&) = delete;
  TimingEvent& operator=(const TimingEvent&) = delete;
  TimingEvent(TimingEvent&& o) noexcept : handle_(o.handle_) { o.handle_ = nullptr; }
  TimingEvent& operator=(TimingEvent&& o) noexcept;

  void record();       // enqueue on the compute stream
  void synchronize();  // wait until it has happened (one counted host sync)
  // Device time between two recorded events in milliseconds (cudaEventElapsedTime); both
  // must have completed (synchronize `end` first). Throws if either was never recorded.
  static float elapsed_ms(const TimingEvent& start, const TimingEvent& end);

 private:
  void* handle_ = nullptr;  // cudaEvent_t
};

}  // namespace eng::cuda
