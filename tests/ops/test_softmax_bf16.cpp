// softmax / log_softmax on bf16 tensors: bf16 storage, float maths and accumulation, each
// output rounded to nearest even. The CPU bf16 kernel runs the float kernel's exact
// operations, so it must equal the float kernel's result rounded once; CUDA sums in another
// order (warp shuffles), so CUDA vs CPU allows one bf16 rounding step.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/softmax.h"
#include "bf16_helpers.h"
#include "test_helpers.h"

using namespace eng;
using test::bits_of;

namespace {

Tensor random_bf16(const Shape& shape, uint64_t seed, double scale = 3.0) {
  Generator g(seed);
  return (randn(shape, g) * scale).to(DType::bf16);
}

std::vector<kern::bf16> to_bf16(const std::vector<float>& v) {
  std::vector<kern::bf16> out;
  for (float f : v) out.push_back(kern::float_to_bf16_rne(f));
  return out;
}

constexpr double kBf16Rtol = 1.0 / 128;  // one bf16 step (2^-7 relative)

}  // namespace

TEST_CASE("bf16 softmax: hand values", "[bf16]") {
  Tensor x = from_vector<float>({0, 0, 1, 0, 1000, 0}, {3, 2}).to(DType::bf16);
  // [0.5, 0.5]; [e/(1+e), 1/(1+e)] = [0.731.., 0.268..] -> 0x3F3B, 0x3E8A; [1, 0] without NaN.
  REQUIRE(bits_of(softmax(x, 1)) == std::vector<uint16_t>{0x3F00, 0x3F00, 0x3F3B, 0x3E8A, 0x3F80, 0x0000});
  // log_softmax([0, 0]) = -log 2 = -0.6931.. -> 0xBF31.
  REQUIRE(bits_of(log_softmax(x, 1)).at(0) == 0xBF31);
  REQUIRE(softmax(x, 1).dtype() == DType::bf16);
}

TEST_CASE("bf16 softmax: the bf16 kernel is the float kernel rounded once", "[bf16]") {
  for (const Shape& shape : {Shape{6, 37}, Shape{2, 5, 3, 4}}) {
    Tensor x = random_bf16(shape, 1);
    for (bool log_space : {false, true}) {
      auto f = [&](const Tensor& t) { return log_space ? log_softmax(t, 1) : softmax(t, 1); };
      INFO("log_space " << log_space << " shape " << shape_str(shape));
      REQUIRE(bits_of(f(x)) == bits_of(f(x.to(DType::f32)).to(DType::bf16)));
    }
  }
  // Backward at the kernel level: bf16 y and gy, against the float kernel on the widened
  // values with its result rounded once.
  const kern::SoftmaxDims d{3, 11, 2};
  const int64_t n = d.outer * d.C * d.inner;
  Generator g(2);
  std::vector<float> yf = softmax(randn({3, 11, 2}, g), 1).to_vector<float>(), gf = randn({n}, g).to_vector<float>();
  const std::vector<kern::bf16> yb = to_bf16(yf), gb = to_bf16(gf);
  for (int64_t i = 0; i < n; ++i) {
    yf[i] = kern::bf16_to_float(yb[i]);
    gf[i] = kern::bf16_to_float(gb[i]);
  }
  std::vector<kern::bf16> out_b(n);
  std::vector<float> out_f(n);
  for (bool log_space : {false, true}) {
    if (log_space) {
      kern::cpu::log_softmax_backward(d, yb.data(), gb.data(), out_b.data());
      kern::cpu::log_softmax_backward(d, yf.data(), gf.data(), out_f.data());
    } else {
      kern::cpu::softmax_backward(d, yb.data(), gb.data(), out_b.data());
      kern::cpu::softmax_backward(d, yf.data(), gf.data(), out_f.data());
    }
    for (int64_t i = 0; i < n; ++i) REQUIRE(out_b[i].bits == kern::float_to_bf16_rne(out_f[i]).bits);
  }
}

TEST_CASE("bf16 softmax: autograd runs in bf16", "[bf16]") {
  Tensor x = random_bf16({4, 7}, 3).set_requires_grad(true);
  Tensor w = random_bf16({4, 7}, 4, 1.0);
  log_softmax(x, 1).backward(w);
  REQUIRE(x.grad().dtype() == DType::bf16);
  // Against f64 maths on the same values: within a few bf16 steps (y is stored in bf16).
  Tensor x64 = x.detach().to(DType::f64).set_requires_grad(true);
  log_softmax(x64, 1).backward(w.to(DType::f64));
  REQUIRE_CLOSE(x.grad(), x64.grad(), 2e-2, 4 * kBf16Rtol);
}

TEST_CASE("bf16 softmax: cuda matches the cpu twin", "[cuda][bf16]") {
  REQUIRE_CUDA_OR_SKIP();
  // [rows, C] takes the warp-per-row kernels, [N, C, H, W] the strided ones.
  for (const Shape& shape : {Shape{33, 91}, Shape{2, 21, 5, 7}}) {
    for (bool log_space : {false, true}) {
      INFO("log_space " << log_space << " shape " << shape_str(shape));
      auto f = [&](const Tensor& t) { return log_space ? log_softmax(t, 1) : softmax(t, 1); };
      Tensor x = random_bf16(shape, 5);
      Tensor w = random_bf16(shape, 6, 1.0);
      Tensor xc = x.detach().set_requires_grad(true);
      Tensor xg = x.to(Device::cuda()).detach().set_requires_grad(true);
      Tensor yc = f(xc), yg = f(xg);
      REQUIRE(yg.is_cuda());
      REQUIRE(yg.dtype() == DType::bf16);
      REQUIRE_CLOSE(yg, yc, 1e-6, kBf16Rtol);
      yc.backward(w);
      yg.backward(w.to(Device::cuda()));
      REQUIRE_CLOSE(xg.grad(), xc.grad(), 1e-5, kBf16Rtol);
    }
  }
}
