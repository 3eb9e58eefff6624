// The CUDA context: the compute stream, a copy stream for uploads, the cuBLAS handle, a
// reusable workspace. Created lazily on first use (never at static-init time) for device 0.
//
// Front-ends dispatch with ENGINE_IF_CUDA(...), which compiles the CUDA call only in a CUDA
// build; in a CPU-only build no CUDA tensor can exist, so the branch is never taken.
#pragma once
#include <cstddef>
#include <string>

#include "kernels/common.h"

namespace eng {
class Tensor;
}

namespace eng::cuda {

kern::Stream stream();            // the compute stream: every op runs on it
kern::Stream copy_stream();       // a second stream for host -> device uploads (upload())
kern::BlasHandle blas();          // cuBLAS handle bound to stream(); TF32 off by default
void* workspace(size_t nbytes);   // grows on demand; valid until the next call
void synchronize();               // waits for the compute stream, throws on a sticky error
[[noreturn]] void fail_no_cuda();
bool tf32_enabled();
void set_tf32(bool on);           // TF32 tensor cores for float GEMMs (cuBLAS) and convs (cuDNN)
// Deterministic mode (like torch.use_deterministic_algorithms for what we run): cuDNN picks
// only deterministic algorithms, and kernels that would add floats with atomics in a
// run-dependent order (the L2Norm scale gradient) use their fixed-order variant. Off by
// default. A flag only: it needs no device and can be set before the first CUDA call.
bool deterministic();
void set_deterministic(bool on);

// The CUDA device this process uses (default 0). A data-parallel rank picks its GPU from its
// local rank (apps/common/distributed.h) before its first CUDA call; later the context is
// bound and a different index is an error. Throws when index >= device_count().
void set_device_index(int index);
int device_index();

// What the device says of itself (for benchmarks' fraction-of-peak columns and logs).
struct DeviceInfo {
  std::string name;                // e.g. "NVIDIA H100 80GB HBM3"
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
  size_t l2_bytes = 0;
  size_t total_memory = 0;
};
DeviceInfo device_info();         // device_index(); throws without a device

// A CUDA event, owned (created at the first record, destroyed with the object). Orders work
// between streams without the host waiting. Without a device, record / wait_on / synchronize
// throw the "no CUDA" error; query() of an event never recorded is true.
class Event {
 public:
  Event() = default;
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void record(kern::Stream s);         // marks the end of the work queued on s so far
  void wait_on(kern::Stream s) const;  // work queued on s from now on waits for that mark
  bool query() const;                  // has the marked work completed? (true if never recorded)
  void synchronize() const;            // the host waits for the marked work
  bool recorded() const { return event_ != nullptr; }

 private:
  void* event_ = nullptr;  // cudaEvent_t
};

// Uploads a contiguous CPU tensor to the device on copy_stream() and makes the compute
// stream wait for the copy (an Event): returns at once with a CUDA tensor of the same shape
// and dtype that every op queued afterwards (on the compute stream) sees filled. From a
// pinned tensor (empty_pinned) the copy is asynchronous; from pageable memory the driver
// stages it. Follows the stream rule of engine/allocator.h: the result is allocated for the
// copy stream and marked as used on the compute stream, the pinned source as read on the
// copy stream, so neither block is reused while the copy or its readers may still run.
Tensor upload(const Tensor& host);

}  // namespace eng::cuda

#ifdef ENGINE_WITH_CUDA
#define ENGINE_IF_CUDA(...) __VA_ARGS__
#else
#define ENGINE_IF_CUDA(...) ::eng::cuda::fail_no_cuda()
#endif
