// cuda-emu streams, events and memory: every stream is a real in-order queue, run lazily.
//
// Policy (what a program sees; documented in include/cuda_runtime.h and docs/testing.md):
// - Work enqueued on a created stream (kernel launches, cudaMemcpyAsync, cudaMemsetAsync,
//   cuBLAS / cuDNN / cub calls made on that stream) is NOT run when it is issued. It waits in
//   the stream's queue until something needs it:
//     cudaStreamSynchronize(s) / cudaStreamQuery(s)      runs s to its end
//     cudaEventSynchronize(e) / cudaEventQuery(e)        runs e's stream up to e (a query
//                                                        that found e pending answers
//                                                        cudaErrorNotReady all the same)
//     a cudaStreamWaitEvent(s2, e) reached by s2         runs e's stream up to e first
//     cudaDeviceSynchronize, cudaFree, cudaFreeHost       run every stream to its end,
//                                                        newest stream first
//     cudaMemcpyAsync to pageable host memory            runs its stream through the copy
//                                                        (it is synchronous on a GPU too)
//     cudaStreamDestroy(s)                               runs s to its end
//   So two streams with no event between them run in the order that exposes the missing
//   event: a consumer stream synchronised first sees what its producer had not yet written.
// - The legacy default stream (stream 0 / nullptr) is eager: work on it runs at once, after
//   every blocking stream (cudaStreamCreate without cudaStreamNonBlocking) has been run to
//   its end, as the legacy stream waits for blocking streams on a GPU. Non-blocking streams
//   (the engine's) do not synchronise with it. The synchronous cudaMemcpy / cudaMemset are
//   legacy-stream work: they do not wait for non-blocking streams either.
// - cudaMemcpyAsync from pageable host memory takes a snapshot of the source at the call
//   (the driver stages it), so the host may reuse its buffer at once; from pinned memory
//   (cudaHostAlloc / cudaMallocHost) it reads the source when the copy runs, as DMA does.
// All of it is serialised by one lock; the thread that needs deferred work runs it.
#include <chrono>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "capture_hooks.h"
#include "cuda_runtime.h"

namespace {
struct StreamState {
  bool blocking = true;  // synchronises with the legacy default stream
  uint64_t enqueued = 0;
  uint64_t completed = 0;
  std::deque<std::function<void()>> ops;
};
}  // namespace

struct CUstream_st {
  std::shared_ptr<StreamState> state;
};
// Complete when stream is null (never recorded / recorded on the legacy stream) or its
// stream has run `seq` operations.
// Timing: a record on an idle stream stamps the host clock at once; on a busy one it
// enqueues an operation that stamps it when the stream runs it, so the time between two
// events is the host time spent running the work between them.
struct CUevent_st {
  std::shared_ptr<StreamState> stream;
  uint64_t seq = 0;
  unsigned int flags = cudaEventDefault;
  bool recorded = false;
  std::shared_ptr<std::chrono::steady_clock::time_point> when;
};

namespace {

// Returns e and makes it the last error, as the runtime does for a refused call.
cudaError_t fail(cudaError_t e) {
  emu::set_last_error(e);
  return e;
}

std::recursive_mutex& mu() {
  static std::recursive_mutex* m = new std::recursive_mutex();  // outlives static teardown
  return *m;
}
std::vector<std::shared_ptr<StreamState>>& live_streams() {  // creation order
  static auto* v = new std::vector<std::shared_ptr<StreamState>>();
  return *v;
}
// Address ranges of allocations: pinned host blocks and device blocks (base -> bytes).
std::map<uintptr_t, size_t>& pinned_blocks() {
  static auto* m = new std::map<uintptr_t, size_t>();
  return *m;
}
std::map<uintptr_t, size_t>& device_blocks() {
  static auto* m = new std::map<uintptr_t, size_t>();
  return *m;
}
bool inside(const std::map<uintptr_t, size_t>& blocks, const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = blocks.upper_bound(a);
  if (it == blocks.begin()) return false;
  --it;
  return a < it->first + std::max<size_t>(it->second, 1);
}

void run_one(StreamState& s) {
  std::function<void()> op = std::move(s.ops.front());
  s.ops.pop_front();
  op();
  ++s.completed;
}
void advance(StreamState& s, uint64_t upto) {
  while (s.completed < upto && !s.ops.empty()) run_one(s);
}
void drain(StreamState& s) { advance(s, s.enqueued); }
void drain_all() {
  bool again = true;
  while (again) {
    again = false;
    auto& v = live_streams();
    for (size_t i = v.size(); i-- > 0;) {  // newest first
      if (v[i]->ops.empty()) continue;
      drain(*v[i]);
      again = true;
    }
  }
}
void drain_blocking() {
  auto& v = live_streams();
  for (size_t i = v.size(); i-- > 0;)
    if (v[i]->blocking) drain(*v[i]);
}
bool complete(const CUevent_st& e) { return !e.stream || e.stream->completed >= e.seq; }

void* host_alloc(size_t bytes) {
  void* p = nullptr;
  // The exact size, so that under ASan a read past the end of an allocation is reported.
  if (posix_memalign(&p, 256, bytes == 0 ? 1 : bytes) != 0) return nullptr;
  // Fresh device memory is not zero on a real GPU either (and the caching allocator reuses
  // blocks): 0xFF bytes read as NaN floats and -1 integers, so a kernel that reads what
  // nobody wrote fails its test.
  std::memset(p, 0xFF, bytes);
  return p;
}

}  // namespace

namespace emu {
void enqueue(cudaStream_t stream, std::function<void()> op) {
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (capture::take(stream, op)) return;  // recorded by a capture (graphs.cpp)
  if (stream == nullptr) {  // the legacy default stream: eager, after the blocking streams
    drain_blocking();
    op();
    return;
  }
  StreamState& s = *stream->state;
  s.ops.push_back(std::move(op));
  ++s.enqueued;
}
bool stream_blocking(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(mu());
  return !stream || stream->state->blocking;
}
size_t pending(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(mu());
  return stream ? stream->state->ops.size() : 0;
}
}  // namespace emu

// ---- streams ----------------------------------------------------------------------------------
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (!stream || (flags & ~cudaStreamNonBlocking) != 0) return cudaErrorInvalidValue;
  std::lock_guard<std::recursive_mutex> lock(mu());
  auto* s = new CUstream_st{std::make_shared<StreamState>()};
  s->state->blocking = (flags & cudaStreamNonBlocking) == 0;
  live_streams().push_back(s->state);
  *stream = s;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return cudaErrorInvalidValue;
  std::lock_guard<std::recursive_mutex> lock(mu());
  drain(*stream->state);  // a GPU finishes the queued work after the call returns
  auto& v = live_streams();
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] == stream->state) {
      v.erase(v.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (cudaError_t e = emu::capture::check_stream_sync(stream)) return e;
  if (stream) drain(*stream->state);
  else drain_blocking();
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (cudaError_t e = emu::capture::check_stream_sync(stream)) return e;
  if (!stream || stream->state->ops.empty()) return cudaSuccess;
  drain(*stream->state);  // pending: say so, and let the work run for the next query
  return cudaErrorNotReady;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  if (!event || flags != 0) return cudaErrorInvalidValue;
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (cudaError_t e; emu::capture::wait_event(stream, event, event->stream != nullptr, &e)) return e;
  if (complete(*event)) return cudaSuccess;
  std::shared_ptr<StreamState> target = event->stream;
  const uint64_t seq = event->seq;
  if (!stream) {
    advance(*target, seq);
    return cudaSuccess;
  }
  if (target == stream->state) return cudaSuccess;  // already in stream order
  // The wait is captured now (a later record of the event does not change it), and the
  // producer runs only when this stream reaches the wait.
  stream->state->ops.push_back([target, seq] { advance(*target, seq); });
  ++stream->state->enqueued;
  return cudaSuccess;
}

// ---- events -----------------------------------------------------------------------------------
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (!event) return fail(cudaErrorInvalidValue);
  *event = new CUevent_st();
  (*event)->flags = flags;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::recursive_mutex> lock(mu());
  emu::capture::forget_event(event);
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (cudaError_t e; emu::capture::record_event(event, stream, &e)) return e;
  event->recorded = true;
  auto when = std::make_shared<std::chrono::steady_clock::time_point>();
  event->when = when;
  if (!stream) {  // the legacy stream: everything before it has run (blocking streams too)
    drain_blocking();
    *when = std::chrono::steady_clock::now();
    event->stream.reset();
    event->seq = 0;
    return cudaSuccess;
  }
  if (stream->state->ops.empty()) {
    *when = std::chrono::steady_clock::now();  // an idle stream reaches the event at once
  } else {
    stream->state->ops.push_back([when] { *when = std::chrono::steady_clock::now(); });
    ++stream->state->enqueued;
  }
  event->stream = stream->state;
  event->seq = stream->state->enqueued;
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (cudaError_t e = emu::capture::check_event_use(event)) return e;
  if (complete(*event)) return cudaSuccess;
  advance(*event->stream, event->seq);  // not ready now; done by the next query
  return cudaErrorNotReady;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (cudaError_t e = emu::capture::check_event_use(event)) return e;
  if (event->stream) advance(*event->stream, event->seq);
  return cudaSuccess;
}
// CUDA's rules: both events recorded and created without cudaEventDisableTiming, else
// cudaErrorInvalidResourceHandle; not yet run: cudaErrorNotReady; end before start gives a
// negative time.
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return fail(cudaErrorInvalidValue);
  if (!start || !end) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (!start->recorded || !end->recorded) return fail(cudaErrorInvalidResourceHandle);
  if ((start->flags | end->flags) & cudaEventDisableTiming) return fail(cudaErrorInvalidResourceHandle);
  if (!complete(*start) || !complete(*end)) return cudaErrorNotReady;
  *ms = std::chrono::duration<float, std::milli>(*end->when - *start->when).count();
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (cudaError_t e = emu::capture::check_device_sync()) return e;
  drain_all();
  return cudaSuccess;
}

// ---- memory -----------------------------------------------------------------------------------
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (cudaError_t e = emu::capture::check_unsafe_call()) return e;
  *ptr = host_alloc(bytes);
  if (!*ptr) return cudaErrorMemoryAllocation;
  std::lock_guard<std::recursive_mutex> lock(mu());
  device_blocks()[reinterpret_cast<uintptr_t>(*ptr)] = bytes;
  return cudaSuccess;
}
cudaError_t cudaFree(void* ptr) {
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (cudaError_t e = emu::capture::check_unsafe_call()) return e;
  drain_all();  // cudaFree synchronises the device
  device_blocks().erase(reinterpret_cast<uintptr_t>(ptr));
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int) {
  if (cudaError_t e = emu::capture::check_unsafe_call()) return e;
  *ptr = host_alloc(bytes);
  if (!*ptr) return cudaErrorMemoryAllocation;
  std::lock_guard<std::recursive_mutex> lock(mu());
  pinned_blocks()[reinterpret_cast<uintptr_t>(*ptr)] = bytes;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) { return cudaHostAlloc(ptr, bytes, cudaHostAllocDefault); }
cudaError_t cudaFreeHost(void* ptr) {
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (cudaError_t e = emu::capture::check_unsafe_call()) return e;
  drain_all();
  pinned_blocks().erase(reinterpret_cast<uintptr_t>(ptr));
  std::free(ptr);
  return cudaSuccess;
}
namespace emu {
bool is_pinned_host(const void* p) {
  std::lock_guard<std::recursive_mutex> lock(mu());
  return inside(pinned_blocks(), p);
}
bool is_device_range(const void* p, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mu());
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = device_blocks().upper_bound(a);
  if (it == device_blocks().begin()) return false;
  --it;
  const size_t size = std::max<size_t>(it->second, 1), offset = a - it->first;
  return offset < size && bytes <= size - offset;
}
}  // namespace emu

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (cudaError_t e = emu::capture::check_unsafe_call()) return e;
  drain_blocking();  // legacy-stream work: ordered after the blocking streams only
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  if (!dst || !src) return cudaErrorInvalidValue;
  std::lock_guard<std::recursive_mutex> lock(mu());
  auto pageable = [](const void* p) { return !inside(pinned_blocks(), p) && !inside(device_blocks(), p); };
  const bool src_host = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyHostToHost ||
                        (kind == cudaMemcpyDefault && !inside(device_blocks(), src));
  const bool dst_host = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyHostToHost ||
                        (kind == cudaMemcpyDefault && !inside(device_blocks(), dst));
  if ((src_host && pageable(src)) || (dst_host && pageable(dst)))
    if (cudaError_t e = emu::capture::check_pageable_copy(stream)) return e;  // not capturable
  if (src_host && pageable(src)) {
    // Staged by the driver at the call: later host writes to src are not seen.
    auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                               static_cast<const unsigned char*>(src) + bytes);
    emu::enqueue(stream, [dst, staged] { std::memmove(dst, staged->data(), staged->size()); });
  } else {
    emu::enqueue(stream, [dst, src, bytes] { std::memmove(dst, src, bytes); });
  }
  // Into pageable host memory the call returns only once the copy is done.
  if (dst_host && pageable(dst) && stream) drain(*stream->state);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mu());
  if (cudaError_t e = emu::capture::check_unsafe_call()) return e;
  drain_blocking();
  if (bytes) std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  emu::enqueue(stream, [dst, value, bytes] { std::memset(dst, value, bytes); });
  return cudaSuccess;
}
