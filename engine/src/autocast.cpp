#include "engine/autocast.h"

#include "engine/tensor.h"

namespace eng::autocast {
namespace {
thread_local bool g_enabled = false;
}

bool enabled() { return g_enabled; }

Guard::Guard(bool on) : previous_(g_enabled) { g_enabled = on; }
Guard::~Guard() { g_enabled = previous_; }

Tensor to_compute(const Tensor& t) {
  if (!g_enabled || !t.defined() || !t.is_cuda() || t.dtype() != DType::f32) return t;
  return t.to(DType::bf16);
}

}  // namespace eng::autocast
