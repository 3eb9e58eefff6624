// frozen_batch_norm2d on bf16 activations with f32 parameters: y = x * scale + shift in
// float, rounded once (so it equals the f32 path rounded once, bit for bit, on the CPU);
// backward dx = dy * scale the same way. batch_norm2d itself has no bf16 kernel: a clear
// error. CUDA against its CPU twin within one bf16 step (the device may fuse the multiply-add).
#include <cstdint>
#include <vector>

#include "kernels/bf16.h"
#include "test_helpers.h"

using namespace eng;

namespace {

std::vector<uint16_t> bits_of(const Tensor& t) {
  std::vector<uint16_t> out;
  for (kern::bf16 v : t.to_vector<kern::bf16>()) out.push_back(v.bits);
  return out;
}

Tensor random_f32(const Shape& shape, uint64_t seed, double scale, double shift) {
  Generator g(seed);
  return randn(shape, g) * scale + shift;
}

struct Frozen {
  Tensor w, b, rm, rv;
};

Frozen frozen_params(int64_t C) {
  Generator g(9);
  return {random_f32({C}, 1, 0.5, 1.0), random_f32({C}, 2, 0.3, 0.0), random_f32({C}, 3, 0.2, 0.0),
          rand({C}, g) + 0.5};
}

}  // namespace

TEST_CASE("bf16 frozen_batch_norm2d: f32 parameters, equal to the f32 path rounded once", "[bf16]") {
  const Frozen p = frozen_params(4);
  Tensor x = random_f32({2, 4, 3, 5}, 4, 2.0, 0.0).to(DType::bf16);
  Tensor g = random_f32({2, 4, 3, 5}, 5, 1.0, 0.0).to(DType::bf16);
  Tensor xb = x.detach().set_requires_grad(true), xf = x.to(DType::f32).detach().set_requires_grad(true);
  Tensor yb = frozen_batch_norm2d(xb, p.w, p.b, p.rm, p.rv, 1e-5);
  Tensor yf = frozen_batch_norm2d(xf, p.w, p.b, p.rm, p.rv, 1e-5);
  REQUIRE(yb.dtype() == DType::bf16);
  REQUIRE(bits_of(yb) == bits_of(yf.to(DType::bf16)));
  yb.backward(g);
  yf.backward(g.to(DType::f32));
  REQUIRE(xb.grad().dtype() == DType::bf16);
  REQUIRE(bits_of(xb.grad()) == bits_of(xf.grad().to(DType::bf16)));
  // Parameters must be f32; batch_norm2d has no bf16 kernel.
  REQUIRE_THROWS_WITH(frozen_batch_norm2d(x, p.w.to(DType::bf16), p.b.to(DType::bf16), p.rm.to(DType::bf16),
                                          p.rv.to(DType::bf16), 1e-5),
                      Catch::Contains("frozen_batch_norm2d: the parameters must be f32 on cpu for a bf16 input of "
                                      "shape [2, 4, 3, 5], got bf16 on cpu"));
  REQUIRE_THROWS_WITH(batch_norm2d(x, p.w, p.b, p.rm, p.rv, false, 0.1, 1e-5),
                      Catch::Contains("batch_norm2d: expected a f32 or f64 tensor, got a bf16 tensor of shape "
                                      "[2, 4, 3, 5] (no bf16 kernel)"));
}

TEST_CASE("bf16 frozen_batch_norm2d: cuda matches the cpu twin", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  const Frozen p = frozen_params(8);
  Tensor x = random_f32({2, 8, 7, 6}, 6, 2.0, 0.0).to(DType::bf16);
  Tensor g = random_f32({2, 8, 7, 6}, 7, 1.0, 0.0).to(DType::bf16);
  const Device dev = Device::cuda();
  Tensor xc = x.detach().set_requires_grad(true), xg = x.to(dev).detach().set_requires_grad(true);
  Tensor yc = frozen_batch_norm2d(xc, p.w, p.b, p.rm, p.rv, 1e-5);
  Tensor yg = frozen_batch_norm2d(xg, p.w.to(dev), p.b.to(dev), p.rm.to(dev), p.rv.to(dev), 1e-5);
  REQUIRE(yg.is_cuda());
  REQUIRE(yg.dtype() == DType::bf16);
  REQUIRE_CLOSE(yg, yc, 1e-6, 1.0 / 128);
  yc.backward(g);
  yg.backward(g.to(dev));
  REQUIRE_CLOSE(xg.grad(), xc.grad(), 1e-6, 1.0 / 128);
}
