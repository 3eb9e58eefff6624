// The CPU allocator's cache of large blocks: a released block of >= 1 MiB is handed out
// again for the same size without a new malloc; small blocks are not cached; the counters
// stay exact; empty_cache gives everything back; the cache never holds more than the live
// high-water mark (live + cached <= the most live bytes ever), and trim / set_cache_limit.
#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

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

  // A different size does not take the cached block: it is a fresh malloc (the cached block
  // may be freed first to respect the live high-water bound, so its address can come back).
  const size_t calls_before_c = stats().num_device_allocs;
  void* c = eng::cpu_alloc::allocate(big + 4096);
  CHECK(stats().num_device_allocs == calls_before_c + 1);
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

TEST_CASE("cpu allocator: live + cached stays within the live high-water mark", "[engine][allocator]") {
  eng::cpu_alloc::empty_cache();
  const size_t base = stats().allocated;
  size_t hwm = base;  // the largest live total seen by this test (the process's may be higher)
  size_t slack = 0;   // rounding to 64 bytes per cached block
  const size_t MiB = size_t(1) << 20;
  // "Steps" whose block sizes change every time (as a detector whose anchors differ per
  // batch): the old cache kept every size it had seen, up to 1 GiB.
  std::vector<std::pair<void*, size_t>> live;
  uint64_t s = 12345;
  for (int step = 0; step < 40; ++step) {
    for (int k = 0; k < 6; ++k) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      const size_t n = MiB + (s >> 40) % (8 * MiB);  // 1 .. 9 MiB, a new size almost every time
      live.push_back({eng::cpu_alloc::allocate(n), n});
      std::memset(live.back().first, 1, 64);
      hwm = std::max(hwm, stats().allocated);
      slack += 64;
      INFO("step " << step << ": reserved " << stats().reserved << ", live high-water " << hwm);
      // The allocator counts blocks in their sizes (rounded, or a best-fit block of up to twice
      // the request): live + cached within its high-water mark.
      REQUIRE(stats().reserved <= eng::cpu_alloc::live_high_water() + slack);
    }
    for (auto& [p, n] : live) eng::cpu_alloc::release(p, n);
    live.clear();
    // Everything released: what is cached is bounded by the live peak of this test's steps
    // (6 blocks of at most 9 MiB), not by the 40 x 6 sizes released so far.
    REQUIRE(stats().reserved - stats().allocated <= 6 * 2 * 9 * MiB + slack);
  }
  // A repeated step with the same sizes still runs from the cache.
  auto same_step = [&] {
    std::vector<void*> ps;
    for (int k = 0; k < 4; ++k) ps.push_back(eng::cpu_alloc::allocate((k + 2) * MiB));
    for (int k = 0; k < 4; ++k) eng::cpu_alloc::release(ps[k], (k + 2) * MiB);
  };
  same_step();
  const size_t calls = stats().num_device_allocs;
  same_step();
  CHECK(stats().num_device_allocs == calls);
  (void)base;
}

TEST_CASE("cpu allocator: trim and set_cache_limit free the cache", "[engine][allocator]") {
  const size_t MiB = size_t(1) << 20;
  void* a = eng::cpu_alloc::allocate(4 * MiB);
  void* b = eng::cpu_alloc::allocate(2 * MiB);
  eng::cpu_alloc::release(a, 4 * MiB);
  eng::cpu_alloc::release(b, 2 * MiB);
  CHECK(stats().reserved >= stats().allocated + 6 * MiB);
  eng::cpu_alloc::trim();
  CHECK(stats().reserved == stats().allocated);

  const size_t old_limit = eng::cpu_alloc::cache_limit();
  CHECK(old_limit == size_t(1) << 30);
  a = eng::cpu_alloc::allocate(4 * MiB);
  b = eng::cpu_alloc::allocate(2 * MiB);
  eng::cpu_alloc::release(a, 4 * MiB);
  eng::cpu_alloc::release(b, 2 * MiB);
  eng::cpu_alloc::set_cache_limit(3 * MiB);  // the 4 MiB block goes, the 2 MiB one stays
  CHECK(stats().reserved == stats().allocated + 2 * MiB);
  eng::cpu_alloc::set_cache_limit(0);  // no caching at all
  CHECK(stats().reserved == stats().allocated);
  void* c = eng::cpu_alloc::allocate(2 * MiB);
  eng::cpu_alloc::release(c, 2 * MiB);
  CHECK(stats().reserved == stats().allocated);
  eng::cpu_alloc::set_cache_limit(old_limit);
}

TEST_CASE("cpu allocator: the slack setting", "[engine][allocator]") {
  const size_t MiB = size_t(1) << 20;
  eng::cpu_alloc::empty_cache();
  // Live high-water mark of this process so far: at least 9 MiB (the test above). Cache a
  // block, then ask for a different size that would overflow the mark only with the cached
  // block kept: slack 0 evicts it, a large slack keeps it.
  auto cached_after_miss = [&](size_t slack) {
    eng::cpu_alloc::empty_cache();
    eng::cpu_alloc::set_cache_slack_percent(slack);
    const size_t room = stats().peak_allocated;  // at least the live total now
    void* a = eng::cpu_alloc::allocate(4 * MiB);
    eng::cpu_alloc::release(a, 4 * MiB);
    void* big = eng::cpu_alloc::allocate(64 * MiB + room);  // a new high: slack 0 keeps nothing
    const size_t cached = stats().reserved - stats().allocated;
    eng::cpu_alloc::release(big, 64 * MiB + room);
    eng::cpu_alloc::empty_cache();
    return cached;
  };
  CHECK(cached_after_miss(0) == 0);
  CHECK(cached_after_miss(1000) == 4 * MiB);
  eng::cpu_alloc::set_cache_slack_percent(0);
  REQUIRE_THROWS_WITH(eng::cpu_alloc::set_cache_slack_percent(1001),
                      Catch::Contains("cpu_alloc::set_cache_slack_percent: expected 0 .. 1000, got 1001"));
}

TEST_CASE("cpu allocator: blocks of 8 MiB and more are 2 MiB-aligned and usable", "[engine][allocator]") {
  const size_t MiB = size_t(1) << 20;
  for (size_t n : {8 * MiB, 9 * MiB + 12345, 33 * MiB}) {
    auto* p = static_cast<unsigned char*>(eng::cpu_alloc::allocate(n));
    CHECK(reinterpret_cast<uintptr_t>(p) % (2 * MiB) == 0);
    std::memset(p, 0x3c, n);  // every byte writable (the trimmed mapping covers the block)
    CHECK(p[n - 1] == 0x3c);
    eng::cpu_alloc::release(p, n);
  }
  eng::cpu_alloc::trim();  // munmap of each whole block: no crash, nothing cached
  CHECK(stats().reserved == stats().allocated);
}
