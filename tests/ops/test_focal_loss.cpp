// sigmoid_focal_loss: hand values, an independent textbook formula (values by plain loops,
// gradients through other ops), large logits, alpha = -1, reductions, gradient checks,
// bad input, CUDA vs CPU.
#include <cmath>

#include "test_helpers.h"

using namespace eng;

namespace {

using test::kAllReductions;
using test::labels;
using test::reduction_name;

// Labels for `rows` rows over C classes: every 5th row ignored (-2), every 5th + 1
// background (-1), the others spread over the classes.
std::vector<int64_t> mixed_labels(int64_t rows, int64_t C) {
  std::vector<int64_t> v(static_cast<size_t>(rows));
  for (int64_t m = 0; m < rows; ++m) v[m] = m % 5 == 0 ? -2 : (m % 5 == 1 ? -1 : (m * 7 + 3) % C);
  return v;
}

// The textbook expression, per element, in double: p = sigmoid(x),
// p_t = t p + (1 - t)(1 - p), loss = -alpha_t (1 - p_t)^gamma ln(p_t). Only for moderate x.
double naive_focal(double x, double t, double alpha, double gamma) {
  const double p = 1.0 / (1.0 + std::exp(-x));
  const double p_t = t * p + (1 - t) * (1 - p);
  const double a_t = alpha >= 0 ? t * alpha + (1 - t) * (1 - alpha) : 1.0;
  return -a_t * std::pow(1 - p_t, gamma) * std::log(p_t);
}

// Per-element naive loss of logits [rows, C] (flattened) with labels (-1 background, -2 ignored).
std::vector<double> naive_focal_all(const Tensor& x, const std::vector<int64_t>& lab, double alpha, double gamma) {
  std::vector<double> xv = x.to_vector<double>(), out(xv.size());
  const int64_t C = x.size(-1);
  for (size_t k = 0; k < xv.size(); ++k) {
    const int64_t label = lab[k / C], c = static_cast<int64_t>(k) % C;
    out[k] = label == -2 ? 0.0 : naive_focal(xv[k], label == c ? 1.0 : 0.0, alpha, gamma);
  }
  return out;
}

// The same textbook formula built from other ops, so that autograd differentiates it
// independently of the fused kernel: t and the row mask are constant tensors.
Tensor naive_focal_ops(const Tensor& x, const std::vector<int64_t>& lab, double alpha, double gamma, Reduction red) {
  const int64_t C = x.size(-1);
  std::vector<double> t(static_cast<size_t>(x.numel())), keep(t.size()), a_t(t.size());
  for (size_t k = 0; k < t.size(); ++k) {
    const int64_t label = lab[k / C], c = static_cast<int64_t>(k) % C;
    t[k] = label == c ? 1.0 : 0.0;
    keep[k] = label == -2 ? 0.0 : 1.0;
    a_t[k] = alpha >= 0 ? t[k] * alpha + (1 - t[k]) * (1 - alpha) : 1.0;
  }
  Tensor tt = from_vector<double>(t, x.sizes()), kt = from_vector<double>(keep, x.sizes());
  Tensor at = from_vector<double>(a_t, x.sizes());
  Tensor p = sigmoid(x);
  Tensor p_t = p * tt + (1.0 - p) * (1.0 - tt);
  Tensor q_gamma = exp(log(1.0 - p_t) * gamma);  // (1 - p_t)^gamma
  Tensor loss = neg(at * q_gamma * log(p_t)) * kt;
  if (red == Reduction::None) return loss;
  if (red == Reduction::Sum) return sum(loss);
  return mean(loss);
}

Tensor from_doubles(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s); }

}  // namespace

TEST_CASE("focal_loss: hand values") {
  // x = 0 everywhere: p = 1/2, so q = 1/2 and ce = ln 2 for every element.
  //   target 1: loss = 0.25 * 0.25 * ln 2 = 0.043321698785, dloss/dx = -0.25 * 0.25 * (2 * 0.5 ln 2 + 0.5)
  //             = -0.074571698785
  //   target 0: loss = 0.75 * 0.25 * ln 2 = 0.129965096356, dloss/dx = +0.75 * 0.25 * (ln 2 + 0.5)
  //             = 0.223715096356
  // Rows: label 1 (one-hot at class 1), background (-1), ignored (-2); C = 3.
  const double l1 = 0.043321698785, l0 = 0.129965096356, d1 = -0.074571698785, d0 = 0.223715096356;
  Tensor x = zeros({3, 3}, DType::f64);
  x.set_requires_grad(true);
  Tensor lab = labels({1, -1, -2}, {3});
  Tensor none = sigmoid_focal_loss(x, lab, 0.25, 2.0, Reduction::None);
  REQUIRE(none.sizes() == Shape{3, 3});
  REQUIRE_CLOSE(none, from_doubles({l0, l1, l0, l0, l0, l0, 0, 0, 0}, {3, 3}), 1e-11, 0);
  none.backward(ones({3, 3}, DType::f64));
  REQUIRE_CLOSE(x.grad(), from_doubles({d0, d1, d0, d0, d0, d0, 0, 0, 0}, {3, 3}), 1e-11, 0);

  Tensor s = sigmoid_focal_loss(x.detach(), lab, 0.25, 2.0, Reduction::Sum);
  REQUIRE(s.dim() == 0);
  REQUIRE(s.item() == Approx(5 * l0 + l1).epsilon(1e-11));
  // Mean divides by every element, the ignored row included: 9.
  REQUIRE(sigmoid_focal_loss(x.detach(), lab, 0.25, 2.0, Reduction::Mean).item() ==
          Approx((5 * l0 + l1) / 9).epsilon(1e-11));
  // The default reduction is Sum.
  REQUIRE(sigmoid_focal_loss(x.detach(), lab).item() == Approx(5 * l0 + l1).epsilon(1e-11));

  // Gradient of the mean: dloss/dx / 9.
  Tensor xm = zeros({3, 3}, DType::f64);
  xm.set_requires_grad(true);
  sigmoid_focal_loss(xm, lab, 0.25, 2.0, Reduction::Mean).backward();
  REQUIRE_CLOSE(xm.grad(), from_doubles({d0 / 9, d1 / 9, d0 / 9, d0 / 9, d0 / 9, d0 / 9, 0, 0, 0}, {3, 3}), 1e-12, 0);

  // gamma = 0 is alpha-weighted BCE: x = 2, target 1 -> 0.25 * ln(1 + e^-2) = 0.0317320028; target 0 ->
  // 0.75 * ln(1 + e^2) = 1.5951960083.
  Tensor b = sigmoid_focal_loss(from_doubles({2.0, 2.0}, {1, 2}), labels({0}, {1}), 0.25, 0.0, Reduction::None);
  REQUIRE_CLOSE(b, from_doubles({0.25 * std::log1p(std::exp(-2.0)), 0.75 * std::log1p(std::exp(2.0))}, {1, 2}), 1e-14,
                0);
  REQUIRE(b.to_vector<double>()[0] == Approx(0.0317320028).epsilon(1e-8));
  REQUIRE(b.to_vector<double>()[1] == Approx(1.5951960083).epsilon(1e-9));
}

TEST_CASE("focal_loss: matches the textbook formula") {
  struct Case {
    Shape shape;
    double alpha, gamma;
  };
  const std::vector<Case> cases = {{{6, 4}, 0.25, 2.0}, {{2, 3, 5}, 0.25, 0.0}, {{7, 3}, -1.0, 2.0},
                                   {{5, 6}, 0.6, 1.5},  {{4, 5}, 0.25, 0.5},   {{3, 2, 2, 4}, 0.0, 3.0}};
  uint64_t seed = 50;
  for (const Case& c : cases) {
    const Shape lshape(c.shape.begin(), c.shape.end() - 1);
    const int64_t rows = shape_numel(lshape), C = c.shape.back();
    const std::vector<int64_t> lab = mixed_labels(rows, C);
    Tensor lt = labels(lab, lshape);
    for (Reduction red : kAllReductions) {
      INFO("shape " << shape_str(c.shape) << " alpha " << c.alpha << " gamma " << c.gamma << " reduction "
                    << reduction_name(red));
      Tensor xa = test::leaf(c.shape, seed, -4.0, 4.0), xb = test::leaf(c.shape, seed, -4.0, 4.0);
      Tensor got = sigmoid_focal_loss(xa, lt, c.alpha, c.gamma, red);
      // Values: plain loops.
      std::vector<double> per = naive_focal_all(xa.detach(), lab, c.alpha, c.gamma);
      double total = 0;
      for (double v : per) total += v;
      if (red == Reduction::None) REQUIRE_CLOSE(got, from_doubles(per, c.shape), 1e-13, 1e-11);
      else if (red == Reduction::Sum) REQUIRE(got.item() == Approx(total).epsilon(1e-12));
      else REQUIRE(got.item() == Approx(total / static_cast<double>(per.size())).epsilon(1e-12));
      // Gradients: autograd through the same formula written with other ops.
      Tensor ref = naive_focal_ops(xb, lab, c.alpha, c.gamma, red);
      REQUIRE_CLOSE(got, ref, 1e-13, 1e-11);
      Tensor r = test::leaf(got.sizes(), 99).detach();
      got.backward(r);
      ref.backward(r);
      REQUIRE_CLOSE(xa.grad(), xb.grad(), 1e-12, 1e-10);
    }
    ++seed;
  }
}

TEST_CASE("focal_loss: large logits stay finite") {
  // Row 0 label 0, row 1 background. Logits -30 / +30 and -1000 / +1000, f32 and f64.
  for (DType dt : {DType::f32, DType::f64}) {
    INFO(dtype_name(dt));
    Tensor x = from_vector<double>({-30, 30, -1000, 1000, 30, -30, 1000, -1000}, {2, 4}, TensorOptions(dt));
    x.set_requires_grad(true);
    Tensor lab = labels({0, -1}, {2});
    Tensor loss = sigmoid_focal_loss(x, lab, 0.25, 2.0, Reduction::None);
    loss.backward(ones({2, 4}, TensorOptions(dt)));
    std::vector<double> l = loss.to_vector<double>(), g = x.grad().to_vector<double>();
    for (double v : l) REQUIRE(std::isfinite(v));
    for (double v : g) REQUIRE(std::isfinite(v));
    // Confidently wrong: (row 0, class 0) target 1 with x = -30: q = sigmoid(30) ~ 1, ce = 30.
    REQUIRE(l[0] == Approx(0.25 * 30.0).epsilon(1e-6));
    REQUIRE(g[0] == Approx(-0.25).epsilon(1e-6));
    // Target 0 with x = 1000: loss 0.75 * 1000, derivative 0.75; target 0 with x = -1000: 0.
    REQUIRE(l[6] == Approx(750.0).epsilon(1e-6));
    REQUIRE(g[6] == Approx(0.75).epsilon(1e-6));
    REQUIRE(l[7] == 0.0);
    REQUIRE(g[7] == 0.0);
    // Confidently right: target 0 with x = -30: tiny and non-negative.
    REQUIRE(l[5] >= 0.0);
    REQUIRE(l[5] < 1e-30);
    // The sum is finite too.
    REQUIRE(std::isfinite(sigmoid_focal_loss(x.detach(), lab).item()));
  }
}

TEST_CASE("focal_loss: alpha = -1 disables the weighting") {
  Tensor x = test::leaf({4, 3}, 7, -3.0, 3.0).detach();
  Tensor lab = labels({2, -1, 0, 1}, {4});
  Tensor unweighted = sigmoid_focal_loss(x, lab, -1.0, 2.0, Reduction::None);
  std::vector<double> naive = naive_focal_all(x, {2, -1, 0, 1}, -1.0, 2.0);
  REQUIRE_CLOSE(unweighted, from_doubles(naive, {4, 3}), 1e-13, 1e-11);
  // alpha = 0.5 weighs both targets by 1/2: exactly half the unweighted loss.
  REQUIRE_CLOSE(sigmoid_focal_loss(x, lab, 0.5, 2.0, Reduction::None), unweighted * 0.5, 1e-15, 1e-14);
  // With gamma = 0 too it is plain BCE with logits: ln(1 + e^-x) for targets 1, ln(1 + e^x) for 0.
  std::vector<double> xv = x.to_vector<double>(), bce(xv.size());
  const std::vector<int64_t> lv = {2, -1, 0, 1};
  for (size_t k = 0; k < xv.size(); ++k) {
    const bool t = lv[k / 3] == static_cast<int64_t>(k % 3);
    bce[k] = std::log1p(std::exp(t ? -xv[k] : xv[k]));
  }
  REQUIRE_CLOSE(sigmoid_focal_loss(x, lab, -1.0, 0.0, Reduction::None), from_doubles(bce, {4, 3}), 1e-14, 1e-12);
}

TEST_CASE("focal_loss: custom background and ignore labels") {
  // background_label 5 and ignore_index 255: same values as -1 / -2.
  Tensor x = test::leaf({4, 3}, 8, -2.0, 2.0).detach();
  Tensor a = sigmoid_focal_loss(x, labels({1, -1, -2, 0}, {4}), 0.25, 2.0, Reduction::None);
  Tensor b = sigmoid_focal_loss(x, labels({1, 5, 255, 0}, {4}), 0.25, 2.0, Reduction::None, 5, 255);
  REQUIRE_CLOSE(b, a, 0, 0);
  // Every row ignored: the loss and its gradient are zero, the mean too (not NaN).
  Tensor xi = test::leaf({2, 3}, 9);
  Tensor m = sigmoid_focal_loss(xi, labels({-2, -2}, {2}), 0.25, 2.0, Reduction::Mean);
  REQUIRE(m.item() == 0.0);
  m.backward();
  REQUIRE_CLOSE(xi.grad(), zeros({2, 3}, DType::f64), 0, 0);
  // Zero rows: Sum and Mean are 0.
  REQUIRE(sigmoid_focal_loss(zeros({0, 3}), labels({}, {0}), 0.25, 2.0, Reduction::Mean).item() == 0.0);
  // 1-d logits [C] with a 0-d label.
  Tensor one = sigmoid_focal_loss(zeros({3}, DType::f64), labels({1}, {}), 0.25, 2.0, Reduction::None);
  REQUIRE(one.sizes() == Shape{3});
  REQUIRE(one.to_vector<double>()[1] == Approx(0.043321698785).epsilon(1e-10));
}

TEST_CASE("focal_loss: gradcheck", "[gradcheck]") {
  // Rows: class 2, background, ignored, class 0, class 4, background.
  Tensor x = test::leaf({6, 5}, 61, -3.0, 3.0);
  Tensor lab = labels({2, -1, -2, 0, 4, -1}, {6});
  Tensor x3 = test::leaf({2, 3, 4}, 62, -3.0, 3.0);
  Tensor lab3 = labels({3, -2, -1, 0, 1, 2}, {2, 3});
  for (double gamma : {2.0, 0.0, 1.5}) {
    for (Reduction red : kAllReductions) {
      INFO("gamma " << gamma << " reduction " << reduction_name(red));
      REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return sigmoid_focal_loss(in[0], lab, 0.25, gamma, red); },
                        {x});
      REQUIRE_GRADCHECK(
          [&](const std::vector<Tensor>& in) { return sigmoid_focal_loss(in[0], lab3, -1.0, gamma, red); }, {x3});
    }
  }
}

TEST_CASE("focal_loss: bad input") {
  Tensor x = zeros({4, 3});
  Tensor lab = labels({0, 1, 2, -1}, {4});
  REQUIRE_THROWS_WITH(sigmoid_focal_loss(scalar_tensor(0.0), labels({0}, {})),
                      Catch::Contains("sigmoid_focal_loss: logits must be [..., C]"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss(x, zeros({4})), Catch::Contains("labels must be int64, got f32"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss(x, labels({0, 1, 2}, {3})),
                      Catch::Contains("labels shape [3] does not match logits [4, 3] (expected [4])"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss(zeros({4, 3}, DType::i64), lab),
                      Catch::Contains("expected a f32, f64 or bf16 tensor, got i64"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss(zeros({4, 0}), lab), Catch::Contains("have no classes"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss(x, labels({0, 3, 1, 2}, {4})),
                      Catch::Contains("sigmoid_focal_loss: label 3 at row 1 is outside [0, 3) and is neither "
                                      "background_label (-1) nor ignore_index (-2)"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss(x, labels({0, -5, 1, 2}, {4})), Catch::Contains("label -5 at row 1"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss(x, lab, 0.25, -1.0), Catch::Contains("gamma must be >= 0, got -1"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss(x, lab, 1.5), Catch::Contains("alpha must be in [0, 1]"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss(x, lab, 0.25, 2.0, Reduction::Sum, -1, -1),
                      Catch::Contains("background_label and ignore_index are both -1"));
  REQUIRE_THROWS_WITH(sigmoid_focal_loss(x, Tensor()), Catch::Contains("undefined logits or labels"));
}

TEST_CASE("focal_loss: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  struct Case {
    Shape shape;
    double alpha, gamma;
  };
  // RetinaNet-like [images, anchors, 91]: the Sum path caps the grid at 1024 blocks; other
  // gammas take pow; a 3-d case with alpha off.
  const std::vector<Case> cases = {{{2, 6000, 91}, 0.25, 2.0}, {{3, 100, 91}, 0.25, 1.5},
                                   {{5, 7, 11}, -1.0, 0.0},    {{64, 3}, 0.6, 2.0}};
  uint64_t seed = 400;
  for (const Case& c : cases) {
    const Shape lshape(c.shape.begin(), c.shape.end() - 1);
    Tensor lab = labels(mixed_labels(shape_numel(lshape), c.shape.back()), lshape);
    Tensor x = test::random_f32(c.shape, seed++, -6.0, 6.0);
    for (Reduction red : kAllReductions) {
      INFO("shape " << shape_str(c.shape) << " gamma " << c.gamma << " reduction " << reduction_name(red));
      Tensor xc = test::cpu_leaf(x), xg = test::cuda_leaf(x);
      Tensor yc = sigmoid_focal_loss(xc, lab, c.alpha, c.gamma, red);
      Tensor yg = sigmoid_focal_loss(xg, lab.cuda(), c.alpha, c.gamma, red);
      REQUIRE_CLOSE(yg.detach().cpu(), yc.detach(), test::kReductionAtol, test::kReductionRtol);
      Tensor r = test::random_f32(yc.sizes(), seed++);
      yc.backward(r);
      yg.backward(r.cuda());
      REQUIRE_CLOSE(xg.grad().cpu(), xc.grad(), test::kElementwiseAtol, test::kElementwiseRtol);
    }
  }
  // An invalid label on CUDA is not checked on the host: its row's loss is NaN.
  Tensor bad = sigmoid_focal_loss(zeros({2, 3}).cuda(), labels({0, 7}, {2}).cuda(), 0.25, 2.0, Reduction::None);
  std::vector<float> b = bad.cpu().to_vector<float>();
  REQUIRE(std::isfinite(b[0]));
  for (int k = 3; k < 6; ++k) REQUIRE(std::isnan(b[k]));
  REQUIRE(std::isnan(sigmoid_focal_loss(zeros({2, 3}).cuda(), labels({0, 7}, {2}).cuda()).item()));
}
