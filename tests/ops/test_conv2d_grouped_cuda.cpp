// Grouped and depthwise conv2d on CUDA against the CPU: the hand-written depthwise kernel
// (kernels/conv2d_depthwise.h) in f32 and bf16, forward and both backward passes, on shapes
// with partial tiles, stride 1 and 2, padding, dilation, unequal axes, 3x3 and 5x5 and a
// channel multiplier; its weight gradient is the same bits run after run; other groups, and
// depthwise convs whose tiles do not fit in shared memory, go through cuDNN (the emulator's
// stand-in on build-emu).
//
// Tolerances: f32 results against the CPU in double on the same f32 values. A depthwise output
// or input gradient sums at most M*kh*kw (<= 50) products in FP32: |err| <= 50 * 2^-24 * sum|terms|,
// well inside 1e-5 + 1e-5 |ref| for values in [-1, 1]; the weight gradient adds its products
// in double. bf16: both sides compute in f32 (or double) on the same bf16 values and round once
// to bf16, so they differ by at most one bf16 unit (2^-7 relative) plus the f32 summation
// differences: atol 1e-2, rtol 2^-7.
#include <cmath>

#include "engine/cuda_context.h"
#include "engine/detail/conv2d_grouped.h"
#include "kernels/conv2d_depthwise.h"
#include "test_helpers.h"

using namespace eng;

namespace {

struct Case {
  const char* name;
  int64_t N, C, H, W, O, kh, kw;
  Conv2dParams p;
};
Conv2dParams prm(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups) {
  Conv2dParams p;
  p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw, p.dilation_h = dh, p.dilation_w = dw;
  p.groups = groups;
  return p;
}
const Case kDepthwise[] = {
    {"3x3 s1 p1, partial tiles", 2, 3, 20, 19, 3, 3, 3, prm(1, 1, 1, 1, 1, 1, 3)},
    {"3x3 s2 p1", 1, 4, 35, 33, 4, 3, 3, prm(2, 2, 1, 1, 1, 1, 4)},
    {"5x5 s2 p2", 1, 2, 21, 22, 2, 5, 5, prm(2, 2, 2, 2, 1, 1, 2)},
    {"3x3 s1 dilation 2 p2", 1, 3, 18, 17, 3, 3, 3, prm(1, 1, 2, 2, 2, 2, 3)},
    {"multiplier 2, 3x3 s2", 1, 2, 17, 16, 4, 3, 3, prm(2, 2, 1, 1, 1, 1, 2)},
    {"5x3, stride (1, 2), pad (2, 0), dilation (1, 3)", 1, 2, 9, 40, 2, 5, 3, prm(1, 2, 2, 0, 1, 3, 2)},
};

kern::Conv2dDims dims_of(const Case& c) {
  kern::Conv2dDims d;
  d.N = c.N, d.C = c.C, d.H = c.H, d.W = c.W, d.O = c.O, d.kh = c.kh, d.kw = c.kw;
  d.stride_h = c.p.stride_h, d.stride_w = c.p.stride_w, d.pad_h = c.p.pad_h, d.pad_w = c.p.pad_w;
  d.dil_h = c.p.dilation_h, d.dil_w = c.p.dilation_w, d.groups = c.p.groups;
  d.Ho = kern::conv2d_output_size(d.H, d.kh, d.stride_h, d.pad_h, d.dil_h);
  d.Wo = kern::conv2d_output_size(d.W, d.kw, d.stride_w, d.pad_w, d.dil_w);
  return d;
}

// Runs forward + backward of conv2d on CUDA in `dt` and on the CPU (f64 for f32, bf16 for
// bf16) on the same values, and compares output and the three gradients.
void check_against_cpu(const Case& c, DType dt, double atol, double rtol) {
  const int64_t Cg = c.C / c.p.groups;
  Tensor x0 = test::random_f32({c.N, c.C, c.H, c.W}, 1).to(dt), w0 = test::random_f32({c.O, Cg, c.kh, c.kw}, 2).to(dt);
  Tensor b0 = test::random_f32({c.O}, 3).to(dt);
  const DType cpu_dt = dt == DType::bf16 ? DType::bf16 : DType::f64;
  Tensor xg = test::cuda_leaf(x0), wg = test::cuda_leaf(w0), bg = test::cuda_leaf(b0);
  Tensor xc = test::cpu_leaf(x0.to(cpu_dt)), wc = test::cpu_leaf(w0.to(cpu_dt)), bc = test::cpu_leaf(b0.to(cpu_dt));
  Tensor yg = conv2d(xg, wg, bg, c.p), yc = conv2d(xc, wc, bc, c.p);
  REQUIRE(yg.dtype() == dt);
  Tensor r = test::random_f32(yc.sizes(), 4);
  sum(mul(yg, r.to(dt).cuda())).backward();
  sum(mul(yc, r.to(cpu_dt))).backward();
  REQUIRE_CLOSE(yg.cpu(), yc, atol, rtol);
  REQUIRE_CLOSE(xg.grad().cpu(), xc.grad(), atol, rtol);
  REQUIRE_CLOSE(wg.grad().cpu(), wc.grad(), atol, rtol);
  REQUIRE_CLOSE(bg.grad().cpu(), bc.grad(), atol, rtol);
}

const double kBf16Rtol = std::ldexp(1.0, -7);

}  // namespace

TEST_CASE("conv2d depthwise cuda matches cpu (f32): forward, backward data, backward weight", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (const Case& c : kDepthwise) {
    INFO(c.name);
    const kern::Conv2dDims d = dims_of(c);
    REQUIRE(std::string(detail::grouped_conv_path(d, zeros({1}).cuda())) == "depthwise");
    check_against_cpu(c, DType::f32, 1e-5, 1e-5);
  }
}

TEST_CASE("conv2d depthwise cuda matches cpu (bf16)", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  for (const Case& c : kDepthwise) {
    INFO(c.name);
    check_against_cpu(c, DType::bf16, 1e-2, kBf16Rtol);
  }
}

TEST_CASE("conv2d depthwise cuda: f64 forward and gradients match the cpu in double", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const Case& c = kDepthwise[1];
  Tensor x0 = test::leaf({c.N, c.C, c.H, c.W}, 5).detach(), w0 = test::leaf({c.O, 1, c.kh, c.kw}, 6).detach();
  Tensor xg = test::cuda_leaf(x0), wg = test::cuda_leaf(w0), xc = test::cpu_leaf(x0), wc = test::cpu_leaf(w0);
  Tensor none;
  Tensor yg = conv2d(xg, wg, none, c.p), yc = conv2d(xc, wc, none, c.p);
  sum(mul(yg, yg)).backward();
  sum(mul(yc, yc)).backward();
  REQUIRE_CLOSE(yg.cpu(), yc, 1e-12, 1e-12);
  REQUIRE_CLOSE(xg.grad().cpu(), xc.grad(), 1e-12, 1e-12);
  REQUIRE_CLOSE(wg.grad().cpu(), wc.grad(), 1e-12, 1e-12);
}

TEST_CASE("conv2d depthwise cuda: the weight gradient is the same bits run after run", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const Case& c = kDepthwise[0];
  Tensor x = test::random_f32({c.N, c.C, c.H, c.W}, 7).cuda(), w0 = test::random_f32({c.O, 1, 3, 3}, 8);
  Tensor r = test::random_f32({c.N, c.O, c.H, c.W}, 9).cuda();
  std::vector<float> first;
  for (int rep = 0; rep < 3; ++rep) {
    Tensor w = test::cuda_leaf(w0);
    Tensor none;
    sum(mul(conv2d(x, w, none, c.p), r)).backward();
    const std::vector<float> got = w.grad().cpu().to_vector<float>();
    if (rep == 0) first = got;
    REQUIRE(got == first);
  }
}

TEST_CASE("conv2d grouped cuda (cuDNN, groups not depthwise) matches cpu (f32 and bf16)", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const Case c{"groups 2, 3x3 s2 p1", 2, 4, 11, 10, 6, 3, 3, prm(2, 2, 1, 1, 1, 1, 2)};
  REQUIRE(std::string(detail::grouped_conv_path(dims_of(c), zeros({1}).cuda())) == "cudnn");
  cuda::set_tf32(false);
  check_against_cpu(c, DType::f32, test::kGemmAtol, test::kGemmRtol);
  check_against_cpu(c, DType::bf16, 1e-2, kBf16Rtol);
}

TEST_CASE("conv2d depthwise cuda: tiles past shared memory go to cuDNN and still match cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // 3x3 with dilation 60: the staged input tile is (15 + 120 + 1)^2 floats = 74 KB > 48 KB.
  const Case c{"3x3 dilation 60", 1, 2, 125, 123, 2, 3, 3, prm(1, 1, 0, 0, 60, 60, 2)};
  REQUIRE_FALSE(kern::cuda::depthwise_supported(dims_of(c), 4));
  REQUIRE(std::string(detail::grouped_conv_path(dims_of(c), zeros({1}).cuda())) == "cudnn");
  check_against_cpu(c, DType::f32, test::kGemmAtol, test::kGemmRtol);
}

TEST_CASE("conv2d grouped cuda: conv2d_relu and bad groups", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Tensor x = test::random_f32({1, 4, 9, 9}, 11), w = test::random_f32({4, 1, 3, 3}, 12), b = test::random_f32({4}, 13);
  const Conv2dParams p = prm(1, 1, 1, 1, 1, 1, 4);
  REQUIRE_CLOSE(conv2d_relu(x.cuda(), w.cuda(), b.cuda(), p).cpu(), relu(conv2d(x, w, b, p)), 1e-5, 1e-5);
  Tensor none;
  REQUIRE_THROWS_WITH(conv2d(x.cuda(), zeros({6, 1, 3, 3}).cuda(), none, prm(1, 1, 1, 1, 1, 1, 3)),
                      "conv2d: groups 3 must divide the input channels (4) and the output channels (6)");
}
