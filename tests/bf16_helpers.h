// Shared helpers of the bf16 op tests (tests/ops/test_*_bf16.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "kernels/bf16.h"

namespace test {

// The raw 16-bit patterns of a bf16 tensor (for bit-for-bit comparisons).
inline std::vector<uint16_t> bits_of(const eng::Tensor& t) {
  std::vector<uint16_t> out;
  for (kern::bf16 v : t.to_vector<kern::bf16>()) out.push_back(v.bits);
  return out;
}

// A bf16 tensor of N(0, 9) values (3 * randn, rounded once) from `seed`.
inline eng::Tensor random_bf16(const eng::Shape& shape, uint64_t seed) {
  eng::Generator g(seed);
  return (eng::randn(shape, g) * 3.0).to(eng::DType::bf16);
}

}  // namespace test
