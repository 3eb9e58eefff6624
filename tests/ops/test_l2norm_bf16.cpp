// L2Norm on bf16 activations with the f32 scale parameter: x, y and their gradients are
// bf16, scale and its gradient f32, the maths in float. The CPU bf16 kernel runs the f32
// kernel's exact operations on the widened values, so y and gx must equal the f32 results
// rounded once and gscale the f32 gscale exactly. CUDA against its CPU twin within float
// rounding / one bf16 step.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/bf16.h"
#include "bf16_helpers.h"
#include "test_helpers.h"

using namespace eng;
using test::bits_of;

namespace {

Tensor random_bf16(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  return (randn(shape, g) * 2.0).to(DType::bf16);
}

Tensor random_scale(int64_t C, uint64_t seed) {
  Generator g(seed);
  return rand({C}, g) * 20.0 + 1.0;  // f32, like SSD's scale (initialised to 20)
}

constexpr double kBf16Rtol = 1.0 / 128;

}  // namespace

TEST_CASE("bf16 l2norm: bf16 activations, f32 scale, equal to the f32 path", "[bf16]") {
  Tensor x = random_bf16({2, 5, 3, 7}, 1);
  Tensor scale = random_scale(5, 2);
  Tensor g = random_bf16({2, 5, 3, 7}, 3);
  Tensor xb = x.detach().set_requires_grad(true), sb = scale.detach().set_requires_grad(true);
  Tensor xf = x.to(DType::f32).detach().set_requires_grad(true), sf = scale.detach().set_requires_grad(true);
  Tensor yb = l2norm(xb, sb), yf = l2norm(xf, sf);
  REQUIRE(yb.dtype() == DType::bf16);
  REQUIRE(bits_of(yb) == bits_of(yf.to(DType::bf16)));
  yb.backward(g);
  yf.backward(g.to(DType::f32));
  REQUIRE(xb.grad().dtype() == DType::bf16);
  REQUIRE(bits_of(xb.grad()) == bits_of(xf.grad().to(DType::bf16)));
  REQUIRE(sb.grad().dtype() == DType::f32);
  REQUIRE(sb.grad().to_vector<float>() == sf.grad().to_vector<float>());
  // Hand value: the column (3, 4) has norm 5; with scale 2: y = (1.2, 1.6) -> bf16 1.203125
  // (0x3F9A) and 1.6015625 (0x3FCD).
  Tensor col = from_vector<float>({3, 4}, {1, 2, 1, 1}).to(DType::bf16);
  REQUIRE(bits_of(l2norm(col, full({2}, 2.0))) == std::vector<uint16_t>{0x3F9A, 0x3FCD});
  // The scale must be the f32 parameter.
  REQUIRE_THROWS_WITH(l2norm(x, scale.to(DType::bf16)),
                      Catch::Contains("l2norm: scale must be f32 for a bf16 input of shape [2, 5, 3, 7], got bf16"));
}

TEST_CASE("bf16 l2norm: cuda matches the cpu twin", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  // C = 64 takes the cached (shared-memory tile) kernels.
  Tensor x = random_bf16({2, 64, 5, 9}, 4);
  Tensor scale = random_scale(64, 5);
  Tensor g = random_bf16({2, 64, 5, 9}, 6);
  Tensor xc = x.detach().set_requires_grad(true), sc = scale.detach().set_requires_grad(true);
  Tensor xg = x.to(Device::cuda()).detach().set_requires_grad(true);
  Tensor sg = scale.to(Device::cuda()).detach().set_requires_grad(true);
  Tensor yc = l2norm(xc, sc), yg = l2norm(xg, sg);
  REQUIRE(yg.is_cuda());
  REQUIRE(yg.dtype() == DType::bf16);
  REQUIRE_CLOSE(yg, yc, 1e-6, kBf16Rtol);
  yc.backward(g);
  yg.backward(g.to(Device::cuda()));
  REQUIRE(xg.grad().dtype() == DType::bf16);
  REQUIRE_CLOSE(xg.grad(), xc.grad(), 1e-3, kBf16Rtol);
  REQUIRE(sg.grad().dtype() == DType::f32);
  REQUIRE_CLOSE(sg.grad(), sc.grad(), test::kReductionAtol, test::kReductionRtol);
}
