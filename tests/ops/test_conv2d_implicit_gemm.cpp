// conv2d_implicit_gemm: the CPU twin against eng::conv2d (im2col + GEMM) and a naive direct
// loop; the routing rule; the CUDA kernel against the CPU twin; eng::conv2d on CUDA for a
// dilated conv (which the front-end sends to the implicit GEMM) against the CPU.
#include "test_helpers.h"

#include "engine/cuda_context.h"
#include "kernels/conv2d_implicit_gemm.h"

using namespace eng;

namespace {

Conv2dParams params(int64_t stride, int64_t pad, int64_t dil) { return Conv2dParams::square(stride, pad, dil); }

kern::Conv2dDims dims_of(const Shape& x, const Shape& w, const Conv2dParams& p) {
  kern::Conv2dDims d;
  d.N = x[0], d.C = x[1], d.H = x[2], d.W = x[3];
  d.O = w[0], d.kh = w[2], d.kw = w[3];
  d.stride_h = p.stride_h, d.stride_w = p.stride_w, d.pad_h = p.pad_h, d.pad_w = p.pad_w;
  d.dil_h = p.dilation_h, d.dil_w = p.dilation_w;
  d.Ho = kern::conv2d_output_size(d.H, d.kh, d.stride_h, d.pad_h, d.dil_h);
  d.Wo = kern::conv2d_output_size(d.W, d.kw, d.stride_w, d.pad_w, d.dil_w);
  return d;
}

// Direct convolution in double, seven loops, straight from the definition.
std::vector<double> naive_forward(const kern::Conv2dDims& d, const std::vector<double>& x,
                                  const std::vector<double>& w, const std::vector<double>* b) {
  std::vector<double> y(d.N * d.O * d.Ho * d.Wo);
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t o = 0; o < d.O; ++o)
      for (int64_t oh = 0; oh < d.Ho; ++oh)
        for (int64_t ow = 0; ow < d.Wo; ++ow) {
          double acc = b ? (*b)[o] : 0.0;
          for (int64_t c = 0; c < d.C; ++c)
            for (int64_t i = 0; i < d.kh; ++i)
              for (int64_t j = 0; j < d.kw; ++j) {
                const int64_t h = oh * d.stride_h - d.pad_h + i * d.dil_h;
                const int64_t v = ow * d.stride_w - d.pad_w + j * d.dil_w;
                if (h < 0 || h >= d.H || v < 0 || v >= d.W) continue;
                acc += w[((o * d.C + c) * d.kh + i) * d.kw + j] * x[((n * d.C + c) * d.H + h) * d.W + v];
              }
          y[((n * d.O + o) * d.Ho + oh) * d.Wo + ow] = acc;
        }
  return y;
}

// The CPU twin on tensors: y = conv(x, w, b) through kern::cpu::conv2d_implicit_gemm_forward.
template <typename T>
Tensor cpu_twin(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, kern::IgemmTile tile) {
  const kern::Conv2dDims d = dims_of(x.sizes(), w.sizes(), p);
  Tensor y = full({d.N, d.O, d.Ho, d.Wo}, 12345.0, TensorOptions(x.dtype()));  // every element must be written
  kern::cpu::conv2d_implicit_gemm_forward<T>(d, x.data<T>(), w.data<T>(), b.defined() ? b.data<T>() : nullptr,
                                             y.data<T>(), tile);
  return y;
}

struct Case {
  const char* name;
  Shape x, w;
  Conv2dParams p;
  bool bias;
};

Conv2dParams asymmetric() {
  Conv2dParams p;
  p.stride_h = 2, p.stride_w = 1;
  p.pad_h = 0, p.pad_w = 2;
  p.dilation_h = 1, p.dilation_w = 2;
  return p;
}

// Shapes for the CPU twin: every tile edge is ragged (O, N*Ho*Wo and K = C*kh*kw are not
// multiples of 64, 128, 8 or 16), and one case spans several tiles in both directions.
const std::vector<Case> kCpuCases = {
    {"fc6-like 3x3 dilation 6 pad 6", {2, 3, 19, 19}, {4, 3, 3, 3}, params(1, 6, 6), true},
    {"odd sizes, stride 2, dilation 2, no bias", {3, 5, 13, 11}, {7, 5, 3, 3}, params(2, 1, 2), false},
    {"3x2 kernel, per-axis stride/pad/dilation", {2, 2, 9, 8}, {3, 2, 3, 2}, asymmetric(), true},
    {"1x1 pointwise", {2, 5, 4, 3}, {6, 5, 1, 1}, params(1, 0, 1), true},
    {"several tiles each way, dilation 3", {2, 8, 23, 17}, {70, 8, 3, 3}, params(1, 3, 3), true},
    {"padding wider than some taps reach, stride 3", {1, 2, 7, 5}, {2, 2, 3, 3}, params(3, 4, 3), true},
};

const kern::IgemmTile kTiles[] = {kern::IgemmTile::automatic, kern::IgemmTile::t128x128, kern::IgemmTile::t64x64};

}  // namespace

TEST_CASE("conv2d_implicit_gemm: cpu twin matches eng::conv2d and a naive loop") {
  NoGradGuard g;
  for (const Case& c : kCpuCases) {
    INFO(c.name);
    Tensor x = test::leaf(c.x, 1).detach(), w = test::leaf(c.w, 2).detach();
    Tensor b = c.bias ? test::leaf({c.w[0]}, 3).detach() : Tensor();
    const kern::Conv2dDims d = dims_of(c.x, c.w, c.p);
    REQUIRE(kern::conv2d_implicit_gemm_supported(d));
    std::vector<double> bv = c.bias ? b.to_vector<double>() : std::vector<double>();
    const std::vector<double> naive = naive_forward(d, x.to_vector<double>(), w.to_vector<double>(), c.bias ? &bv : nullptr);
    Tensor im2col_ref = conv2d(x, w, b, c.p);  // eng::conv2d on the CPU: im2col + GEMM
    REQUIRE(im2col_ref.sizes() == Shape{d.N, d.O, d.Ho, d.Wo});
    for (kern::IgemmTile tile : kTiles) {
      INFO("tile " << int(tile));
      Tensor y = cpu_twin<double>(x, w, b, c.p, tile);
      REQUIRE_CLOSE(y, im2col_ref, 1e-12, 1e-12);
      const std::vector<double> yv = y.to_vector<double>();
      REQUIRE(yv.size() == naive.size());
      for (size_t i = 0; i < yv.size(); ++i) {
        INFO("element " << i << ": " << yv[i] << " vs naive " << naive[i]);
        REQUIRE(std::fabs(yv[i] - naive[i]) <= 1e-12 + 1e-12 * std::fabs(naive[i]));
      }
      // The float instantiation, within the GEMM tolerance of the double result.
      Tensor yf = cpu_twin<float>(x.to(DType::f32), w.to(DType::f32), c.bias ? b.to(DType::f32) : Tensor(), c.p, tile);
      REQUIRE_CLOSE(yf, im2col_ref, test::kGemmAtol, test::kGemmRtol);
    }
  }
}

TEST_CASE("conv2d_implicit_gemm: hand-checked dilated value") {
  // 1 channel 3x3 input, 2x2 kernel with dilation 2 and no padding: a single output,
  // w00 x[0,0] + w01 x[0,2] + w10 x[2,0] + w11 x[2,2] + b = 1*1 + 2*3 + 3*7 + 4*9 + 0.5 = 64.5.
  NoGradGuard g;
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  Tensor w = from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor b = from_vector<double>({0.5}, {1});
  for (kern::IgemmTile tile : kTiles) REQUIRE(cpu_twin<double>(x, w, b, params(1, 0, 2), tile).to_vector<double>() == std::vector<double>{64.5});
  // Padding 2 on top: output (0, 0) sees only x[0,0] through tap (1, 1): 4*1 + 0.5.
  Tensor y = cpu_twin<double>(x, w, b, params(1, 2, 2), kern::IgemmTile::t64x64);
  REQUIRE(y.sizes() == Shape{1, 1, 5, 5});
  REQUIRE(y.to_vector<double>()[0] == 4.5);
}

TEST_CASE("conv2d_implicit_gemm: routing rule and index limits") {
  const kern::Conv2dDims fc6 = dims_of({8, 512, 19, 19}, {1024, 512, 3, 3}, params(1, 6, 6));
  REQUIRE(fc6.Ho == 19);
  REQUIRE(kern::conv2d_implicit_gemm_supported(fc6));
  REQUIRE(kern::conv2d_implicit_gemm_preferred(fc6));  // dilated: the front-end takes the implicit GEMM
  const kern::Conv2dDims plain = dims_of({8, 512, 19, 19}, {1024, 512, 3, 3}, params(1, 1, 1));
  REQUIRE(kern::conv2d_implicit_gemm_supported(plain));
  REQUIRE_FALSE(kern::conv2d_implicit_gemm_preferred(plain));  // undilated: im2col + cuBLAS
  kern::Conv2dDims only_w = dims_of({1, 4, 9, 9}, {4, 4, 3, 3}, asymmetric());
  REQUIRE(kern::conv2d_implicit_gemm_preferred(only_w));  // dilation on one axis counts
  // One image of 2^31 elements does not fit the kernel's 32-bit in-image offsets.
  const kern::Conv2dDims huge = dims_of({1, 2048, 1024, 1024}, {8, 2048, 3, 3}, params(1, 2, 2));
  REQUIRE_FALSE(kern::conv2d_implicit_gemm_supported(huge));
  REQUIRE_FALSE(kern::conv2d_implicit_gemm_preferred(huge));
  REQUIRE_THROWS(kern::cpu::conv2d_implicit_gemm_forward<float>(huge, nullptr, nullptr, nullptr, nullptr));
  // The GEMM view of one column: q = (n*Ho + oh)*Wo + ow.
  const kern::IgemmShape s = kern::igemm_shape(fc6);
  REQUIRE(s.K == 512 * 9);
  REQUIRE(s.ncol == 8 * 19 * 19);
  const kern::IgemmColumn col = kern::igemm_column(s, (3 * 19 + 4) * 19 + 5);  // n = 3, oh = 4, ow = 5
  REQUIRE(col.img == 3);
  REQUIRE(col.pix == 4 * 19 + 5);
  REQUIRE(col.ih0 == 4 - 6);
  REQUIRE(col.iw0 == 5 - 6);
  REQUIRE(kern::igemm_y_index(s, col, 7) == (3 * 1024 + 7) * 361 + 4 * 19 + 5);
}

TEST_CASE("conv2d_implicit_gemm: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  NoGradGuard g;
  // fc6-like (small channel counts so the reference is quick), ragged tiles, stride 2, no bias,
  // a non-3x3 kernel (runtime kernel size path) and several tiles in both directions.
  const std::vector<Case> cases = {
      {"fc6-like 3x3 dilation 6 pad 6", {2, 16, 19, 19}, {40, 16, 3, 3}, params(1, 6, 6), true},
      {"fc6-like, batch 3, 136 outputs (two 128-row tiles)", {3, 8, 19, 19}, {136, 8, 3, 3}, params(1, 6, 6), true},
      {"odd sizes, stride 2, dilation 2, no bias", {3, 5, 13, 11}, {7, 5, 3, 3}, params(2, 1, 2), false},
      {"5x3 kernel, per-axis dilation, stride 2", {2, 6, 17, 15}, {9, 6, 5, 3}, [] {
         Conv2dParams p = params(2, 3, 2);
         p.dilation_w = 3;
         return p;
       }(), true},
      {"3x2 kernel, per-axis stride/pad/dilation", {2, 2, 9, 8}, {3, 2, 3, 2}, asymmetric(), false},
      {"1x1", {2, 5, 4, 3}, {6, 5, 1, 1}, params(1, 0, 1), true},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    Tensor x = test::random_f32(c.x, 1), w = test::random_f32(c.w, 2);
    Tensor b = c.bias ? test::random_f32({c.w[0]}, 3) : Tensor();
    const kern::Conv2dDims d = dims_of(c.x, c.w, c.p);
    Tensor ref = cpu_twin<float>(x, w, b, c.p, kern::IgemmTile::automatic);
    REQUIRE_CLOSE(ref, conv2d(x, w, b, c.p), test::kGemmAtol, test::kGemmRtol);  // the twin agrees with im2col
    Tensor dx = x.cuda(), dw = w.cuda(), db = c.bias ? b.cuda() : Tensor();
    for (kern::IgemmTile tile : kTiles) {
      INFO("tile " << int(tile));
      Tensor y = full({d.N, d.O, d.Ho, d.Wo}, 12345.0, TensorOptions(DType::f32).device(Device::cuda()));
#ifdef ENGINE_WITH_CUDA  // (a CPU-only build has no CUDA kernels to link; the test skipped above)
      kern::cuda::conv2d_implicit_gemm_forward(d, dx.data<float>(), dw.data<float>(),
                                               c.bias ? db.data<float>() : nullptr, y.data<float>(), cuda::stream());
#endif
      cuda::synchronize();
      REQUIRE_CLOSE(y.cpu(), ref, test::kGemmAtol, test::kGemmRtol);
    }
  }
}

TEST_CASE("conv2d_implicit_gemm: eng::conv2d on cuda, dilated, matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // SSD fc6 with fewer channels: dilation 6, pad 6, 19x19, through the front-end (which
  // routes the float CUDA forward to the implicit GEMM); backward keeps im2col + col2im.
  const Shape xs{2, 24, 19, 19}, ws{48, 24, 3, 3};
  const Conv2dParams p = params(1, 6, 6);
  REQUIRE(kern::conv2d_implicit_gemm_preferred(dims_of(xs, ws, p)));
  Tensor x = test::random_f32(xs, 1), w = test::random_f32(ws, 2), b = test::random_f32({ws[0]}, 3);
  auto leaf = [](const Tensor& t, bool on_cuda) {
    Tensor c = on_cuda ? t.cuda() : t.clone();
    c.set_requires_grad(true);
    return c;
  };
  Tensor cx = leaf(x, false), cw = leaf(w, false), cb = leaf(b, false);
  Tensor gx = leaf(x, true), gw = leaf(w, true), gb = leaf(b, true);
  Tensor yc = conv2d(cx, cw, cb, p), yg = conv2d(gx, gw, gb, p);
  REQUIRE(yg.is_cuda());
  REQUIRE_CLOSE(yg.cpu(), yc, test::kGemmAtol, test::kGemmRtol);
  Tensor seed = test::random_f32(yc.sizes(), 4);
  yc.backward(seed);
  yg.backward(seed.cuda());
  REQUIRE_CLOSE(gx.grad().cpu(), cx.grad(), test::kGemmAtol, test::kGemmRtol);
  REQUIRE_CLOSE(gw.grad().cpu(), cw.grad(), test::kGemmAtol, test::kGemmRtol);
  REQUIRE_CLOSE(gb.grad().cpu(), cb.grad(), test::kGemmAtol, test::kGemmRtol);
  // No bias, stride 2, dilation 2, odd sizes.
  NoGradGuard g;
  Tensor x2 = test::random_f32({3, 7, 21, 15}, 5), w2 = test::random_f32({11, 7, 3, 3}, 6);
  REQUIRE_CLOSE(conv2d(x2.cuda(), w2.cuda(), Tensor(), params(2, 2, 2)).cpu(), conv2d(x2, w2, Tensor(), params(2, 2, 2)),
                test::kGemmAtol, test::kGemmRtol);
}
