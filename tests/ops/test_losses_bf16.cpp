// cross_entropy and smooth-L1 / L1 with bf16 inputs: the logits / predictions (and their
// gradient) are bf16, the maths and the loss are f32. The CPU bf16 kernel runs the f32 kernel's exact operations on the
// widened logits, so the loss must equal the f32 loss exactly and the gradient must equal
// the f32 gradient rounded once. CUDA against its CPU twin within float / one bf16 step.
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

// Labels in [0, C), every fifth one ignore_index.
Tensor random_labels(const Shape& shape, int64_t C, int64_t ignore_index, uint64_t seed) {
  Generator g(seed);
  std::vector<float> u = rand(shape, g).to_vector<float>();
  std::vector<int64_t> v;
  for (size_t i = 0; i < u.size(); ++i)
    v.push_back(i % 5 == 4 ? ignore_index : std::min<int64_t>(static_cast<int64_t>(u[i] * C), C - 1));
  return from_vector(v, shape);
}

constexpr double kBf16Rtol = 1.0 / 128;

}  // namespace

TEST_CASE("bf16 cross_entropy: f32 loss, bf16 gradient, equal to the f32 path", "[bf16]") {
  struct Case {
    Shape logits, labels;
  };
  for (const Case& k : {Case{{6, 9}, {6}}, Case{{2, 7, 3, 4}, {2, 3, 4}}}) {
    Tensor x = random_bf16(k.logits, 1);
    Tensor t = random_labels(k.labels, k.logits[1], -100, 2);
    for (Reduction r : {Reduction::None, Reduction::Sum, Reduction::Mean}) {
      INFO("shape " << shape_str(k.logits) << " reduction " << static_cast<int>(r));
      Tensor xb = x.detach().set_requires_grad(true);
      Tensor xf = x.to(DType::f32).detach().set_requires_grad(true);
      Tensor lb = cross_entropy(xb, t, r), lf = cross_entropy(xf, t, r);
      REQUIRE(lb.dtype() == DType::f32);
      REQUIRE(lb.to_vector<float>() == lf.to_vector<float>());
      Tensor g = r == Reduction::None ? random_bf16(lb.sizes(), 3).to(DType::f32) : Tensor();
      if (g.defined()) {
        lb.backward(g);
        lf.backward(g);
      } else {
        lb.backward();
        lf.backward();
      }
      REQUIRE(xb.grad().dtype() == DType::bf16);
      REQUIRE(bits_of(xb.grad()) == bits_of(xf.grad().to(DType::bf16)));
    }
  }
  // Hand value: logits [0, 0] (bf16), target 0: loss log 2 in f32, gradient [-0.5, 0.5].
  Tensor x = zeros({1, 2}, DType::bf16).set_requires_grad(true);
  Tensor loss = cross_entropy(x, from_vector<int64_t>({0}, {1}));
  REQUIRE(loss.item() == Approx(std::log(2.0)).epsilon(1e-7));
  loss.backward();
  REQUIRE(x.grad().to_vector<float>() == std::vector<float>{-0.5f, 0.5f});
}

TEST_CASE("bf16 cross_entropy: cuda matches the cpu twin", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  struct Case {
    Shape logits, labels;
  };
  // [N, C] takes the warp-per-element kernel, [N, C, H, W] the strided one.
  for (const Case& k : {Case{{40, 91}, {40}}, Case{{2, 21, 5, 6}, {2, 5, 6}}}) {
    Tensor x = random_bf16(k.logits, 4);
    Tensor t = random_labels(k.labels, k.logits[1], -100, 5);
    for (Reduction r : {Reduction::None, Reduction::Mean}) {
      INFO("shape " << shape_str(k.logits) << " reduction " << static_cast<int>(r));
      Tensor xc = x.detach().set_requires_grad(true);
      Tensor xg = x.to(Device::cuda()).detach().set_requires_grad(true);
      Tensor lc = cross_entropy(xc, t, r), lg = cross_entropy(xg, t.to(Device::cuda()), r);
      REQUIRE(lg.is_cuda());
      REQUIRE(lg.dtype() == DType::f32);
      REQUIRE_CLOSE(lg, lc, test::kReductionAtol, test::kReductionRtol);
      if (r == Reduction::None) {
        Tensor g = random_bf16(lc.sizes(), 6).to(DType::f32);
        lc.backward(g);
        lg.backward(g.to(Device::cuda()));
      } else {
        lc.backward();
        lg.backward();
      }
      REQUIRE(xg.grad().dtype() == DType::bf16);
      REQUIRE_CLOSE(xg.grad(), xc.grad(), 1e-6, kBf16Rtol);
    }
  }
}

TEST_CASE("bf16 smooth_l1 / l1: bf16 input, f32 target and loss, equal to the f32 path", "[bf16]") {
  Tensor x = random_bf16({5, 4}, 7);
  Generator gen(8);
  Tensor target = randn({5, 4}, gen) * 3.0;  // f32
  for (double beta : {1.0, 0.0}) {
    for (Reduction r : {Reduction::None, Reduction::Sum, Reduction::Mean}) {
      INFO("beta " << beta << " reduction " << static_cast<int>(r));
      Tensor xb = x.detach().set_requires_grad(true), xf = x.to(DType::f32).detach().set_requires_grad(true);
      Tensor tb = target.detach().set_requires_grad(true), tf = target.detach().set_requires_grad(true);
      Tensor lb = smooth_l1_loss(xb, tb, r, beta), lf = smooth_l1_loss(xf, tf, r, beta);
      REQUIRE(lb.dtype() == DType::f32);
      REQUIRE(lb.to_vector<float>() == lf.to_vector<float>());
      if (r == Reduction::None) {
        Tensor g = random_bf16({5, 4}, 9).to(DType::f32);
        lb.backward(g);
        lf.backward(g);
      } else {
        lb.backward();
        lf.backward();
      }
      REQUIRE(xb.grad().dtype() == DType::bf16);
      REQUIRE(bits_of(xb.grad()) == bits_of(xf.grad().to(DType::bf16)));
      // The target's gradient is -gx, in the target's dtype (widened from the bf16 gx).
      REQUIRE(tb.grad().dtype() == DType::f32);
      REQUIRE(tb.grad().to_vector<float>() == neg(xb.grad()).to(DType::f32).to_vector<float>());
    }
  }
  REQUIRE_THROWS_WITH(l1_loss(x, x), Catch::Contains("l1_loss: the target must be f32 on cpu for a bf16 input of "
                                                     "shape [5, 4], got bf16 on cpu"));
}

TEST_CASE("bf16 smooth_l1: cuda matches the cpu twin", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = random_bf16({64, 4}, 10);
  Generator gen(11);
  Tensor target = randn({64, 4}, gen) * 3.0;
  Tensor xc = x.detach().set_requires_grad(true), xg = x.to(Device::cuda()).detach().set_requires_grad(true);
  Tensor lc = smooth_l1_loss(xc, target, Reduction::Sum, 1.0 / 9);
  Tensor lg = smooth_l1_loss(xg, target.to(Device::cuda()), Reduction::Sum, 1.0 / 9);
  REQUIRE(lg.dtype() == DType::f32);
  REQUIRE_CLOSE(lg, lc, test::kReductionAtol, test::kReductionRtol);
  lc.backward();
  lg.backward();
  REQUIRE(bits_of(xg.grad()) == bits_of(xc.grad()));
}
