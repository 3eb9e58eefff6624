// roi_align, roi_levels, multiscale_roi_align on the CPU: hand-computed values (sampling grid,
// the -1 border, the clamp at the last row, the aligned offset, min size 1), torchvision's
// values (fixture by tools/make_roi_align_fixture.py), the fused pooler against the per-level
// composition, gradcheck in double, bad input. CUDA: tests/ops/test_roi_align_cuda.cpp.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "engine/io/safetensors.h"
#include "engine/roi_align.h"
#include "test_helpers.h"

using namespace eng;

namespace {

const io::SafetensorsFile& fixture() {
  static const io::SafetensorsFile f =
      io::load_safetensors(std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/roi_align_parity.safetensors");
  return f;
}

// [1, 1, 3, 4] with m[h, w] = 10 h + w: bilinear interpolation of a linear map is the map at
// the (clamped) point, so expected values are easy to write down.
Tensor linear_map() {
  std::vector<double> v;
  for (int h = 0; h < 3; ++h)
    for (int w = 0; w < 4; ++w) v.push_back(10.0 * h + w);
  return from_vector<double>(v, {1, 1, 3, 4});
}

Tensor rois_of(const std::vector<std::vector<double>>& rows) {
  std::vector<double> v;
  for (const auto& r : rows) v.insert(v.end(), r.begin(), r.end());
  return from_vector<double>(v, {static_cast<int64_t>(rows.size()), 5});
}

// Rows `idx` of t (first dim) as a new tensor, and the reverse (rows of `src` written into a
// zero tensor of `rows` rows at idx). Written with host loops: the test's own gather/scatter.
Tensor take_rows(const Tensor& t, const std::vector<int64_t>& idx) {
  const int64_t row = t.numel() / t.size(0);
  std::vector<double> v = t.to_vector<double>(), out;
  for (int64_t i : idx) out.insert(out.end(), v.begin() + i * row, v.begin() + (i + 1) * row);
  Shape s = t.sizes();
  s[0] = static_cast<int64_t>(idx.size());
  return from_vector<double>(out, s, TensorOptions(t.dtype()));
}

}  // namespace

TEST_CASE("roi_align: hand values") {
  Tensor x = linear_map();
  // RoI (0.5, 0.5)-(2.5, 1.5), 2x2 bins of 1 x 0.5, one sample each at their centres:
  // y = 0.75, 1.25, x = 1, 2 -> 10 y + x.
  Tensor y = roi_align(x, rois_of({{0, 0.5, 0.5, 2.5, 1.5}}), 2, 2, 1.0, 1, false);
  REQUIRE(y.sizes() == Shape{1, 1, 2, 2});
  REQUIRE_CLOSE(y, from_vector<double>({8.5, 9.5, 13.5, 14.5}, {1, 1, 2, 2}), 1e-14, 0);

  // One bin, 2x2 samples: x = -3 + (i + 0.5) * 2 = -2 (outside the -1 border: 0, but counted)
  // and 0; y = 0.7 and 2.1 (past the last row H - 1 = 2: clamped to row 2).
  // Mean of {0, 7, 0, 20} = 6.75.
  Tensor xg = linear_map().set_requires_grad(true);
  Tensor yb = roi_align(xg, rois_of({{0, -3, 0, 1, 2.8}}), 1, 1, 1.0, 2, false);
  REQUIRE(yb.item() == Approx(6.75).epsilon(1e-14));
  // Backward with g = 1: sample (0.7, 0) gives 0.3 / 4 to (0, 0) and 0.7 / 4 to (1, 0); sample
  // (2, 0) gives 1 / 4 to (2, 0); the samples at x = -2 give nothing.
  yb.backward(ones({1, 1, 1, 1}, DType::f64));
  std::vector<double> g(12, 0.0);
  g[0] = 0.075;
  g[4] = 0.175;
  g[8] = 0.25;
  REQUIRE_CLOSE(xg.grad(), from_vector<double>(g, {1, 1, 3, 4}), 1e-15, 0);

  // aligned: everything moves by -0.5: x = -2.5 (outside), -0.5 (clamped to 0); y = 0.2, 1.6.
  // Mean of {0, 2, 0, 16} = 4.5.
  REQUIRE(roi_align(x, rois_of({{0, -3, 0, 1, 2.8}}), 1, 1, 1.0, 2, true).item() == Approx(4.5).epsilon(1e-14));

  // A zero-size box: !aligned makes it 1 x 1 (samples 1.25, 1.75: mean 16.5); aligned keeps
  // size 0: sr 2 samples the point (0.5, 0.5) four times (5.5), the adaptive grid is empty (0).
  Tensor z = rois_of({{0, 1, 1, 1, 1}});
  REQUIRE(roi_align(x, z, 1, 1, 1.0, 2, false).item() == Approx(16.5).epsilon(1e-14));
  REQUIRE(roi_align(x, z, 1, 1, 1.0, 2, true).item() == Approx(5.5).epsilon(1e-14));
  REQUIRE(roi_align(x, z, 1, 1, 1.0, 0, true).item() == 0.0);

  // spatial_scale: image box (2, 2)-(6, 4) at scale 0.5 is the map box (1, 1)-(3, 2); adaptive
  // grid ceil(1 / 1) x ceil(2 / 1) = 1 x 2 -> y = 1.5, x = 1.5, 2.5 -> 16.5, 17.5: mean 17.
  REQUIRE(roi_align(x, rois_of({{0, 2, 2, 6, 4}}), 1, 1, 0.5, 0, false).item() == Approx(17.0).epsilon(1e-14));

  // Output rows are (roi, channel): two channels, two RoIs on two images.
  Tensor x2 = concat({concat({linear_map(), linear_map() * 2.0}, 1), concat({linear_map() * -1.0, linear_map()}, 1)}, 0);
  Tensor y2 = roi_align(x2, rois_of({{1, 1, 1, 1, 1}, {0, 1, 1, 1, 1}}), 1, 1, 1.0, 2, false);
  REQUIRE_CLOSE(y2, from_vector<double>({-16.5, 16.5, 16.5, 33.0}, {2, 2, 1, 1}), 1e-13, 0);
}

TEST_CASE("roi_align: matches torchvision.ops.roi_align") {
  const io::SafetensorsFile& f = fixture();
  const Tensor x = f.get("ra.x"), rois = f.get("ra.rois"), r = f.get("ra.r");
  for (int aligned = 0; aligned < 2; ++aligned)
    for (int sr : {2, 0}) {
      const std::string tag = "ra.a" + std::to_string(aligned) + "_sr" + std::to_string(sr);
      INFO(tag);
      for (DType dt : {DType::f64, DType::f32}) {
        INFO(dtype_name(dt));
        const double tol = dt == DType::f64 ? 1e-12 : 2e-6;
        Tensor xl = x.to(dt).detach().clone().set_requires_grad(true);
        Tensor y = roi_align(xl, rois.to(dt), 5, 4, 0.5, sr, aligned != 0);
        REQUIRE(y.sizes() == Shape{14, 3, 5, 4});
        REQUIRE_CLOSE(y, f.get(tag + ".y").to(dt), tol, tol);
        y.backward(r.to(dt));
        REQUIRE_CLOSE(xl.grad(), f.get(tag + ".gx").to(dt), tol, tol);
      }
    }
  // The cases the fixture is built for really occur: rows 4..8 (zero size, zero width,
  // reversed, entirely outside) and nonzero rows elsewhere.
  const std::vector<double> y = f.get("ra.a0_sr2.y").to_vector<double>();
  auto row_abs = [&](int64_t k) {
    double s = 0;
    for (int64_t i = 0; i < 60; ++i) s += std::fabs(y[static_cast<size_t>(k * 60 + i)]);
    return s;
  };
  REQUIRE(row_abs(7) == 0.0);   // beyond the far corner
  REQUIRE(row_abs(8) == 0.0);   // before the origin
  REQUIRE(row_abs(0) > 0.0);
  REQUIRE(row_abs(4) > 0.0);    // zero size, !aligned: a 1 x 1 box
}

TEST_CASE("roi_levels: matches torchvision's LevelMapper and the +1 variant") {
  const io::SafetensorsFile& f = fixture();
  const Tensor rois = f.get("lm.rois");
  const Tensor want = f.get("lm.levels");
  REQUIRE(roi_levels(rois, 2, 5).to_vector<int64_t>() == want.to_vector<int64_t>());
  REQUIRE(roi_levels(rois.to(DType::f64), 2, 5).to_vector<int64_t>() == want.to_vector<int64_t>());
  // Every level is reached.
  const std::vector<int64_t> w = want.to_vector<int64_t>();
  for (int64_t l = 0; l < 4; ++l) REQUIRE(std::count(w.begin(), w.end(), l) > 0);

  // maskrcnn-benchmark: +1 area, eps inside the log, by formula in double.
  const std::vector<double> v = rois.to_vector<double>();
  const std::vector<int64_t> got = roi_levels(rois, 2, 5, 224.0, 4, 1e-6, true).to_vector<int64_t>();
  for (int64_t k = 0; k < rois.size(0); ++k) {
    const double* b = &v[static_cast<size_t>(k * 5)];
    const double s = std::sqrt((b[3] - b[1] + 1.0) * (b[4] - b[2] + 1.0));
    const double lv = std::min(5.0, std::max(2.0, std::floor(4.0 + std::log2(s / 224.0 + 1e-6))));
    INFO("roi " << k);
    REQUIRE(got[static_cast<size_t>(k)] == static_cast<int64_t>(lv) - 2);
  }
  // A box of side 223 is level 3 in torchvision and level 4 with +1 (224 x 224).
  Tensor b223 = from_vector<double>({0, 0, 0, 223, 223}, {1, 5});
  REQUIRE(roi_levels(b223, 2, 5).to_vector<int64_t>() == std::vector<int64_t>{1});
  REQUIRE(roi_levels(b223, 2, 5, 224, 4, 1e-6, true).to_vector<int64_t>() == std::vector<int64_t>{2});
  // NaN (negative area) -> k_min; other canonical settings.
  REQUIRE(roi_levels(from_vector<double>({0, 5, 0, 0, 5}, {1, 5}), 2, 5).to_vector<int64_t>() ==
          std::vector<int64_t>{0});
  REQUIRE(roi_levels(from_vector<double>({0, 0, 0, 64, 64}, {1, 5}), 0, 9, 32.0, 3).to_vector<int64_t>() ==
          std::vector<int64_t>{4});
  REQUIRE(roi_levels(zeros({0, 5}), 2, 5).sizes() == Shape{0});
}

TEST_CASE("infer_pooler_scales: torchvision's rounding") {
  auto f = [](int64_t h, int64_t w) { return zeros({1, 1, h, w}); };
  REQUIRE(infer_pooler_scales({f(200, 272), f(100, 136), f(50, 68), f(25, 34)}, 800, 1066) ==
          std::vector<double>{0.25, 0.125, 0.0625, 0.03125});
  // 63 / 256 = 0.246: log2 = -2.02 -> 1/4; 45 / 256: log2 = -2.51 -> 1/8.
  REQUIRE(infer_pooler_scales({f(63, 63), f(45, 45)}, 256, 256) == std::vector<double>{0.25, 0.125});
  REQUIRE_THROWS_WITH(infer_pooler_scales({f(64, 64), f(16, 16)}, 256, 256),
                      Catch::Contains("infer_pooler_scales: level 1 has scale 0.0625 after 0.25"));
  REQUIRE_THROWS_WITH(infer_pooler_scales({f(64, 64)}, 0, 256), Catch::Contains("image size must be positive"));
}

TEST_CASE("multiscale_roi_align: matches torchvision.ops.MultiScaleRoIAlign") {
  const io::SafetensorsFile& f = fixture();
  const Tensor rois = f.get("ms.rois"), r = f.get("ms.r");
  for (int cs : {224, 32}) {
    INFO("canonical_scale " << cs);
    const std::string tag = "ms.c" + std::to_string(cs);
    std::vector<Tensor> xs;
    for (int l = 0; l < 4; ++l) xs.push_back(f.get("ms.x" + std::to_string(l)).detach().set_requires_grad(true));
    MultiScaleRoIAlignOptions o;  // 7x7, sr 2, !aligned: torchvision's Faster R-CNN
    o.canonical_scale = cs;
    Tensor y = multiscale_roi_align(xs, rois, 128, 128, o);
    REQUIRE(y.sizes() == Shape{24, 2, 7, 7});
    REQUIRE_CLOSE(y, f.get(tag + ".y"), 1e-6, 1e-5);
    y.backward(r);
    for (int l = 0; l < 4; ++l) {
      INFO("level " << l);
      const Tensor want = f.get(tag + ".gx" + std::to_string(l));
      REQUIRE_CLOSE(xs[static_cast<size_t>(l)].grad(), want, 1e-6, 1e-5);
    }
  }
}

TEST_CASE("multiscale_roi_align: equals per-level gather, roi_align, scatter") {
  // Levels 0..2 of a 64 x 64 image (16, 8, 4), canonical scale 16 so that all three are used.
  std::vector<Tensor> xs = {test::leaf({2, 3, 16, 16}, 31), test::leaf({2, 3, 8, 8}, 32), test::leaf({2, 3, 4, 4}, 33)};
  Generator gen(34);
  std::vector<double> rv;
  for (int k = 0; k < 20; ++k) {
    const double x1 = gen.uniform() * 60 - 5, y1 = gen.uniform() * 60 - 5;
    const double s = std::exp(gen.uniform() * 4.5);  // 1 .. 90
    rv.insert(rv.end(), {static_cast<double>(k % 2), x1, y1, x1 + s, y1 + s * (0.5 + gen.uniform())});
  }
  const Tensor rois = from_vector<double>(rv, {20, 5});
  for (bool aligned : {false, true}) {
    INFO("aligned " << aligned);
    MultiScaleRoIAlignOptions o;
    o.output_size = 3;
    o.sampling_ratio = 0;
    o.aligned = aligned;
    o.canonical_scale = 16;
    std::vector<Tensor> xa;
    for (const Tensor& x : xs) xa.push_back(test::cpu_leaf(x));
    Tensor got = multiscale_roi_align(xa, rois, 64, 64, o);
    const Tensor r = test::leaf(got.sizes(), 35).detach();
    got.backward(r);

    const std::vector<int64_t> lv = roi_levels(rois, 2, 4, 16.0).to_vector<int64_t>();
    std::vector<double> want(static_cast<size_t>(got.numel()), 0.0);
    const int64_t row = 3 * 3 * 3;
    int used = 0;
    for (int64_t l = 0; l < 3; ++l) {
      std::vector<int64_t> idx;
      for (int64_t k = 0; k < 20; ++k)
        if (lv[static_cast<size_t>(k)] == l) idx.push_back(k);
      Tensor xl = test::cpu_leaf(xs[static_cast<size_t>(l)]);
      if (idx.empty()) continue;
      ++used;
      Tensor part = roi_align(xl, take_rows(rois, idx), 3, 3, std::ldexp(1.0, -static_cast<int>(l) - 2), 0, aligned);
      part.backward(take_rows(r, idx));
      const std::vector<double> pv = part.to_vector<double>();
      for (size_t i = 0; i < idx.size(); ++i)
        std::copy(pv.begin() + static_cast<int64_t>(i) * row, pv.begin() + static_cast<int64_t>(i + 1) * row,
                  want.begin() + idx[i] * row);
      REQUIRE_CLOSE(xa[static_cast<size_t>(l)].grad(), xl.grad(), 1e-14, 1e-12);
    }
    REQUIRE(used == 3);
    REQUIRE_CLOSE(got, from_vector<double>(want, got.sizes()), 1e-14, 1e-12);
  }
}

TEST_CASE("roi_align: gradcheck", "[gradcheck]") {
  Tensor x = test::leaf({2, 2, 5, 6}, 41);
  // Partly outside, fractional, small, reversed, on both images (scale 0.5: map covers 12 x 10).
  const Tensor rois = rois_of({{0, -2.3, 1.1, 7.7, 8.6}, {1, 3.2, -1.7, 13.4, 6.1}, {1, 4.1, 4.3, 5.0, 5.2},
                               {0, 9.0, 7.0, 2.0, 3.0}, {0, 0.4, 0.6, 11.3, 9.4}});
  for (bool aligned : {false, true})
    for (int64_t sr : {2, 0}) {
      INFO("aligned " << aligned << " sr " << sr);
      REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return roi_align(in[0], rois, 3, 2, 0.5, sr, aligned); },
                        {x});
    }
}

TEST_CASE("multiscale_roi_align: gradcheck", "[gradcheck]") {
  std::vector<Tensor> xs = {test::leaf({1, 2, 8, 8}, 51), test::leaf({1, 2, 4, 4}, 52), test::leaf({1, 2, 2, 2}, 53)};
  const Tensor rois = rois_of({{0, 1, 2, 6, 7}, {0, 3, 1, 15, 12}, {0, -4, 2, 40, 38}, {0, 10, 10, 12.5, 11}});
  MultiScaleRoIAlignOptions o;
  o.output_size = 2;
  o.canonical_scale = 16;
  REQUIRE(roi_levels(rois, 2, 4, 16.0).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 0});
  REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return multiscale_roi_align(in, rois, 32, 32, o); }, xs);
  // Only the middle level requires grad: the others get no gradient.
  std::vector<Tensor> mid = {xs[0].detach(), test::cpu_leaf(xs[1]), xs[2].detach()};
  REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return multiscale_roi_align(in, rois, 32, 32, o); }, mid);
  REQUIRE_FALSE(mid[0].grad().defined());
}

TEST_CASE("roi_align: no RoIs, rois requiring grad, non-finite coordinates") {
  Tensor x = test::leaf({2, 3, 4, 4}, 61);
  Tensor y = roi_align(x, zeros({0, 5}, DType::f64), 2, 2, 1.0, 2, false);
  REQUIRE(y.sizes() == Shape{0, 3, 2, 2});
  sum(y).backward();
  REQUIRE(sum(abs(x.grad())).item() == 0.0);

  // rois never get a gradient (torchvision returns none); features still do.
  Tensor rois = rois_of({{1, 0.5, 0.5, 2.5, 3.0}}).set_requires_grad(true);
  Tensor xr = test::cpu_leaf(x.detach());
  Tensor yr = roi_align(xr, rois, 2, 2, 1.0, 2, false);
  sum(yr).backward();
  REQUIRE_FALSE(rois.grad().defined());
  REQUIRE(sum(xr.grad()).item() == Approx(3 * 4.0));  // each output's weights sum to 1
  // rois alone requiring grad: the output does not.
  REQUIRE_FALSE(roi_align(x.detach(), rois, 2, 2, 1.0, 2, false).requires_grad());

  // NaN / inf coordinates: zeros, no gradient, no read outside the map.
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  Tensor xn = test::cpu_leaf(x.detach());
  Tensor yn = roi_align(xn, rois_of({{0, nan, 0, 2, 2}, {1, 0, 0, inf, 2}, {0, -inf, 0, 1, 1}, {0, 1e300, 1e300, 2e300, 3e300}}),
                        2, 2, 1.0, 0, false);
  REQUIRE(sum(abs(yn)).item() == 0.0);
  sum(yn).backward();
  REQUIRE(sum(abs(xn.grad())).item() == 0.0);
  // A huge finite box with the adaptive grid: the grid is capped (finishes), the value finite.
  Tensor big = roi_align(x.detach(), rois_of({{0, -1e7, -1e7, 1e7, 1e7}}), 1, 1, 1.0, 0, false);
  for (double v : big.to_vector<double>()) REQUIRE(std::isfinite(v));
}

TEST_CASE("roi_align: bad input") {
  Tensor x = zeros({2, 3, 4, 4});
  Tensor rois = zeros({1, 5});
  REQUIRE_THROWS_WITH(roi_align(x, from_vector<float>({2, 0, 0, 1, 1}, {1, 5}), 2, 2, 1.0, 2, false),
                      Catch::Contains("roi_align: rois[0] has batch index 2, expected an integer in [0, 2)"));
  REQUIRE_THROWS_WITH(roi_align(x, from_vector<float>({0, 0, 0, 1, 1, 0.5f, 0, 0, 1, 1}, {2, 5}), 2, 2, 1.0, 2, false),
                      Catch::Contains("rois[1] has batch index 0.5"));
  REQUIRE_THROWS_WITH(roi_align(x, from_vector<float>({-1, 0, 0, 1, 1}, {1, 5}), 2, 2, 1.0, 2, false),
                      Catch::Contains("rois[0] has batch index -1"));
  REQUIRE_THROWS_WITH(roi_align(x, from_vector<float>({std::nanf(""), 0, 0, 1, 1}, {1, 5}), 2, 2, 1.0, 2, false),
                      Catch::Contains("rois[0] has batch index nan"));
  REQUIRE_THROWS_WITH(roi_align(x, zeros({1, 4}), 2, 2, 1.0, 2, false),
                      Catch::Contains("roi_align: rois must have shape [K, 5] (batch_index, x1, y1, x2, y2), got [1, 4]"));
  REQUIRE_THROWS_WITH(roi_align(x, zeros({1, 5}, DType::f64), 2, 2, 1.0, 2, false),
                      Catch::Contains("roi_align: rois must be f32 like the features, got f64"));
  REQUIRE_THROWS_WITH(roi_align(zeros({3, 4, 4}), rois, 2, 2, 1.0, 2, false),
                      Catch::Contains("roi_align: features must be [N, C, H, W], got [3, 4, 4]"));
  REQUIRE_THROWS_WITH(roi_align(zeros({2, 3, 0, 4}), rois, 2, 2, 1.0, 2, false),
                      Catch::Contains("roi_align: empty feature map [2, 3, 0, 4]"));
  REQUIRE_THROWS_WITH(roi_align(zeros({2, 3, 4, 4}, DType::i64), zeros({1, 5}, DType::i64), 2, 2, 1.0, 2, false),
                      Catch::Contains("roi_align: expected a f32 or f64 tensor, got i64"));
  REQUIRE_THROWS_WITH(roi_align(x, rois, 0, 2, 1.0, 2, false),
                      Catch::Contains("roi_align: output size must be in [1, 4096], got 0x2"));
  REQUIRE_THROWS_WITH(roi_align(x, rois, 2, 2, 0.0, 2, false),
                      Catch::Contains("roi_align: spatial_scale must be positive and finite, got 0"));
  REQUIRE_THROWS_WITH(roi_align(x, rois, 2, 2, std::nan(""), 2, false), Catch::Contains("spatial_scale must be positive"));
  REQUIRE_THROWS_WITH(roi_align(x, rois, 2, 2, 1.0, 1000, false),
                      Catch::Contains("roi_align: sampling_ratio must be <= 128 (or <= 0 for adaptive), got 1000"));

  const std::vector<Tensor> levels = {zeros({2, 3, 16, 16}), zeros({2, 3, 8, 8})};
  REQUIRE_THROWS_WITH(multiscale_roi_align(levels, from_vector<float>({5, 0, 0, 1, 1}, {1, 5}), 64, 64),
                      Catch::Contains("multiscale_roi_align: rois[0] has batch index 5, expected an integer in [0, 2)"));
  REQUIRE_THROWS_WITH(multiscale_roi_align({zeros({2, 3, 16, 16}), zeros({2, 4, 8, 8})}, rois, 64, 64),
                      Catch::Contains("multiscale_roi_align: level 1 has shape [2, 4, 8, 8], level 0 has [2, 3, 16, 16]"));
  REQUIRE_THROWS_WITH(multiscale_roi_align({zeros({2, 3, 16, 16}), zeros({2, 3, 8, 8}, DType::f64)}, rois, 64, 64),
                      Catch::Contains("multiscale_roi_align: level 1 is f64 on cpu, level 0 is f32 on cpu"));
  REQUIRE_THROWS_WITH(multiscale_roi_align({}, rois, 64, 64),
                      Catch::Contains("multiscale_roi_align: expected 1 to 8 feature levels, got 0"));
  REQUIRE_THROWS_WITH(multiscale_roi_align({zeros({2, 3, 16, 16}), zeros({2, 3, 16, 16})}, rois, 64, 64),
                      Catch::Contains("each level must halve the previous one"));
  REQUIRE_THROWS_WITH(roi_levels(rois, 5, 2), Catch::Contains("roi_levels: need -64 < k_min <= k_max < 64, got 5 and 2"));
  REQUIRE_THROWS_WITH(roi_levels(zeros({3, 4}), 2, 5), Catch::Contains("roi_levels: rois must have shape [K, 5]"));
}
