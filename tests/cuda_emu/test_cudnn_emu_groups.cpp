// The cuDNN stand-in's grouped convolutions (cudnnSetConvolutionGroupCount > 1), which the
// engine's grouped conv2d uses on CUDA: every direction against a direct loop over the
// groups written here (double), and the calls cuDNN refuses (a filter whose channels are not
// C / groups, groups that do not divide the output channels).
#include "cudnn_emu_util.h"

using namespace dnn_test;

namespace {

// Direct grouped convolution in double: output channel o of group g = o / (O / G) reads
// input channels g * C/G ... (g+1) * C/G - 1; weight [O, C/G, kh, kw].
struct Grouped {
  Shape s;
  int G;
  int Cg() const { return s.C / G; }
  size_t ws() const { return static_cast<size_t>(s.O) * Cg() * s.kh * s.kw; }
  template <typename F>
  void terms(F&& f) const {
    const int Ho = s.Ho(), Wo = s.Wo(), Og = s.O / G;
    for (int n = 0; n < s.N; ++n)
      for (int o = 0; o < s.O; ++o)
        for (int oh = 0; oh < Ho; ++oh)
          for (int ow = 0; ow < Wo; ++ow)
            for (int cg = 0; cg < Cg(); ++cg)
              for (int i = 0; i < s.kh; ++i)
                for (int j = 0; j < s.kw; ++j) {
                  const int h = oh * s.sh - s.ph + i * s.dh, v = ow * s.sw - s.pw + j * s.dw;
                  if (h < 0 || h >= s.H || v < 0 || v >= s.W) continue;
                  const int c = (o / Og) * Cg() + cg;
                  f(((static_cast<size_t>(n) * s.C + c) * s.H + h) * s.W + v,
                    ((static_cast<size_t>(o) * Cg() + cg) * s.kh + i) * s.kw + j,
                    ((static_cast<size_t>(n) * s.O + o) * Ho + oh) * Wo + ow);
                }
  }
};

void check_grouped(const Grouped& g) {
  const Shape& s = g.s;
  Handle h;
  TensorDesc xd(CUDNN_DATA_DOUBLE, s.N, s.C, s.H, s.W), yd(CUDNN_DATA_DOUBLE, s.N, s.O, s.Ho(), s.Wo());
  FilterDesc wd(CUDNN_DATA_DOUBLE, s.O, g.Cg(), s.kh, s.kw);
  ConvDesc cd(s, CUDNN_DATA_DOUBLE);
  DNN_OK(cudnnSetConvolutionGroupCount(cd, g.G));
  int groups = 0;
  DNN_OK(cudnnGetConvolutionGroupCount(cd, &groups));
  CHECK(groups == g.G);
  int n, k, ho, wo;
  DNN_OK(cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &n, &k, &ho, &wo));
  CHECK((n == s.N && k == s.O && ho == s.Ho() && wo == s.Wo()));

  const std::vector<double> x = random_values(s.xs(), 1), w = random_values(g.ws(), 2), dy = random_values(s.ys(), 3);
  std::vector<double> y_ref(s.ys(), 0.0), dx_ref(s.xs(), 0.0), dw_ref(g.ws(), 0.0);
  g.terms([&](size_t xi, size_t wi, size_t yi) {
    y_ref[yi] += w[wi] * x[xi];
    dx_ref[xi] += w[wi] * dy[yi];
    dw_ref[wi] += x[xi] * dy[yi];
  });
  const double one = 1, zero = 0;
  const size_t ws_bytes = size_t(16) << 20;
  char* ws = dev<char>(ws_bytes);
  double *dx_ = dev(x), *dw_ = dev(w), *ddy = dev(dy), *y = dev<double>(s.ys()), *gx = dev<double>(s.xs()),
         *gw = dev<double>(g.ws());
  DNN_OK(cudnnConvolutionForward(h, &one, xd, dx_, wd, dw_, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0,
                                 &zero, yd, y));
  DNN_OK(cudnnConvolutionBackwardData(h, &one, wd, dw_, yd, ddy, cd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, ws, ws_bytes,
                                      &zero, xd, gx));
  DNN_OK(cudnnConvolutionBackwardFilter(h, &one, xd, dx_, yd, ddy, cd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, ws,
                                        ws_bytes, &zero, wd, gw));
  CHECK(error_ratio(host(y, s.ys()), y_ref, 1e-12, 1e-12) <= 1);
  CHECK(error_ratio(host(gx, s.xs()), dx_ref, 1e-12, 1e-12) <= 1);
  CHECK(error_ratio(host(gw, g.ws()), dw_ref, 1e-12, 1e-12) <= 1);
  cudaFree(ws), cudaFree(dx_), cudaFree(dw_), cudaFree(ddy), cudaFree(y), cudaFree(gx), cudaFree(gw);
}

}  // namespace

TEST_CASE("cudnn_emu: grouped convolution matches a direct loop in every direction", "[cuda_emu]") {
  // N, C, H, W, O, kh, kw, ph, pw, sh, sw, dh, dw
  SECTION("groups 2, 3x3, stride 1") { check_grouped({{2, 4, 7, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1}, 2}); }
  SECTION("depthwise, stride 2, dilation 2") { check_grouped({{2, 3, 9, 8, 3, 3, 3, 2, 2, 2, 2, 2, 2}, 3}); }
  SECTION("depthwise with multiplier 2, 5x5") { check_grouped({{1, 2, 8, 8, 4, 5, 5, 2, 2, 1, 1, 1, 1}, 2}); }
}

TEST_CASE("cudnn_emu: grouped descriptors that cuDNN refuses", "[cuda_emu]") {
  const Shape s{1, 4, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1};
  TensorDesc xd(CUDNN_DATA_FLOAT, s.N, s.C, s.H, s.W);
  int n, k, ho, wo;
  ConvDesc cd(s, CUDNN_DATA_FLOAT);
  DNN_OK(cudnnSetConvolutionGroupCount(cd, 2));
  SECTION("the filter holds C channels instead of C / groups") {
    FilterDesc wd(CUDNN_DATA_FLOAT, s.O, s.C, s.kh, s.kw);
    CHECK(cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &n, &k, &ho, &wo) == CUDNN_STATUS_BAD_PARAM);
  }
  SECTION("groups that do not divide the output channels") {
    FilterDesc wd(CUDNN_DATA_FLOAT, 5, s.C / 2, s.kh, s.kw);
    CHECK(cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &n, &k, &ho, &wo) == CUDNN_STATUS_BAD_PARAM);
  }
  SECTION("a plain filter with the group count back at 1 is accepted") {
    DNN_OK(cudnnSetConvolutionGroupCount(cd, 1));
    FilterDesc wd(CUDNN_DATA_FLOAT, s.O, s.C, s.kh, s.kw);
    DNN_OK(cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &n, &k, &ho, &wo));
    CHECK(k == s.O);
  }
}
