// sum / mean / max (and the global pools built on them) on bf16 tensors: values widen
// exactly, sums run in double and each result is rounded once to bf16; max copies the
// chosen element. The CPU bf16 sum must equal the f64 sum of the same values rounded once;
// CUDA against its CPU twin.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/bf16.h"
#include "bf16_helpers.h"
#include "test_helpers.h"

using namespace eng;
using test::bits_of;
using test::random_bf16;

namespace {

constexpr double kBf16Rtol = 1.0 / 128;

}  // namespace

TEST_CASE("bf16 reductions: sums in double, rounded once", "[bf16]") {
  // 1 + 3 * 2^-8 summed exactly is a tie that rounds up to 0x3F82; summed in bf16 step by
  // step it would stay at 1.
  const float e = std::ldexp(1.0f, -8);
  Tensor x = from_vector<float>({1, e, e, e}, {4}).to(DType::bf16);
  REQUIRE(sum(x).dtype() == DType::bf16);
  REQUIRE(bits_of(sum(x)) == std::vector<uint16_t>{0x3F82});
  REQUIRE(mean(from_vector<float>({1, 2}, {2}).to(DType::bf16)).item() == 1.5);
  // Against the f64 path on the same values, rounded once: whole, one dim, several dims.
  Tensor y = random_bf16({3, 5, 7}, 1);
  Tensor y64 = y.to(DType::f64);
  REQUIRE(bits_of(sum(y)) == bits_of(sum(y64).to(DType::bf16)));
  REQUIRE(bits_of(sum(y, {1})) == bits_of(sum(y64, {1}).to(DType::bf16)));
  REQUIRE(bits_of(mean(y, {0, 2}, true)) == bits_of(mean(y64, {0, 2}, true).to(DType::bf16)));
  // max: the element itself and the same index as f32.
  auto mb = max(y, 1), mf = max(y.to(DType::f32), 1);
  REQUIRE(bits_of(mb.first) == bits_of(mf.first.to(DType::bf16)));
  REQUIRE(mb.second.to_vector<int64_t>() == mf.second.to_vector<int64_t>());
}

TEST_CASE("bf16 reductions: backward and the global pools", "[bf16]") {
  Tensor x = random_bf16({2, 3, 4, 5}, 2).set_requires_grad(true);
  Tensor gap = global_avg_pool2d(x), gmp = global_max_pool2d(x);
  REQUIRE(gap.dtype() == DType::bf16);
  REQUIRE(gap.sizes() == Shape{2, 3, 1, 1});
  REQUIRE(bits_of(gap) == bits_of(global_avg_pool2d(x.detach().to(DType::f64)).to(DType::bf16)));
  REQUIRE(bits_of(gmp) == bits_of(global_max_pool2d(x.detach().to(DType::f32)).to(DType::bf16)));
  // d(sum of the max pool)/dx: 1 at each plane's first maximum; d(mean)/dx = 1/20 everywhere
  // (0.05 -> bf16 0.050048828125).
  sum(gmp.to(DType::f32)).backward();
  REQUIRE(x.grad().dtype() == DType::bf16);
  const std::vector<float> gm = x.grad().to_vector<float>();
  double total = 0;
  for (float v : gm) total += v;
  REQUIRE(total == 6.0);
  x.zero_grad();
  sum(gap.to(DType::f32)).backward();
  REQUIRE(x.grad().to_vector<float>() == std::vector<float>(120, 0.050048828125f));
}

TEST_CASE("bf16 reductions: cuda matches the cpu twin", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = random_bf16({4, 37, 9}, 3);
  Tensor g = x.to(Device::cuda());
  REQUIRE(g.is_cuda());
  REQUIRE_CLOSE(sum(g), sum(x), 1e-6, kBf16Rtol);                          // rows kernel
  REQUIRE_CLOSE(sum(g, {1}), sum(x, {1}), 1e-6, kBf16Rtol);                // strided kernel
  REQUIRE_CLOSE(mean(g, {2}, true), mean(x, {2}, true), 1e-6, kBf16Rtol);  // rows kernel
  auto mg = max(g, 1), mc = max(x, 1);
  REQUIRE(bits_of(mg.first) == bits_of(mc.first));
  REQUIRE(mg.second.to_vector<int64_t>() == mc.second.to_vector<int64_t>());
  Tensor xc = x.detach().set_requires_grad(true), xg = g.detach().set_requires_grad(true);
  Tensor w = random_bf16({4, 9}, 4);
  max(xc, 1).first.backward(w);
  max(xg, 1).first.backward(w.to(Device::cuda()));
  REQUIRE(bits_of(xg.grad()) == bits_of(xc.grad()));
}
