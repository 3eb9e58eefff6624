// conv2d: hand-checked values, output sizes, a naive direct convolution in double
// (forward and all three gradients), gradcheck, bad input, CUDA vs CPU.
#include "test_helpers.h"

using namespace eng;

namespace {

Conv2dParams params(int64_t stride, int64_t pad, int64_t dil) { return Conv2dParams::square(stride, pad, dil); }

// Direct convolution, seven nested loops, written independently of the im2col kernels.
// Given the upstream gradient gy it also forms the three gradients by the chain rule,
// term by term: y += w x  =>  gx += gy w,  gw += gy x,  gb += gy.
struct Naive {
  Shape y_shape;
  std::vector<double> y, gx, gw, gb;
};
Naive naive_conv(const Tensor& xt, const Tensor& wt, const Tensor& bt, const Conv2dParams& p, const Tensor& gyt) {
  const int64_t N = xt.size(0), C = xt.size(1), H = xt.size(2), W = xt.size(3);
  const int64_t O = wt.size(0), KH = wt.size(2), KW = wt.size(3);
  const int64_t Ho = (H + 2 * p.pad_h - p.dilation_h * (KH - 1) - 1) / p.stride_h + 1;
  const int64_t Wo = (W + 2 * p.pad_w - p.dilation_w * (KW - 1) - 1) / p.stride_w + 1;
  std::vector<double> x = xt.to_vector<double>(), w = wt.to_vector<double>();
  std::vector<double> b = bt.defined() ? bt.to_vector<double>() : std::vector<double>(O, 0.0);
  Naive r;
  r.y_shape = {N, O, Ho, Wo};
  r.y.assign(N * O * Ho * Wo, 0.0);
  r.gx.assign(x.size(), 0.0);
  r.gw.assign(w.size(), 0.0);
  r.gb.assign(O, 0.0);
  std::vector<double> gy = gyt.defined() ? gyt.to_vector<double>() : std::vector<double>(r.y.size(), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          const int64_t yi = ((n * O + o) * Ho + oh) * Wo + ow;
          double acc = b[o];
          r.gb[o] += gy[yi];
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < KH; ++i)
              for (int64_t j = 0; j < KW; ++j) {
                const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h;
                const int64_t v = ow * p.stride_w - p.pad_w + j * p.dilation_w;
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                const int64_t xi = ((n * C + c) * H + h) * W + v, wi = ((o * C + c) * KH + i) * KW + j;
                acc += w[wi] * x[xi];
                r.gx[xi] += gy[yi] * w[wi];
                r.gw[wi] += gy[yi] * x[xi];
              }
          r.y[yi] = acc;
        }
  return r;
}

void require_vec_close(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("element " << i << ": " << a[i] << " vs naive " << b[i]);
    REQUIRE(std::fabs(a[i] - b[i]) <= tol);
  }
}

using test::cpu_leaf;
using test::cuda_leaf;

}  // namespace

TEST_CASE("conv2d: hand-checked values") {
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  Tensor w = from_vector<double>({1, 0, 0, -1}, {1, 1, 2, 2});  // y = x[h, v] - x[h+1, v+1]
  Tensor b = from_vector<double>({0.5}, {1});
  Tensor y = conv2d(x, w, b, params(1, 0, 1));
  REQUIRE(y.sizes() == Shape{1, 1, 2, 2});
  REQUIRE(y.to_vector<double>() == std::vector<double>{-3.5, -3.5, -3.5, -3.5});
  // Padding 1, stride 2: output (oh, ow) reads x[2oh-1, 2ow-1] - x[2oh, 2ow] (padding reads 0):
  //   y[0,0] = 0 - x[0,0] = -1, y[0,1] = 0 - x[0,2] = -3, y[1,0] = 0 - x[2,0] = -7, y[1,1] = x[1,1] - x[2,2] = -4
  Tensor y2 = conv2d(x, w, Tensor(), params(2, 1, 1));
  REQUIRE(y2.sizes() == Shape{1, 1, 2, 2});
  REQUIRE(y2.to_vector<double>() == std::vector<double>{-1, -3, -7, -4});
  // Dilation 2 on a 3x3 input: one output, x[0,0] - x[2,2] = -8.
  REQUIRE(conv2d(x, w, Tensor(), params(1, 0, 2)).to_vector<double>() == std::vector<double>{-8});

  // Gradients of sum(y) for the stride-1 case: gw[i, j] = sum of the x window it touches,
  // gb = number of outputs, gx[h, v] = w[0,0] * (#windows with (h,v) top-left) - (#bottom-right).
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  sum(conv2d(x, w, b, params(1, 0, 1))).backward();
  REQUIRE(w.grad().to_vector<double>() == std::vector<double>{1 + 2 + 4 + 5, 2 + 3 + 5 + 6, 4 + 5 + 7 + 8, 5 + 6 + 8 + 9});
  REQUIRE(b.grad().to_vector<double>() == std::vector<double>{4});
  REQUIRE(x.grad().to_vector<double>() == std::vector<double>{1, 1, 0, 1, 0, -1, 0, -1, -1});
}

TEST_CASE("conv2d: output sizes") {
  NoGradGuard g;
  // SSD fc6: 3x3, dilation 6, padding 6 keeps 19x19.
  REQUIRE(conv2d(zeros({1, 2, 19, 19}), zeros({3, 2, 3, 3}), Tensor(), params(1, 6, 6)).sizes() == Shape{1, 3, 19, 19});
  // ResNet stem: 7x7, stride 2, padding 3 halves 224 to 112.
  REQUIRE(conv2d(zeros({1, 1, 224, 224}), zeros({2, 1, 7, 7}), Tensor(), params(2, 3, 1)).sizes() ==
          Shape{1, 2, 112, 112});
  // VGG 3x3 pad 1 keeps 150; 3x3 stride 2 pad 1 on 75 gives 38; odd sizes round down.
  REQUIRE(conv2d(zeros({1, 1, 150, 150}), zeros({1, 1, 3, 3}), Tensor(), params(1, 1, 1)).sizes() == Shape{1, 1, 150, 150});
  REQUIRE(conv2d(zeros({1, 1, 75, 75}), zeros({1, 1, 3, 3}), Tensor(), params(2, 1, 1)).sizes() == Shape{1, 1, 38, 38});
  REQUIRE(conv2d(zeros({1, 1, 10, 7}), zeros({1, 1, 3, 1}), Tensor(), params(2, 0, 1)).sizes() == Shape{1, 1, 4, 4});
}

TEST_CASE("conv2d: forward and gradients match a naive direct convolution") {
  struct Case {
    const char* name;
    Shape x, w;
    Conv2dParams p;
    bool bias;
  };
  Conv2dParams asym;
  asym.stride_h = 2;
  asym.stride_w = 1;
  asym.pad_h = 0;
  asym.pad_w = 2;
  asym.dilation_h = 1;
  asym.dilation_w = 2;
  const std::vector<Case> cases = {
      {"fc6-like 3x3 dilation 6 pad 6", {2, 3, 19, 19}, {4, 3, 3, 3}, params(1, 6, 6), true},
      {"stem 7x7 stride 2 pad 3", {1, 3, 23, 23}, {4, 3, 7, 7}, params(2, 3, 1), true},
      {"3x2 kernel, per-axis stride/pad/dilation", {2, 2, 9, 8}, {3, 2, 3, 2}, asym, false},
      {"1x1 pointwise", {2, 5, 4, 3}, {6, 5, 1, 1}, params(1, 0, 1), true},
      {"1x1 stride 2", {1, 3, 5, 5}, {2, 3, 1, 1}, params(2, 0, 1), false},
      {"padding wider than some taps reach, stride 3", {1, 2, 7, 5}, {2, 2, 3, 3}, params(3, 4, 3), true},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    Tensor x = test::leaf(c.x, 1), w = test::leaf(c.w, 2);
    Tensor b = c.bias ? test::leaf({c.w[0]}, 3) : Tensor();
    Tensor y = conv2d(x, w, b, c.p);
    Tensor gy = test::leaf(y.sizes(), 4).detach();
    y.backward(gy);
    Naive ref = naive_conv(x, w, b, c.p, gy);
    REQUIRE(y.sizes() == ref.y_shape);
    require_vec_close(y.to_vector<double>(), ref.y, 1e-10);
    require_vec_close(x.grad().to_vector<double>(), ref.gx, 1e-10);
    require_vec_close(w.grad().to_vector<double>(), ref.gw, 1e-10);
    if (c.bias) require_vec_close(b.grad().to_vector<double>(), ref.gb, 1e-10);
  }
}

TEST_CASE("conv2d: gradcheck", "[gradcheck]") {
  auto with_bias = [](Conv2dParams p) {
    return [p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], p); };
  };
  auto no_bias = [](Conv2dParams p) {
    return [p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), p); };
  };
  SECTION("3x3 pad 1") { REQUIRE_GRADCHECK(with_bias(params(1, 1, 1)), {test::leaf({2, 2, 5, 6}, 1), test::leaf({3, 2, 3, 3}, 2), test::leaf({3}, 3)}); }
  SECTION("stride 2 pad 1") { REQUIRE_GRADCHECK(with_bias(params(2, 1, 1)), {test::leaf({1, 2, 7, 6}, 4), test::leaf({2, 2, 3, 3}, 5), test::leaf({2}, 6)}); }
  SECTION("dilation 2 pad 2") { REQUIRE_GRADCHECK(with_bias(params(1, 2, 2)), {test::leaf({1, 2, 6, 6}, 7), test::leaf({2, 2, 3, 3}, 8), test::leaf({2}, 9)}); }
  SECTION("no bias, 1x1 and 2x3 kernels") {
    REQUIRE_GRADCHECK(no_bias(params(1, 0, 1)), {test::leaf({2, 3, 3, 4}, 10), test::leaf({2, 3, 1, 1}, 11)});
    REQUIRE_GRADCHECK(no_bias(params(2, 1, 1)), {test::leaf({1, 2, 5, 7}, 12), test::leaf({2, 2, 2, 3}, 13)});
  }
}

TEST_CASE("conv2d: only the needed gradients are computed") {
  Tensor x = test::leaf({1, 2, 5, 5}, 1), w = test::leaf({3, 2, 3, 3}, 2).detach(), b = test::leaf({3}, 3);
  sum(conv2d(x, w, b, params(1, 1, 1))).backward();
  REQUIRE(x.grad().defined());
  REQUIRE(b.grad().defined());
  REQUIRE_FALSE(w.grad().defined());
}

TEST_CASE("conv2d: bad input throws") {
  NoGradGuard g;
  const Tensor none;
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 3, 8, 8}), zeros({4, 2, 3, 3}), none, params(1, 1, 1)),
                      Catch::Contains("conv2d: input [1, 3, 8, 8] has 3 channels but weight [4, 2, 3, 3] expects 2"));
  REQUIRE_THROWS_WITH(conv2d(zeros({3, 8, 8}), zeros({4, 3, 3, 3}), none, params(1, 1, 1)),
                      Catch::Contains("conv2d: input must be [N, C, H, W], got [3, 8, 8]"));
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 3, 8, 8}), zeros({4, 3, 3}), none, params(1, 1, 1)),
                      Catch::Contains("conv2d: weight must be [O, C, kh, kw]"));
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 3, 4, 4}), zeros({4, 3, 3, 3}), none, params(1, 0, 2)),
                      Catch::Contains("larger than the padded input"));
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 3, 8, 8}), zeros({4, 3, 3, 3}), none, params(0, 1, 1)),
                      Catch::Contains("conv2d: stride must be positive"));
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 3, 8, 8}), zeros({4, 3, 3, 3}), none, params(1, 1, 0)),
                      Catch::Contains("conv2d: dilation must be positive"));
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 3, 8, 8}), zeros({4, 3, 3, 3}), zeros({3}), params(1, 1, 1)),
                      Catch::Contains("conv2d: bias must be [4], got [3]"));
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 3, 8, 8}), zeros({4, 3, 3, 3}, DType::f64), none, params(1, 1, 1)),
                      Catch::Contains("conv2d: dtype mismatch"));
}

TEST_CASE("conv2d: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  struct Case {
    const char* name;
    Shape x, w;
    Conv2dParams p;
    bool bias;
  };
  const std::vector<Case> cases = {
      {"SSD fc6 3x3 dilation 6 pad 6", {1, 16, 19, 19}, {32, 16, 3, 3}, params(1, 6, 6), true},
      {"stem 7x7 stride 2 pad 3", {2, 3, 32, 32}, {8, 3, 7, 7}, params(2, 3, 1), true},
      {"VGG 3x3 pad 1, no bias", {2, 8, 15, 15}, {8, 8, 3, 3}, params(1, 1, 1), false},
      {"1x1 pointwise", {2, 8, 5, 5}, {4, 8, 1, 1}, params(1, 0, 1), true},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    Tensor x = test::random_f32(c.x, 1), w = test::random_f32(c.w, 2), b = test::random_f32({c.w[0]}, 3);
    Tensor cx = cpu_leaf(x), cw = cpu_leaf(w), cb = c.bias ? cpu_leaf(b) : Tensor();
    Tensor gx = cuda_leaf(x), gw = cuda_leaf(w), gb = c.bias ? cuda_leaf(b) : Tensor();
    Tensor yc = conv2d(cx, cw, cb, c.p), yg = conv2d(gx, gw, gb, c.p);
    Tensor seed = test::random_f32(yc.sizes(), 4);
    yc.backward(seed);
    yg.backward(seed.cuda());
    REQUIRE(yg.is_cuda());
    REQUIRE_CLOSE(yg.cpu(), yc, test::kGemmAtol, test::kGemmRtol);
    REQUIRE_CLOSE(gx.grad().cpu(), cx.grad(), test::kGemmAtol, test::kGemmRtol);
    REQUIRE_CLOSE(gw.grad().cpu(), cw.grad(), test::kGemmAtol, test::kGemmRtol);
    if (c.bias) REQUIRE_CLOSE(gb.grad().cpu(), cb.grad(), test::kGemmAtol, test::kGemmRtol);
  }
}
