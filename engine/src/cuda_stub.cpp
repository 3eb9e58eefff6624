// The CUDA entry points of a CPU-only build: no device, and a clear error if asked for one.
#ifndef ENGINE_WITH_CUDA
#include "engine/allocator.h"
#include "engine/cuda_context.h"
#include "engine/error.h"

namespace eng::cuda {
bool available() { return false; }
int device_count() { return 0; }
void fail_no_cuda() { ENGINE_FAIL("this build has no CUDA backend (nvcc was not found at configure time)"); }
kern::Stream stream() { fail_no_cuda(); }
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
}  // namespace alloc
namespace pinned {
void* allocate(size_t nbytes) { return cpu_alloc::allocate(nbytes); }
void release(void* p, size_t nbytes) { cpu_alloc::release(p, nbytes); }
MemoryStats stats() { return {}; }
}  // namespace pinned
}  // namespace eng::cuda
#endif
