// Pinned host memory: a CPU tensor whose copy to the device is asynchronous. On the CPU the
// tensor must behave as any other; on a device the asynchronous copy must deliver the
// values, and a block released while a copy is queued must not be handed out again early.
#include "test_helpers.h"

using eng::Device;
using eng::DType;

TEST_CASE("pinned: a pinned tensor is an ordinary CPU tensor", "[engine][pinned]") {
  eng::Tensor t = eng::empty_pinned({2, 3}, DType::f32);
  CHECK(t.device().is_cpu());
  CHECK(t.storage()->pinned());
  float* p = t.data<float>();
  for (int i = 0; i < 6; ++i) p[i] = static_cast<float>(i) * 0.5f;
  eng::Tensor doubled = eng::mul(t, eng::full({2, 3}, 2.0));
  CHECK(doubled.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
  CHECK_FALSE(eng::empty({1}).storage()->pinned());
}

TEST_CASE("pinned: cuda matches cpu (asynchronous copy, block reuse)", "[engine][pinned][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  std::vector<eng::Tensor> on_device;
  std::vector<std::vector<float>> expected;
  // Several rounds through the cache: each host block is refilled only after release,
  // and the device copies must keep the values they were given.
  for (int round = 0; round < 8; ++round) {
    eng::Tensor h = eng::empty_pinned({1 << 18}, DType::f32);
    float* p = h.data<float>();
    for (int64_t i = 0; i < h.numel(); ++i) p[i] = static_cast<float>(round * 1000 + i % 997);
    on_device.push_back(h.to(Device::cuda()));
    expected.push_back(h.to_vector<float>());
  }  // each h is released here while its copy may still be queued
  for (size_t r = 0; r < on_device.size(); ++r) CHECK(on_device[r].cpu().to_vector<float>() == expected[r]);
  CHECK(eng::cuda::pinned::stats().num_device_allocs >= 1);
}
