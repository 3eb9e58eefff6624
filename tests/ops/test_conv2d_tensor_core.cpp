// conv2d_igemm (kernels/conv2d_implicit_gemm.h): the implicit-GEMM forward, backward-data and
// backward-filter at FP32, TF32 and BF16. The CPU twins against the direct conv2d reference
// (kern::cpu::conv2d_forward / conv2d_backward); the CUDA kernels (tensor-core kernel 2 and
// CUDA-core kernels 1 and 3) against the CPU twins, with tolerances derived from the precision.
//
// Tolerances. An output is y = sum_{k<K} a_k b_k. With operands rounded to a format with
// relative error at most u (tf32, round to nearest with 10 explicit mantissa bits: u = 2^-11;
// bf16, round to nearest even with 7 bits: u = 2^-8; fp32: 0), each product carries a
// relative error of at most 2u + u^2, so
//   |y_kernel - y_exact| <= (2u + u^2) S + g_K S (+ |y| 2^-8 when the output is stored in bf16)
// where S = sum_k |a_k b_k| (computed exactly: the same conv on |x|, |w|, |dy|) and
// g_K = K 2^-23 bounds float accumulation of K terms in any order (each addition off by at
// most 2^-23 of a partial sum <= S: rounding costs 2^-24, and tensor cores may truncate). For random data S is about
// sqrt(K) |y| typical, i.e. the familiar "2u sqrt(K) times the scale of the products"; we use
// the worst-case form so that the tests are never flaky. Two checks per case:
//   strict:    against the CPU twin with the SAME operand rounding (conv_math_round) in double:
//              only accumulation (and bf16 output rounding) may differ: g_K S (+ |y| 2^-8).
//              A wrong index, a missed tile edge or a missing tf32 conversion fails this.
//   precision: against the exact double result on the unrounded inputs: the bound above.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "test_helpers.h"

#include "engine/cuda_context.h"
#include "kernels/conv2d.h"
#include "kernels/conv2d_implicit_gemm.h"

#ifdef ENGINE_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif

namespace {

using kern::ConvMath;

struct Case {
  const char* name;
  int64_t N, C, H, W, O, kh, kw;
  int64_t sh, sw, ph, pw, dh, dw;
  bool bias, relu;
};

kern::Conv2dDims dims_of(const Case& c) {
  kern::Conv2dDims d;
  d.N = c.N, d.C = c.C, d.H = c.H, d.W = c.W, d.O = c.O, d.kh = c.kh, d.kw = c.kw;
  d.stride_h = c.sh, d.stride_w = c.sw, d.pad_h = c.ph, d.pad_w = c.pw, d.dil_h = c.dh, d.dil_w = c.dw;
  d.Ho = kern::conv2d_output_size(d.H, d.kh, d.stride_h, d.pad_h, d.dil_h);
  d.Wo = kern::conv2d_output_size(d.W, d.kw, d.stride_w, d.pad_w, d.dil_w);
  return d;
}

// Small enough for the emulator (each CUDA case well under 20 s there), every tile edge ragged.
const std::vector<Case> kCases = {
    // SSD fc6 (3x3, dilation 6, pad 6) at 64 -> 96 channels, 11x11, batch 2, bias + ReLU.
    {"fc6 reduced, bias + relu", 2, 64, 11, 11, 96, 3, 3, 1, 1, 6, 6, 6, 6, true, true},
    {"odd sizes, stride 2, dilation 2", 3, 5, 13, 11, 7, 3, 3, 2, 2, 1, 1, 2, 2, true, false},
    {"5x3 kernel, non-square dilation 2x3, stride 2", 2, 6, 17, 15, 9, 5, 3, 2, 2, 3, 3, 2, 3, false, false},
    {"per-axis stride 2x1, pad 0x2, dilation 1x2", 2, 3, 9, 8, 70, 3, 2, 2, 1, 0, 2, 1, 2, true, true},
};

std::vector<double> random_vec(size_t n, uint64_t seed) {
  const eng::Tensor t = test::random_f32({int64_t(n)}, seed);
  return t.to_vector<double>();
}
std::vector<double> abs_vec(std::vector<double> v) {
  for (double& e : v) e = std::fabs(e);
  return v;
}
std::vector<double> rounded(std::vector<double> v, ConvMath m) {
  for (double& e : v) e = kern::conv_math_round(double(float(e)), m);
  return v;
}

enum class Pass { forward, backward_data, backward_filter };
const char* pass_name(Pass p) {
  return p == Pass::forward ? "forward" : p == Pass::backward_data ? "backward-data" : "backward-filter";
}

// The CPU twin of one pass on double data: (in0, in1) = (x, w) forward, (dy, w) backward-data,
// (x, dy) backward-filter.
std::vector<double> twin(Pass pass, const kern::Conv2dDims& d, ConvMath m, const std::vector<double>& in0,
                         const std::vector<double>& in1, const std::vector<double>* bias, bool relu) {
  std::vector<double> out(pass == Pass::forward         ? size_t(d.N * d.O * d.Ho * d.Wo)
                          : pass == Pass::backward_data ? size_t(d.N * d.C * d.H * d.W)
                                                        : size_t(d.O * d.C * d.kh * d.kw));
  if (pass == Pass::forward)
    kern::cpu::conv2d_igemm_forward<double>(d, m, in0.data(), in1.data(), bias ? bias->data() : nullptr, relu,
                                            out.data());
  else if (pass == Pass::backward_data)
    kern::cpu::conv2d_igemm_backward_data<double>(d, m, in0.data(), in1.data(), out.data());
  else
    kern::cpu::conv2d_igemm_backward_filter<double>(d, m, in0.data(), in1.data(), out.data());
  return out;
}

int64_t depth_of(Pass pass, const kern::Conv2dDims& d) {
  return pass == Pass::forward ? d.C * d.kh * d.kw : pass == Pass::backward_data ? d.O * d.kh * d.kw : d.N * d.Ho * d.Wo;
}

}  // namespace

TEST_CASE("conv2d_igemm: conv_math_round gives tf32 (ties away) and bf16 (ties to even)") {
  const float one = 1.0f;
  CHECK(kern::conv_math_round(one, ConvMath::fp32) == one);
  const float t_ulp = std::ldexp(1.0f, -10), b_ulp = std::ldexp(1.0f, -7);
  CHECK(kern::conv_math_round(1.0f + 0.5f * t_ulp, ConvMath::tf32) == 1.0f + t_ulp);  // tie: away
  CHECK(kern::conv_math_round(1.0f + 0.25f * t_ulp, ConvMath::tf32) == 1.0f);
  CHECK(kern::conv_math_round(-1.0f - 0.75f * t_ulp, ConvMath::tf32) == -1.0f - t_ulp);
  CHECK(kern::conv_math_round(1.0f + 0.5f * b_ulp, ConvMath::bf16) == 1.0f);               // tie: to even
  CHECK(kern::conv_math_round(1.0f + 1.5f * b_ulp, ConvMath::bf16) == 1.0f + 2 * b_ulp);  // tie: to even
  CHECK(kern::conv_math_round(1.0f + 0.51f * b_ulp, ConvMath::bf16) == 1.0f + b_ulp);
  CHECK(std::isnan(kern::conv_math_round(NAN, ConvMath::bf16)));
  CHECK(std::isinf(kern::conv_math_round(INFINITY, ConvMath::tf32)));
}

TEST_CASE("conv2d_igemm: cpu twins of forward, backward-data and backward-filter match the direct conv2d") {
  for (const Case& c : kCases) {
    INFO(c.name);
    const kern::Conv2dDims d = dims_of(c);
    REQUIRE(kern::conv2d_implicit_gemm_backward_supported(d));
    const std::vector<double> x = random_vec(d.N * d.C * d.H * d.W, 1), w = random_vec(d.O * d.C * d.kh * d.kw, 2),
                              b = random_vec(d.O, 3), dy = random_vec(d.N * d.O * d.Ho * d.Wo, 4);
    std::vector<double> col(kern::conv2d_col_size(d)), y(dy.size()), gx(x.size()), gw(w.size()), gb(d.O);
    kern::cpu::conv2d_forward<double>(d, x.data(), w.data(), b.data(), y.data(), col.data());
    kern::cpu::conv2d_backward<double>(d, x.data(), w.data(), dy.data(), gx.data(), gw.data(), gb.data(), col.data());
    const std::vector<double> ty = twin(Pass::forward, d, ConvMath::fp32, x, w, &b, false);
    const std::vector<double> ty_relu = twin(Pass::forward, d, ConvMath::fp32, x, w, &b, true);
    const std::vector<double> tgx = twin(Pass::backward_data, d, ConvMath::fp32, dy, w, nullptr, false);
    const std::vector<double> tgw = twin(Pass::backward_filter, d, ConvMath::fp32, x, dy, nullptr, false);
    for (size_t i = 0; i < y.size(); ++i) {
      REQUIRE(ty[i] == Approx(y[i]).margin(1e-12).epsilon(1e-12));
      REQUIRE(ty_relu[i] == Approx(std::max(y[i], 0.0)).margin(1e-12).epsilon(1e-12));
    }
    for (size_t i = 0; i < gx.size(); ++i) REQUIRE(tgx[i] == Approx(gx[i]).margin(1e-12).epsilon(1e-12));
    for (size_t i = 0; i < gw.size(); ++i) REQUIRE(tgw[i] == Approx(gw[i]).margin(1e-12).epsilon(1e-12));
  }
}

TEST_CASE("conv2d_igemm: backward-data hand-checked with stride 2 and dilation 2") {
  // 1 -> 1 channel, 1x2 kernel w = (1, 10), dilation 2, stride 2, no padding, x 1x5 -> y 1x2:
  // y[0] = x0 + 10 x2, y[1] = x2 + 10 x4. So dx = (dy0, 0, 10 dy0 + dy1, 0, 10 dy1).
  kern::Conv2dDims d;
  d.N = 1, d.C = 1, d.H = 1, d.W = 5, d.O = 1, d.kh = 1, d.kw = 2, d.stride_w = 2, d.dil_w = 2;
  d.Ho = 1, d.Wo = kern::conv2d_output_size(5, 2, 2, 0, 2);
  REQUIRE(d.Wo == 2);
  const std::vector<double> dy = {3, 5}, w = {1, 10}, x = {1, 2, 3, 4, 5};
  std::vector<double> dx(5), dw(2);
  kern::cpu::conv2d_igemm_backward_data<double>(d, ConvMath::fp32, dy.data(), w.data(), dx.data());
  REQUIRE(dx == std::vector<double>{3, 0, 35, 0, 50});
  kern::cpu::conv2d_igemm_backward_filter<double>(d, ConvMath::fp32, x.data(), dy.data(), dw.data());
  REQUIRE(dw == std::vector<double>{3 * 1 + 5 * 3, 3 * 3 + 5 * 5});
  // Unsupported dims: one line, no crash.
  kern::Conv2dDims huge = d;
  huge.N = int64_t(1) << 32;
  REQUIRE_THROWS_WITH(kern::cpu::conv2d_igemm_backward_filter<double>(huge, ConvMath::fp32, nullptr, nullptr, nullptr),
                      Catch::Contains("conv2d_igemm_backward_filter") && Catch::Contains("x [4294967296,1,1,5]"));
}

#ifdef ENGINE_WITH_CUDA
namespace {

template <typename T>
struct DeviceBuf {
  T* p = nullptr;
  explicit DeviceBuf(const std::vector<T>& host) {
    REQUIRE(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(host.size(), 1) * sizeof(T)) == cudaSuccess);
    if (!host.empty()) REQUIRE(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  std::vector<T> read(size_t n) const {
    std::vector<T> h(n);
    REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
  }
  ~DeviceBuf() { cudaFree(p); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;
};

std::vector<float> to_f32(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }
std::vector<__nv_bfloat16> to_bf16(const std::vector<double>& v) {
  std::vector<__nv_bfloat16> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = __float2bfloat16(float(v[i]));
  return r;
}

// Runs one pass on the device at `math` and returns the output as doubles.
std::vector<double> run_cuda(Pass pass, const kern::Conv2dDims& d, ConvMath m, const std::vector<double>& in0,
                             const std::vector<double>& in1, const std::vector<double>* bias, bool relu,
                             size_t out_n) {
  const kern::Stream st = eng::cuda::stream();
  std::vector<double> result(out_n);
  if (m == ConvMath::bf16) {
    DeviceBuf<__nv_bfloat16> a(to_bf16(in0)), b(to_bf16(in1)), bb(bias ? to_bf16(*bias) : std::vector<__nv_bfloat16>());
    DeviceBuf<__nv_bfloat16> out(std::vector<__nv_bfloat16>(out_n, __float2bfloat16(12345.0f)));
    if (pass == Pass::forward)
      kern::cuda::conv2d_igemm_forward(d, a.p, b.p, bias ? bb.p : nullptr, relu, out.p, st);
    else if (pass == Pass::backward_data)
      kern::cuda::conv2d_igemm_backward_data(d, a.p, b.p, out.p, st);
    else
      kern::cuda::conv2d_igemm_backward_filter(d, a.p, b.p, out.p, st);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const std::vector<__nv_bfloat16> h = out.read(out_n);
    for (size_t i = 0; i < out_n; ++i) result[i] = __bfloat162float(h[i]);
  } else {
    DeviceBuf<float> a(to_f32(in0)), b(to_f32(in1)), bb(bias ? to_f32(*bias) : std::vector<float>());
    DeviceBuf<float> out(std::vector<float>(out_n, 12345.0f));
    if (pass == Pass::forward)
      kern::cuda::conv2d_igemm_forward(d, m, a.p, b.p, bias ? bb.p : nullptr, relu, out.p, st);
    else if (pass == Pass::backward_data)
      kern::cuda::conv2d_igemm_backward_data(d, m, a.p, b.p, out.p, st);
    else
      kern::cuda::conv2d_igemm_backward_filter(d, m, a.p, b.p, out.p, st);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const std::vector<float> h = out.read(out_n);
    for (size_t i = 0; i < out_n; ++i) result[i] = h[i];
  }
  return result;
}

void check_pass(Pass pass, ConvMath m) {
  const double u = m == ConvMath::fp32 ? 0.0 : m == ConvMath::tf32 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
  const double out_round = m == ConvMath::bf16 ? std::ldexp(1.0, -8) : 0.0;
  for (const Case& c : kCases) {
    const kern::Conv2dDims d = dims_of(c);
    INFO(c.name << ", " << pass_name(pass) << ", math " << int(m));
    const std::vector<double> x = random_vec(d.N * d.C * d.H * d.W, 11), w = random_vec(d.O * d.C * d.kh * d.kw, 12),
                              b = random_vec(d.O, 13), dy = random_vec(d.N * d.O * d.Ho * d.Wo, 14);
    const std::vector<double>& in0 = pass == Pass::backward_data ? dy : x;
    const std::vector<double>& in1 = pass == Pass::forward ? w : pass == Pass::backward_data ? w : dy;
    const bool fwd = pass == Pass::forward;
    const std::vector<double>* bias = fwd && c.bias ? &b : nullptr;
    const bool relu = fwd && c.relu;
    // The references: exact; same operand rounding; and S = sum |a b| (the conv of |inputs|).
    const std::vector<double> exact = twin(pass, d, ConvMath::fp32, in0, in1, bias, relu);
    // bf16 bias is rounded too (it is stored in bf16); tf32 and fp32 add the float bias.
    std::vector<double> b_m = bias && m == ConvMath::bf16 ? rounded(*bias, m) : (bias ? *bias : std::vector<double>());
    const std::vector<double> same = twin(pass, d, m, in0, in1, bias ? &b_m : nullptr, relu);
    const std::vector<double> S = twin(pass, d, ConvMath::fp32, abs_vec(in0), abs_vec(in1), nullptr, false);
    const std::vector<double> got = run_cuda(pass, d, m, in0, in1, bias, relu, exact.size());
    const double gK = double(depth_of(pass, d)) * std::ldexp(1.0, -23);
    for (size_t i = 0; i < got.size(); ++i) {
      // The bias (|b| < 1) is one more term of the sum; ReLU only shrinks differences.
      const double s = S[i] + (bias ? 1.0 : 0.0);
      const double strict = gK * s + out_round * std::fabs(same[i]) + 1e-30;
      const double precision = (2 * u + u * u) * s + (bias && m == ConvMath::bf16 ? u : 0.0) + strict;
      INFO("element " << i << ": got " << got[i] << ", same-rounding " << same[i] << ", exact " << exact[i]
                      << ", S " << S[i]);
      REQUIRE(std::fabs(got[i] - same[i]) <= strict);
      REQUIRE(std::fabs(got[i] - exact[i]) <= precision);
    }
  }
}

}  // namespace

TEST_CASE("conv2d_igemm: cuda forward matches the cpu twin in fp32, tf32 and bf16", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (ConvMath m : {ConvMath::fp32, ConvMath::tf32, ConvMath::bf16}) check_pass(Pass::forward, m);
}

TEST_CASE("conv2d_igemm: cuda backward-data matches the cpu twin in fp32, tf32 and bf16", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (ConvMath m : {ConvMath::fp32, ConvMath::tf32, ConvMath::bf16}) check_pass(Pass::backward_data, m);
}

TEST_CASE("conv2d_igemm: cuda backward-filter matches the cpu twin in fp32, tf32 and bf16", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (ConvMath m : {ConvMath::fp32, ConvMath::tf32, ConvMath::bf16}) check_pass(Pass::backward_filter, m);
}

TEST_CASE("conv2d_igemm: cuda entry points reject bad precision and dims with one line", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const kern::Conv2dDims d = dims_of(kCases[1]);
  REQUIRE_THROWS_WITH(kern::cuda::conv2d_igemm_forward(d, ConvMath::bf16, static_cast<const float*>(nullptr), nullptr,
                                                       nullptr, false, static_cast<float*>(nullptr), eng::cuda::stream()),
                      Catch::Contains("conv2d_igemm_forward") && Catch::Contains("bf16"));
  kern::Conv2dDims huge = d;
  huge.N = int64_t(1) << 32;
  REQUIRE_THROWS_WITH(kern::cuda::conv2d_igemm_backward_data(huge, ConvMath::tf32, static_cast<const float*>(nullptr),
                                                             nullptr, static_cast<float*>(nullptr), eng::cuda::stream()),
                      Catch::Contains("conv2d_igemm_backward_data"));
}
#endif
