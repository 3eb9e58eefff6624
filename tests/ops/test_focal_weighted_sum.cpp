// sigmoid_focal_loss_weighted_sum: equal to the unfused sum(sigmoid_focal_loss(None) * w[b])
// (value and gradient), gradcheck, bf16 logits, bad input, and on CUDA: matches the CPU,
// bit-identical repeats, and what an out-of-range label does (NaN, no host copy).
#include <cmath>
#include <cstring>

#include "kernels/focal_weighted_sum.h"
#include "test_helpers.h"

using namespace eng;

namespace {

// Every 5th anchor ignored (-2), every 5th + 1 background (-1), the others one-hot.
std::vector<int64_t> mixed_labels(int64_t rows, int64_t C) {
  std::vector<int64_t> v(static_cast<size_t>(rows));
  for (int64_t m = 0; m < rows; ++m) v[m] = m % 5 == 0 ? -2 : (m % 5 == 1 ? -1 : (m * 7 + 3) % C);
  return v;
}

// The unfused reference: per-element loss, times w[b], summed (through other ops).
Tensor unfused(const Tensor& x, const Tensor& lab, const Tensor& w, double alpha, double gamma) {
  Tensor l = sigmoid_focal_loss(x, lab, alpha, gamma, Reduction::None);
  return sum(mul(l, w.to(l.dtype()).reshape({w.size(0), 1, 1})));
}

Tensor weights_for(int64_t B, DType dt = DType::f64) {
  std::vector<double> v(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) v[b] = 1.0 / static_cast<double>(b + 3);  // like 1 / num_foreground
  return from_vector<double>(v, {B}).to(dt);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), static_cast<size_t>(a.numel()) * dtype_size(a.dtype())) == 0;
}

}  // namespace

TEST_CASE("focal_weighted_sum: equals the unfused weighted sum, value and gradient") {
  struct Case {
    int64_t B, A, C;
    double alpha, gamma;
  };
  for (const Case& c : {Case{2, 50, 7, 0.25, 2.0}, Case{3, 13, 4, -1.0, 0.0}, Case{1, 2000, 5, 0.4, 1.5}}) {
    INFO("B " << c.B << " A " << c.A << " C " << c.C << " gamma " << c.gamma);
    Tensor lab = test::labels(mixed_labels(c.B * c.A, c.C), {c.B, c.A});
    Tensor x0 = test::leaf({c.B, c.A, c.C}, 7, -5.0, 5.0).detach();
    Tensor w = weights_for(c.B);
    Tensor xa = test::cpu_leaf(x0), xb = test::cpu_leaf(x0);
    Tensor fused = sigmoid_focal_loss_weighted_sum(xa, lab, w, c.alpha, c.gamma);
    Tensor ref = unfused(xb, lab, w, c.alpha, c.gamma);
    REQUIRE(fused.dim() == 0);
    REQUIRE(fused.dtype() == DType::f64);
    REQUIRE(fused.item() == Approx(ref.item()).epsilon(1e-12));
    REQUIRE(fused.item() != 0.0);
    fused.backward(full({}, 2.5, TensorOptions(DType::f64)));
    ref.backward(full({}, 2.5, TensorOptions(DType::f64)));
    REQUIRE_CLOSE(xa.grad(), xb.grad(), 1e-12, 1e-10);
  }
}

// The CPU engine saves dloss/dx * w[b] in the forward; the recomputing backward kernel (the
// reference of the CUDA one) gives the same gradient.
TEST_CASE("focal_weighted_sum: cpu saved derivative equals the recomputing backward") {
  const int64_t B = 2, A = 40, C = 6;
  Tensor lab = test::labels(mixed_labels(B * A, C), {B, A});
  Tensor x = test::random_f32({B, A, C}, 41, -6.0, 6.0);
  Tensor w = weights_for(B, DType::f32);
  kern::FocalWeightedDims d;
  d.B = B, d.A = A, d.C = C;
  kern::FocalLossParams p;
  p.gamma = 1.5;
  std::vector<float> dloss_w(static_cast<size_t>(B * A * C)), gx_saved(dloss_w.size()), gx_re(dloss_w.size());
  std::vector<double> partials(kern::kFocalWeightedPartials);
  float out_plain = 0, out_saving = 0;
  const float g = 0.5f;
  kern::cpu::focal_weighted_sum_forward<float>(d, p, x.data<float>(), lab.data<int64_t>(), w.data<float>(),
                                               &out_plain, partials.data());
  kern::cpu::focal_weighted_sum_forward<float>(d, p, x.data<float>(), lab.data<int64_t>(), w.data<float>(),
                                               &out_saving, partials.data(), dloss_w.data());
  REQUIRE(out_plain == out_saving);
  kern::cpu::sigmoid_focal_loss_backward<float>(B * A * C, dloss_w.data(), &g, 0, gx_saved.data());
  kern::cpu::focal_weighted_sum_backward<float>(d, p, x.data<float>(), lab.data<int64_t>(), w.data<float>(), &g,
                                                gx_re.data());
  int nonzero = 0;
  for (size_t k = 0; k < gx_re.size(); ++k) {
    REQUIRE(gx_saved[k] == Approx(gx_re[k]).epsilon(1e-6).margin(1e-12));
    nonzero += gx_re[k] != 0.0f;
  }
  REQUIRE(nonzero > static_cast<int>(gx_re.size()) / 2);  // ignored rows (1 in 5) give zeros
}

TEST_CASE("focal_weighted_sum: gradcheck", "[gradcheck]") {
  Tensor lab = test::labels(mixed_labels(2 * 6, 3), {2, 6});
  Tensor w = weights_for(2);
  for (double gamma : {2.0, 0.5}) {
    INFO("gamma " << gamma);
    Tensor x = test::leaf({2, 6, 3}, 11, -3.0, 3.0);
    REQUIRE_GRADCHECK([&](auto& in) { return sigmoid_focal_loss_weighted_sum(in[0], lab, w, 0.25, gamma); }, {x});
  }
}

TEST_CASE("focal_weighted_sum: f32 and bf16 logits", "[bf16]") {
  Tensor lab = test::labels(mixed_labels(2 * 300, 9), {2, 300});
  Tensor xf = test::random_f32({2, 300, 9}, 21, -6.0, 6.0).to(DType::bf16).to(DType::f32);  // bf16 values
  Tensor w = weights_for(2, DType::f32);
  Tensor a = test::cpu_leaf(xf), b = test::cpu_leaf(xf.to(DType::bf16));
  Tensor yf = sigmoid_focal_loss_weighted_sum(a, lab, w), yb = sigmoid_focal_loss_weighted_sum(b, lab, w);
  REQUIRE(yf.dtype() == DType::f32);
  REQUIRE(yb.dtype() == DType::f32);  // bf16 logits: f32 loss, maths in float, the same bits
  REQUIRE(yb.item() == yf.item());
  REQUIRE(yf.item() == Approx(unfused(xf, lab, w, 0.25, 2.0).item()).epsilon(1e-5));
  yf.backward();
  yb.backward();
  REQUIRE(b.grad().dtype() == DType::bf16);
  REQUIRE_CLOSE(b.grad().to(DType::f32), a.grad().to(DType::bf16).to(DType::f32), 0.0, 0.0);
}

TEST_CASE("focal_weighted_sum: empty anchors give 0") {
  Tensor x = zeros({2, 0, 5}).set_requires_grad(true);
  Tensor y = sigmoid_focal_loss_weighted_sum(x, test::labels({}, {2, 0}), weights_for(2, DType::f32));
  REQUIRE(y.item() == 0.0);
  y.backward();
  REQUIRE(x.grad().numel() == 0);
}

TEST_CASE("focal_weighted_sum: bad input") {
  Tensor x = zeros({2, 3, 4});
  Tensor lab = test::labels({0, 1, -1, -2, 3, 2}, {2, 3});
  Tensor w = weights_for(2, DType::f32);
  REQUIRE_NOTHROW(sigmoid_focal_loss_weighted_sum(x, lab, w));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss_weighted_sum(zeros({6, 4}), lab, w), Catch::Contains("[B, A, C]"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss_weighted_sum(x, lab.reshape({3, 2}), w),
                      Catch::Contains("labels shape [3, 2]"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss_weighted_sum(x, lab.to(DType::f32), w), Catch::Contains("int64"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss_weighted_sum(x, lab, weights_for(3)), Catch::Contains("weights must be [2]"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss_weighted_sum(x, lab, w.clone().set_requires_grad(true)),
                      Catch::Contains("weights are constants"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss_weighted_sum(x, test::labels({0, 1, -1, -2, 4, 2}, {2, 3}), w),
                      Catch::Contains("label 4 at image 1 anchor 1 is outside [0, 4)"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss_weighted_sum(x, lab, w, 0.25, -1.0), Catch::Contains("gamma must be >= 0"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss_weighted_sum(x, lab, w, 0.25, 2.0, -2, -2),
                      Catch::Contains("background_label and ignore_index"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss_weighted_sum(x, Tensor(), w), Catch::Contains("undefined"));
}

TEST_CASE("focal_weighted_sum: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  struct Case {
    int64_t B, A, C;
    double alpha, gamma;
  };
  // RetinaNet-like (the grid capped at 1024 blocks), pow's gamma, alpha off.
  uint64_t seed = 60;
  for (const Case& c : {Case{2, 6000, 91, 0.25, 2.0}, Case{3, 100, 7, 0.25, 1.5}, Case{4, 17, 3, -1.0, 0.0}}) {
    for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
      INFO("B " << c.B << " A " << c.A << " C " << c.C << " dtype " << dtype_name(dt));
      Tensor lab = test::labels(mixed_labels(c.B * c.A, c.C), {c.B, c.A});
      Tensor x = test::random_f32({c.B, c.A, c.C}, seed++, -6.0, 6.0).to(dt);
      Tensor w = weights_for(c.B, dt == DType::f64 ? DType::f64 : DType::f32);
      Tensor xc = test::cpu_leaf(x), xg = test::cuda_leaf(x);
      Tensor yc = sigmoid_focal_loss_weighted_sum(xc, lab, w, c.alpha, c.gamma);
      Tensor yg = sigmoid_focal_loss_weighted_sum(xg, lab.cuda(), w.cuda(), c.alpha, c.gamma);
      REQUIRE(yg.is_cuda());
      REQUIRE_CLOSE(yg.detach().cpu().to(DType::f64), yc.detach().to(DType::f64), test::kReductionAtol,
                    test::kReductionRtol);
      Tensor g = full({}, 0.75, TensorOptions(yc.dtype()));
      yc.backward(g);
      yg.backward(g.cuda());
      const double tol = dt == DType::bf16 ? 1e-2 : test::kElementwiseRtol;  // bf16: one rounding step
      REQUIRE_CLOSE(xg.grad().cpu().to(DType::f64), xc.grad().to(DType::f64), test::kElementwiseAtol, tol);
    }
  }
}

TEST_CASE("focal_weighted_sum: cuda sums are bit-identical run to run", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor lab = test::labels(mixed_labels(2 * 5000, 91), {2, 5000}).cuda();
  Tensor x = test::random_f32({2, 5000, 91}, 70, -6.0, 2.0).cuda();
  Tensor w = weights_for(2, DType::f32).cuda();
  Tensor a = sigmoid_focal_loss_weighted_sum(x, lab, w).cpu(), b = sigmoid_focal_loss_weighted_sum(x, lab, w).cpu();
  REQUIRE(same_bits(a, b));
}

// On CUDA the labels are not read on the host: an out-of-range label makes every element of
// its row NaN (loss and gradient); the other rows' gradients are untouched.
TEST_CASE("focal_weighted_sum: cuda out-of-range label gives NaN", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = test::cuda_leaf(zeros({2, 2, 3}));
  Tensor lab = test::labels({0, -1, 7, -2}, {2, 2}).cuda();  // image 1 anchor 0: label 7 with C = 3
  Tensor y = sigmoid_focal_loss_weighted_sum(x, lab, weights_for(2, DType::f32).cuda());
  REQUIRE(std::isnan(y.item()));
  y.backward();
  std::vector<float> g = x.grad().cpu().to_vector<float>();
  for (int k = 0; k < 6; ++k) REQUIRE(std::isfinite(g[k]));  // image 0
  for (int k = 6; k < 9; ++k) REQUIRE(std::isnan(g[k]));     // the bad row
  for (int k = 9; k < 12; ++k) REQUIRE(g[k] == 0.0f);        // ignored row
}
