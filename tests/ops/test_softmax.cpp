// softmax / log_softmax: hand values, an independent naive loop over every dim, stability
// for huge logits, gradient checks, CUDA vs CPU.
#include <cmath>

#include "test_helpers.h"

using namespace eng;

namespace {

// Naive softmax of a contiguous double tensor over `dim`, written without the max shift
// (fine for the small values used here) and without the kernel's [outer, C, inner] helper.
std::vector<double> naive_softmax(const Tensor& x, int64_t dim, bool log_space) {
  const Shape& s = x.sizes();
  std::vector<double> v = x.to_vector<double>(), out(v.size());
  Shape st = contiguous_strides(s);
  for (size_t k = 0; k < v.size(); ++k) {
    // Coordinates of k along `dim`: walk the row that k belongs to.
    const int64_t pos = (static_cast<int64_t>(k) / st[dim]) % s[dim];
    const int64_t row0 = static_cast<int64_t>(k) - pos * st[dim];
    double denom = 0;
    for (int64_t c = 0; c < s[dim]; ++c) denom += std::exp(v[row0 + c * st[dim]]);
    out[k] = log_space ? v[k] - std::log(denom) : std::exp(v[k]) / denom;
  }
  return out;
}

// Runs op(x, dim) forward and backward (seed gradient r) on x's device; returns {y, x.grad}.
std::pair<Tensor, Tensor> run_with_grad(Tensor (*op)(const Tensor&, int64_t), const Tensor& x_val, int64_t dim,
                                        const Tensor& r) {
  Tensor x = x_val.detach().clone();
  x.set_requires_grad(true);
  Tensor y = op(x, dim);
  y.backward(r.to(x.device()));
  return {y.detach().cpu(), x.grad().cpu()};
}

}  // namespace

TEST_CASE("softmax: hand values") {
  // e^1, e^2, e^3 = 2.718281828, 7.389056099, 20.085536923; sum 30.192874850.
  Tensor x = from_vector<double>({1, 2, 3, 0, 0, 0}, {2, 3});
  Tensor y = softmax(x, 1);
  REQUIRE_CLOSE(y, from_vector<double>({0.0900305732, 0.2447284711, 0.6652409558, 1.0 / 3, 1.0 / 3, 1.0 / 3}, {2, 3}),
                1e-9, 0);
  Tensor ly = log_softmax(x, -1);
  const double l3 = std::log(3.0);
  REQUIRE_CLOSE(ly, from_vector<double>({-2.4076059644, -1.4076059644, -0.4076059644, -l3, -l3, -l3}, {2, 3}), 1e-9,
                0);
  // Over dim 0 (inner > 1): columns [1, 0], [2, 0], [3, 0].
  Tensor y0 = softmax(x, 0);
  const double a = 1 / (1 + std::exp(-1.0)), b = 1 / (1 + std::exp(-2.0)), c = 1 / (1 + std::exp(-3.0));
  REQUIRE_CLOSE(y0, from_vector<double>({a, b, c, 1 - a, 1 - b, 1 - c}, {2, 3}), 1e-12, 0);
  REQUIRE(y0.dtype() == DType::f64);
  REQUIRE(y0.sizes() == Shape{2, 3});
}

TEST_CASE("softmax: matches a naive loop over every dim") {
  Tensor x = test::leaf({2, 3, 4}, 11, -2.0, 2.0).detach();
  for (int64_t dim = 0; dim < 3; ++dim) {
    INFO("dim " << dim);
    REQUIRE_CLOSE(softmax(x, dim), from_vector<double>(naive_softmax(x, dim, false), x.sizes()), 1e-12, 1e-12);
    REQUIRE_CLOSE(log_softmax(x, dim), from_vector<double>(naive_softmax(x, dim, true), x.sizes()), 1e-12, 1e-12);
  }
  // Negative dims and non-contiguous input (the front-end makes it contiguous).
  REQUIRE_CLOSE(softmax(x, -1), softmax(x, 2), 0, 0);
  Tensor xt = x.transpose(0, 2);  // [4, 3, 2], not contiguous
  REQUIRE_CLOSE(softmax(xt, 1), from_vector<double>(naive_softmax(xt.contiguous(), 1, false), xt.sizes()), 1e-12,
                1e-12);
  // Rows sum to one.
  REQUIRE_CLOSE(sum(softmax(x, 1), {1}), ones({2, 4}, DType::f64), 1e-12, 0);
}

TEST_CASE("softmax: stable for huge logits") {
  Tensor big = from_vector<float>({1000, 1001, 1002, -1000, -1000, 1000}, {2, 3});
  Tensor small = from_vector<float>({0, 1, 2}, {1, 3});
  std::vector<float> y = softmax(big, 1).to_vector<float>();
  std::vector<float> ly = log_softmax(big, 1).to_vector<float>();
  for (float v : y) REQUIRE(std::isfinite(v));
  for (float v : ly) REQUIRE(std::isfinite(v));
  REQUIRE_CLOSE(softmax(big, 1).narrow(0, 0, 1), softmax(small, 1), 1e-6, 1e-5);
  REQUIRE_CLOSE(log_softmax(big, 1).narrow(0, 0, 1), log_softmax(small, 1), 1e-5, 1e-5);
  // Second row: e^-2000 underflows to 0 probability, log-probability -2000.
  REQUIRE(y[5] == Approx(1.0f));
  REQUIRE(y[3] == 0.0f);
  REQUIRE(ly[3] == Approx(-2000.0f));
  // Same on the strided path (softmax over dim 0).
  std::vector<float> y0 = softmax(big.transpose(0, 1), 1).to_vector<float>();
  for (float v : y0) REQUIRE(std::isfinite(v));
}

TEST_CASE("softmax: backward hand values") {
  // y = softmax([0, ln 3]) = [0.25, 0.75]. With gy = [1, 0]: gx = y * (gy - y0) = [0.1875, -0.1875].
  Tensor x = from_vector<double>({0.0, std::log(3.0)}, {1, 2});
  x.set_requires_grad(true);
  softmax(x, 1).backward(from_vector<double>({1.0, 0.0}, {1, 2}));
  REQUIRE_CLOSE(x.grad(), from_vector<double>({0.1875, -0.1875}, {1, 2}), 1e-12, 0);
  // log_softmax with gy = [1, 1]: gx = gy - softmax * 2 = [0.5, -0.5].
  Tensor x2 = from_vector<double>({0.0, std::log(3.0)}, {1, 2});
  x2.set_requires_grad(true);
  log_softmax(x2, 1).backward(ones({1, 2}, DType::f64));
  REQUIRE_CLOSE(x2.grad(), from_vector<double>({0.5, -0.5}, {1, 2}), 1e-12, 0);
}

TEST_CASE("softmax: gradcheck", "[gradcheck]") {
  Tensor x3 = test::leaf({2, 3, 4}, 21, -2.0, 2.0);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return softmax(in[0], 1); }, {x3});
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return softmax(in[0], -1); }, {x3});
  Tensor x2 = test::leaf({3, 5}, 22, -2.0, 2.0);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return softmax(in[0], 1); }, {x2});
}

TEST_CASE("log_softmax: gradcheck", "[gradcheck]") {
  Tensor x3 = test::leaf({2, 3, 4}, 31, -2.0, 2.0);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return log_softmax(in[0], 1); }, {x3});
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return log_softmax(in[0], -1); }, {x3});
  Tensor x2 = test::leaf({3, 5}, 32, -2.0, 2.0);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return log_softmax(in[0], 0); }, {x2});
}

TEST_CASE("softmax: bad input") {
  REQUIRE_THROWS_WITH(softmax(zeros({2, 3}), 2), Catch::Contains("softmax: dim 2 out of range"));
  REQUIRE_THROWS_WITH(log_softmax(zeros({2, 3}), -3), Catch::Contains("log_softmax: dim -3 out of range"));
  REQUIRE_THROWS_WITH(softmax(zeros({2, 3}, DType::i64), 1), Catch::Contains("expected a f32, f64 or bf16 tensor, got i64"));
}

namespace {
void check_cuda_matches_cpu(Tensor (*op)(const Tensor&, int64_t)) {
  struct Case {
    Shape shape;
    int64_t dim;
  };
  // inner > 1 (thread per row); inner == 1 with C < 32, C > 32 and C large (warp per row).
  const std::vector<Case> cases = {{{4, 7, 5}, 1}, {{3, 5}, 1}, {{33, 50}, -1}, {{6, 1000}, 1}, {{2, 3, 4, 5}, 0}};
  uint64_t seed = 100;
  for (const Case& c : cases) {
    INFO("shape " << shape_str(c.shape) << " dim " << c.dim);
    Tensor x = test::random_f32(c.shape, seed++, -4.0, 4.0);
    Tensor r = test::random_f32(c.shape, seed++);
    auto cpu = run_with_grad(op, x, c.dim, r);
    auto gpu = run_with_grad(op, x.cuda(), c.dim, r);
    REQUIRE_CLOSE(gpu.first, cpu.first, test::kReductionAtol, test::kReductionRtol);
    REQUIRE_CLOSE(gpu.second, cpu.second, test::kReductionAtol, test::kReductionRtol);
  }
}
}  // namespace

TEST_CASE("softmax: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu(&softmax);
}

TEST_CASE("log_softmax: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_matches_cpu(&log_softmax);
}
