// sigmoid_focal_loss with bf16 logits: the logits (and their gradient) are bf16, the maths,
// the loss and the saved derivative are f32. The CPU bf16 kernel runs the f32 kernel's
// exact operations on the widened logits: the loss must equal the f32 loss exactly and the
// gradient the f32 gradient rounded once. CUDA against its CPU twin within float / one bf16
// step.
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

// Labels: classes in [0, C), with background (-1) and ignored (-2) rows mixed in.
Tensor mixed_labels(int64_t rows, int64_t C) {
  std::vector<int64_t> v;
  for (int64_t m = 0; m < rows; ++m) v.push_back(m % 7 == 3 ? -2 : (m % 3 == 1 ? -1 : (m * 5) % C));
  return from_vector(v, {rows});
}

constexpr double kBf16Rtol = 1.0 / 128;

}  // namespace

TEST_CASE("bf16 sigmoid_focal_loss: f32 loss, bf16 gradient, equal to the f32 path", "[bf16]") {
  const int64_t rows = 23, C = 9;
  Tensor x = random_bf16({rows, C}, 1);
  Tensor labels = mixed_labels(rows, C);
  for (Reduction r : {Reduction::None, Reduction::Sum, Reduction::Mean}) {
    for (double gamma : {2.0, 0.5}) {
      INFO("reduction " << static_cast<int>(r) << " gamma " << gamma);
      Tensor xb = x.detach().set_requires_grad(true);
      Tensor xf = x.to(DType::f32).detach().set_requires_grad(true);
      Tensor lb = sigmoid_focal_loss(xb, labels, 0.25, gamma, r), lf = sigmoid_focal_loss(xf, labels, 0.25, gamma, r);
      REQUIRE(lb.dtype() == DType::f32);
      REQUIRE(lb.to_vector<float>() == lf.to_vector<float>());
      if (r == Reduction::None) {
        Tensor g = random_bf16({rows, C}, 2).to(DType::f32);
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
  // Without a gradient the forward alone works too (no derivative saved).
  REQUIRE(sigmoid_focal_loss(x, labels).dtype() == DType::f32);
}

TEST_CASE("bf16 sigmoid_focal_loss: cuda matches the cpu twin", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  const int64_t rows = 300, C = 21;
  Tensor x = random_bf16({rows, C}, 3);
  Tensor labels = mixed_labels(rows, C);
  for (Reduction r : {Reduction::None, Reduction::Sum}) {
    INFO("reduction " << static_cast<int>(r));
    Tensor xc = x.detach().set_requires_grad(true);
    Tensor xg = x.to(Device::cuda()).detach().set_requires_grad(true);
    Tensor lc = sigmoid_focal_loss(xc, labels, 0.25, 2.0, r);
    Tensor lg = sigmoid_focal_loss(xg, labels.to(Device::cuda()), 0.25, 2.0, r);
    REQUIRE(lg.is_cuda());
    REQUIRE(lg.dtype() == DType::f32);
    REQUIRE_CLOSE(lg, lc, test::kReductionAtol, test::kReductionRtol);
    if (r == Reduction::None) {
      Tensor g = random_bf16({rows, C}, 4).to(DType::f32);
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
