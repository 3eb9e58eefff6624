// upsample_nearest2d on bf16 tensors: forward copies elements unchanged, backward sums the
// gradients in float (in output order) and rounds each sum once. CPU against the f32 path,
// CUDA against its CPU twin (same summation order: bit for bit).
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

}  // namespace

TEST_CASE("bf16 upsample_nearest2d: copies forward, sums in float backward", "[bf16]") {
  // One pixel read by four outputs: 1 + 3 * 2^-8 summed in float is a tie that rounds up
  // to 0x3F82 (summed in bf16 step by step it would stay at 1).
  const float e = std::ldexp(1.0f, -8);
  Tensor one = from_vector<float>({1}, {1, 1, 1, 1}).to(DType::bf16).set_requires_grad(true);
  Tensor y = upsample_nearest2d(one, 2, 2);
  REQUIRE(y.dtype() == DType::bf16);
  y.backward(from_vector<float>({1, e, e, e}, {1, 1, 2, 2}).to(DType::bf16));
  REQUIRE(bits_of(one.grad()) == std::vector<uint16_t>{0x3F82});
  // Against the f32 path: the same elements forward, the f32 gradient rounded once backward.
  Tensor x = random_bf16({2, 3, 5, 7}, 1);
  Tensor g = random_bf16({2, 3, 12, 9}, 2);
  Tensor xb = x.detach().set_requires_grad(true), xf = x.to(DType::f32).detach().set_requires_grad(true);
  Tensor yb = upsample_nearest2d(xb, 12, 9), yf = upsample_nearest2d(xf, 12, 9);
  REQUIRE(bits_of(yb) == bits_of(yf.to(DType::bf16)));
  yb.backward(g);
  yf.backward(g.to(DType::f32));
  REQUIRE(bits_of(xb.grad()) == bits_of(xf.grad().to(DType::bf16)));
}

TEST_CASE("bf16 upsample_nearest2d: cuda matches the cpu twin", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = random_bf16({2, 4, 6, 5}, 3);
  Tensor g = random_bf16({2, 4, 13, 11}, 4);
  Tensor xc = x.detach().set_requires_grad(true), xg = x.to(Device::cuda()).detach().set_requires_grad(true);
  Tensor yc = upsample_nearest2d(xc, 13, 11), yg = upsample_nearest2d(xg, 13, 11);
  REQUIRE(yg.is_cuda());
  REQUIRE(bits_of(yg) == bits_of(yc));
  yc.backward(g);
  yg.backward(g.to(Device::cuda()));
  REQUIRE(bits_of(xg.grad()) == bits_of(xc.grad()));
}
