// conv2d's Winograd F(4x4, 3x3) CPU path (kernels/conv2d_winograd.h) against the im2col
// reference: forward (bias, fused ReLU), grad_input, grad_weight, grad_bias on odd shapes,
// the documented error bound against an f64 reference, NaN/Inf, the path switch.
//
// Error bound (docs/_pending/winograd.md): every output element e of each result satisfies
//   |e_f32 - e_f64| <= kWinoTol * max(S)
// where S is the same computation on absolute values in f64 (for y: sum |w||x| + |b|; for gx:
// sum |gy||w|; for gw: sum |gy||x|), max over the whole tensor. im2col meets it with a wide
// margin (its errors are ~1e-7 max(S)); Winograd's measured worst is 1.5e-6 max(S) on VGG /
// ResNet channel counts (im2col's 2e-7).
#include <cstdlib>

#include "conv_path_helpers.h"
#include "kernels/conv2d_winograd.h"
#include "kernels/cpu_isa.h"
#include "test_helpers.h"

using namespace eng;

namespace {

constexpr double kWinoTol = 1e-5;  // the documented bound (measured worst 1.5e-6, see above)
using namespace conv_path_test;

struct Shape4 {
  int64_t N, C, O, H, W, pad;
};

}  // namespace

TEST_CASE("conv2d winograd: matches the im2col reference on odd shapes, forward and backward") {
  // H, W not multiples of 4, C and O not multiples of 4/8, N > 1, padding 0/1/2/3, a 3x3 input.
  const Shape4 shapes[] = {{2, 3, 5, 7, 9, 1},   {3, 17, 19, 13, 11, 0}, {2, 20, 9, 6, 10, 2},
                           {1, 5, 33, 18, 23, 1}, {2, 7, 6, 5, 5, 3},     {1, 2, 3, 3, 3, 0},
                           {2, 24, 40, 14, 14, 1}, {3, 3, 5, 70, 69, 1}};
  // The last one has 3 x 18 x 18 = 972 tiles: two chunks of at most 512, the boundary inside
  // image 1 (the weight gradient accumulates across chunks).
  int seed = 10;
  for (const Shape4& s : shapes) {
    for (const bool relu : {false, true}) {
      for (const bool with_bias : {true, false}) {
        const Conv2dParams p = Conv2dParams::square(1, s.pad, 1);
        const int64_t Ho = s.H + 2 * s.pad - 2, Wo = s.W + 2 * s.pad - 2;
        Tensor x = test::random_f32({s.N, s.C, s.H, s.W}, seed++);
        Tensor w = test::random_f32({s.O, s.C, 3, 3}, seed++, -0.5, 0.5);
        Tensor b = with_bias ? test::random_f32({s.O}, seed++) : Tensor();
        Tensor gy = test::random_f32({s.N, s.O, Ho, Wo}, seed++);
        INFO("N=" << s.N << " C=" << s.C << " O=" << s.O << " H=" << s.H << " W=" << s.W << " pad=" << s.pad
                  << " relu=" << relu << " bias=" << with_bias);
        const Errors wino = errors_of("winograd", x, w, b, p, relu, gy);
        const Errors ref = errors_of("im2col", x, w, b, p, relu, gy);
        INFO("scaled errors winograd y " << wino.y << " gx " << wino.gx << " gw " << wino.gw << " gb " << wino.gb
                                         << "; im2col y " << ref.y << " gx " << ref.gx << " gw " << ref.gw);
        CHECK(wino.y <= kWinoTol);
        CHECK(wino.gx <= kWinoTol);
        CHECK(wino.gw <= kWinoTol);
        CHECK(wino.gb <= 1e-6);
        CHECK(ref.y <= kWinoTol);
        // The Winograd result really differs from im2col's bits (the path ran) but not in shape.
        const Result a = run("winograd", x, w, b, p, relu, Tensor());
        const Result c = run("im2col", x, w, b, p, relu, Tensor());
        REQUIRE(a.y.sizes() == c.y.sizes());
        if (relu) {
          const std::vector<float> v = a.y.to_vector<float>();
          for (float e : v) REQUIRE(e >= 0.0f);
        }
      }
    }
  }
}

TEST_CASE("conv2d winograd: the forced path is the Winograd kernel, not im2col") {
  // Winograd rounds differently: on a 64-channel layer its output is not bit-identical to
  // im2col's (a stub that ran im2col would be).
  Tensor x = test::random_f32({1, 64, 20, 20}, 1), w = test::random_f32({64, 64, 3, 3}, 2, -0.1, 0.1);
  const Conv2dParams p = Conv2dParams::square(1, 1, 1);
  const Result a = run("winograd", x, w, Tensor(), p, false, Tensor());
  const Result c = run("im2col", x, w, Tensor(), p, false, Tensor());
  REQUIRE(a.y.to_vector<float>() != c.y.to_vector<float>());
  REQUIRE(test::compare(a.y, c.y, 1e-4, 1e-3) == "");
  // The kernel called directly with its own per-thread workspace (ws = nullptr) gives the
  // engine's result (which passes an allocator workspace) bit for bit.
  kern::Conv2dDims d;
  d.N = 1, d.C = 64, d.H = 20, d.W = 20, d.O = 64, d.kh = 3, d.kw = 3, d.pad_h = 1, d.pad_w = 1, d.Ho = 20, d.Wo = 20;
  REQUIRE(kern::cpu::conv2d_winograd_workspace_floats(d, false) > 36 * 64 * 64);
  Tensor y = full({1, 64, 20, 20}, NAN, TensorOptions(DType::f32));
  REQUIRE(kern::cpu::conv2d_winograd_forward(d, x.data<float>(), w.data<float>(), nullptr, false, y.data<float>()));
  REQUIRE(y.to_vector<float>() == a.y.to_vector<float>());
}

TEST_CASE("conv2d winograd: error bound on realistic layers (VGG16, ResNet-50, tiny_ssd)") {
  // Channel counts of the real layers at small spatial sizes (the error depends on C and on
  // the values, not on H x W). Weights: He init; inputs: ReLU-like (non-negative) activations.
  const Shape4 layers[] = {{1, 3, 64, 30, 30, 1},   {1, 64, 64, 30, 30, 1},  {1, 256, 256, 19, 19, 1},
                           {1, 512, 512, 12, 12, 1}, {2, 128, 128, 14, 14, 1}, {2, 32, 32, 24, 24, 1}};
  int seed = 100;
  for (const Shape4& s : layers) {
    const Conv2dParams p = Conv2dParams::square(1, s.pad, 1);
    const double std_w = std::sqrt(2.0 / (s.C * 9));
    Tensor x = test::random_f32({s.N, s.C, s.H, s.W}, seed++, 0.0, 2.0);
    Generator gen(seed++);
    Tensor w = (randn({s.O, s.C, 3, 3}, gen, TensorOptions(DType::f64)) * std_w).to(DType::f32);
    Tensor b = test::random_f32({s.O}, seed++, -0.1, 0.1);
    Tensor gy = test::random_f32({s.N, s.O, s.H, s.W}, seed++, -1e-3, 1e-3);
    const Errors wino = errors_of("winograd", x, w, b, p, false, gy);
    const Errors ref = errors_of("im2col", x, w, b, p, false, gy);
    std::printf("winograd error C=%lld O=%lld %lldx%lld: y %.2e (im2col %.2e) gx %.2e (%.2e) gw %.2e (%.2e)\n",
                (long long)s.C, (long long)s.O, (long long)s.H, (long long)s.W, wino.y, ref.y, wino.gx, ref.gx,
                wino.gw, ref.gw);
    CHECK(wino.y <= kWinoTol);
    CHECK(wino.gx <= kWinoTol);
    CHECK(wino.gw <= kWinoTol);
  }
}

TEST_CASE("conv2d winograd: NaN and Inf give the reference's outputs") {
  require_reference_nonfinite("winograd", Conv2dParams::square(1, 1, 1));
}

TEST_CASE("conv2d winograd: gradients of the f32 path agree with the f64 reference, gradcheck in double") {
  // f64 has no Winograd path (it runs im2col even when forced): the double gradcheck checks
  // the front-end with the switch set; the f32 Winograd gradients are checked against the f64
  // reference's analytic gradients (gradchecked in test_conv2d) at the Winograd tolerance, and
  // by finite differences of the f32 path itself in the next test.
  const Conv2dParams p = Conv2dParams::square(1, 1, 1);
  {
    ConvPathGuard guard("winograd");
    Tensor x = test::leaf({2, 3, 6, 5}, 1), w = test::leaf({4, 3, 3, 3}, 2), b = test::leaf({4}, 3);
    REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return conv2d_relu(in[0], in[1], in[2], p); }, {x, w, b});
  }
  Tensor x = test::random_f32({2, 5, 7, 6}, 7), w = test::random_f32({6, 5, 3, 3}, 8);
  Tensor b = test::random_f32({6}, 9), gy = test::random_f32({2, 6, 7, 6}, 10);
  const Errors e = errors_of("winograd", x, w, b, p, true, gy);
  CHECK(e.y <= kWinoTol);
  CHECK(e.gx <= kWinoTol);
  CHECK(e.gw <= kWinoTol);
  CHECK(e.gb <= 1e-6);
}

TEST_CASE("conv2d winograd: finite differences of the f32 Winograd path itself") {
  ConvPathGuard guard("winograd");
  check_finite_differences(Conv2dParams::square(1, 2, 1), 9 + 2, 7 + 2);
}

TEST_CASE("conv2d winograd: an image's result does not depend on the batch it is in") {
  // Distributed evaluation shards a batch across ranks: each image must come out bit for bit
  // as in the whole batch (chunks never span images; the rule counts one image's tiles).
  const Conv2dParams p1 = Conv2dParams::square(1, 1, 1);
  Tensor w = test::random_f32({40, 48, 3, 3}, 14, -0.1, 0.1), b = test::random_f32({40}, 15);
  Tensor x = test::random_f32({3, 48, 44, 36}, 16);
  const Result all = run("winograd", x, w, b, p1, false, Tensor());
  for (int64_t n = 0; n < 3; ++n) {
    const Result one = run("winograd", x.narrow(0, n, 1).contiguous(), w, b, p1, false, Tensor());
    const std::vector<float> a = all.y.narrow(0, n, 1).contiguous().to_vector<float>();
    const std::vector<float> o = one.y.to_vector<float>();
    REQUIRE(a == o);
  }
}

TEST_CASE("conv2d winograd: the transforms give the same bits at every ISA level") {
  // The tile transforms run compiled for the CPU's level (AVX2: 8 lanes in one register) or
  // for the baseline (two SSE registers); with no FMA contraction both round every operation
  // the same, so forward, gx and gw must be equal bit for bit. (On a CPU below AVX2 both runs
  // take the baseline and this only checks determinism.)
  const Conv2dParams p1 = Conv2dParams::square(1, 1, 1);
  Tensor w = test::random_f32({24, 40, 3, 3}, 31, -0.1, 0.1), b = test::random_f32({24}, 32);
  Tensor x = test::random_f32({2, 40, 21, 27}, 33), gy = test::random_f32({2, 24, 21, 27}, 34);
  const Result fast = run("winograd", x, w, b, p1, true, gy);
  const kern::cpu::Isa old = kern::cpu::set_isa_cap(kern::cpu::Isa::Baseline);
  const Result base = run("winograd", x, w, b, p1, true, gy);
  kern::cpu::set_isa_cap(old);
  INFO("active ISA " << kern::cpu::isa_name(kern::cpu::isa_active()));
  CHECK(fast.y.to_vector<float>() == base.y.to_vector<float>());
  CHECK(fast.gx.to_vector<float>() == base.gx.to_vector<float>());
  CHECK(fast.gw.to_vector<float>() == base.gw.to_vector<float>());
  CHECK(fast.gb.to_vector<float>() == base.gb.to_vector<float>());
}

TEST_CASE("conv2d winograd: the cost rule and the path switch") {
  kern::Conv2dDims d;
  d.N = 1, d.C = 64, d.H = 38, d.W = 38, d.O = 64, d.kh = 3, d.kw = 3, d.pad_h = 1, d.pad_w = 1, d.Ho = 38, d.Wo = 38;
  REQUIRE(kern::conv2d_winograd_supported(d));
  REQUIRE(kern::cpu::conv2d_winograd_preferred(d));
  kern::Conv2dDims s = d;
  s.stride_h = s.stride_w = 2, s.Ho = s.Wo = 19;
  REQUIRE_FALSE(kern::conv2d_winograd_supported(s));
  kern::Conv2dDims dil = d;
  dil.dil_h = dil.dil_w = 2;
  REQUIRE_FALSE(kern::conv2d_winograd_supported(dil));
  kern::Conv2dDims small = d;  // 19x19: 25 tiles per image, too few, at any batch (the rule
  small.H = small.W = small.Ho = small.Wo = 19;  // counts one image's tiles: an image's path
  REQUIRE_FALSE(kern::cpu::conv2d_winograd_preferred(small));  // must not depend on its batch)
  small.N = 8;
  REQUIRE_FALSE(kern::cpu::conv2d_winograd_preferred(small));
  kern::Conv2dDims narrow = d;
  narrow.C = 3;  // the RGB input layer: im2col
  REQUIRE_FALSE(kern::cpu::conv2d_winograd_preferred(narrow));
  // The kernel refuses a shape it does not cover with one line.
  float dummy = 0;
  REQUIRE_THROWS_WITH(kern::cpu::conv2d_winograd_forward(s, &dummy, &dummy, nullptr, false, &dummy),
                      Catch::Contains("conv2d_winograd_forward") && Catch::Contains("stride=2"));
  // auto (unset) follows the rule: bit-identical to the forced Winograd path on a preferred
  // shape (64 -> 64, 32x32: 64 tiles) and to im2col on one it rejects (16x16: 16 tiles).
  {
    const Conv2dParams p1 = Conv2dParams::square(1, 1, 1);
    Tensor wb = test::random_f32({64, 64, 3, 3}, 4, -0.1, 0.1), bb = test::random_f32({64}, 5);
    for (const int64_t side : {32, 16}) {
      Tensor xb = test::random_f32({1, 64, side, side}, 6);
      const Result a = run("auto", xb, wb, bb, p1, true, Tensor());
      const Result f = run(side == 32 ? "winograd" : "im2col", xb, wb, bb, p1, true, Tensor());
      const Result other = run(side == 32 ? "im2col" : "winograd", xb, wb, bb, p1, true, Tensor());
      INFO("side " << side);
      REQUIRE(a.y.to_vector<float>() == f.y.to_vector<float>());
      REQUIRE(a.y.to_vector<float>() != other.y.to_vector<float>());
    }
  }
  // A bad ENGINE_CPU_CONV value is one error naming the variable and the value.
  ConvPathGuard guard("fast");
  Tensor x = test::random_f32({1, 4, 6, 6}, 1), w = test::random_f32({4, 4, 3, 3}, 2);
  REQUIRE_THROWS_WITH(conv2d(x, w, Tensor(), Conv2dParams::square(1, 1, 1)),
                      Catch::Contains("ENGINE_CPU_CONV") && Catch::Contains("fast"));
}
