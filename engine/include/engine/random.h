// Seeded random numbers. Generator wraps std::mt19937_64; rand/randn draw on the host in a
// fixed order, so a seed gives the same tensor on every device and machine.
#pragma once
#include <cstdint>
#include <random>

namespace eng {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : engine_(seed) {}
  void seed(uint64_t s) { engine_.seed(s); }
  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(engine_); }
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(engine_); }
  uint64_t next_u64() { return engine_(); }
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
};

}  // namespace eng
