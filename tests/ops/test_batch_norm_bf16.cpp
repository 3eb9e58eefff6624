// batch_norm2d and frozen_batch_norm2d on bf16 activations with f32 parameters and
// statistics: the maths in float (sums in double), outputs and input gradients rounded once,
// so on the CPU they equal the f32 path on the widened values rounded once, bit for bit
// (statistics, running stats and parameter gradients: exactly). CUDA against its CPU twin
// within one bf16 step (the device may fuse multiply-adds and sums in another order).
#include <cstdint>
#include <vector>

#include "kernels/bf16.h"
#include "bf16_helpers.h"
#include "test_helpers.h"

using namespace eng;
using test::bits_of;

namespace {

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
  // The parameters must be f32 (batch_norm2d checks them the same way).
  REQUIRE_THROWS_WITH(frozen_batch_norm2d(x, p.w.to(DType::bf16), p.b.to(DType::bf16), p.rm.to(DType::bf16),
                                          p.rv.to(DType::bf16), 1e-5),
                      Catch::Contains("frozen_batch_norm2d: the parameters must be f32 on cpu for a bf16 input of "
                                      "shape [2, 4, 3, 5], got bf16 on cpu"));
  REQUIRE_THROWS_WITH(batch_norm2d(x, p.w, p.b, p.rm, p.rv.to(DType::f64), false, 0.1, 1e-5),
                      Catch::Contains("batch_norm2d: the parameters must be f32 on cpu for a bf16 input"));
}

TEST_CASE("bf16 batch_norm2d: train and eval equal the f32 path rounded once", "[bf16]") {
  const Frozen p = frozen_params(4);
  Tensor x = random_f32({3, 4, 2, 5}, 8, 2.0, 0.5).to(DType::bf16);
  Tensor g = random_f32({3, 4, 2, 5}, 9, 1.0, 0.0).to(DType::bf16);
  for (bool training : {true, false}) {
    INFO("training " << training);
    Tensor rm_b = p.rm.clone(), rv_b = p.rv.clone(), rm_f = p.rm.clone(), rv_f = p.rv.clone();
    Tensor xb = x.detach().set_requires_grad(true), xf = x.to(DType::f32).detach().set_requires_grad(true);
    Tensor wb = p.w.detach().set_requires_grad(true), wf = p.w.detach().set_requires_grad(true);
    Tensor bb = p.b.detach().set_requires_grad(true), bf = p.b.detach().set_requires_grad(true);
    Tensor yb = batch_norm2d(xb, wb, bb, rm_b, rv_b, training);
    Tensor yf = batch_norm2d(xf, wf, bf, rm_f, rv_f, training);
    REQUIRE(yb.dtype() == DType::bf16);
    REQUIRE(bits_of(yb) == bits_of(yf.to(DType::bf16)));
    REQUIRE(rm_b.to_vector<float>() == rm_f.to_vector<float>());
    REQUIRE(rv_b.to_vector<float>() == rv_f.to_vector<float>());
    yb.backward(g);
    yf.backward(g.to(DType::f32));
    REQUIRE(xb.grad().dtype() == DType::bf16);
    REQUIRE(bits_of(xb.grad()) == bits_of(xf.grad().to(DType::bf16)));
    REQUIRE(wb.grad().dtype() == DType::f32);
    REQUIRE(wb.grad().to_vector<float>() == wf.grad().to_vector<float>());
    REQUIRE(bb.grad().to_vector<float>() == bf.grad().to_vector<float>());
  }
}

TEST_CASE("bf16 batch_norm2d: cuda matches the cpu twin", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  const Frozen p = frozen_params(6);
  const Device dev = Device::cuda();
  Tensor x = random_f32({4, 6, 5, 3}, 10, 2.0, 0.5).to(DType::bf16);
  Tensor g = random_f32({4, 6, 5, 3}, 11, 1.0, 0.0).to(DType::bf16);
  Tensor rm_c = p.rm.clone(), rv_c = p.rv.clone(), rm_g = p.rm.to(dev), rv_g = p.rv.to(dev);
  Tensor xc = x.detach().set_requires_grad(true), xg = x.to(dev).detach().set_requires_grad(true);
  Tensor wc = p.w.detach().set_requires_grad(true), wg = p.w.to(dev).detach().set_requires_grad(true);
  Tensor yc = batch_norm2d(xc, wc, p.b, rm_c, rv_c, true);
  Tensor yg = batch_norm2d(xg, wg, p.b.to(dev), rm_g, rv_g, true);
  REQUIRE(yg.is_cuda());
  REQUIRE(yg.dtype() == DType::bf16);
  REQUIRE_CLOSE(yg, yc, 1e-5, 1.0 / 128);
  REQUIRE_CLOSE(rm_g, rm_c, test::kReductionAtol, test::kReductionRtol);
  REQUIRE_CLOSE(rv_g, rv_c, test::kReductionAtol, test::kReductionRtol);
  yc.backward(g);
  yg.backward(g.to(dev));
  REQUIRE_CLOSE(xg.grad(), xc.grad(), 1e-3, 1.0 / 128);
  REQUIRE_CLOSE(wg.grad(), wc.grad(), test::kReductionAtol, test::kReductionRtol);
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
