// l2norm (SSD's L2Norm): hand values, the all-zero column, agreement with a composition of
// existing ops (forward and gradients, both sides of eps), gradient checks, bad input,
// CUDA vs CPU.
#include <cmath>
#include <limits>

#include "engine/cuda_context.h"
#include "test_helpers.h"

using namespace eng;

namespace {

// The same maths from other ops: x / clamp(sqrt(sum(x^2, dim 1, keepdim)), eps, inf) * scale.
// clamp passes the gradient where the norm >= eps and blocks it below, like F.normalize.
// (Not usable with an all-zero column: sqrt's gradient at 0 is 0 * inf there.)
Tensor reference_l2norm(const Tensor& x, const Tensor& scale, double eps) {
  Tensor norm = sqrt(sum(square(x), {1}, true));
  Tensor d = clamp(norm, eps, std::numeric_limits<double>::infinity());
  return div(x, d) * scale.view({1, -1, 1, 1});
}

// Runs l2norm forward and backward (seed gradient r) on the device of x; returns
// {y, x.grad, scale.grad} on the CPU.
std::vector<Tensor> run_with_grad(const Tensor& x_val, const Tensor& scale_val, const Tensor& r, bool on_cuda) {
  Tensor x = on_cuda ? test::cuda_leaf(x_val) : test::cpu_leaf(x_val);
  Tensor s = on_cuda ? test::cuda_leaf(scale_val) : test::cpu_leaf(scale_val);
  Tensor y = l2norm(x, s);
  y.backward(r.to(x.device()));
  return {y.detach().cpu(), x.grad().cpu(), s.grad().cpu()};
}

}  // namespace

TEST_CASE("l2norm: hand values") {
  // x [1, 2, 1, 2]: column 0 = (3, 4), column 1 = (0, 0); scale (2, 10).
  // Column 0: d = 5, xhat = (0.6, 0.8), y = (1.2, 8.0). Column 1: all zero -> y = 0.
  Tensor x = from_vector<double>({3, 0, 4, 0}, {1, 2, 1, 2});
  Tensor s = from_vector<double>({2, 10}, {2});
  x.set_requires_grad(true);
  s.set_requires_grad(true);
  Tensor y = l2norm(x, s);
  REQUIRE(y.sizes() == Shape{1, 2, 1, 2});
  REQUIRE(y.dtype() == DType::f64);
  REQUIRE_CLOSE(y, from_vector<double>({1.2, 0.0, 8.0, 0.0}, {1, 2, 1, 2}), 1e-15, 0);

  // Backward with g = 1. Column 0: S = sum scale g xhat = 2 * 0.6 + 10 * 0.8 = 9.2,
  //   gx = (scale g - xhat S) / d = ((2 - 5.52) / 5, (10 - 7.36) / 5) = (-0.704, 0.528).
  // Column 1 (norm 0 < eps): gx = scale g / eps = (2e12, 1e13).
  // gscale = sum over columns of g * xhat = (0.6, 0.8).
  y.backward(ones({1, 2, 1, 2}, DType::f64));
  REQUIRE_CLOSE(x.grad(), from_vector<double>({-0.704, 2e12, 0.528, 1e13}, {1, 2, 1, 2}), 1e-12, 1e-12);
  REQUIRE_CLOSE(s.grad(), from_vector<double>({0.6, 0.8}, {2}), 1e-15, 0);

  // Float gives the same (3, 4) -> (0.6, 0.8) * scale.
  Tensor yf = l2norm(from_vector<float>({3, 4}, {1, 2, 1, 1}), from_vector<float>({1, 1}, {2}));
  REQUIRE_CLOSE(yf, from_vector<float>({0.6f, 0.8f}, {1, 2, 1, 1}), 1e-7, 0);
}

TEST_CASE("l2norm: eps is the denominator below it") {
  // Column (0.03, 0.04) has norm 0.05 < eps = 0.1: y = x / 0.1 * scale = (0.3, 0.4) * scale, and
  // the gradient is scale * g / eps (no projection term).
  Tensor x = from_vector<double>({0.03, 0.04}, {1, 2, 1, 1});
  x.set_requires_grad(true);
  Tensor s = from_vector<double>({1, 3}, {2});
  Tensor y = l2norm(x, s, 0.1);
  REQUIRE_CLOSE(y, from_vector<double>({0.3, 1.2}, {1, 2, 1, 1}), 1e-14, 0);
  y.backward(from_vector<double>({1, -2}, {1, 2, 1, 1}));
  REQUIRE_CLOSE(x.grad(), from_vector<double>({10.0, -60.0}, {1, 2, 1, 1}), 1e-12, 0);
}

TEST_CASE("l2norm: all-zero column gives 0 and a finite gradient") {
  for (DType dt : {DType::f32, DType::f64}) {
    INFO(dtype_name(dt));
    // [2, 3, 2, 2]: image 1, pixel (1, 0) is an all-zero column; the others are random.
    std::vector<double> v = test::leaf({2, 3, 2, 2}, 3).detach().to_vector<double>();
    for (int64_t c = 0; c < 3; ++c) v[(1 * 3 + c) * 4 + 2] = 0.0;
    Tensor x = from_vector<double>(v, {2, 3, 2, 2}, TensorOptions(dt));
    x.set_requires_grad(true);
    Tensor s = full({3}, 20.0, TensorOptions(dt)).set_requires_grad(true);
    Tensor y = l2norm(x, s);
    std::vector<double> yv = y.to_vector<double>();
    for (int64_t c = 0; c < 3; ++c) REQUIRE(yv[(1 * 3 + c) * 4 + 2] == 0.0);
    // Every other column has norm 20 (scale 20 times a unit vector).
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t p = 0; p < 4; ++p) {
        if (n == 1 && p == 2) continue;
        double sq = 0;
        for (int64_t c = 0; c < 3; ++c) sq += yv[(n * 3 + c) * 4 + p] * yv[(n * 3 + c) * 4 + p];
        REQUIRE(std::sqrt(sq) == Approx(20.0).epsilon(1e-6));
      }
    y.backward(ones(y.sizes(), TensorOptions(dt)));
    for (double g : x.grad().to_vector<double>()) REQUIRE(std::isfinite(g));
    for (double g : s.grad().to_vector<double>()) REQUIRE(std::isfinite(g));
    // At the zero column gx = scale * g / eps = 20 / 1e-12.
    REQUIRE(x.grad().to_vector<double>()[(1 * 3 + 0) * 4 + 2] == Approx(2e13).epsilon(1e-6));
  }
}

TEST_CASE("l2norm: matches a composition of existing ops") {
  // Both sides of eps: image 0 has columns of norm >= 0.69, image 1 of norm <= 0.18, eps 0.3.
  Tensor big = test::leaf({1, 3, 4, 5}, 11, 0.4, 1.0).detach();
  Tensor small = test::leaf({1, 3, 4, 5}, 12, -0.1, 0.1).detach();
  Tensor x0 = concat({big, small}, 0);
  Tensor s0 = test::leaf({3}, 13, 0.5, 2.0).detach();
  for (double eps : {1e-12, 0.3}) {
    INFO("eps " << eps);
    Tensor xa = test::cpu_leaf(x0), sa = test::cpu_leaf(s0);
    Tensor xb = test::cpu_leaf(x0), sb = test::cpu_leaf(s0);
    Tensor got = l2norm(xa, sa, eps);
    Tensor ref = reference_l2norm(xb, sb, eps);
    REQUIRE_CLOSE(got, ref, 1e-14, 1e-12);
    Tensor r = test::leaf(got.sizes(), 14).detach();
    got.backward(r);
    ref.backward(r);
    REQUIRE_CLOSE(xa.grad(), xb.grad(), 1e-12, 1e-10);
    REQUIRE_CLOSE(sa.grad(), sb.grad(), 1e-12, 1e-10);
  }
  // A non-contiguous input is made contiguous first.
  Tensor xt = x0.transpose(2, 3);  // [2, 3, 5, 4]
  REQUIRE_CLOSE(l2norm(xt, s0), reference_l2norm(xt.contiguous(), s0, 1e-12), 1e-14, 1e-12);
}

TEST_CASE("l2norm: gradcheck", "[gradcheck]") {
  Tensor x = test::leaf({2, 3, 4, 5}, 21, -1.0, 1.0);
  Tensor s = test::leaf({3}, 22, 0.5, 2.0);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return l2norm(in[0], in[1]); }, {x, s});
  // eps 0.3 with columns on both sides of it (none within reach of the kink).
  Tensor xb = concat({test::leaf({1, 3, 3, 3}, 23, 0.4, 1.0).detach(), test::leaf({1, 3, 3, 3}, 24, -0.1, 0.1).detach()},
                     0);
  xb.set_requires_grad(true);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return l2norm(in[0], in[1], 0.3); }, {xb, s});
  // Scale alone (x constant) and x alone (scale constant).
  Tensor xc = x.detach();
  REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return l2norm(xc, in[0]); }, {s});
  Tensor sc = s.detach();
  REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return l2norm(in[0], sc); }, {x});
}

TEST_CASE("l2norm: bad input") {
  Tensor x = zeros({2, 3, 4, 4});
  Tensor s = ones({3});
  REQUIRE_THROWS_WITH(l2norm(zeros({3, 4, 4}), s), Catch::Contains("l2norm: expected a 4-d [N, C, H, W] input"));
  REQUIRE_THROWS_WITH(l2norm(x, ones({4})),
                      Catch::Contains("l2norm: scale must have shape [3] for input [2, 3, 4, 4], got [4]"));
  REQUIRE_THROWS_WITH(l2norm(x, ones({1, 3})), Catch::Contains("scale must have shape [3]"));
  REQUIRE_THROWS_WITH(l2norm(x, ones({3}, DType::f64)), Catch::Contains("l2norm: scale must be f32 for a f32 input of shape [2, 3, 4, 4], got f64"));
  REQUIRE_THROWS_WITH(l2norm(zeros({2, 3, 4, 4}, DType::i64), s), Catch::Contains("expected a f32, f64 or bf16 tensor, got i64"));
  REQUIRE_THROWS_WITH(l2norm(x, s, 0.0), Catch::Contains("l2norm: eps must be positive and finite, got 0"));
  REQUIRE_THROWS_WITH(l2norm(x, s, -1e-3), Catch::Contains("eps must be positive"));
  REQUIRE_THROWS_WITH(l2norm(x, s, 1e-50), Catch::Contains("rounds to 0 in f32"));
  REQUIRE_THROWS_WITH(l2norm(x, Tensor()), Catch::Contains("l2norm: undefined input or scale"));
}

TEST_CASE("l2norm: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  struct Case {
    Shape shape;
    DType dtype;
  };
  // SSD conv4_3-like (C = 64, 38x38, tile width 32 forward and backward); C = 512 (forward
  // 32 columns per tile, backward 16) with a partial last tile; f64 (backward 8 columns);
  // C = 8192 (no tile fits in shared memory: the uncached kernels).
  const std::vector<Case> cases = {{{2, 64, 38, 38}, DType::f32},
                                   {{2, 512, 5, 7}, DType::f32},
                                   {{2, 512, 5, 7}, DType::f64},
                                   {{1, 8192, 2, 3}, DType::f32}};
  uint64_t seed = 300;
  for (const Case& c : cases) {
    INFO("shape " << shape_str(c.shape) << " " << dtype_name(c.dtype));
    const int64_t C = c.shape[1], P = c.shape[2] * c.shape[3];
    std::vector<double> v = test::leaf(c.shape, seed++, -2.0, 2.0).detach().to_vector<double>();
    const int64_t last_n = c.shape[0] - 1;
    for (int64_t ch = 0; ch < C; ++ch) v[(last_n * C + ch) * P + P - 1] = 0.0;  // an all-zero column
    Tensor x = from_vector<double>(v, c.shape, TensorOptions(c.dtype));
    Tensor s = test::leaf({C}, seed++, 0.5, 20.0).detach().to(c.dtype);
    Tensor r = test::leaf(c.shape, seed++).detach().to(c.dtype);
    std::vector<Tensor> cpu = run_with_grad(x, s, r, false);
    std::vector<Tensor> gpu = run_with_grad(x, s, r, true);
    REQUIRE_CLOSE(gpu[0], cpu[0], test::kElementwiseAtol, test::kReductionRtol);
    // gx at the zero column is scale * g / eps (about 1e13): relative tolerance carries it.
    REQUIRE_CLOSE(gpu[1], cpu[1], test::kReductionAtol, test::kReductionRtol);
    REQUIRE_CLOSE(gpu[2], cpu[2], test::kReductionAtol, test::kReductionRtol);
  }
}

// Under eng::cuda::set_deterministic(true) the scale gradient comes from the fixed-order
// kernels (column norms, then one block per channel) instead of float atomics: it still
// matches the CPU, gx is unchanged, and two runs agree bit for bit.
TEST_CASE("l2norm: deterministic scale gradient matches cpu and repeats bit for bit", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  cuda::set_deterministic(true);
  uint64_t seed = 700;
  for (const Shape& shape : {Shape{2, 64, 38, 38}, Shape{3, 512, 5, 7}, Shape{1, 8192, 2, 3}}) {
    INFO("shape " << shape_str(shape));
    const int64_t C = shape[1];
    Tensor x = test::leaf(shape, seed++, -2.0, 2.0).detach().to(DType::f32);
    Tensor s = test::leaf({C}, seed++, 0.5, 20.0).detach().to(DType::f32);
    Tensor r = test::leaf(shape, seed++).detach().to(DType::f32);
    std::vector<Tensor> cpu = run_with_grad(x, s, r, false);
    std::vector<Tensor> gpu = run_with_grad(x, s, r, true);
    std::vector<Tensor> again = run_with_grad(x, s, r, true);
    REQUIRE_CLOSE(gpu[1], cpu[1], test::kReductionAtol, test::kReductionRtol);
    REQUIRE_CLOSE(gpu[2], cpu[2], test::kReductionAtol, test::kReductionRtol);
    CHECK(gpu[2].to_vector<float>() == again[2].to_vector<float>());
    CHECK(gpu[1].to_vector<float>() == again[1].to_vector<float>());
  }
  cuda::set_deterministic(false);
}
