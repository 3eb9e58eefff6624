// upsample_nearest2d: PyTorch's legacy 'nearest' rule, forward and backward.
#include <array>

#include "test_helpers.h"

using namespace eng;

namespace {

// Runs f on a fresh leaf copy of x on `dev`, back-propagates r and returns {y, dx} on the CPU.
std::pair<Tensor, Tensor> forward_backward(const std::function<Tensor(const Tensor&)>& f, const Tensor& x,
                                           const Tensor& r, Device dev) {
  Tensor xd = x.detach().to(dev).detach();
  xd.set_requires_grad(true);
  Tensor y = f(xd);
  y.backward(r.to(dev));
  return {y.detach().cpu(), xd.grad().cpu()};
}

// Exact rational source index floor(dst * in / out), clamped: equals PyTorch's float rule
// whenever float rounding does not cross an integer (true for the small sizes below).
int64_t exact_src(int64_t dst, int64_t in, int64_t out) { return std::min(dst * in / out, in - 1); }

}  // namespace

TEST_CASE("upsample_nearest2d: 2x by hand") {
  Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  x.set_requires_grad(true);
  Tensor y = upsample_nearest2d(x, 4, 4);
  REQUIRE(y.sizes() == Shape{1, 1, 4, 4});
  REQUIRE(y.to_vector<double>() == std::vector<double>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  // Each input feeds a 2x2 block: the gradient sums that block.
  y.backward(arange(16, DType::f64).reshape({1, 1, 4, 4}));
  REQUIRE(x.grad().to_vector<double>() ==
          std::vector<double>{0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15});
}

TEST_CASE("upsample_nearest2d: non-integer ratios 8 -> 5 and 5 -> 8 by hand") {
  // Rows 8 -> 5: scale 1.6, src = floor(0, 1.6, 3.2, 4.8, 6.4) = 0 1 3 4 6.
  // Cols 5 -> 8: scale 0.625, src = floor(0, .625, 1.25, 1.875, 2.5, 3.125, 3.75, 4.375)
  //            = 0 0 1 1 2 3 3 4.
  const std::vector<int64_t> src_h{0, 1, 3, 4, 6}, src_w{0, 0, 1, 1, 2, 3, 3, 4};
  Tensor x = arange(40, DType::f64).reshape({1, 1, 8, 5});
  x.set_requires_grad(true);
  Tensor y = upsample_nearest2d(x, 5, 8);
  REQUIRE(y.sizes() == Shape{1, 1, 5, 8});
  std::vector<double> yv = y.to_vector<double>();
  for (int64_t oh = 0; oh < 5; ++oh)
    for (int64_t ow = 0; ow < 8; ++ow) REQUIRE(yv[oh * 8 + ow] == static_cast<double>(src_h[oh] * 5 + src_w[ow]));
  // With a unit gradient each input collects (#rows reading it) x (#cols reading it).
  y.backward(ones({1, 1, 5, 8}, DType::f64));
  const std::vector<double> rows{1, 1, 0, 1, 1, 0, 1, 0}, cols{2, 2, 1, 2, 1};
  std::vector<double> g = x.grad().to_vector<double>();
  for (int64_t ih = 0; ih < 8; ++ih)
    for (int64_t iw = 0; iw < 5; ++iw) REQUIRE(g[ih * 5 + iw] == rows[ih] * cols[iw]);
}

TEST_CASE("upsample_nearest2d: matches a naive reference over many sizes") {
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{3, 7}, {7, 3}, {10, 4}, {13, 13}, {6, 12}, {19, 38}, {5, 1}};
  uint64_t seed = 5;
  for (auto [in_h, out_h] : sizes) {
    for (auto [in_w, out_w] : sizes) {
      Tensor x = test::leaf({2, 3, in_h, in_w}, seed++);
      Tensor y = upsample_nearest2d(x, out_h, out_w);
      Generator gen(seed++);
      Tensor r = rand(y.sizes(), gen, DType::f64);
      y.backward(r);
      std::vector<double> xv = x.to_vector<double>(), rv = r.to_vector<double>();
      std::vector<double> y_ref(y.numel()), g_ref(x.numel(), 0.0);
      for (int64_t p = 0; p < 6; ++p)
        for (int64_t oh = 0; oh < out_h; ++oh)
          for (int64_t ow = 0; ow < out_w; ++ow) {
            const int64_t src = (p * in_h + exact_src(oh, in_h, out_h)) * in_w + exact_src(ow, in_w, out_w);
            const int64_t dst = (p * out_h + oh) * out_w + ow;
            y_ref[dst] = xv[src];
            g_ref[src] += rv[dst];
          }
      REQUIRE(y.to_vector<double>() == y_ref);
      REQUIRE_CLOSE(x.grad(), from_vector<double>(g_ref, x.sizes()), 1e-12, 1e-12);
    }
  }
}

TEST_CASE("upsample_nearest2d: gradcheck", "[gradcheck]") {
  Tensor x = test::leaf({2, 2, 3, 5}, 41);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return upsample_nearest2d(in[0], 6, 8); }, {x});
  Tensor x2 = test::leaf({1, 2, 8, 5}, 42);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return upsample_nearest2d(in[0], 5, 8); }, {x2});
}

TEST_CASE("upsample_nearest2d: bad input is refused with a clear message") {
  REQUIRE_THROWS_WITH(upsample_nearest2d(zeros({2, 3, 4}), 8, 8), Catch::Contains("4-d"));
  REQUIRE_THROWS_WITH(upsample_nearest2d(zeros({1, 2, 3, 4}), 0, 8), Catch::Contains("must be positive"));
  REQUIRE_THROWS_WITH(upsample_nearest2d(zeros({1, 2, 3, 4}, DType::i32), 6, 8), Catch::Contains("expected a f32, f64 or bf16 tensor, got i32"));
}

TEST_CASE("upsample_nearest2d: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const std::vector<std::array<int64_t, 4>> cases = {
      {19, 19, 38, 38}, {5, 8, 8, 5}, {10, 13, 25, 7}, {38, 38, 75, 75}, {7, 7, 7, 7}};
  uint64_t seed = 50;
  for (const auto& c : cases) {
    Tensor x = test::random_f32({2, 4, c[0], c[1]}, seed++);
    Tensor r = test::random_f32({2, 4, c[2], c[3]}, seed++);
    auto f = [&](const Tensor& t) { return upsample_nearest2d(t, c[2], c[3]); };
    auto cpu = forward_backward(f, x, r, Device::cpu());
    auto gpu = forward_backward(f, x, r, Device::cuda());
    REQUIRE_CLOSE(gpu.first, cpu.first, test::kElementwiseAtol, test::kElementwiseRtol);
    REQUIRE_CLOSE(gpu.second, cpu.second, test::kElementwiseAtol, test::kElementwiseRtol);
  }
}
