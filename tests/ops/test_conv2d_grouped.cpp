// Grouped and depthwise conv2d on the CPU (groups > 1): against a direct grouped loop in
// double written here (forward and the three gradients), against G plain conv2d calls on
// channel slices, double-precision gradcheck (stride 1 and 2, padding, dilation, channel
// multiplier), the direct depthwise loops against the per-slice reference, bf16 against f32
// rounded once, nn::Conv2d's grouped weight, and the bad-groups
// errors.
#include "engine/nn/layers.h"
#include "kernels/conv2d_depthwise.h"
#include "test_helpers.h"

using namespace eng;

namespace {

Conv2dParams gparams(int64_t stride, int64_t pad, int64_t dil, int64_t groups) {
  Conv2dParams p = Conv2dParams::square(stride, pad, dil);
  p.groups = groups;
  return p;
}

// Direct grouped convolution in double (independent of the kernels): output channel o reads
// input channels g*Cg .. g*Cg + Cg - 1 with g = o / (O / G); the gradients term by term.
struct Direct {
  std::vector<double> y, gx, gw, gb;
};
Direct direct(const Tensor& xt, const Tensor& wt, const Tensor& bt, const Conv2dParams& p, const Tensor& gyt) {
  const int64_t N = xt.size(0), C = xt.size(1), H = xt.size(2), W = xt.size(3);
  const int64_t O = wt.size(0), Cg = wt.size(1), KH = wt.size(2), KW = wt.size(3), Og = O / p.groups;
  const int64_t Ho = (H + 2 * p.pad_h - p.dilation_h * (KH - 1) - 1) / p.stride_h + 1;
  const int64_t Wo = (W + 2 * p.pad_w - p.dilation_w * (KW - 1) - 1) / p.stride_w + 1;
  const std::vector<double> x = xt.to_vector<double>(), w = wt.to_vector<double>(), gy = gyt.to_vector<double>();
  const std::vector<double> b = bt.defined() ? bt.to_vector<double>() : std::vector<double>(O, 0.0);
  Direct r;
  r.y.assign(N * O * Ho * Wo, 0.0);
  r.gx.assign(x.size(), 0.0);
  r.gw.assign(w.size(), 0.0);
  r.gb.assign(O, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          const int64_t yi = ((n * O + o) * Ho + oh) * Wo + ow;
          double acc = b[o];
          r.gb[o] += gy[yi];
          for (int64_t cg = 0; cg < Cg; ++cg)
            for (int64_t i = 0; i < KH; ++i)
              for (int64_t j = 0; j < KW; ++j) {
                const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h;
                const int64_t v = ow * p.stride_w - p.pad_w + j * p.dilation_w;
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                const int64_t c = (o / Og) * Cg + cg;
                const int64_t xi = ((n * C + c) * H + h) * W + v, wi = ((o * Cg + cg) * KH + i) * KW + j;
                acc += w[wi] * x[xi];
                r.gx[xi] += gy[yi] * w[wi];
                r.gw[wi] += gy[yi] * x[xi];
              }
          r.y[yi] = acc;
        }
  return r;
}

Tensor from(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s); }

struct Case {
  const char* name;
  int64_t N, C, H, W, O, k, stride, pad, dil, groups;
};
const Case kCases[] = {
    {"groups 2, 3x3 s1 p1", 2, 4, 7, 6, 6, 3, 1, 1, 1, 2},
    {"depthwise 3x3 s1 p1", 2, 3, 6, 7, 3, 3, 1, 1, 1, 3},
    {"depthwise 3x3 s2 p1", 1, 4, 9, 8, 4, 3, 2, 1, 1, 4},
    {"depthwise 5x5 s2 p2", 1, 2, 9, 9, 2, 5, 2, 2, 1, 2},
    {"depthwise 3x3 dilation 2 p2", 1, 3, 8, 7, 3, 3, 1, 2, 2, 3},
    {"depthwise multiplier 2, s2", 1, 2, 7, 7, 4, 3, 2, 1, 1, 2},
    {"groups 3, 1x1", 2, 6, 4, 5, 9, 1, 1, 0, 1, 3},
};

}  // namespace

TEST_CASE("conv2d grouped: forward and gradients match a direct grouped loop in double") {
  for (const Case& c : kCases) {
    INFO(c.name);
    const Conv2dParams p = gparams(c.stride, c.pad, c.dil, c.groups);
    Tensor x = test::leaf({c.N, c.C, c.H, c.W}, 1), w = test::leaf({c.O, c.C / c.groups, c.k, c.k}, 2);
    Tensor b = test::leaf({c.O}, 3);
    Tensor y = conv2d(x, w, b, p);
    Tensor gy = test::leaf(y.sizes(), 4).detach();
    sum(mul(y, gy)).backward();
    const Direct r = direct(x, w, b, p, gy);
    REQUIRE_CLOSE(y, from(r.y, y.sizes()), 1e-12, 1e-12);
    REQUIRE_CLOSE(x.grad(), from(r.gx, x.sizes()), 1e-12, 1e-12);
    REQUIRE_CLOSE(w.grad(), from(r.gw, w.sizes()), 1e-12, 1e-12);
    REQUIRE_CLOSE(b.grad(), from(r.gb, b.sizes()), 1e-12, 1e-12);
  }
}

TEST_CASE("conv2d grouped: equals G plain convolutions on channel slices") {
  NoGradGuard ng;
  const int64_t G = 3, C = 6, O = 9;
  Tensor x = test::leaf({2, C, 8, 7}, 5).detach(), w = test::leaf({O, C / G, 3, 3}, 6).detach();
  Tensor b = test::leaf({O}, 7).detach();
  Tensor y = conv2d(x, w, b, gparams(2, 1, 1, G));
  std::vector<Tensor> parts;
  for (int64_t g = 0; g < G; ++g)
    parts.push_back(conv2d(x.narrow(1, g * C / G, C / G).contiguous(), w.narrow(0, g * O / G, O / G).contiguous(),
                           b.narrow(0, g * O / G, O / G).contiguous(), Conv2dParams::square(2, 1, 1)));
  REQUIRE_CLOSE(y, concat(parts, 1), 1e-13, 1e-13);
}

TEST_CASE("conv2d grouped: gradcheck in double (stride 1 and 2, padding, dilation, multiplier)") {
  for (const Case& c : kCases) {
    INFO(c.name);
    const Conv2dParams p = gparams(c.stride, c.pad, c.dil, c.groups);
    Tensor x = test::leaf({1, c.C, c.H, c.W}, 11), w = test::leaf({c.O, c.C / c.groups, c.k, c.k}, 12);
    Tensor b = test::leaf({c.O}, 13);
    REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], p); }, {x, w, b});
  }
  // conv2d_relu with groups: the same node with the ReLU mask (inputs away from the kink).
  Tensor x = test::leaf({1, 4, 6, 6}, 21), w = test::leaf({4, 1, 3, 3}, 22), b = test::leaf({4}, 23, 0.05, 0.1);
  REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return conv2d_relu(in[0], in[1], in[2], gparams(1, 1, 1, 4)); },
                    {x, w, b});
}

TEST_CASE("conv2d grouped: bf16 on the CPU is the f32 result rounded once") {
  NoGradGuard ng;
  Tensor x = test::random_f32({2, 8, 9, 9}, 31).to(DType::bf16), w = test::random_f32({8, 1, 3, 3}, 32).to(DType::bf16);
  Tensor b = test::random_f32({8}, 33).to(DType::bf16);
  const Conv2dParams p = gparams(2, 1, 1, 8);
  Tensor y = conv2d(x, w, b, p);
  REQUIRE(y.dtype() == DType::bf16);
  Tensor ref = conv2d(x.to(DType::f32), w.to(DType::f32), b.to(DType::f32), p).to(DType::bf16);
  REQUIRE(y.to_vector<double>() == ref.to_vector<double>());
}

TEST_CASE("nn::Conv2d with groups: torch's weight layout and fan-in") {
  manual_seed(1);
  nn::Conv2d dw(16, 16, 3, 2, 1, 1, false, 16);
  REQUIRE(dw.weight.sizes() == Shape{16, 1, 3, 3});
  REQUIRE(dw.params.groups == 16);
  // kaiming_uniform(a = sqrt(5)) with fan_in = (16 / 16) * 9: bound 1/3.
  for (double v : dw.weight.to_vector<double>()) REQUIRE(std::fabs(v) <= 1.0 / 3.0 + 1e-7);
  Tensor y = dw.forward(test::random_f32({2, 16, 10, 10}, 41));
  REQUIRE(y.sizes() == Shape{2, 16, 5, 5});
  nn::Conv2d g2(8, 12, 1, 1, 0, 1, true, 4);
  REQUIRE(g2.weight.sizes() == Shape{12, 2, 1, 1});
}

TEST_CASE("conv2d grouped: groups that do not divide the channels give one line") {
  Tensor none;
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 4, 8, 8}), zeros({6, 1, 3, 3}), none, gparams(1, 1, 1, 3)),
                      "conv2d: groups 3 must divide the input channels (4) and the output channels (6)");
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 6, 8, 8}), zeros({4, 2, 3, 3}), none, gparams(1, 1, 1, 3)),
                      "conv2d: groups 3 must divide the input channels (6) and the output channels (4)");
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 4, 8, 8}), zeros({4, 2, 3, 3}), none, gparams(1, 1, 1, 4)),
                      Catch::Contains("conv2d: input [1, 4, 8, 8] has 4 channels but weight [4, 2, 3, 3] with groups "
                                      "4 expects 8"));
  REQUIRE_THROWS_WITH(conv2d_relu(zeros({1, 4, 8, 8}), zeros({4, 1, 3, 3}), none, gparams(1, 1, 1, 0)),
                      "conv2d_relu: groups 0 must divide the input channels (4) and the output channels (4)");
  REQUIRE_THROWS_WITH(nn::Conv2d(16, 24, 3, 1, 1, 1, true, 5),
                      "Conv2d: groups 5 must divide in_channels (16) and out_channels (24)");
  REQUIRE_THROWS_WITH(nn::Conv2d(16, 24, 3, 1, 1, 1, true, 0),
                      "Conv2d: groups 0 must divide in_channels (16) and out_channels (24)");
}

TEST_CASE("conv2d depthwise cpu: the direct loops match the per-slice im2col reference") {
  struct D {
    int64_t N, C, M, H, W, kh, kw, sh, sw, ph, pw, dh, dw;
  };
  const D cases[] = {{2, 3, 1, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1}, {1, 4, 1, 11, 10, 5, 5, 2, 2, 2, 2, 1, 1},
                     {1, 2, 3, 9, 12, 3, 5, 2, 1, 0, 2, 2, 1}, {2, 2, 2, 7, 7, 3, 3, 3, 2, 3, 1, 1, 3}};
  for (const D& c : cases) {
    kern::Conv2dDims d;
    d.N = c.N, d.C = c.C, d.O = c.C * c.M, d.groups = c.C, d.H = c.H, d.W = c.W, d.kh = c.kh, d.kw = c.kw;
    d.stride_h = c.sh, d.stride_w = c.sw, d.pad_h = c.ph, d.pad_w = c.pw, d.dil_h = c.dh, d.dil_w = c.dw;
    d.Ho = kern::conv2d_output_size(d.H, d.kh, d.stride_h, d.pad_h, d.dil_h);
    d.Wo = kern::conv2d_output_size(d.W, d.kw, d.stride_w, d.pad_w, d.dil_w);
    INFO("C " << d.C << " O " << d.O << " k " << d.kh << "x" << d.kw << " s " << d.stride_h << "x" << d.stride_w);
    REQUIRE(kern::conv2d_is_depthwise(d));
    const std::vector<double> x = test::leaf({d.N * d.C * d.H * d.W}, 51).detach().to_vector<double>();
    const std::vector<double> w = test::leaf({d.O * d.kh * d.kw}, 52).detach().to_vector<double>();
    const std::vector<double> b = test::leaf({d.O}, 53).detach().to_vector<double>();
    const std::vector<double> gy = test::leaf({d.N * d.O * d.Ho * d.Wo}, 54).detach().to_vector<double>();
    std::vector<double> y1(gy.size()), y2(gy.size()), gx1(x.size()), gx2(x.size()), gw1(w.size()), gw2(w.size()),
        gb1(b.size()), gb2(b.size()), col(kern::conv2d_grouped_col_size(d) + 1), tmp(w.size());
    kern::cpu::depthwise_forward<double>(d, x.data(), w.data(), b.data(), y1.data());
    kern::cpu::conv2d_grouped_forward<double>(d, x.data(), w.data(), b.data(), y2.data(), col.data());
    kern::cpu::depthwise_backward<double>(d, x.data(), w.data(), gy.data(), gx1.data(), gw1.data(), gb1.data());
    kern::cpu::conv2d_grouped_backward<double>(d, x.data(), w.data(), gy.data(), gx2.data(), gw2.data(), gb2.data(),
                                               col.data(), tmp.data());
    auto close = [](const std::vector<double>& a, const std::vector<double>& r) {
      for (size_t i = 0; i < a.size(); ++i)
        if (!(std::fabs(a[i] - r[i]) <= 1e-12 + 1e-12 * std::fabs(r[i]))) return false;
      return true;
    };
    CHECK(close(y1, y2));
    CHECK(close(gx1, gx2));
    CHECK(close(gw1, gw2));
    CHECK(close(gb1, gb2));
  }
  kern::Conv2dDims g2;
  g2.C = 4, g2.O = 4, g2.groups = 2;
  REQUIRE_THROWS_WITH(kern::cpu::depthwise_forward<float>(g2, nullptr, nullptr, nullptr, nullptr),
                      "depthwise_forward: not depthwise (C 4, O 4, groups 2)");
}
