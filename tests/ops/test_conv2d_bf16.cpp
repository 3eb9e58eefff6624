// bf16 convolutions and BF16 autocast: the CPU twin (float maths on the bf16 values, one
// rounding), cuDNN's bf16 convolutions and our bf16 implicit GEMM for dilated ones against it,
// TF32 on the dilated path, and autocast's casts and gradients.
//
// Tolerance of a bf16 result against the CPU twin. Both multiply the same bf16 operands (their
// products are exact in FP32: 8 + 8 significant bits), accumulate in FP32 in different orders
// (each within K 2^-24 S of the exact sum, S = sum_k |a_k b_k|), and round once to bf16 (within
// 2^-8 relative: 8 significant bits, round to nearest). Two such results differ by at most
//     2 (K 2^-24 S) + 2^-8 (|a| + |b|) <= 2 K 2^-24 S + 2^-7 |b| + 2^-8 * (the first term),
// bounded here by 2 K 2^-24 S + 2^-7 (|b| + 2 K 2^-24 S) + 2^-7 S 2^-8 (one more 2^-8 S where the
// bias is added after a first rounding, see within_bf16).
#include <cmath>
#include <string>
#include <vector>

#include "engine/autocast.h"
#include "engine/cuda_context.h"
#include "engine/detail/cudnn_conv.h"
#include "test_helpers.h"

using namespace eng;

namespace {

struct Tf32Scope {
  explicit Tf32Scope(bool on) { cuda::set_tf32(on); }
  ~Tf32Scope() { cuda::set_tf32(false); }
};

// A bf16 CPU tensor of U[-1, 1) values (already representable: rounding happens here).
Tensor bf16_values(const Shape& shape, uint64_t seed) { return test::random_f32(shape, seed).to(DType::bf16); }

// |actual - ref| <= 2 K 2^-24 S + 2^-7 (|ref| + S 2^-8) elementwise (see the top of the file),
// with S the same sum over |operands| computed in double.
// `rounded_twice`: cuDNN's unfused forward rounds the convolution to bf16 and then adds the
// bias and rounds again (as PyTorch's bf16 conv + bias does): the first rounding is relative
// to the convolution, at most S, so 2^-8 S more.
std::string within_bf16(const Tensor& actual, const Tensor& ref, const Tensor& abs_sum, int64_t terms,
                        bool rounded_twice = false) {
  auto a = actual.to(Device::cpu()).to_vector<double>(), r = ref.to_vector<double>(), s = abs_sum.to_vector<double>();
  if (a.size() != r.size() || a.size() != s.size()) return "size mismatch";
  for (size_t i = 0; i < a.size(); ++i) {
    const double acc = 2.0 * static_cast<double>(terms) * std::ldexp(1.0, -24) * s[i];
    const double bound = acc + std::ldexp(1.0, -7) * (std::fabs(r[i]) + acc + std::ldexp(s[i], -8)) +
                         (rounded_twice ? std::ldexp(s[i], -8) : 0.0) + 1e-30;
    if (!(std::fabs(a[i] - r[i]) <= bound))
      return "element " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(r[i]) +
             " (bound " + std::to_string(bound) + ")";
  }
  return "";
}

Tensor f64(const Tensor& t) { return t.to(DType::f64); }

// One conv (and its gradients) in bf16 on CUDA against the CPU twin, plus the sums of
// |products| for the bound.
void check_cuda_bf16(const Shape& xs, const Shape& ws, const Conv2dParams& p, bool relu, uint64_t seed) {
  INFO("x " << shape_str(xs) << " w " << shape_str(ws) << " dilation " << p.dilation_h << " relu " << relu);
  const Tensor xv = bf16_values(xs, seed), wv = bf16_values(ws, seed + 1), bv = bf16_values({ws[0]}, seed + 2);
  auto run = [&](Device dev) {
    Tensor x = xv.to(dev).clone(), w = wv.to(dev).clone(), b = bv.to(dev).clone();
    x.set_requires_grad(true);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    Tensor y = relu ? conv2d_relu(x, w, b, p) : conv2d(x, w, b, p);
    REQUIRE(y.dtype() == DType::bf16);
    const Tensor g = bf16_values(y.sizes(), seed + 3).to(dev);
    y.backward(g);
    REQUIRE(x.grad().dtype() == DType::bf16);
    return std::vector<Tensor>{y.detach().cpu(), x.grad().cpu(), w.grad().cpu(), b.grad().cpu(), g.cpu()};
  };
  const auto cpu = run(Device::cpu());
  const auto gpu = run(Device::cuda());
  // Sums of |a b| in double: forward, data gradient, filter gradient.
  const Tensor ax = abs(f64(xv)), aw = abs(f64(wv)), ag = abs(f64(cpu[4]));
  const Tensor s_y = add(conv2d(ax, aw, Tensor(), p), abs(f64(bv)).view({1, ws[0], 1, 1}));
  Tensor xl = test::cpu_leaf(ax), wl = test::cpu_leaf(aw);
  conv2d(xl, aw, Tensor(), p).backward(ag);
  conv2d(ax, wl, Tensor(), p).backward(ag);
  const int64_t Ho = cpu[0].size(2), Wo = cpu[0].size(3);
  // Not fused (no ReLU) and not dilated: cuDNN's forward, then cudnnAddTensor for the bias.
  const bool twice = !relu && p.dilation_h == 1 && p.dilation_w == 1;
  std::string m = within_bf16(gpu[0], cpu[0], s_y, xs[1] * ws[2] * ws[3] + 1, twice);
  INFO("forward: " << m);
  CHECK(m.empty());
  m = within_bf16(gpu[1], cpu[1], xl.grad(), ws[0] * ws[2] * ws[3]);
  INFO("backward data: " << m);
  CHECK(m.empty());
  m = within_bf16(gpu[2], cpu[2], wl.grad(), xs[0] * Ho * Wo);
  INFO("backward filter: " << m);
  CHECK(m.empty());
  m = within_bf16(gpu[3], cpu[3], sum(abs(f64(cpu[4])), {0, 2, 3}), xs[0] * Ho * Wo);
  INFO("backward bias: " << m);
  CHECK(m.empty());
}

}  // namespace

TEST_CASE("conv2d (bf16): the cpu computes in float on the bf16 values and rounds once", "[conv2d]") {
  const Tensor x = bf16_values({2, 3, 7, 6}, 1), w = bf16_values({4, 3, 3, 3}, 2), b = bf16_values({4}, 3);
  for (int64_t dil : {1, 2}) {
    const Conv2dParams p = Conv2dParams::square(1, dil, dil);
    const Tensor y = conv2d(x, w, b, p);
    REQUIRE(y.dtype() == DType::bf16);
    const Tensor expect = conv2d(x.to(DType::f32), w.to(DType::f32), b.to(DType::f32), p).to(DType::bf16);
    CHECK(y.to_vector<float>() == expect.to_vector<float>());
    const Tensor yr = conv2d_relu(x, w, b, p);
    CHECK(yr.to_vector<float>() == relu(expect.to(DType::f32)).to(DType::bf16).to_vector<float>());
  }
  // Gradients: float maths, each gradient rounded once.
  Tensor xl = test::cpu_leaf(x), wl = test::cpu_leaf(w);
  Tensor xf = test::cpu_leaf(x.to(DType::f32)), wf = test::cpu_leaf(w.to(DType::f32));
  const Tensor g = bf16_values({2, 4, 5, 4}, 4);
  conv2d(xl, wl, Tensor(), Conv2dParams{}).backward(g);
  conv2d(xf, wf, Tensor(), Conv2dParams{}).backward(g.to(DType::f32));
  CHECK(xl.grad().to_vector<float>() == xf.grad().to(DType::bf16).to_vector<float>());
  CHECK(wl.grad().to_vector<float>() == wf.grad().to(DType::bf16).to_vector<float>());
}

TEST_CASE("conv2d (bf16): mixed bf16 input and f32 weight outside autocast is a one-line error", "[conv2d]") {
  const Tensor x = bf16_values({1, 2, 4, 4}, 1), w = test::random_f32({3, 2, 3, 3}, 2);
  REQUIRE_THROWS_WITH(conv2d(x, w, Tensor(), Conv2dParams{}), Catch::Contains("conv2d") && Catch::Contains("bf16"));
}

TEST_CASE("conv2d (bf16): cuDNN and the dilated implicit GEMM match the cpu twin", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  check_cuda_bf16({2, 8, 10, 9}, {6, 8, 3, 3}, Conv2dParams::square(1, 1), false, 10);       // cuDNN
  check_cuda_bf16({2, 8, 10, 9}, {6, 8, 3, 3}, Conv2dParams::square(1, 1), true, 20);        // cuDNN fused ReLU
  check_cuda_bf16({1, 6, 9, 9}, {5, 6, 3, 3}, Conv2dParams::square(2, 1), false, 30);        // stride 2
  check_cuda_bf16({2, 16, 11, 11}, {20, 16, 3, 3}, Conv2dParams::square(1, 3, 3), false, 40);  // dilated: ours
  check_cuda_bf16({2, 16, 11, 11}, {20, 16, 3, 3}, Conv2dParams::square(1, 3, 3), true, 50);   // ours + ReLU
}

// The dilated f32 path in TF32: the implicit GEMM's tensor-core kernel, within the TF32 bound
// (2 u + K 2^-24) S, u = 2^-11, of the double result; with TF32 off it is FP32 (K 2^-24 S).
TEST_CASE("conv2d (tf32): a dilated conv runs our TF32 kernel within the TF32 bound", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const Conv2dParams p = Conv2dParams::square(1, 2, 2);
  const Tensor x = test::random_f32({2, 12, 9, 9}, 5), w = test::random_f32({7, 12, 3, 3}, 6);
  const Tensor exact = conv2d(f64(x), f64(w), Tensor(), p), S = conv2d(abs(f64(x)), abs(f64(w)), Tensor(), p);
  const double K = 12 * 9;
  for (bool tf32 : {false, true}) {
    INFO("tf32 " << tf32);
    Tf32Scope s(tf32);
    const auto y = conv2d(x.cuda(), w.cuda(), Tensor(), p).to_vector<double>();
    const auto e = exact.to_vector<double>(), b = S.to_vector<double>();
    const double u = tf32 ? std::ldexp(1.0, -11) : 0.0;
    bool differs_from_exact_float = false;
    for (size_t i = 0; i < y.size(); ++i) {
      REQUIRE(std::fabs(y[i] - e[i]) <= (2 * u + K * std::ldexp(1.0, -24)) * b[i] + 1e-30);
      if (std::fabs(y[i] - e[i]) > K * std::ldexp(1.0, -24) * b[i]) differs_from_exact_float = true;
    }
    // TF32 really rounded: some output is farther from exact than FP32 could be.
    CHECK(differs_from_exact_float == tf32);
  }
}

TEST_CASE("autocast: conv2d casts f32 cuda operands to bf16, gradients reach f32 weights", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = test::cuda_leaf(test::random_f32({2, 4, 8, 8}, 1)), w = test::cuda_leaf(test::random_f32({5, 4, 3, 3}, 2));
  Tensor b = test::cuda_leaf(test::random_f32({5}, 3));
  Tensor y;
  {
    autocast::Guard on;
    REQUIRE(autocast::enabled());
    y = conv2d_relu(x, w, b, Conv2dParams::square(1, 1));
  }
  REQUIRE_FALSE(autocast::enabled());
  REQUIRE(y.dtype() == DType::bf16);
  // The same as a bf16 conv of the rounded operands.
  const Tensor ref = conv2d_relu(x.detach().to(DType::bf16), w.detach().to(DType::bf16), b.detach().to(DType::bf16),
                                 Conv2dParams::square(1, 1));
  CHECK(y.to_vector<float>() == ref.to_vector<float>());
  y.to(DType::f32).backward(ones(y.sizes()).cuda());
  REQUIRE(w.grad().dtype() == DType::f32);
  REQUIRE(x.grad().dtype() == DType::f32);
  REQUIRE(b.grad().dtype() == DType::f32);
  // Against the f32 gradient: bf16 operands and gradients, about 2^-7 relative to the scale.
  Tensor w32 = test::cuda_leaf(w.detach()), x32 = test::cuda_leaf(x.detach());
  conv2d_relu(x32, w32, b.detach(), Conv2dParams::square(1, 1)).backward(ones(y.sizes()).cuda());
  double scale = 0;
  for (double v : w32.grad().to_vector<double>()) scale = std::max(scale, std::fabs(v));
  CHECK(test::compare(w.grad().cpu(), w32.grad().cpu(), 5e-2 * scale, 0).empty());
}

TEST_CASE("autocast: cpu tensors and f64 are never cast", "[conv2d]") {
  autocast::Guard on;
  const Tensor x = test::random_f32({1, 2, 5, 5}, 1), w = test::random_f32({3, 2, 3, 3}, 2);
  CHECK(conv2d(x, w, Tensor(), Conv2dParams{}).dtype() == DType::f32);
  CHECK(conv2d(x.to(DType::f64), w.to(DType::f64), Tensor(), Conv2dParams{}).dtype() == DType::f64);
  CHECK(autocast::to_compute(x).same(x));
}
