// Self-tests of the cuDNN stand-in in tools/cuda_emu (numerics): every convolution direction
// and every algorithm it offers against a direct double loop (stride, padding, dilation, 1x1,
// non-square, true convolution), alpha / beta, NHWC and strided descriptors, bf16 storage with
// round-to-nearest-even, TF32 operand rounding (on by default, off with CUDNN_FMA_MATH), the
// bias gradient and cudnnAddTensor, and TF32 in the emulated cuBLAS.
// The rules (bad calls, workspaces, algorithm lists, determinism): test_cudnn_emu_rules.cpp.
#include <cublas_v2.h>

#include "cuda_emu/cudnn_emu_util.h"

using namespace dnn_test;

namespace {

const Shape kShapes[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1},  // 3x3, pad 1
    {2, 3, 9, 8, 5, 3, 2, 2, 1, 2, 3, 1, 1},  // non-square kernel, uneven pad and stride
    {1, 4, 9, 9, 3, 3, 3, 2, 2, 1, 1, 2, 2},  // dilation 2
    {3, 5, 4, 6, 6, 1, 1, 0, 0, 1, 1, 1, 1},  // 1x1 (pointwise)
    {2, 2, 5, 7, 3, 1, 1, 0, 0, 2, 2, 1, 1},  // 1x1 stride 2
};

// Runs every algorithm Get*_v7 reports as SUCCESS in all three directions and compares with
// the direct loop on (TF32-rounded when `tf32`) inputs. Returns the number of runs.
template <typename T>
int check_directions(const Shape& s, cudnnDataType_t dt, cudnnMathType_t math, cudnnConvolutionMode_t mode,
                     bool tf32_inputs, double tol) {
  Handle h;
  Problem p(s, dt, dt, math, mode);
  const bool flip = mode == CUDNN_CONVOLUTION;
  const std::vector<double> x = random_values(s.xs(), 1), w = random_values(s.ws(), 2), dy = random_values(s.ys(), 3);
  const std::vector<double> xr = tf32_inputs ? tf32(x) : x, wr = tf32_inputs ? tf32(w) : w;
  const std::vector<double> dyr = tf32_inputs ? tf32(dy) : dy;
  T* dx_ = dev(as<T>(x));
  T* dw_ = dev(as<T>(w));
  T* ddy = dev(as<T>(dy));
  const T one = 1, zero = 0;
  int runs = 0;

  cudnnConvolutionFwdAlgoPerf_t fwd[8];
  int n = 0;
  DNN_OK(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, 8, &n, fwd));
  const std::vector<double> y_ref = naive_forward(s, xr, wr, flip);
  for (int i = 0; i < n && fwd[i].status == CUDNN_STATUS_SUCCESS; ++i) {
    INFO("forward algo " << fwd[i].algo);
    void* ws = fwd[i].memory ? dev<char>(fwd[i].memory) : nullptr;
    T* y = dev<T>(s.ys());  // NaN-poisoned: beta = 0 must not read it
    DNN_OK(cudnnConvolutionForward(h, &one, p.x, dx_, p.w, dw_, p.conv, fwd[i].algo, ws, fwd[i].memory, &zero, p.y, y));
    CHECK(error_ratio(host(y, s.ys()), y_ref, tol, tol) <= 1);
    cudaFree(y), cudaFree(ws), ++runs;
  }
  cudnnConvolutionBwdDataAlgoPerf_t bd[6];
  DNN_OK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x, 6, &n, bd));
  const std::vector<double> dx_ref = naive_backward_data(s, wr, dyr, flip);
  for (int i = 0; i < n && bd[i].status == CUDNN_STATUS_SUCCESS; ++i) {
    INFO("backward data algo " << bd[i].algo);
    void* ws = bd[i].memory ? dev<char>(bd[i].memory) : nullptr;
    T* gx = dev<T>(s.xs());
    DNN_OK(cudnnConvolutionBackwardData(h, &one, p.w, dw_, p.y, ddy, p.conv, bd[i].algo, ws, bd[i].memory, &zero, p.x,
                                        gx));
    CHECK(error_ratio(host(gx, s.xs()), dx_ref, tol, tol) <= 1);
    cudaFree(gx), cudaFree(ws), ++runs;
  }
  cudnnConvolutionBwdFilterAlgoPerf_t bf[7];
  DNN_OK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, p.conv, p.w, 7, &n, bf));
  const std::vector<double> dw_ref = naive_backward_filter(s, xr, dyr, flip);
  for (int i = 0; i < n && bf[i].status == CUDNN_STATUS_SUCCESS; ++i) {
    INFO("backward filter algo " << bf[i].algo);
    void* ws = bf[i].memory ? dev<char>(bf[i].memory) : nullptr;
    T* gw = dev<T>(s.ws());
    DNN_OK(cudnnConvolutionBackwardFilter(h, &one, p.x, dx_, p.y, ddy, p.conv, bf[i].algo, ws, bf[i].memory, &zero, p.w,
                                          gw));
    CHECK(error_ratio(host(gw, s.ws()), dw_ref, tol, tol) <= 1);
    cudaFree(gw), cudaFree(ws), ++runs;
  }
  cudaFree(dx_), cudaFree(dw_), cudaFree(ddy);
  return runs;
}

}  // namespace

TEST_CASE("cudnn_emu: every algorithm of every direction matches a direct double loop", "[cuda_emu]") {
  for (const Shape& s : kShapes) {
    CAPTURE(s.N, s.C, s.H, s.W, s.O, s.kh, s.kw, s.ph, s.pw, s.sh, s.sw, s.dh, s.dw);
    // double data, double compute: the stand-in computes in double.
    CHECK(check_directions<double>(s, CUDNN_DATA_DOUBLE, CUDNN_DEFAULT_MATH, CUDNN_CROSS_CORRELATION, false, 1e-12) >=
          7);
    // float with FMA_MATH: full FP32 products.
    CHECK(check_directions<float>(s, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH, CUDNN_CROSS_CORRELATION, false, 2e-5) >= 7);
    // float with DEFAULT_MATH: TF32 operands, FP32 accumulation.
    CHECK(check_directions<float>(s, CUDNN_DATA_FLOAT, CUDNN_DEFAULT_MATH, CUDNN_CROSS_CORRELATION, true, 2e-5) >= 7);
  }
  // CUDNN_CONVOLUTION: the kernel rotated by 180 degrees, in all three directions.
  CHECK(check_directions<double>(kShapes[1], CUDNN_DATA_DOUBLE, CUDNN_DEFAULT_MATH, CUDNN_CONVOLUTION, false, 1e-12) >=
        7);
  CHECK(check_directions<double>(kShapes[2], CUDNN_DATA_DOUBLE, CUDNN_DEFAULT_MATH, CUDNN_CONVOLUTION, false, 1e-12) >=
        7);
}

TEST_CASE("cudnn_emu: TF32 rounding is on by default and off with CUDNN_FMA_MATH", "[cuda_emu]") {
  // cvt.rna.tf32.f32: 10 mantissa bits, ties away from zero.
  const float a = 1.0f + std::ldexp(1.0f, -11);      // a tie: rounds away to 1 + 2^-10 (RNE would give 1)
  const float b = 1.0f + 3 * std::ldexp(1.0f, -12);  // above the tie: 1 + 2^-10
  const float c = 1.0f + std::ldexp(1.0f, -12);      // below the tie: 1
  const float t = 1.0f + std::ldexp(1.0f, -10);
  CHECK(emu::round_tf32(a) == t);
  CHECK(emu::round_tf32(-a) == -t);
  CHECK(emu::round_tf32(b) == t);
  CHECK(emu::round_tf32(c) == 1.0f);
  CHECK(std::isinf(emu::round_tf32(INFINITY)));
  CHECK(std::isnan(emu::round_tf32(NAN)));

  // A 1x1 convolution of one channel: y = x * w, one product each, so exact expectations.
  const Shape s{1, 1, 1, 4, 1, 1, 1, 0, 0, 1, 1, 1, 1};
  const std::vector<float> x = {a, -a, c, 1.0f}, w = {b};
  float* dx_ = dev(x);
  float* dw_ = dev(w);
  const float one = 1, zero = 0;
  for (cudnnMathType_t math : {CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH, CUDNN_FMA_MATH}) {
    CAPTURE(math);
    const bool rounds = math != CUDNN_FMA_MATH;
    Handle h;
    Problem p(s, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, math);
    float* y = dev<float>(4);
    DNN_OK(cudnnConvolutionForward(h, &one, p.x, dx_, p.w, dw_, p.conv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                   nullptr, 0, &zero, p.y, y));
    const std::vector<float> got = host(y, 4);
    for (int i = 0; i < 4; ++i) {
      const float want = rounds ? emu::round_tf32(x[i]) * emu::round_tf32(w[0]) : x[i] * w[0];
      CHECK(got[i] == want);
    }
    if (rounds) CHECK(got[0] == t * t);             // both operands rounded up
    if (!rounds) CHECK(got[0] == a * b);            // the FP32 product
    CHECK((got[0] == t * t) != (got[0] == a * b));  // and the two differ
    // Backward data: dx = w * dy (both rounded); backward filter: dw = sum x * dy (both rounded).
    float* gx = dev<float>(4);
    DNN_OK(cudnnConvolutionBackwardData(h, &one, p.w, dw_, p.y, dx_, p.conv, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                        dev<char>(1024), 1024, &zero, p.x, gx));
    CHECK(host(gx, 4)[0] == (rounds ? t * t : a * b));
    float* gw = dev<float>(1);
    const Shape s1{1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1};
    Problem p1(s1, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, math);
    float* x1 = dev(std::vector<float>{a});
    float* dy1 = dev(std::vector<float>{b});
    DNN_OK(cudnnConvolutionBackwardFilter(h, &one, p1.x, x1, p1.y, dy1, p1.conv, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                                          dev<char>(1024), 1024, &zero, p1.w, gw));
    CHECK(host(gw, 1)[0] == (rounds ? t * t : a * b));
    cudaFree(y), cudaFree(gx), cudaFree(gw), cudaFree(x1), cudaFree(dy1);
  }
  cudaFree(dx_), cudaFree(dw_);
}

TEST_CASE("cudnn_emu: alpha and beta blend into y, which beta = 0 never reads", "[cuda_emu]") {
  const Shape s = kShapes[0];
  const std::vector<double> x = random_values(s.xs(), 4), w = random_values(s.ws(), 5);
  const std::vector<double> ref = naive_forward(s, x, w);
  SECTION("float data, float scalars") {
    Handle h;
    Problem p(s, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH);
    float* dx_ = dev(as<float>(x));
    float* dw_ = dev(as<float>(w));
    float* y = dev<float>(s.ys());  // NaN everywhere
    const float two = 2, zero = 0, one = 1;
    DNN_OK(cudnnConvolutionForward(h, &two, p.x, dx_, p.w, dw_, p.conv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                   nullptr, 0, &zero, p.y, y));
    std::vector<double> want(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) want[i] = 2 * ref[i];
    CHECK(error_ratio(host(y, s.ys()), want, 1e-5, 1e-5) <= 1);  // no NaN from the poisoned y
    DNN_OK(cudnnConvolutionForward(h, &one, p.x, dx_, p.w, dw_, p.conv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                   nullptr, 0, &one, p.y, y));
    for (size_t i = 0; i < ref.size(); ++i) want[i] = 3 * ref[i];  // 2 ref + 1 ref
    CHECK(error_ratio(host(y, s.ys()), want, 1e-5, 1e-5) <= 1);
    cudaFree(dx_), cudaFree(dw_), cudaFree(y);
  }
  SECTION("double data takes double scalars") {
    Handle h;
    Problem p(s, CUDNN_DATA_DOUBLE, CUDNN_DATA_DOUBLE);
    double* dx_ = dev(x);
    double* dw_ = dev(w);
    std::vector<double> y0 = random_values(s.ys(), 6);
    double* y = dev(y0);
    const double alpha = 0.5, beta = -0.25;
    DNN_OK(cudnnConvolutionForward(h, &alpha, p.x, dx_, p.w, dw_, p.conv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                   nullptr, 0, &beta, p.y, y));
    std::vector<double> want(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) want[i] = 0.5 * ref[i] - 0.25 * y0[i];
    CHECK(error_ratio(host(y, s.ys()), want, 1e-13, 1e-13) <= 1);
    cudaFree(dx_), cudaFree(dw_), cudaFree(y);
  }
}

TEST_CASE("cudnn_emu: NHWC and explicitly strided descriptors are honoured", "[cuda_emu]") {
  const Shape s = kShapes[1];
  const int Ho = s.Ho(), Wo = s.Wo();
  const std::vector<double> x = random_values(s.xs(), 7), w = random_values(s.ws(), 8), dy = random_values(s.ys(), 9);
  Handle h;
  // x NHWC, w NHWC ([k, h, w, c]), y NCHW with gaps: every row padded by 3, every image by 5.
  TensorDesc xd(CUDNN_DATA_DOUBLE, s.N, s.C, s.H, s.W, CUDNN_TENSOR_NHWC);
  FilterDesc wd(CUDNN_DATA_DOUBLE, s.O, s.C, s.kh, s.kw, CUDNN_TENSOR_NHWC);
  TensorDesc yd;
  const int ws_ = 1, hs = Wo + 3, cs = Ho * hs, ns = s.O * cs + 5;
  DNN_OK(cudnnSetTensor4dDescriptorEx(yd, CUDNN_DATA_DOUBLE, s.N, s.O, Ho, Wo, ns, cs, hs, ws_));
  ConvDesc conv(s, CUDNN_DATA_DOUBLE);
  cudnnDataType_t dt;
  int n, c, hh, ww, sn, sc, sh, sw;
  DNN_OK(cudnnGetTensor4dDescriptor(xd, &dt, &n, &c, &hh, &ww, &sn, &sc, &sh, &sw));
  CHECK((sn == s.H * s.W * s.C && sc == 1 && sh == s.W * s.C && sw == s.C));

  std::vector<double> x_nhwc(s.xs()), w_nhwc(s.ws());
  for (int a = 0; a < s.N; ++a)
    for (int ch = 0; ch < s.C; ++ch)
      for (int i = 0; i < s.H; ++i)
        for (int j = 0; j < s.W; ++j)
          x_nhwc[((a * s.H + i) * s.W + j) * s.C + ch] = x[((a * s.C + ch) * s.H + i) * s.W + j];
  for (int o = 0; o < s.O; ++o)
    for (int ch = 0; ch < s.C; ++ch)
      for (int i = 0; i < s.kh; ++i)
        for (int j = 0; j < s.kw; ++j)
          w_nhwc[((o * s.kh + i) * s.kw + j) * s.C + ch] = w[((o * s.C + ch) * s.kh + i) * s.kw + j];
  const size_t y_span = static_cast<size_t>(s.N) * ns;
  auto y_at = [&](int a, int o, int i, int j) { return static_cast<size_t>(a) * ns + o * cs + i * hs + j; };
  std::vector<double> y_strided(y_span, 12345.0), dy_strided(y_span, 0.0);  // 12345: the gaps, never touched
  for (int a = 0; a < s.N; ++a)
    for (int o = 0; o < s.O; ++o)
      for (int i = 0; i < Ho; ++i)
        for (int j = 0; j < Wo; ++j) dy_strided[y_at(a, o, i, j)] = dy[((a * s.O + o) * Ho + i) * Wo + j];

  double* dx_ = dev(x_nhwc);
  double* dw_ = dev(w_nhwc);
  double* y = dev(y_strided);
  double* ddy = dev(dy_strided);
  const double one = 1, zero = 0;
  DNN_OK(cudnnConvolutionForward(h, &one, xd, dx_, wd, dw_, conv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0,
                                 &zero, yd, y));
  const std::vector<double> got = host(y, y_span), ref = naive_forward(s, x, w);
  int gaps_kept = 0, gaps = 0;
  double worst = 0;
  for (int a = 0; a < s.N; ++a)
    for (int o = 0; o < s.O; ++o)
      for (int i = 0; i < Ho; ++i)
        for (int j = 0; j < Wo; ++j)
          worst = std::max(worst, std::fabs(got[y_at(a, o, i, j)] - ref[((a * s.O + o) * Ho + i) * Wo + j]));
  CHECK(worst < 1e-12);
  for (size_t k = 0; k < y_span; ++k) {
    const size_t a = k / ns, r = k % ns, o = r / cs, i = (r % cs) / hs, j = r % hs;
    if (o >= static_cast<size_t>(s.O) || j >= static_cast<size_t>(Wo) || a >= static_cast<size_t>(s.N)) {
      ++gaps;
      gaps_kept += got[k] == 12345.0;
    }
    (void)i;
  }
  CHECK(gaps > 0);
  CHECK(gaps_kept == gaps);

  // Backward data into NHWC dx, backward filter into an NHWC dw, from the strided dy.
  double* gx = dev<double>(s.xs());
  double* gw = dev<double>(s.ws());
  DNN_OK(cudnnConvolutionBackwardData(h, &one, wd, dw_, yd, ddy, conv, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, nullptr, 0,
                                      &zero, xd, gx));
  DNN_OK(cudnnConvolutionBackwardFilter(h, &one, xd, dx_, yd, ddy, conv, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, nullptr,
                                        0, &zero, wd, gw));
  const std::vector<double> gx_h = host(gx, s.xs()), gw_h = host(gw, s.ws());
  const std::vector<double> dx_ref = naive_backward_data(s, w, dy), dw_ref = naive_backward_filter(s, x, dy);
  double wx = 0, wwf = 0;
  for (int a = 0; a < s.N; ++a)
    for (int ch = 0; ch < s.C; ++ch)
      for (int i = 0; i < s.H; ++i)
        for (int j = 0; j < s.W; ++j)
          wx = std::max(
              wx, std::fabs(gx_h[((a * s.H + i) * s.W + j) * s.C + ch] - dx_ref[((a * s.C + ch) * s.H + i) * s.W + j]));
  for (int o = 0; o < s.O; ++o)
    for (int ch = 0; ch < s.C; ++ch)
      for (int i = 0; i < s.kh; ++i)
        for (int j = 0; j < s.kw; ++j)
          wwf = std::max(wwf, std::fabs(gw_h[((o * s.kh + i) * s.kw + j) * s.C + ch] -
                                        dw_ref[((o * s.C + ch) * s.kh + i) * s.kw + j]));
  CHECK(wx < 1e-12);
  CHECK(wwf < 1e-12);
  cudaFree(dx_), cudaFree(dw_), cudaFree(y), cudaFree(ddy), cudaFree(gx), cudaFree(gw);
}

TEST_CASE("cudnn_emu: bf16 tensors compute in float and round to nearest even", "[cuda_emu]") {
  Handle h;
  const float one = 1, zero = 0;
  // y = x0 + x1 + x2 (1x1 kernel of ones over 3 channels): sums exact in float, chosen at and
  // around bf16 ties (bf16 keeps 7 mantissa bits: neighbours of 1 are 1 and 1 + 2^-7).
  const Shape s{1, 3, 1, 4, 1, 1, 1, 0, 0, 1, 1, 1, 1};
  const float e8 = std::ldexp(1.0f, -8), e20 = std::ldexp(1.0f, -20);
  const float ch0[4] = {1, 1, 1, -1}, ch1[4] = {e8, 3 * e8, e8, -e8}, ch2[4] = {0, 0, e20, 0};
  std::vector<uint16_t> x(12);
  for (int j = 0; j < 4; ++j)
    x[j] = emu::float_to_bf16(ch0[j]), x[4 + j] = emu::float_to_bf16(ch1[j]), x[8 + j] = emu::float_to_bf16(ch2[j]);
  for (int k = 0; k < 12; ++k) REQUIRE(emu::bf16_to_float(x[k]) == (k < 4 ? ch0[k] : k < 8 ? ch1[k - 4] : ch2[k - 8]));
  Problem p(s, CUDNN_DATA_BFLOAT16, CUDNN_DATA_FLOAT);
  const uint16_t bf_one = emu::float_to_bf16(1.0f);
  uint16_t* dx_ = dev(x);
  uint16_t* dw_ = dev(std::vector<uint16_t>{bf_one, bf_one, bf_one});
  uint16_t* y = dev<uint16_t>(4);
  DNN_OK(cudnnConvolutionForward(h, &one, p.x, dx_, p.w, dw_, p.conv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr,
                                 0, &zero, p.y, y));
  // 1 + 2^-8: a tie, to the even 1.0 (0x3F80); 1 + 3 * 2^-8: a tie, to the even 1 + 2^-6
  // (0x3F82); 1 + 2^-8 + 2^-20: above the tie, up to 0x3F81; -(1 + 2^-8): to -1 (0xBF80).
  CHECK(host(y, 4) == std::vector<uint16_t>{0x3F80, 0x3F82, 0x3F81, 0xBF80});

  // A general bf16 convolution against the double loop on the bf16 inputs.
  const Shape g = kShapes[0];
  std::vector<double> xv = random_values(g.xs(), 10), wv = random_values(g.ws(), 11);
  std::vector<uint16_t> xb(xv.size()), wb(wv.size());
  for (size_t i = 0; i < xv.size(); ++i)
    xb[i] = emu::float_to_bf16(static_cast<float>(xv[i])), xv[i] = emu::bf16_to_float(xb[i]);
  for (size_t i = 0; i < wv.size(); ++i)
    wb[i] = emu::float_to_bf16(static_cast<float>(wv[i])), wv[i] = emu::bf16_to_float(wb[i]);
  Problem pg(g, CUDNN_DATA_BFLOAT16, CUDNN_DATA_FLOAT);
  uint16_t* gx = dev(xb);
  uint16_t* gw = dev(wb);
  uint16_t* gy = dev<uint16_t>(g.ys());
  DNN_OK(cudnnConvolutionForward(h, &one, pg.x, gx, pg.w, gw, pg.conv, CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
                                 dev<char>(1 << 16), 1 << 16, &zero, pg.y, gy));
  const std::vector<uint16_t> got = host(gy, g.ys());
  const std::vector<double> ref = naive_forward(g, xv, wv);
  std::vector<float> gotf(got.size());
  for (size_t i = 0; i < got.size(); ++i) gotf[i] = emu::bf16_to_float(got[i]);
  CHECK(error_ratio(gotf, ref, 1e-5, 1.0 / 256) <= 1);  // half a bf16 ulp, plus float accumulation
  // and bf16 x / w with double compute is refused
  ConvDesc dconv(g, CUDNN_DATA_DOUBLE);
  CHECK(cudnnConvolutionForward(h, &one, pg.x, gx, pg.w, gw, dconv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr,
                                0, &zero, pg.y, gy) == CUDNN_STATUS_NOT_SUPPORTED);
  cudaFree(dx_), cudaFree(dw_), cudaFree(y), cudaFree(gx), cudaFree(gw), cudaFree(gy);
}

TEST_CASE("cudnn_emu: bias gradient and cudnnAddTensor", "[cuda_emu]") {
  Handle h;
  const int N = 3, K = 4, H = 5, W = 2;
  const std::vector<double> dy = random_values(static_cast<size_t>(N) * K * H * W, 12);
  TensorDesc dyd(CUDNN_DATA_FLOAT, N, K, H, W), dbd(CUDNN_DATA_FLOAT, 1, K, 1, 1);
  float* ddy = dev(as<float>(dy));
  float* db = dev<float>(K);  // NaN
  const float alpha = 2, zero = 0, one = 1;
  DNN_OK(cudnnConvolutionBackwardBias(h, &alpha, dyd, ddy, &zero, dbd, db));
  std::vector<double> want(K, 0.0);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k)
      for (int p = 0; p < H * W; ++p) want[k] += 2 * dy[(n * K + k) * H * W + p];
  CHECK(error_ratio(host(db, K), want, 1e-5, 1e-6) <= 1);
  DNN_OK(cudnnConvolutionBackwardBias(h, &one, dyd, ddy, &one, dbd, db));  // + 1 sum: 3 sums
  for (double& v : want) v *= 1.5;
  CHECK(error_ratio(host(db, K), want, 1e-5, 1e-6) <= 1);
  TensorDesc bad(CUDNN_DATA_FLOAT, 1, K + 1, 1, 1);
  CHECK(cudnnConvolutionBackwardBias(h, &one, dyd, ddy, &zero, bad, db) == CUDNN_STATUS_BAD_PARAM);

  // C = alpha * A + beta * C with A [1, K, 1, 1] broadcast over C [N, K, H, W].
  const std::vector<double> a = random_values(K, 13), c0 = random_values(dy.size(), 14);
  float* da = dev(as<float>(a));
  float* dc = dev<float>(dy.size());  // NaN: beta = 0 must not read it
  DNN_OK(cudnnAddTensor(h, &alpha, dbd, da, &zero, dyd, dc));
  std::vector<double> wc(dy.size());
  for (size_t i = 0; i < wc.size(); ++i) wc[i] = 2 * a[(i / (H * W)) % K];
  CHECK(error_ratio(host(dc, wc.size()), wc, 1e-6, 1e-6) <= 1);
  float* dc2 = dev(as<float>(c0));
  const float half = 0.5f;
  DNN_OK(cudnnAddTensor(h, &one, dbd, da, &half, dyd, dc2));
  for (size_t i = 0; i < wc.size(); ++i) wc[i] = a[(i / (H * W)) % K] + 0.5 * c0[i];
  CHECK(error_ratio(host(dc2, wc.size()), wc, 1e-6, 1e-6) <= 1);
  TensorDesc a_bad(CUDNN_DATA_FLOAT, 1, K, 2, 1);  // 2 is neither 1 nor H
  CHECK(cudnnAddTensor(h, &one, a_bad, da, &zero, dyd, dc) == CUDNN_STATUS_BAD_PARAM);
  cudaFree(ddy), cudaFree(db), cudaFree(da), cudaFree(dc), cudaFree(dc2);
}

TEST_CASE("cudnn_emu: the emulated cuBLAS rounds float GEMM operands to TF32 in TF32 mode", "[cuda_emu]") {
  const float a = 1.0f + std::ldexp(1.0f, -11), b = 1.0f + 3 * std::ldexp(1.0f, -12);
  const float t = 1.0f + std::ldexp(1.0f, -10);
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  const float one = 1, zero = 0;
  // C (2x1) = A (2x2) B (2x1): c0 = a*b + 0, c1 = -a * b + c * 1 with c = 1 + 2^-12 -> 1 under TF32.
  const float c = 1.0f + std::ldexp(1.0f, -12);
  const float A[4] = {a, -a, 0, c}, B[2] = {b, 1};
  float C[2];
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 2, &one, A, 2, B, 2, &zero, C, 2) == CUBLAS_STATUS_SUCCESS);
  CHECK(C[0] == a * b);
  CHECK(C[1] == -a * b + c);
  REQUIRE(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 2, &one, A, 2, B, 2, &zero, C, 2) == CUBLAS_STATUS_SUCCESS);
  CHECK(C[0] == t * t);
  CHECK(C[1] == -t * t + 1.0f);
  float Cb[4];  // two batches of the same product, strided
  const float A2[8] = {a, -a, 0, c, a, -a, 0, c}, B2[4] = {b, 1, b, 1};
  REQUIRE(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 2, &one, A2, 2, 4, B2, 2, 2, &zero, Cb, 2, 2,
                                    2) == CUBLAS_STATUS_SUCCESS);
  CHECK(Cb[2] == t * t);
  CHECK(Cb[3] == -t * t + 1.0f);
  // Double GEMMs never round; back to the default mode, floats are exact again.
  const double Ad[1] = {a}, Bd[1] = {b};
  double Cd[1];
  const double oned = 1, zerod = 0;
  REQUIRE(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &oned, Ad, 1, Bd, 1, &zerod, Cd, 1) ==
          CUBLAS_STATUS_SUCCESS);
  CHECK(Cd[0] == static_cast<double>(a) * static_cast<double>(b));
  // A flag OR-ed on top keeps the mode.
  const auto tf32_flag =
      static_cast<cublasMath_t>(CUBLAS_TF32_TENSOR_OP_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  REQUIRE(cublasSetMathMode(h, tf32_flag) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 2, &one, A, 2, B, 2, &zero, C, 2) == CUBLAS_STATUS_SUCCESS);
  CHECK(C[0] == t * t);
  REQUIRE(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 2, &one, A, 2, B, 2, &zero, C, 2) == CUBLAS_STATUS_SUCCESS);
  CHECK(C[0] == a * b);
  cublasDestroy(h);
}
