// eng::cuda::TimingEvent (engine/counters.h): a timing event on the compute stream.
#include <cuda_runtime.h>

#include <utility>

#include "engine/counters.h"
#include "engine/cuda_context.h"
#include "engine/error.h"
#include "kernels/counters.h"

namespace eng::cuda {
namespace {
cudaEvent_t as_event(void* h) { return static_cast<cudaEvent_t>(h); }
}  // namespace

TimingEvent::TimingEvent() {
  stream();  // creates the context (and checks there is a device) first
  cudaEvent_t e = nullptr;
  const cudaError_t err = cudaEventCreate(&e);  // default flags: timing enabled
  ENGINE_CHECK(err == cudaSuccess, "cudaEventCreate failed: ", cudaGetErrorString(err));
  handle_ = e;
}

TimingEvent::~TimingEvent() {
  if (handle_) cudaEventDestroy(as_event(handle_));
}

TimingEvent& TimingEvent::operator=(TimingEvent&& o) noexcept {
  std::swap(handle_, o.handle_);
  return *this;
}

void TimingEvent::record() {
  ENGINE_CHECK(handle_ != nullptr, "TimingEvent::record: the event was moved from");
  const cudaError_t err = cudaEventRecord(as_event(handle_), stream());
  ENGINE_CHECK(err == cudaSuccess, "cudaEventRecord failed: ", cudaGetErrorString(err));
}

void TimingEvent::synchronize() {
  ENGINE_CHECK(handle_ != nullptr, "TimingEvent::synchronize: the event was moved from");
  kern::counters::add_host_sync();
  const cudaError_t err = cudaEventSynchronize(as_event(handle_));
  ENGINE_CHECK(err == cudaSuccess, "cudaEventSynchronize failed: ", cudaGetErrorString(err));
}

float TimingEvent::elapsed_ms(const TimingEvent& start, const TimingEvent& end) {
  ENGINE_CHECK(start.handle_ && end.handle_, "TimingEvent::elapsed_ms: an event was moved from");
  float ms = 0;
  const cudaError_t err = cudaEventElapsedTime(&ms, as_event(start.handle_), as_event(end.handle_));
  if (err != cudaSuccess) cudaGetLastError();  // do not leave the error for the next launch check
  ENGINE_CHECK(err == cudaSuccess, "cudaEventElapsedTime failed (were both events recorded and complete?): ",
               cudaGetErrorString(err));
  return ms;
}

}  // namespace eng::cuda
