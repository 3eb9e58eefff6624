// batch_norm2d (train / eval, running statistics) and frozen_batch_norm2d.
#include <cmath>

#include "test_helpers.h"

using namespace eng;

namespace {

// Reference batch norm built from the elementwise / reduction ops, so its gradients come
// from autograd through those ops (independent of the batch-norm kernels).
//   training: normalise with the batch mean and biased variance over (N, H, W);
//   eval:     normalise with the given running statistics.
Tensor bn_composite(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& rm, const Tensor& rv,
                    bool training, double eps) {
  const int64_t C = x.size(1);
  Tensor mu, var;
  if (training) {
    mu = mean(x, {0, 2, 3}, true);
    var = mean(square(x - mu), {0, 2, 3}, true);
  } else {
    mu = rm.view({1, C, 1, 1});
    var = rv.view({1, C, 1, 1});
  }
  Tensor y = (x - mu) / sqrt(var + eps);
  if (w.defined()) y = y * w.view({1, C, 1, 1});
  if (b.defined()) y = y + b.view({1, C, 1, 1});
  return y;
}

// Plain loops: mean and biased variance per channel of a [N, C, H, W] double tensor.
void naive_stats(const Tensor& x, std::vector<double>& mean_out, std::vector<double>& var_out) {
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  std::vector<double> v = x.to_vector<double>();
  mean_out.assign(C, 0.0);
  var_out.assign(C, 0.0);
  for (int64_t c = 0; c < C; ++c) {
    double s = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) s += v[(n * C + c) * HW + i];
    mean_out[c] = s / (N * HW);
    double ss = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) ss += std::pow(v[(n * C + c) * HW + i] - mean_out[c], 2);
    var_out[c] = ss / (N * HW);
  }
}

Tensor constant(const Shape& shape, uint64_t seed, double lo, double hi) {
  Tensor t = test::leaf(shape, seed, lo, hi);
  t.set_requires_grad(false);
  return t;
}

}  // namespace

TEST_CASE("batch_norm2d: train forward by hand") {
  // x [2, 2, 1, 2]; channel 0 holds 1 2 3 4 (mean 2.5, biased var 1.25),
  // channel 1 holds 10 10 10 14 (mean 11, biased var 3).
  Tensor x = from_vector<double>({1, 2, 10, 10, 3, 4, 10, 14}, {2, 2, 1, 2});
  Tensor w = from_vector<double>({2, -1}, {2}), b = from_vector<double>({0.5, 3}, {2});
  Tensor y = batch_norm2d(x, w, b, Tensor(), Tensor(), true, 0.1, 0.0);
  auto f0 = [](double v) { return 2 * (v - 2.5) / std::sqrt(1.25) + 0.5; };
  auto f1 = [](double v) { return -1 * (v - 11) / std::sqrt(3.0) + 3; };
  Tensor expect = from_vector<double>({f0(1), f0(2), f1(10), f1(10), f0(3), f0(4), f1(10), f1(14)}, {2, 2, 1, 2});
  REQUIRE_CLOSE(y, expect, 1e-14, 1e-12);
  // Affine off: plain normalisation, zero mean and unit (biased) variance per channel.
  Tensor z = batch_norm2d(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 0.0);
  auto zv = z.to_vector<double>();
  REQUIRE(zv[0] == Approx(-1.5 / std::sqrt(1.25)).epsilon(1e-12));
  REQUIRE(zv[7] == Approx(3 / std::sqrt(3.0)).epsilon(1e-12));
}

TEST_CASE("batch_norm2d: running statistics after one and two steps (momentum 0.1)") {
  Tensor rm = zeros({1}, DType::f64), rv = ones({1}, DType::f64);
  // Step 1: values 1 2 3 4 -> mean 2.5, unbiased var 5/3.
  Tensor x1 = from_vector<double>({1, 2, 3, 4}, {2, 1, 1, 2});
  batch_norm2d(x1, Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5);
  REQUIRE(rm.item() == Approx(0.9 * 0 + 0.1 * 2.5).epsilon(1e-14));
  REQUIRE(rv.item() == Approx(0.9 * 1 + 0.1 * 5.0 / 3.0).epsilon(1e-14));
  // Step 2: values 0 2 4 6 -> mean 3, unbiased var 20/3.
  Tensor x2 = from_vector<double>({0, 2, 4, 6}, {2, 1, 1, 2});
  batch_norm2d(x2, Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5);
  const double rm2 = 0.9 * 0.25 + 0.1 * 3.0;                          // 0.525
  const double rv2 = 0.9 * (0.9 + 0.1 * 5.0 / 3.0) + 0.1 * 20.0 / 3;  // 1.62666...
  REQUIRE(rm.item() == Approx(rm2).epsilon(1e-14));
  REQUIRE(rv.item() == Approx(rv2).epsilon(1e-14));

  // Eval mode normalises with those running stats and leaves them alone.
  Tensor y = batch_norm2d(x2, Tensor(), Tensor(), rm, rv, false, 0.1, 1e-5);
  std::vector<double> yv = y.to_vector<double>();
  for (int i = 0; i < 4; ++i) REQUIRE(yv[i] == Approx((2.0 * i - rm2) / std::sqrt(rv2 + 1e-5)).epsilon(1e-12));
  REQUIRE(rm.item() == Approx(rm2).epsilon(1e-14));
  REQUIRE(rv.item() == Approx(rv2).epsilon(1e-14));

  // Running stats that are strided views of a bigger buffer are updated in place too.
  Tensor buf = zeros({2, 2}, DType::f64);
  Tensor rm_view = buf.select(1, 0), rv_view = buf.select(1, 1);
  rv_view.fill_(1.0);
  batch_norm2d(from_vector<double>({1, 2, 3, 4, 0, 2, 4, 6}, {2, 2, 1, 2}), Tensor(), Tensor(), rm_view, rv_view, true,
               0.1, 1e-5);
  // channel 0: values 1 2 0 2 (mean 1.25, unbiased var 2.75/3); channel 1: 3 4 4 6 (mean 4.25, var 4.75/3)
  REQUIRE_CLOSE(buf, from_vector<double>({0.125, 0.9 + 0.1 * 2.75 / 3, 0.425, 0.9 + 0.1 * 4.75 / 3}, {2, 2}), 1e-14,
                1e-13);
}

TEST_CASE("batch_norm2d: matches a naive double reference (forward and gradients)") {
  const double eps = 1e-5;
  for (bool training : {true, false}) {
    Tensor x = test::leaf({3, 4, 5, 6}, 1, -2.0, 3.0);
    Tensor w = test::leaf({4}, 2, 0.5, 1.5), b = test::leaf({4}, 3);
    Tensor rm = constant({4}, 4, -0.5, 0.5), rv = constant({4}, 5, 0.5, 2.0);
    const Tensor rm0 = rm.clone(), rv0 = rv.clone();
    Tensor y = batch_norm2d(x, w, b, rm, rv, training, 0.1, eps);

    // Forward by plain loops.
    std::vector<double> mu, var;
    if (training) {
      naive_stats(x, mu, var);
    } else {
      mu = rm0.to_vector<double>();
      var = rv0.to_vector<double>();
    }
    std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>(), bv = b.to_vector<double>();
    std::vector<double> y_ref(xv.size());
    for (size_t k = 0; k < xv.size(); ++k) {
      const size_t c = (k / 30) % 4;
      y_ref[k] = (xv[k] - mu[c]) / std::sqrt(var[c] + eps) * wv[c] + bv[c];
    }
    REQUIRE_CLOSE(y, from_vector<double>(y_ref, x.sizes()), 1e-12, 1e-10);

    // Gradients against autograd through the composite reference.
    Generator gen(9);
    Tensor r = rand(y.sizes(), gen, DType::f64) * 2.0 - 1.0;
    y.backward(r);
    Tensor gx = x.grad(), gw = w.grad(), gb = b.grad();
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
    bn_composite(x, w, b, rm0, rv0, training, eps).backward(r);
    REQUIRE_CLOSE(gx, x.grad(), 1e-10, 1e-8);
    REQUIRE_CLOSE(gw, w.grad(), 1e-10, 1e-8);
    REQUIRE_CLOSE(gb, b.grad(), 1e-10, 1e-8);

    if (training) {  // and the running stats moved with the unbiased variance
      std::vector<double> rm_ref(4), rv_ref(4), rm0v = rm0.to_vector<double>(), rv0v = rv0.to_vector<double>();
      for (int c = 0; c < 4; ++c) {
        rm_ref[c] = 0.9 * rm0v[c] + 0.1 * mu[c];
        rv_ref[c] = 0.9 * rv0v[c] + 0.1 * var[c] * 90.0 / 89.0;
      }
      REQUIRE_CLOSE(rm, from_vector<double>(rm_ref, {4}), 1e-14, 1e-12);
      REQUIRE_CLOSE(rv, from_vector<double>(rv_ref, {4}), 1e-14, 1e-12);
    } else {
      REQUIRE(rm.to_vector<double>() == rm0.to_vector<double>());
      REQUIRE(rv.to_vector<double>() == rv0.to_vector<double>());
    }
  }
}

TEST_CASE("batch_norm2d: gradcheck", "[gradcheck]") {
  Tensor x = test::leaf({2, 3, 3, 4}, 11, -1.0, 2.0);
  Tensor w = test::leaf({3}, 12, 0.5, 1.5), b = test::leaf({3}, 13);
  SECTION("train mode, affine") {
    REQUIRE_GRADCHECK(
        [](const std::vector<Tensor>& in) {
          return batch_norm2d(in[0], in[1], in[2], Tensor(), Tensor(), true, 0.1, 1e-5);
        },
        {x, w, b});
  }
  SECTION("train mode, affine off, updating running stats") {
    Tensor rm = zeros({3}, DType::f64), rv = ones({3}, DType::f64);
    REQUIRE_GRADCHECK(
        [&](const std::vector<Tensor>& in) { return batch_norm2d(in[0], Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5); },
        {x});
  }
  SECTION("eval mode") {
    Tensor rm = constant({3}, 14, -0.5, 0.5), rv = constant({3}, 15, 0.5, 2.0);
    REQUIRE_GRADCHECK(
        [&](const std::vector<Tensor>& in) { return batch_norm2d(in[0], in[1], in[2], rm, rv, false, 0.1, 1e-5); },
        {x, w, b});
  }
}

TEST_CASE("batch_norm2d: bad input is refused with a clear message") {
  Tensor x = zeros({2, 3, 4, 4});
  Tensor c3 = ones({3}), c4 = ones({4});
  REQUIRE_THROWS_WITH(batch_norm2d(zeros({2, 3, 4}), c3, c3, c3, c3, true),
                      Catch::Contains("batch_norm2d") && Catch::Contains("4-d"));
  REQUIRE_THROWS_WITH(batch_norm2d(x, c4, c3, c3, c3, true),
                      Catch::Contains("weight must have shape [3]") && Catch::Contains("got [4]"));
  REQUIRE_THROWS_WITH(batch_norm2d(x, c3, c3, Tensor(), Tensor(), false), Catch::Contains("running_mean is undefined"));
  REQUIRE_THROWS_WITH(batch_norm2d(zeros({1, 3, 1, 1}), c3, c3, c3, c3, true),
                      Catch::Contains("more than 1 value per channel"));
  REQUIRE_THROWS_WITH(batch_norm2d(x, ones({3}, DType::f64), c3, c3, c3, true), Catch::Contains("dtype mismatch"));
  REQUIRE_THROWS_WITH(frozen_batch_norm2d(x, c3, c3, c3, Tensor()), Catch::Contains("running_var is undefined"));
  REQUIRE_THROWS_WITH(frozen_batch_norm2d(x, c3, c4, c3, c3), Catch::Contains("bias must have shape [3]"));
}

TEST_CASE("batch_norm2d: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const double tol_a = test::kReductionAtol, tol_r = test::kReductionRtol;
  for (bool training : {true, false}) {
    for (const Shape& shape : {Shape{4, 8, 19, 19}, Shape{2, 3, 5, 7}}) {
      const int64_t C = shape[1];
      Tensor x = test::random_f32(shape, 1, -2.0, 3.0), r = test::random_f32(shape, 2);
      Tensor w = test::random_f32({C}, 3, 0.5, 1.5), b = test::random_f32({C}, 4);
      Tensor rm = test::random_f32({C}, 5), rv = test::random_f32({C}, 6, 0.5, 2.0);
      // Returns y, dx, dw, db, running_mean, running_var (on the CPU).
      auto run = [&](Device dev) {
        std::vector<Tensor> leaves;
        for (const Tensor& t : {x, w, b}) {
          Tensor l = t.to(dev).detach().clone();
          l.set_requires_grad(true);
          leaves.push_back(l);
        }
        Tensor rmd = rm.to(dev).clone(), rvd = rv.to(dev).clone();
        Tensor y = batch_norm2d(leaves[0], leaves[1], leaves[2], rmd, rvd, training, 0.1, 1e-5);
        y.backward(r.to(dev));
        return std::vector<Tensor>{y.detach().cpu(), leaves[0].grad().cpu(), leaves[1].grad().cpu(),
                                   leaves[2].grad().cpu(), rmd.cpu(), rvd.cpu()};
      };
      std::vector<Tensor> cpu = run(Device::cpu()), gpu = run(Device::cuda());
      for (size_t i = 0; i < cpu.size(); ++i) {
        INFO("training " << training << ", shape " << shape_str(shape) << ", output " << i);
        REQUIRE_CLOSE(gpu[i], cpu[i], tol_a, tol_r);
      }
    }
  }
}

// ---- frozen batch norm ----

TEST_CASE("frozen_batch_norm2d: hand-checked values, constant parameters") {
  // eps 0: scale = w / sqrt(rv) = [1, 6], shift = b - rm * scale = [0.5, -7].
  Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 2, 1, 2});
  x.set_requires_grad(true);
  Tensor w = from_vector<double>({2, 3}, {2}), b = from_vector<double>({1, -1}, {2});
  Tensor rm = from_vector<double>({0.5, 1}, {2}), rv = from_vector<double>({4, 0.25}, {2});
  w.set_requires_grad(true);  // even a trainable-looking weight gets no gradient: it is a constant
  Tensor y = frozen_batch_norm2d(x, w, b, rm, rv, 0.0);
  REQUIRE(y.to_vector<double>() == std::vector<double>{1.5, 2.5, 11, 17});
  y.backward(from_vector<double>({1, 10, 100, 1000}, {1, 2, 1, 2}));
  REQUIRE(x.grad().to_vector<double>() == std::vector<double>{1, 10, 600, 6000});
  REQUIRE(!w.grad().defined());
  // Without an input that needs grad the output needs none.
  REQUIRE(!frozen_batch_norm2d(x.detach(), w, b, rm, rv).requires_grad());
}

TEST_CASE("frozen_batch_norm2d: equals eval-mode batch_norm2d") {
  Tensor x = test::leaf({2, 5, 4, 3}, 1, -2.0, 2.0);
  Tensor w = constant({5}, 2, 0.5, 1.5), b = constant({5}, 3, -1, 1);
  Tensor rm = constant({5}, 4, -1, 1), rv = constant({5}, 5, 0.1, 3.0);
  Tensor y1 = frozen_batch_norm2d(x, w, b, rm, rv);
  Tensor y2 = batch_norm2d(x, w, b, rm, rv, false);
  REQUIRE_CLOSE(y1, y2, 1e-13, 1e-12);
}

TEST_CASE("frozen_batch_norm2d: gradcheck", "[gradcheck]") {
  Tensor x = test::leaf({2, 3, 4, 3}, 21, -2.0, 2.0);
  Tensor w = constant({3}, 22, 0.5, 1.5), b = constant({3}, 23, -1, 1);
  Tensor rm = constant({3}, 24, -1, 1), rv = constant({3}, 25, 0.1, 3.0);
  REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return frozen_batch_norm2d(in[0], w, b, rm, rv); }, {x});
}

TEST_CASE("frozen_batch_norm2d: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const Shape shape{2, 64, 25, 25};
  Tensor x = test::random_f32(shape, 1, -2.0, 2.0), r = test::random_f32(shape, 2);
  Tensor w = test::random_f32({64}, 3, 0.5, 1.5), b = test::random_f32({64}, 4);
  Tensor rm = test::random_f32({64}, 5), rv = test::random_f32({64}, 6, 0.1, 3.0);
  auto run = [&](Device dev) {
    Tensor xl = x.to(dev).detach().clone();
    xl.set_requires_grad(true);
    Tensor y = frozen_batch_norm2d(xl, w.to(dev), b.to(dev), rm.to(dev), rv.to(dev));
    y.backward(r.to(dev));
    return std::make_pair(y.detach().cpu(), xl.grad().cpu());
  };
  auto cpu = run(Device::cpu());
  auto gpu = run(Device::cuda());
  REQUIRE_CLOSE(gpu.first, cpu.first, test::kElementwiseAtol, test::kElementwiseRtol);
  REQUIRE_CLOSE(gpu.second, cpu.second, test::kElementwiseAtol, test::kElementwiseRtol);
}
