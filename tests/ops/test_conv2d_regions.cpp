// conv2d's padding-free regions CPU path (kernels/conv2d_regions.h) against the im2col
// reference: the regions of fc6 by hand, forward (bias, fused ReLU) and the three gradients on
// odd shapes at the scaled-error bound of the Winograd tests, NaN/Inf, the plain and the AVX2
// micro-kernels, thread counts and batches that must not change an image's bits, gradcheck
// through the front-end, and the cost rule.
#include <omp.h>

#include <cmath>

#include "conv_path_helpers.h"
#include "kernels/conv2d_regions.h"
#include "kernels/conv2d_taps.h"
#include "kernels/cpu_isa.h"
#include "test_helpers.h"

using namespace eng;
using namespace conv_path_test;

namespace {

constexpr double kTol = 1e-5;  // of max(S), as the Winograd path (measured below: ~1e-7)

struct RShape {
  int64_t N, C, O, H, W, k, pad, dil;
};

kern::Conv2dDims dims_of(const RShape& s) {
  kern::Conv2dDims d;
  d.N = s.N, d.C = s.C, d.O = s.O, d.H = s.H, d.W = s.W, d.kh = d.kw = s.k;
  d.pad_h = d.pad_w = s.pad, d.dil_h = d.dil_w = s.dil;
  d.Ho = kern::conv2d_output_size(s.H, s.k, 1, s.pad, s.dil);
  d.Wo = kern::conv2d_output_size(s.W, s.k, 1, s.pad, s.dil);
  return d;
}

}  // namespace

TEST_CASE("conv2d regions: SSD300's fc6 splits into 3 x 3 regions with the taps inside") {
  const kern::Conv2dDims d = dims_of({1, 512, 1024, 19, 19, 3, 6, 6});
  const std::vector<kern::ConvRegion> r = kern::conv2d_regions(d);
  REQUIRE(r.size() == 9);
  // Rows 0-5 read inside for row taps 1, 2 (row 0 + 6 - 6 = 0), rows 6-12 for all three,
  // rows 13-18 for 0, 1 (row 13 + 12 - 6 = 19 is outside).
  const int64_t lo[3] = {0, 6, 13}, hi[3] = {6, 13, 19}, t0[3] = {1, 0, 0}, t1[3] = {3, 3, 2};
  int64_t pairs = 0;
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) {
      const kern::ConvRegion& g = r[a * 3 + b];
      CHECK(g.r0 == lo[a]);
      CHECK(g.r1 == hi[a]);
      CHECK(g.c0 == lo[b]);
      CHECK(g.c1 == hi[b]);
      CHECK(g.i0 == t0[a]);
      CHECK(g.i1 == t1[a]);
      CHECK(g.j0 == t0[b]);
      CHECK(g.j1 == t1[b]);
      pairs += g.pixels() * g.taps();
    }
  // 62% of the (tap, pixel) pairs: the products the path computes, as conv2d_tap_coverage says.
  CHECK(double(pairs) / (9.0 * 19 * 19) == Approx(kern::conv2d_tap_coverage(d)));
  CHECK(pairs == 45 * 45);
  // The input gradient's convolution has the same geometry here (pad 12 - 6 = 6).
  const kern::Conv2dDims t = kern::cpu::conv2d_regions_transposed(d);
  CHECK(t.C == 1024);
  CHECK(t.O == 512);
  CHECK(t.pad_h == 6);
  CHECK(t.Ho == 19);
  CHECK(t.Wo == 19);
}

TEST_CASE("conv2d regions: matches the im2col reference on odd shapes, forward and backward") {
  // Dilations 1-4, pads from 0 to dil (k - 1), 3x3 and 5x5 kernels, channels past one 256
  // block (300) and row counts that are not multiples of the 6-row micro-kernel, regions
  // whose pixel counts are not multiples of 8, an output smaller than the kernel span, a
  // region of pixels that read only padding (pad 6, dilation 3 on a 2 x 1 input).
  const RShape shapes[] = {{2, 3, 5, 9, 7, 3, 2, 2},    {1, 300, 13, 8, 8, 3, 3, 3}, {2, 16, 70, 11, 13, 3, 6, 6},
                          {1, 8, 7, 12, 9, 5, 4, 2},   {3, 5, 6, 6, 6, 3, 1, 1},    {1, 12, 9, 2, 1, 3, 6, 3},
                          {2, 20, 24, 19, 19, 3, 6, 6}, {1, 7, 11, 10, 5, 3, 0, 2}};
  int seed = 300;
  for (const RShape& s : shapes) {
    const kern::Conv2dDims d = dims_of(s);
    REQUIRE(kern::conv2d_regions_supported(d));
    for (const bool relu : {false, true}) {
      for (const bool with_bias : {true, false}) {
        const Conv2dParams p = Conv2dParams::square(1, s.pad, s.dil);
        Tensor x = test::random_f32({s.N, s.C, s.H, s.W}, seed++);
        Tensor w = test::random_f32({s.O, s.C, s.k, s.k}, seed++, -0.5, 0.5);
        Tensor b = with_bias ? test::random_f32({s.O}, seed++) : Tensor();
        Tensor gy = test::random_f32({s.N, s.O, d.Ho, d.Wo}, seed++);
        INFO("N=" << s.N << " C=" << s.C << " O=" << s.O << " H=" << s.H << " W=" << s.W << " k=" << s.k
                  << " pad=" << s.pad << " dil=" << s.dil << " relu=" << relu << " bias=" << with_bias);
        const Errors e = errors_of("regions", x, w, b, p, relu, gy);
        const Errors ref = errors_of("im2col", x, w, b, p, relu, gy);
        INFO("scaled errors regions y " << e.y << " gx " << e.gx << " gw " << e.gw << " gb " << e.gb
                                        << "; im2col y " << ref.y << " gx " << ref.gx << " gw " << ref.gw);
        CHECK(e.y <= kTol);
        CHECK(e.gx <= kTol);
        CHECK(e.gw <= kTol);
        CHECK(e.gb <= 1e-6);
        if (relu) {
          const Result a = run("regions", x, w, b, p, relu, Tensor());
          for (float v : a.y.to_vector<float>()) REQUIRE(v >= 0.0f);
        }
      }
    }
  }
}

TEST_CASE("conv2d regions: the forced path runs the regions kernel, and the kernel called directly agrees") {
  // Its sums run tap by tap: on fc6's geometry its bits differ from im2col's (a stub that ran
  // im2col would match them), within the bound.
  const RShape s{1, 64, 72, 19, 19, 3, 6, 6};
  const kern::Conv2dDims d = dims_of(s);
  Tensor x = test::random_f32({1, 64, 19, 19}, 1), w = test::random_f32({72, 64, 3, 3}, 2, -0.1, 0.1);
  Tensor b = test::random_f32({72}, 3);
  const Conv2dParams p = Conv2dParams::square(1, 6, 6);
  const Result a = run("regions", x, w, b, p, true, Tensor());
  const Result c = run("im2col", x, w, b, p, true, Tensor());
  REQUIRE(a.y.to_vector<float>() != c.y.to_vector<float>());
  REQUIRE(test::compare(a.y, c.y, 1e-4, 1e-4) == "");
  std::vector<float> ws(kern::cpu::conv2d_regions_forward_workspace(d));
  Tensor y = full({1, 72, 19, 19}, NAN, TensorOptions(DType::f32));
  REQUIRE(kern::cpu::conv2d_regions_forward(d, x.data<float>(), w.data<float>(), b.data<float>(), true,
                                            y.data<float>(), ws.data()));
  REQUIRE(y.to_vector<float>() == a.y.to_vector<float>());
  // A shape it does not cover is one line naming the function.
  kern::Conv2dDims strided = d;
  strided.stride_h = 2;
  REQUIRE_FALSE(kern::conv2d_regions_supported(strided));
  float dummy = 0;
  REQUIRE_THROWS_WITH(kern::cpu::conv2d_regions_forward(strided, &dummy, &dummy, nullptr, false, &dummy, &dummy),
                      Catch::Contains("conv2d_regions_forward"));
}

TEST_CASE("conv2d regions: NaN and Inf give the reference's outputs") {
  // The reference multiplies the padding's zeros by the weight (forward) and by gy (weight
  // gradient): a non-finite weight or gy sends those passes to the reference.
  require_reference_nonfinite("regions", Conv2dParams::square(1, 3, 3));
}

TEST_CASE("conv2d regions: the plain and the AVX2 micro-kernels, thread counts, and batches") {
  const RShape s{3, 40, 50, 15, 15, 3, 4, 4};
  const Conv2dParams p = Conv2dParams::square(1, 4, 4);
  Tensor x = test::random_f32({3, 40, 15, 15}, 11), w = test::random_f32({50, 40, 3, 3}, 12, -0.2, 0.2);
  Tensor b = test::random_f32({50}, 13), gy = test::random_f32({3, 50, 15, 15}, 14);
  const Result all = run("regions", x, w, b, p, false, gy);
  // An image's output does not depend on the batch it is in (distributed evaluation shards
  // batches), nor on the thread count (the row blocks change with it, not any element's sum).
  for (int64_t n = 0; n < 3; ++n) {
    const Result one = run("regions", x.narrow(0, n, 1).contiguous(), w, b, p, false, Tensor());
    REQUIRE(all.y.narrow(0, n, 1).contiguous().to_vector<float>() == one.y.to_vector<float>());
  }
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Result single = run("regions", x, w, b, p, false, gy);
  omp_set_num_threads(threads);
  REQUIRE(single.y.to_vector<float>() == all.y.to_vector<float>());
  REQUIRE(single.gx.to_vector<float>() == all.gx.to_vector<float>());
  // The plain C++ micro-kernel (below AVX2) against the AVX2 + FMA one: the same sums, rounded
  // differently (FMA), both within the bound of the f64 reference.
  const kern::cpu::Isa old = kern::cpu::set_isa_cap(kern::cpu::Isa::Baseline);
  REQUIRE_FALSE(kern::cpu::conv2d_regions_fma());
  const Errors plain = errors_of("regions", x, w, b, p, false, gy);
  kern::cpu::set_isa_cap(old);
  const Errors fast = errors_of("regions", x, w, b, p, false, gy);
  INFO("plain y " << plain.y << " gx " << plain.gx << " gw " << plain.gw << "; fma " << kern::cpu::conv2d_regions_fma()
                  << " y " << fast.y << " gx " << fast.gx);
  CHECK(plain.y <= kTol);
  CHECK(plain.gx <= kTol);
  CHECK(plain.gw <= kTol);
  CHECK(fast.y <= kTol);
  CHECK(fast.gx <= kTol);
}

TEST_CASE("conv2d regions: error bound on fc6's channel counts") {
  // fc6 at its real channel counts on a smaller map (the error depends on C and the values):
  // He-initialised weights, ReLU-like inputs.
  const RShape s{1, 512, 96, 10, 10, 3, 6, 6};
  const kern::Conv2dDims d = dims_of(s);
  const Conv2dParams p = Conv2dParams::square(1, 6, 6);
  Tensor x = test::random_f32({1, 512, 10, 10}, 40, 0.0, 2.0);
  Generator gen(41);
  Tensor w = (randn({96, 512, 3, 3}, gen, TensorOptions(DType::f64)) * std::sqrt(2.0 / 4608)).to(DType::f32);
  Tensor b = test::random_f32({96}, 42, -0.1, 0.1), gy = test::random_f32({1, 96, d.Ho, d.Wo}, 43, -1e-3, 1e-3);
  const Errors e = errors_of("regions", x, w, b, p, false, gy);
  const Errors ref = errors_of("im2col", x, w, b, p, false, gy);
  std::printf("regions error fc6 channels: y %.2e (im2col %.2e) gx %.2e (%.2e) gw %.2e (%.2e)\n", e.y, ref.y, e.gx,
              ref.gx, e.gw, ref.gw);
  CHECK(e.y <= kTol);
  CHECK(e.gx <= kTol);
  CHECK(e.gw <= kTol);
}

TEST_CASE("conv2d regions: gradcheck in double through the front-end, finite differences of the f32 path") {
  // f64 runs im2col even when regions is forced (the path is f32): the double gradcheck checks
  // the front-end with the switch set; the f32 gradients are checked by finite differences of
  // the f32 path itself (conv2d is linear in x and in (w, b): the central difference along v
  // equals <grad, v> up to rounding).
  const Conv2dParams p = Conv2dParams::square(1, 2, 2);
  {
    ConvPathGuard guard("regions");
    Tensor x = test::leaf({2, 3, 6, 5}, 1), w = test::leaf({4, 3, 3, 3}, 2), b = test::leaf({4}, 3);
    REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return conv2d_relu(in[0], in[1], in[2], p); }, {x, w, b});
  }
  ConvPathGuard guard("regions");
  check_finite_differences(p, 9, 7);
}

TEST_CASE("conv2d regions: the cost rule and the path switch") {
  const kern::Conv2dDims fc6 = dims_of({1, 512, 1024, 19, 19, 3, 6, 6});
  REQUIRE(kern::cpu::conv2d_regions_preferred(fc6));
  // SSD512's fc6 (32x32): 77% of the pairs inside, still preferred (its forward + backward
  // measured faster than im2col's, docs/performance.md).
  REQUIRE(kern::cpu::conv2d_regions_preferred(dims_of({1, 512, 1024, 32, 32, 3, 6, 6})));
  // VGG's 3x3 pad-1 layers read 1-10% padding: im2col / Winograd.
  REQUIRE_FALSE(kern::cpu::conv2d_regions_preferred(dims_of({1, 256, 256, 38, 38, 3, 1, 1})));
  REQUIRE_FALSE(kern::cpu::conv2d_regions_preferred(dims_of({1, 512, 512, 10, 10, 3, 1, 1})));
  // Undilated layers stay on im2col / Winograd even where a small map reads much padding.
  REQUIRE_FALSE(kern::cpu::conv2d_regions_preferred(dims_of({1, 256, 256, 4, 4, 3, 1, 1})));
  // Few channels: the packing does not pay.
  REQUIRE_FALSE(kern::cpu::conv2d_regions_preferred(dims_of({1, 16, 1024, 19, 19, 3, 6, 6})));
  // Not covered: stride 2, groups, pad beyond dil (k - 1).
  kern::Conv2dDims s2 = fc6;
  s2.stride_h = s2.stride_w = 2;
  REQUIRE_FALSE(kern::conv2d_regions_supported(s2));
  kern::Conv2dDims g = fc6;
  g.groups = 2;
  REQUIRE_FALSE(kern::conv2d_regions_supported(g));
  REQUIRE_FALSE(kern::conv2d_regions_supported(dims_of({1, 8, 8, 9, 9, 3, 3, 1})));
  // auto follows the rule: fc6-like dilated layer = the forced regions path, bit for bit;
  // an undilated 3x3 layer on a small map (no Winograd) = im2col.
  Tensor wb = test::random_f32({64, 64, 3, 3}, 4, -0.1, 0.1), bb = test::random_f32({64}, 5);
  Tensor xb = test::random_f32({1, 64, 19, 19}, 6);
  const Conv2dParams dil = Conv2dParams::square(1, 6, 6), plain = Conv2dParams::square(1, 1, 1);
  REQUIRE(run("auto", xb, wb, bb, dil, true, Tensor()).y.to_vector<float>() ==
          run("regions", xb, wb, bb, dil, true, Tensor()).y.to_vector<float>());
  REQUIRE(run("auto", xb, wb, bb, plain, true, Tensor()).y.to_vector<float>() ==
          run("im2col", xb, wb, bb, plain, true, Tensor()).y.to_vector<float>());
  // f64 runs im2col whatever the switch says.
  REQUIRE(run("regions", xb.to(DType::f64), wb.to(DType::f64), bb.to(DType::f64), dil, true, Tensor())
              .y.to_vector<double>() ==
          run("im2col", xb.to(DType::f64), wb.to(DType::f64), bb.to(DType::f64), dil, true, Tensor())
              .y.to_vector<double>());
}
