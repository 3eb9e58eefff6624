// What one steady-state step costs on the device (engine/counters.h): run `warmup` steps
// first (cuDNN algorithm searches, allocator and pinned caches filling, optimizer state and
// descriptor uploads all happen there), then count exactly one more.
//
//   const eng::cuda::Counters c = test::step_cost([&] { train_step(); });
//   CHECK(c.host_syncs == 0);
//   CHECK(c.driver_allocs() == 0);
//   CHECK(c.launches <= kCeiling);
//
// The step must be complete (forward, loss, backward, optimizer step) and must not read
// anything back itself. The counters are process-wide: nothing else may run meanwhile.
#pragma once
#include <functional>

#include "engine/counters.h"
#include "engine/cuda_context.h"

namespace test {

inline eng::cuda::Counters step_cost(const std::function<void()>& step, int warmup = 2) {
  for (int i = 0; i < warmup; ++i) step();
  eng::cuda::synchronize();  // the warm-up's work is not the step's
  const eng::cuda::Counters before = eng::cuda::counters();
  step();
  return eng::cuda::counters() - before;
}

}  // namespace test
