// cross_entropy, smooth_l1_loss, l1_loss: hand values, an independent log_softmax-based
// reference, ignore_index, reductions, gradient checks, bad input, CUDA vs CPU.
#include <cmath>

#include "test_helpers.h"

using namespace eng;

namespace {

using test::kAllReductions;
using test::labels;
using test::reduction_name;

// Deterministic labels for logits of shape `ls` (classes on dim 1): every 4th element
// ignored, the others spread over the classes.
Tensor make_labels(const Shape& ls, int64_t ignore_index) {
  Shape ts;
  for (size_t i = 0; i < ls.size(); ++i)
    if (i != 1) ts.push_back(ls[i]);
  std::vector<int64_t> v(static_cast<size_t>(shape_numel(ts)));
  for (size_t e = 0; e < v.size(); ++e) v[e] = (e % 4 == 1) ? ignore_index : static_cast<int64_t>((e * 7 + 3) % ls[1]);
  return labels(v, ts);
}

// Independent reference built from other ops: -sum(log_softmax(x, 1) * onehot) reduced by
// hand. The one-hot mask is filled by loops here (zero rows for ignored elements), so the
// value and, through autograd, the gradient come from log_softmax, mul and sum.
Tensor reference_cross_entropy(const Tensor& x, const Tensor& target, Reduction red, int64_t ignore_index) {
  const Shape& s = x.sizes();
  const int64_t N = s[0], C = s[1], inner = x.numel() / (N * C);
  std::vector<int64_t> t = target.to_vector<int64_t>();
  std::vector<double> mask(static_cast<size_t>(x.numel()), 0.0);
  int64_t count = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t lab = t[n * inner + i];
      if (lab == ignore_index) continue;
      mask[(n * C + lab) * inner + i] = 1.0;
      ++count;
    }
  Tensor per_elem = neg(sum(mul(log_softmax(x, 1), from_vector<double>(mask, s).to(x.dtype())), {1}));
  if (red == Reduction::None) return per_elem;
  if (red == Reduction::Sum) return sum(per_elem);
  return div_scalar(sum(per_elem), static_cast<double>(std::max<int64_t>(count, 1)));
}

}  // namespace

// ============================================================== cross_entropy

TEST_CASE("cross_entropy: hand values") {
  // Row 0: logits [1, 2, 3], label 2 -> -log_softmax = log(e + e^2 + e^3) - 3 = 0.407605964444.
  // Row 1: logits [1, 1, 1], label 0 -> log 3 = 1.098612288668.
  Tensor x = from_vector<double>({1, 2, 3, 1, 1, 1}, {2, 3});
  const double l0 = 0.407605964444, l1 = 1.098612288668;
  REQUIRE_CLOSE(cross_entropy(x, labels({2, 0}, {2}), Reduction::None), from_vector<double>({l0, l1}, {2}), 1e-11, 0);
  REQUIRE(cross_entropy(x, labels({2, 0}, {2}), Reduction::Sum).item() == Approx(l0 + l1).epsilon(1e-11));
  REQUIRE(cross_entropy(x, labels({2, 0}, {2}), Reduction::Mean).item() == Approx((l0 + l1) / 2).epsilon(1e-11));
  REQUIRE(cross_entropy(x, labels({2, 0}, {2})).dim() == 0);  // default: Mean, a 0-d tensor

  // Ignored row: loss 0, and the mean divides by the one counted row.
  Tensor t_ign = labels({2, -100}, {2});
  REQUIRE_CLOSE(cross_entropy(x, t_ign, Reduction::None), from_vector<double>({l0, 0.0}, {2}), 1e-11, 0);
  REQUIRE(cross_entropy(x, t_ign, Reduction::Mean).item() == Approx(l0).epsilon(1e-11));
  REQUIRE(cross_entropy(x, labels({2, 7}, {2}), Reduction::Mean, 7).item() == Approx(l0).epsilon(1e-11));

  // Gradient of the mean: (softmax - onehot) / 2 for counted rows, 0 for the ignored one.
  Tensor xg = x.clone();
  xg.set_requires_grad(true);
  cross_entropy(xg, labels({2, 0}, {2}), Reduction::Mean).backward();
  const double third = 1.0 / 3;
  REQUIRE_CLOSE(xg.grad(),
                from_vector<double>({0.090030573170 / 2, 0.244728471055 / 2, (0.665240955775 - 1) / 2,
                                     (third - 1) / 2, third / 2, third / 2},
                                    {2, 3}),
                1e-11, 0);
  Tensor xi = x.clone();
  xi.set_requires_grad(true);
  cross_entropy(xi, t_ign, Reduction::Mean).backward();
  REQUIRE_CLOSE(xi.grad(), from_vector<double>({0.090030573170, 0.244728471055, 0.665240955775 - 1, 0, 0, 0}, {2, 3}),
                1e-11, 0);
}

TEST_CASE("cross_entropy: matches a log_softmax-based reference") {
  struct Case {
    Shape shape;
    int64_t ignore_index;
  };
  const std::vector<Case> cases = {{{6, 5}, -100}, {{2, 4, 3, 2}, 255}, {{3, 40}, -1}};
  uint64_t seed = 7;
  for (const Case& c : cases) {
    for (Reduction red : kAllReductions) {
      INFO("shape " << shape_str(c.shape) << " reduction " << reduction_name(red));
      Tensor t = make_labels(c.shape, c.ignore_index);
      Tensor xa = test::leaf(c.shape, seed, -3.0, 3.0), xb = test::leaf(c.shape, seed, -3.0, 3.0);
      ++seed;
      Tensor got = cross_entropy(xa, t, red, c.ignore_index);
      Tensor ref = reference_cross_entropy(xb, t, red, c.ignore_index);
      REQUIRE(got.sizes() == ref.sizes());
      REQUIRE_CLOSE(got, ref, 1e-12, 1e-12);
      Tensor r = test::leaf(got.sizes(), 99).detach();
      got.backward(r);
      ref.backward(r);
      REQUIRE_CLOSE(xa.grad(), xb.grad(), 1e-12, 1e-12);
    }
  }
}

TEST_CASE("cross_entropy: every element ignored gives 0, not NaN") {
  Tensor x = test::leaf({3, 4}, 5);
  Tensor t = labels({-100, -100, -100}, {3});
  Tensor m = cross_entropy(x, t, Reduction::Mean);
  REQUIRE(m.item() == 0.0);
  m.backward();
  REQUIRE_CLOSE(x.grad(), zeros({3, 4}, DType::f64), 0, 0);
  REQUIRE(cross_entropy(x, t, Reduction::Sum).item() == 0.0);
  // Float logits with huge values stay finite.
  Tensor big = from_vector<float>({1000, -1000, 0, 2000}, {2, 2});
  std::vector<float> l = cross_entropy(big, labels({1, 0}, {2}), Reduction::None).to_vector<float>();
  REQUIRE(l[0] == Approx(2000.0f));
  REQUIRE(l[1] == Approx(2000.0f));
}

TEST_CASE("cross_entropy: gradcheck", "[gradcheck]") {
  Tensor x2 = test::leaf({4, 5}, 41, -2.0, 2.0);
  Tensor t2 = labels({1, -100, 4, 0}, {4});
  Tensor x4 = test::leaf({2, 3, 2, 2}, 42, -2.0, 2.0);
  Tensor t4 = labels({0, 2, 255, 1, 255, 1, 0, 2}, {2, 2, 2});
  for (Reduction red : kAllReductions) {
    INFO("reduction " << reduction_name(red));
    REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t2, red); }, {x2});
    REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t4, red, 255); }, {x4});
  }
}

TEST_CASE("cross_entropy: bad input") {
  Tensor x = zeros({4, 5});
  REQUIRE_THROWS_WITH(cross_entropy(zeros({5}), labels({1}, {1})), Catch::Contains("logits must be [N, C]"));
  REQUIRE_THROWS_WITH(cross_entropy(x, zeros({4})), Catch::Contains("target must be int64, got f32"));
  REQUIRE_THROWS_WITH(cross_entropy(x, labels({0, 1, 2}, {3})),
                      Catch::Contains("target shape") && Catch::Contains("does not match logits"));
  REQUIRE_THROWS_WITH(cross_entropy(zeros({2, 3, 4}), labels({0, 1, 2, 0, 1, 2}, {2, 3})),
                      Catch::Contains("does not match logits"));
  REQUIRE_THROWS_WITH(cross_entropy(x, labels({0, 5, 1, 2}, {4})),
                      Catch::Contains("cross_entropy: target 5 at element 1 is outside [0, 5)"));
  REQUIRE_THROWS_WITH(cross_entropy(x, labels({0, 1, -1, 2}, {4})), Catch::Contains("target -1 at element 2"));
  REQUIRE_THROWS_WITH(cross_entropy(zeros({4, 5}, DType::i64), labels({0, 1, 2, 3}, {4})),
                      Catch::Contains("expected a f32, f64 or bf16 tensor, got i64"));
}

TEST_CASE("cross_entropy: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // [N, C] with C < 32 and C > 32 (warp per element), [N, C, d...] (thread per element).
  const std::vector<Shape> shapes = {{64, 21}, {40, 81}, {4, 5, 3, 6}};
  uint64_t seed = 300;
  for (const Shape& s : shapes) {
    for (Reduction red : kAllReductions) {
      INFO("shape " << shape_str(s) << " reduction " << reduction_name(red));
      Tensor x = test::random_f32(s, seed++, -4.0, 4.0);
      Tensor t = make_labels(s, -100);
      Tensor xc = x.clone(), xg = x.cuda();
      xc.set_requires_grad(true);
      xg.set_requires_grad(true);
      Tensor yc = cross_entropy(xc, t, red), yg = cross_entropy(xg, t.cuda(), red);
      REQUIRE(yg.is_cuda());
      REQUIRE_CLOSE(yg.cpu(), yc, test::kReductionAtol, test::kReductionRtol);
      Tensor r = test::random_f32(yc.sizes(), seed++);
      yc.backward(r);
      yg.backward(r.cuda());
      REQUIRE_CLOSE(xg.grad().cpu(), xc.grad(), test::kReductionAtol, test::kReductionRtol);
    }
  }
  // Documented CUDA behaviour for a label outside [0, C): NaN for that element (no error).
  Tensor x = test::random_f32({3, 5}, 1).cuda();
  std::vector<float> l = cross_entropy(x, labels({0, 7, -100}, {3}).cuda(), Reduction::None).to_vector<float>();
  REQUIRE(std::isfinite(l[0]));
  REQUIRE(std::isnan(l[1]));
  REQUIRE(l[2] == 0.0f);
}

// ============================================================== smooth_l1 / l1

namespace {

// d = input - target = [0.5, -2, -0.8, 2, 0.2]
Tensor hand_input() { return from_vector<double>({0.5, -2.0, 0.2, 3.0, 0.2}, {5}); }
Tensor hand_target() { return from_vector<double>({0.0, 0.0, 1.0, 1.0, 0.0}, {5}); }

// Checks loss values for every reduction and both gradients for Sum and Mean.
void check_hand(const std::function<Tensor(const Tensor&, const Tensor&, Reduction)>& f,
                const std::vector<double>& per_elem, const std::vector<double>& slope) {
  double total = 0;
  for (double v : per_elem) total += v;
  const double n = static_cast<double>(per_elem.size());
  REQUIRE_CLOSE(f(hand_input(), hand_target(), Reduction::None), from_vector<double>(per_elem, {5}), 1e-12, 0);
  REQUIRE(f(hand_input(), hand_target(), Reduction::Sum).item() == Approx(total).epsilon(1e-12));
  REQUIRE(f(hand_input(), hand_target(), Reduction::Mean).item() == Approx(total / n).epsilon(1e-12));
  for (Reduction red : {Reduction::Sum, Reduction::Mean}) {
    Tensor in = hand_input(), tg = hand_target();
    in.set_requires_grad(true);
    tg.set_requires_grad(true);
    f(in, tg, red).backward();
    const double scale = red == Reduction::Mean ? 1.0 / n : 1.0;
    std::vector<double> gin, gtg;
    for (double s : slope) {
      gin.push_back(s * scale);
      gtg.push_back(-s * scale);
    }
    REQUIRE_CLOSE(in.grad(), from_vector<double>(gin, {5}), 1e-12, 0);
    REQUIRE_CLOSE(tg.grad(), from_vector<double>(gtg, {5}), 1e-12, 0);
  }
}

// Leaves input (random) and target = input - offsets, with |offsets| away from 0, 0.5 and 1
// (the kinks for beta = 0, 0.5, 1).
std::pair<Tensor, Tensor> kink_free_pair(uint64_t seed) {
  const std::vector<double> off = {0.3, -0.3, 0.7, -0.7, 1.6, -1.6, 2.2, -2.2, 0.15, -0.35, 1.25, -3.0};
  Tensor in = test::leaf({3, 4}, seed, -2.0, 2.0);
  Tensor tg;
  {
    NoGradGuard g;
    tg = sub(in, from_vector<double>(off, {3, 4})).clone();
  }
  tg.set_requires_grad(true);
  return {in, tg};
}

struct LossRun {
  Tensor out, g_input, g_target;
};

// Forward + backward of f on the device of `input`; the seed is r (per element, moved to
// the device) for Reduction::None and 1 otherwise. Results come back on the CPU.
LossRun run_loss(const std::function<Tensor(const Tensor&, const Tensor&)>& f, const Tensor& input,
                 const Tensor& target, const Tensor& r) {
  Tensor in = input.detach().clone(), tg = target.detach().clone();
  in.set_requires_grad(true);
  tg.set_requires_grad(true);
  Tensor out = f(in, tg);
  if (out.dim() == 0) out.backward();
  else out.backward(r.to(in.device()));
  return {out.detach().cpu(), in.grad().cpu(), tg.grad().cpu()};
}

void check_loss_cuda_matches_cpu(const std::function<Tensor(const Tensor&, const Tensor&, Reduction)>& f) {
  uint64_t seed = 500;
  for (const Shape& s : {Shape{1000}, Shape{7, 33}, Shape{2, 3, 4, 5}}) {
    for (Reduction red : kAllReductions) {
      INFO("shape " << shape_str(s) << " reduction " << reduction_name(red));
      Tensor input = test::random_f32(s, seed++, -3.0, 3.0), target = test::random_f32(s, seed++, -3.0, 3.0);
      Tensor r = test::random_f32(s, seed++);
      auto g = [&](const Tensor& a, const Tensor& b) { return f(a, b, red); };
      LossRun cpu = run_loss(g, input, target, r);
      LossRun gpu = run_loss(g, input.cuda(), target.cuda(), r);
      REQUIRE_CLOSE(gpu.out, cpu.out, test::kReductionAtol, test::kReductionRtol);
      REQUIRE_CLOSE(gpu.g_input, cpu.g_input, test::kReductionAtol, test::kReductionRtol);
      REQUIRE_CLOSE(gpu.g_target, cpu.g_target, test::kReductionAtol, test::kReductionRtol);
    }
  }
}

}  // namespace

TEST_CASE("smooth_l1: hand values") {
  SECTION("beta = 1") {
    // |d| < 1: 0.5 d^2; else |d| - 0.5.
    check_hand([](const Tensor& a, const Tensor& b, Reduction r) { return smooth_l1_loss(a, b, r, 1.0); },
               {0.125, 1.5, 0.32, 1.5, 0.02}, {0.5, -1.0, -0.8, 1.0, 0.2});
  }
  SECTION("beta = 0.5") {
    // |d| < 0.5: d^2; else |d| - 0.25 (|d| = 0.5 takes the linear branch: 0.25 either way).
    check_hand([](const Tensor& a, const Tensor& b, Reduction r) { return smooth_l1_loss(a, b, r, 0.5); },
               {0.25, 1.75, 0.55, 1.75, 0.04}, {1.0, -1.0, -1.0, 1.0, 0.4});
  }
  SECTION("beta = 0 is L1") {
    check_hand([](const Tensor& a, const Tensor& b, Reduction r) { return smooth_l1_loss(a, b, r, 0.0); },
               {0.5, 2.0, 0.8, 2.0, 0.2}, {1.0, -1.0, -1.0, 1.0, 1.0});
  }
  // Defaults: Mean, beta 1.
  REQUIRE(smooth_l1_loss(hand_input(), hand_target()).item() == Approx(3.465 / 5).epsilon(1e-12));
  // Zero elements: mean is 0 (PyTorch: NaN).
  REQUIRE(smooth_l1_loss(zeros({0}), zeros({0})).item() == 0.0);
}

TEST_CASE("l1: hand values") {
  check_hand([](const Tensor& a, const Tensor& b, Reduction r) { return l1_loss(a, b, r); }, {0.5, 2.0, 0.8, 2.0, 0.2},
             {1.0, -1.0, -1.0, 1.0, 1.0});
  REQUIRE(l1_loss(hand_input(), hand_target()).item() == Approx(5.5 / 5).epsilon(1e-12));
  // Gradient at d = 0 is 0 (sign(0) = 0, like torch).
  Tensor in = from_vector<double>({1.0, 2.0}, {2});
  in.set_requires_grad(true);
  l1_loss(in, from_vector<double>({1.0, 0.0}, {2}), Reduction::Sum).backward();
  REQUIRE_CLOSE(in.grad(), from_vector<double>({0.0, 1.0}, {2}), 0, 0);
  // Only the target needs grad.
  Tensor tg = from_vector<double>({0.0, 3.0}, {2});
  tg.set_requires_grad(true);
  l1_loss(from_vector<double>({1.0, 2.0}, {2}), tg, Reduction::Sum).backward();
  REQUIRE_CLOSE(tg.grad(), from_vector<double>({-1.0, 1.0}, {2}), 0, 0);
}

TEST_CASE("smooth_l1: gradcheck", "[gradcheck]") {
  for (double beta : {1.0, 0.5}) {
    for (Reduction red : kAllReductions) {
      INFO("beta " << beta << " reduction " << reduction_name(red));
      auto pr = kink_free_pair(61);
      REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return smooth_l1_loss(in[0], in[1], red, beta); },
                        {pr.first, pr.second});
    }
  }
}

TEST_CASE("l1: gradcheck", "[gradcheck]") {
  for (Reduction red : kAllReductions) {
    INFO("reduction " << reduction_name(red));
    auto pr = kink_free_pair(71);
    REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return l1_loss(in[0], in[1], red); },
                      {pr.first, pr.second});
  }
}

TEST_CASE("smooth_l1: bad input") {
  REQUIRE_THROWS_WITH(smooth_l1_loss(zeros({2, 3}), zeros({3, 2})),
                      Catch::Contains("smooth_l1_loss: input [2, 3] and target [3, 2] must have the same shape"));
  REQUIRE_THROWS_WITH(l1_loss(zeros({2}), zeros({3})), Catch::Contains("l1_loss: input"));
  REQUIRE_THROWS_WITH(smooth_l1_loss(zeros({2}), zeros({2}, DType::f64)), Catch::Contains("dtype mismatch"));
  REQUIRE_THROWS_WITH(smooth_l1_loss(zeros({2}), zeros({2}), Reduction::Mean, -1.0),
                      Catch::Contains("beta must be >= 0"));
  REQUIRE_THROWS_WITH(l1_loss(zeros({2}, DType::i64), zeros({2}, DType::i64)),
                      Catch::Contains("expected a f32, f64 or bf16 tensor, got i64"));
}

TEST_CASE("smooth_l1: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_loss_cuda_matches_cpu([](const Tensor& a, const Tensor& b, Reduction r) { return smooth_l1_loss(a, b, r); });
  check_loss_cuda_matches_cpu(
      [](const Tensor& a, const Tensor& b, Reduction r) { return smooth_l1_loss(a, b, r, 0.5); });
}

TEST_CASE("l1: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_loss_cuda_matches_cpu([](const Tensor& a, const Tensor& b, Reduction r) { return l1_loss(a, b, r); });
}
