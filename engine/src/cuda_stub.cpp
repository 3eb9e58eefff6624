// The CUDA entry points of a CPU-only build: no device, and a clear error if asked for one.
#ifndef ENGINE_WITH_CUDA
#include "engine/allocator.h"
#include "engine/cuda_context.h"
#include "engine/cuda_graph.h"
#include "engine/error.h"
#include "engine/tensor.h"

namespace eng::cuda {
bool available() { return false; }
int device_count() { return 0; }
void set_device_index(int index) {
  ENGINE_CHECK(index == 0, "CUDA device ", index, " does not exist (this build has no CUDA backend)");
}
int device_index() { return 0; }
void fail_no_cuda() { ENGINE_FAIL("this build has no CUDA backend (nvcc was not found at configure time)"); }
kern::Stream stream() { fail_no_cuda(); }
kern::Stream copy_stream() { fail_no_cuda(); }
Event::~Event() {}
Event::Event(Event&& other) noexcept : event_(other.event_) { other.event_ = nullptr; }
Event& Event::operator=(Event&& other) noexcept {
  event_ = other.event_;
  other.event_ = nullptr;
  return *this;
}
void Event::record(kern::Stream) { fail_no_cuda(); }
void Event::wait_on(kern::Stream) const { fail_no_cuda(); }
bool Event::query() const { return true; }
void Event::synchronize() const { fail_no_cuda(); }
Tensor upload(const Tensor&) { fail_no_cuda(); }
kern::BlasHandle blas() { fail_no_cuda(); }
void* workspace(size_t) { fail_no_cuda(); }
void synchronize() {}
bool tf32_enabled() { return false; }
void set_tf32(bool) {}
// Kept so that programs can say --deterministic on any build (CPU kernels are deterministic).
static bool g_deterministic = false;
bool deterministic() { return g_deterministic; }
void set_deterministic(bool on) { g_deterministic = on; }
DeviceInfo device_info() { fail_no_cuda(); }
namespace alloc {
void* allocate(size_t) { fail_no_cuda(); }
void release(void*, size_t) {}
MemoryStats stats() { return {}; }
void reset_peak() {}
void empty_cache() {}
void record_stream(void*, kern::Stream) {}
StreamGuard::StreamGuard(kern::Stream s) : previous_(s) {}
StreamGuard::~StreamGuard() {}
class GraphPool {};
std::shared_ptr<GraphPool> begin_capture(kern::Stream) { fail_no_cuda(); }
void end_capture() {}
bool capturing() { return false; }
size_t graph_pools() { return 0; }
}  // namespace alloc
namespace pinned {
void* allocate(size_t nbytes) { return cpu_alloc::allocate(nbytes); }
void release(void* p, size_t nbytes) { cpu_alloc::release(p, nbytes); }
MemoryStats stats() { return {}; }
void record_stream(void*, kern::Stream) {}
}  // namespace pinned
Graph::~Graph() {}
Graph::Graph(Graph&&) noexcept {}
Graph& Graph::operator=(Graph&&) noexcept { return *this; }
void Graph::capture(const std::function<void()>&) { fail_no_cuda(); }
void Graph::replay() { fail_no_cuda(); }
void Graph::reset() {}
namespace testing {
void set_stream_rule(bool) {}
bool stream_rule() { return true; }
}  // namespace testing
}  // namespace eng::cuda
#endif
