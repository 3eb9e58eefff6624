// The CPU allocator's cache of large blocks: a released block of >= 1 MiB is handed out
// again for the same size without a new malloc; small blocks are not cached; the counters
// stay exact; empty_cache gives everything back.
#include <cstring>

#include "test_helpers.h"

using eng::cpu_alloc::stats;

TEST_CASE("cpu allocator: large blocks are reused, small ones are not cached", "[engine][allocator]") {
  eng::cpu_alloc::empty_cache();
  const size_t big = size_t(3) << 20;  // 3 MiB
  void* a = eng::cpu_alloc::allocate(big);
  const auto after_first = stats();
  eng::cpu_alloc::release(a, big);
  CHECK(stats().allocated == after_first.allocated - big);
  CHECK(stats().reserved >= stats().allocated + big);  // kept in the cache
  void* b = eng::cpu_alloc::allocate(big);
  CHECK(b == a);                                                   // the same block back
  CHECK(stats().num_device_allocs == after_first.num_device_allocs);  // no new malloc
  CHECK(stats().allocated == after_first.allocated);
  // The block is usable memory (write every byte).
  std::memset(b, 0x5a, big);
  eng::cpu_alloc::release(b, big);

  // A different size does not take the cached block.
  void* c = eng::cpu_alloc::allocate(big + 4096);
  CHECK(c != a);
  eng::cpu_alloc::release(c, big + 4096);

  // Small blocks are not cached.
  const size_t small = 4096;
  const auto before_small = stats();
  void* s = eng::cpu_alloc::allocate(small);
  eng::cpu_alloc::release(s, small);
  CHECK(stats().reserved == before_small.reserved);

  eng::cpu_alloc::empty_cache();
  CHECK(stats().reserved == stats().allocated);
}

TEST_CASE("cpu allocator: tensors reuse cached storage across steps", "[engine][allocator]") {
  eng::cpu_alloc::empty_cache();
  // Two "training steps" with the same shapes: the second allocates nothing new.
  auto step = [] {
    eng::Tensor x = eng::ones({512, 1024});  // 2 MiB
    eng::Tensor y = eng::mul_scalar(x, 3.0);
    return y.to_vector<float>()[12345];
  };
  CHECK(step() == 3.0f);
  const size_t calls = stats().num_device_allocs;
  CHECK(step() == 3.0f);
  CHECK(stats().num_device_allocs == calls);
}
