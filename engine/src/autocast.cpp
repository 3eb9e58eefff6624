#include "engine/autocast.h"

#include "engine/tensor.h"

namespace eng::autocast {
namespace {
thread_local bool g_enabled = false;
thread_local bool g_cpu = false;  // cast CPU tensors too (the CPU twin of mixed precision)
}

bool enabled() { return g_enabled; }

Guard::Guard(bool on, bool cpu_twin) : previous_(g_enabled), previous_cpu_(g_cpu) {
  g_enabled = on;
  g_cpu = on && cpu_twin;
}
Guard::~Guard() {
  g_enabled = previous_;
  g_cpu = previous_cpu_;
}

Tensor to_compute(const Tensor& t) {
  if (!g_enabled || !t.defined() || (!t.is_cuda() && !g_cpu) || t.dtype() != DType::f32) return t;
  return t.to(DType::bf16);
}

}  // namespace eng::autocast
