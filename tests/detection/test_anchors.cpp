// multibox_prior / num_priors: anchor counts of every model layout, first and last anchors
// against hand-computed values, per-location order, steps, offsets, clip modes, units.
#include <cmath>

#include "engine/detection.h"
#include "test_helpers.h"

using namespace eng;
using namespace eng::det;

namespace {

// SSD levels: sizes {min, sqrt(min max)}, ratios {1, r, 1/r for each extra ratio r}.
std::vector<PriorLevel> ssd_levels(const std::vector<int64_t>& maps, const std::vector<double>& steps,
                                   const std::vector<double>& min_sizes, const std::vector<double>& max_sizes,
                                   const std::vector<std::vector<double>>& extra_ratios) {
  std::vector<PriorLevel> levels;
  for (size_t k = 0; k < maps.size(); ++k) {
    PriorLevel l;
    l.fmap_h = l.fmap_w = maps[k];
    l.step_h = l.step_w = steps.empty() ? 0.0 : steps[k];
    l.sizes = {min_sizes[k], std::sqrt(min_sizes[k] * max_sizes[k])};
    l.ratios = {1.0};
    for (double r : extra_ratios[k]) {
      l.ratios.push_back(r);
      l.ratios.push_back(1.0 / r);
    }
    levels.push_back(l);
  }
  return levels;
}

const std::vector<double> kVoc300Min{30, 60, 111, 162, 213, 264}, kVoc300Max{60, 111, 162, 213, 264, 315};
const std::vector<std::vector<double>> kSsd300Ratios{{2}, {2, 3}, {2, 3}, {2, 3}, {2}, {2}};

std::vector<PriorLevel> ssd300_levels() {
  return ssd_levels({38, 19, 10, 5, 3, 1}, {8, 16, 32, 64, 100, 300}, kVoc300Min, kVoc300Max, kSsd300Ratios);
}

std::vector<PriorLevel> ssd512_levels() {
  return ssd_levels({64, 32, 16, 8, 4, 2, 1}, {8, 16, 32, 64, 128, 256, 512},
                    {35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8}, {76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6},
                    {{2}, {2, 3}, {2, 3}, {2, 3}, {2, 3}, {2}, {2}});
}

std::vector<PriorLevel> tiny_ssd_levels(const std::vector<int64_t>& maps) {
  const std::vector<std::vector<double>> sizes{{0.2, 0.272}, {0.37, 0.447}, {0.54, 0.619}, {0.71, 0.79}, {0.88, 0.961}};
  std::vector<PriorLevel> levels;
  for (size_t k = 0; k < maps.size(); ++k) {
    PriorLevel l;
    l.fmap_h = l.fmap_w = maps[k];  // steps stay 0: image / fmap
    l.sizes = sizes[k];
    l.ratios = {1, 2, 0.5};
    levels.push_back(l);
  }
  return levels;
}

PriorOptions tiny_ssd_options() {
  PriorOptions o;
  o.sizes_normalized = true;
  o.normalized = true;
  return o;
}

// RetinaNet at 512: P3-P7, strides 8..128, sizes 32..512 x {1, 2^(1/3), 2^(2/3)}, ratios
// {0.5, 1, 2}, offset 0 (torchvision AnchorGenerator).
std::vector<PriorLevel> retinanet_levels(bool explicit_steps = true) {
  std::vector<PriorLevel> levels;
  const int64_t maps[] = {64, 32, 16, 8, 4};
  for (int k = 0; k < 5; ++k) {
    PriorLevel l;
    l.fmap_h = l.fmap_w = maps[k];
    l.step_h = l.step_w = explicit_steps ? 8.0 * (1 << k) : 0.0;
    const double s = 32.0 * (1 << k);
    l.sizes = {s, s * std::pow(2.0, 1.0 / 3.0), s * std::pow(2.0, 2.0 / 3.0)};
    l.ratios = {0.5, 1.0, 2.0};
    l.offset = 0.0;
    levels.push_back(l);
  }
  return levels;
}

PriorOptions cross_product() {
  PriorOptions o;
  o.order = PriorOrder::CrossProduct;
  return o;
}

// Row i of an [A, 4] anchor tensor against expected corners (float output: ~1e-6 relative).
void check_box(const Tensor& anchors, int64_t i, const std::vector<double>& expect) {
  std::vector<double> got = anchors.select(0, i).to_vector<double>();
  INFO("anchor " << i << ": got (" << got[0] << ", " << got[1] << ", " << got[2] << ", " << got[3] << ")");
  for (int c = 0; c < 4; ++c) REQUIRE(got[c] == Approx(expect[c]).epsilon(1e-6).margin(1e-5));
}

}  // namespace

TEST_CASE("multibox_prior: SSD300 VOC layout, 8732 anchors") {
  auto levels = ssd300_levels();
  // 38^2 4 + 19^2 6 + 10^2 6 + 5^2 6 + 3^2 4 + 1 4 = 5776 + 2166 + 600 + 150 + 36 + 4 = 8732
  REQUIRE(num_priors(levels, PriorOrder::MultiBox) == 8732);
  Tensor a = multibox_prior(levels, 300, 300, PriorOptions{});
  REQUIRE(a.sizes() == Shape{8732, 4});
  REQUIRE(a.dtype() == DType::f32);
  // First: cell (0, 0) of 38x38, step 8 -> centre (4, 4); size 30, ratio 1 -> 30x30:
  // (4 - 15, 4 - 15, 4 + 15, 4 + 15).
  check_box(a, 0, {-11, -11, 19, 19});
  // Second: s' = sqrt(30 * 60) = 42.42641, half 21.21320.
  check_box(a, 1, {4 - 21.213203, 4 - 21.213203, 4 + 21.213203, 4 + 21.213203});
  // Third: size 30, ratio 2: w = 30 sqrt 2 = 42.42641, h = 30 / sqrt 2 = 21.21320.
  check_box(a, 2, {4 - 21.213203, 4 - 10.606602, 4 + 21.213203, 4 + 10.606602});
  // Fourth: ratio 1/2: w and h swapped.
  check_box(a, 3, {4 - 10.606602, 4 - 21.213203, 4 + 10.606602, 4 + 21.213203});
  // Fifth: next location (row 0, column 1): centre (12, 4), size 30.
  check_box(a, 4, {-3, -11, 27, 19});
  // First of level 1 (index 5776): step 16 -> centre (8, 8), size 60: (8 - 30, ..., 8 + 30).
  check_box(a, 5776, {-22, -22, 38, 38});
  // Last: 1x1 map, step 300 -> centre (150, 150); last box = size 264 with ratio 1/2:
  // w = 264 / sqrt 2 = 186.676190, h = 264 sqrt 2 = 373.352380:
  // (150 - 93.338095, 150 - 186.676190, 150 + 93.338095, 150 + 186.676190).
  check_box(a, 8731, {56.661905, -36.676190, 243.338095, 336.676190});
}

TEST_CASE("multibox_prior: SSD512 VOC layout, 24564 anchors") {
  auto levels = ssd512_levels();
  // 64^2 4 + 32^2 6 + 16^2 6 + 8^2 6 + 4^2 6 + 2^2 4 + 1 4
  //   = 16384 + 6144 + 1536 + 384 + 96 + 16 + 4 = 24564
  REQUIRE(num_priors(levels, PriorOrder::MultiBox) == 24564);
  Tensor a = multibox_prior(levels, 512, 512, PriorOptions{});
  REQUIRE(a.size(0) == 24564);
  // First: centre (4, 4), size 35.84 -> half 17.92: (4 - 17.92, ..., 4 + 17.92).
  check_box(a, 0, {-13.92, -13.92, 21.92, 21.92});
  // Last: 1x1 map, step 512 -> centre (256, 256); size 460.8, ratio 1/2:
  // w = 460.8 / sqrt 2 = 325.834805, h = 460.8 sqrt 2 = 651.669610:
  // (256 - 162.917402, 256 - 325.834805, 256 + 162.917402, 256 + 325.834805).
  check_box(a, 24563, {93.082598, -69.834805, 418.917402, 581.834805});
}

TEST_CASE("multibox_prior: SSD300 layout at 480x480, 21742 anchors") {
  // VGG16-atrous arithmetic at 480: conv1 480 -> pool1 240 -> pool2 120 -> pool3 (ceil) 60
  // = conv4_3 (level 0); pool4 -> 30, pool5 (3x3 s1 p1) keeps 30, fc6/fc7 keep 30 = fc7
  // (level 1); extras: 3x3 s2 p1: 30 -> 15, 3x3 s2 p1: 15 -> floor((15 + 2 - 3) / 2) + 1 = 8,
  // 3x3 p0: 8 -> 6, 3x3 p0: 6 -> 4. Maps 60, 30, 15, 8, 6, 4 (the 300 layout gives
  // 38, 19, 10, 5, 3, 1 by the same arithmetic):
  //   60^2 4 + 30^2 6 + 15^2 6 + 8^2 6 + 6^2 4 + 4^2 4
  //     = 14400 + 5400 + 1350 + 384 + 144 + 64 = 21742.
  // Steps are left to the image / fmap rule: 8, 16, 32, 60, 80, 120; sizes stay VOC 300's.
  auto levels = ssd_levels({60, 30, 15, 8, 6, 4}, {}, kVoc300Min, kVoc300Max, kSsd300Ratios);
  REQUIRE(num_priors(levels, PriorOrder::MultiBox) == 21742);
  Tensor a = multibox_prior(levels, 480, 480, PriorOptions{});
  REQUIRE(a.size(0) == 21742);
  // First: step 480 / 60 = 8 -> centre (4, 4), size 30.
  check_box(a, 0, {-11, -11, 19, 19});
  // Last: 4x4 map, step 480 / 4 = 120, cell (3, 3) -> centre (3.5 120, 3.5 120) = (420, 420);
  // size 264, ratio 1/2: (420 - 93.338095, 420 - 186.676190, 420 + 93.338095, 420 + 186.676190).
  check_box(a, 21741, {326.661905, 233.323810, 513.338095, 606.676190});
}

TEST_CASE("multibox_prior: TinySSD at 256 and 512, 5444 and 21764 anchors") {
  // 4 per location (2 sizes + 3 ratios - 1). 256: (32^2 + 16^2 + 8^2 + 4^2 + 1) 4 = 1361 4 = 5444.
  auto l256 = tiny_ssd_levels({32, 16, 8, 4, 1});
  REQUIRE(num_priors(l256, PriorOrder::MultiBox) == 5444);
  Tensor a = multibox_prior(l256, 256, 256, tiny_ssd_options());
  REQUIRE(a.size(0) == 5444);
  // First (normalized units): centre 0.5 / 32 = 0.015625, size 0.2 -> half 0.1.
  check_box(a, 0, {-0.084375, -0.084375, 0.115625, 0.115625});
  // Last: 1x1 map, centre 0.5; size 0.88, ratio 0.5: w = 0.88 sqrt 0.5 = 0.622254,
  // h = 0.88 / sqrt 0.5 = 1.244508: (0.5 - 0.311127, 0.5 - 0.622254, 0.5 + 0.311127, 0.5 + 0.622254).
  check_box(a, 5443, {0.188873, -0.122254, 0.811127, 1.122254});

  // 512: (64^2 + 32^2 + 16^2 + 8^2 + 1) 4 = 5441 4 = 21764.
  auto l512 = tiny_ssd_levels({64, 32, 16, 8, 1});
  REQUIRE(num_priors(l512, PriorOrder::MultiBox) == 21764);
  Tensor b = multibox_prior(l512, 512, 512, tiny_ssd_options());
  REQUIRE(b.size(0) == 21764);
  // First: centre 0.5 / 64 = 0.0078125, half size 0.1.
  check_box(b, 0, {-0.0921875, -0.0921875, 0.1078125, 0.1078125});
  check_box(b, 21763, {0.188873, -0.122254, 0.811127, 1.122254});
}

TEST_CASE("multibox_prior: RetinaNet at 512, 49104 anchors (cross product)") {
  auto levels = retinanet_levels();
  // (64^2 + 32^2 + 16^2 + 8^2 + 4^2) 9 = 5456 9 = 49104
  REQUIRE(num_priors(levels, PriorOrder::CrossProduct) == 49104);
  Tensor a = multibox_prior(levels, 512, 512, cross_product());
  REQUIRE(a.size(0) == 49104);
  // The 9 boxes of cell (0, 0) of P3 (centre (0, 0), offset 0), ratio-major. Ratio r is
  // height / width: h = sqrt(r) s, w = s / sqrt(r); half extents rounded:
  //   r 0.5, s 32:     w/2 = 22.627 -> 23, h/2 = 11.314 -> 11
  //   r 0.5, s 40.317: w/2 = 28.509 -> 29, h/2 = 14.254 -> 14
  //   r 0.5, s 50.797: w/2 = 35.919 -> 36, h/2 = 17.959 -> 18
  //   r 1:             16, 20.159 -> 20, 25.398 -> 25
  //   r 2:             the r 0.5 boxes transposed
  const std::vector<std::vector<double>> cell{{-23, -11, 23, 11}, {-29, -14, 29, 14}, {-36, -18, 36, 18},
                                              {-16, -16, 16, 16}, {-20, -20, 20, 20}, {-25, -25, 25, 25},
                                              {-11, -23, 11, 23}, {-14, -29, 14, 29}, {-18, -36, 18, 36}};
  for (int k = 0; k < 9; ++k) check_box(a, k, cell[k]);
  // Index 9: cell (0, 1), centre (8, 0): (8 - 23, -11, 8 + 23, 11).
  check_box(a, 9, {-15, -11, 31, 11});
  // Last: P7 4x4, stride 128, cell (3, 3) -> centre (384, 384); r 2, s = 512 2^(2/3) = 812.749:
  // w/2 = 812.749 / sqrt 2 / 2 = 287.350 -> 287, h/2 = 812.749 sqrt 2 / 2 = 574.701 -> 575:
  // (384 - 287, 384 - 575, 384 + 287, 384 + 575).
  check_box(a, 49103, {97, -191, 671, 959});
  // Steps left to image / fmap give the same anchors (512 / 64 = 8, ...).
  Tensor b = multibox_prior(retinanet_levels(false), 512, 512, cross_product());
  REQUIRE_CLOSE(b, a, 0.0, 0.0);
}

TEST_CASE("multibox_prior: steps, offsets and non-square images") {
  // 2x3 map, step_h 10, step_w 20, offset 0.25, one 4x4 box (size 4, ratio 1):
  // centre of cell (i, j) = ((j + 0.25) 20, (i + 0.25) 10) = (5 + 20 j, 2.5 + 10 i).
  PriorLevel l;
  l.fmap_h = 2;
  l.fmap_w = 3;
  l.step_h = 10;
  l.step_w = 20;
  l.offset = 0.25;
  l.sizes = {4};
  l.ratios = {1};
  Tensor a = multibox_prior({l}, 100, 200, PriorOptions{});
  REQUIRE(a.sizes() == Shape{6, 4});
  const std::vector<double> expect{3, 0.5,  7, 4.5,  23, 0.5,  27, 4.5,  43, 0.5,  47, 4.5,
                                   3, 10.5, 7, 14.5, 23, 10.5, 27, 14.5, 43, 10.5, 47, 14.5};
  REQUIRE(a.to_vector<double>() == expect);

  // Steps <= 0: image / fmap per side: 100 / 2 = 50 and 200 / 8 = 25, offset 0.5.
  // Sizes as fractions of each side: 0.1 -> w = 0.1 200 = 20, h = 0.1 100 = 10.
  PriorLevel m;
  m.fmap_h = 2;
  m.fmap_w = 8;
  m.sizes = {0.1};
  m.ratios = {1};
  PriorOptions frac;
  frac.sizes_normalized = true;
  Tensor b = multibox_prior({m}, 100, 200, frac);
  REQUIRE(b.size(0) == 16);
  check_box(b, 0, {12.5 - 10, 25 - 5, 12.5 + 10, 25 + 5});      // cell (0, 0): centre (12.5, 25)
  check_box(b, 15, {187.5 - 10, 75 - 5, 187.5 + 10, 75 + 5});   // cell (1, 7): centre (187.5, 75)
  frac.normalized = true;                                        // same boxes over (200, 100)
  Tensor c = multibox_prior({m}, 100, 200, frac);
  check_box(c, 15, {177.5 / 200, 70.0 / 100, 197.5 / 200, 80.0 / 100});

  // The cross product takes torchvision's integer stride 100 // 3 = 33 (not 33.33).
  PriorLevel r;
  r.fmap_h = r.fmap_w = 3;
  r.sizes = {10};
  r.ratios = {1};
  r.offset = 0;
  Tensor d = multibox_prior({r}, 100, 100, cross_product());
  check_box(d, 4, {33 - 5, 33 - 5, 33 + 5, 33 + 5});  // cell (1, 1)
}

TEST_CASE("multibox_prior: clip modes and normalized output") {
  auto levels = ssd300_levels();
  PriorOptions o;
  o.normalized = true;
  Tensor n = multibox_prior(levels, 300, 300, o);
  check_box(n, 0, {-11.0 / 300, -11.0 / 300, 19.0 / 300, 19.0 / 300});

  // Corners: each corner clamped into the image.
  o.normalized = false;
  o.clip = PriorClip::Corners;
  Tensor c = multibox_prior(levels, 300, 300, o);
  check_box(c, 0, {0, 0, 19, 19});                               // from (-11, -11, 19, 19)
  check_box(c, 8731, {56.661905, 0, 243.338095, 300});           // from (56.66, -36.68, 243.34, 336.68)

  // CenterSize (torchvision): w and h clamped to [0, 1], centres kept. The first box has w = h = 0.1
  // and its centre inside, so it is unchanged; the last has h = 373.352 / 300 = 1.244508 ->
  // 1, w = 186.676 / 300 = 0.622254: (0.5 - 0.311127, 0.5 - 0.5, 0.5 + 0.311127, 0.5 + 0.5).
  o.clip = PriorClip::CenterSize;
  o.normalized = true;
  Tensor s = multibox_prior(levels, 300, 300, o);
  check_box(s, 0, {-11.0 / 300, -11.0 / 300, 19.0 / 300, 19.0 / 300});
  check_box(s, 8731, {0.188873, 0, 0.811127, 1});
  o.normalized = false;  // the same boxes in pixels
  Tensor sp = multibox_prior(levels, 300, 300, o);
  check_box(sp, 8731, {56.661905, 0, 243.338095, 300});
  check_box(sp, 0, {-11, -11, 19, 19});

  // A centre outside the image stays outside (torchvision clamps only w and h): one 60x60
  // box centred at (320, 320) on a 300x300 image keeps (290, 290, 350, 350); a box of
  // 400 x 400 at the same centre gets w = h = 300: (170, 170, 470, 470).
  PriorLevel outside;
  outside.fmap_h = outside.fmap_w = 1;
  outside.step_h = outside.step_w = 320;
  outside.offset = 1.0;
  outside.sizes = {60, 400};
  outside.ratios = {1};
  PriorOptions keep_centre;
  keep_centre.clip = PriorClip::CenterSize;
  Tensor kc = multibox_prior({outside}, 300, 300, keep_centre);
  check_box(kc, 0, {290, 290, 350, 350});
  check_box(kc, 1, {170, 170, 470, 470});
}

TEST_CASE("multibox_prior: bad input is rejected") {
  PriorLevel l;
  l.fmap_h = l.fmap_w = 2;
  l.sizes = {10};
  l.ratios = {1};
  REQUIRE_THROWS_WITH(multibox_prior({}, 100, 100, PriorOptions{}), Catch::Contains("empty level list"));
  REQUIRE_THROWS_WITH(multibox_prior({l}, 0, 100, PriorOptions{}), Catch::Contains("image size 0x100"));
  PriorLevel bad = l;
  bad.fmap_w = 0;
  REQUIRE_THROWS_WITH(multibox_prior({l, bad}, 100, 100, PriorOptions{}),
                      Catch::Contains("level 1 has feature map 2x0"));
  bad = l;
  bad.sizes.clear();
  REQUIRE_THROWS_WITH(multibox_prior({bad}, 100, 100, PriorOptions{}), Catch::Contains("level 0 has no sizes"));
  bad = l;
  bad.ratios.clear();
  REQUIRE_THROWS_WITH(num_priors({bad}, PriorOrder::CrossProduct), Catch::Contains("level 0 has no ratios"));
  bad = l;
  bad.sizes = {10, -1};
  REQUIRE_THROWS_WITH(multibox_prior({bad}, 100, 100, PriorOptions{}), Catch::Contains("sizes must be > 0"));
  bad = l;
  bad.ratios = {0};
  REQUIRE_THROWS_WITH(multibox_prior({bad}, 100, 100, PriorOptions{}), Catch::Contains("ratios must be > 0"));
}

TEST_CASE("multibox_prior: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  struct Case {
    std::vector<PriorLevel> levels;
    int64_t h, w;
    PriorOptions opt;
  };
  PriorOptions ssd_clip;
  ssd_clip.clip = PriorClip::CenterSize;
  ssd_clip.normalized = true;
  PriorOptions corners;
  corners.clip = PriorClip::Corners;
  std::vector<Case> cases{{ssd300_levels(), 300, 300, ssd_clip},
                          {ssd512_levels(), 512, 512, corners},
                          {tiny_ssd_levels({32, 16, 8, 4, 1}), 256, 256, tiny_ssd_options()},
                          {retinanet_levels(false), 512, 640, cross_product()}};
  for (const Case& c : cases) {
    Tensor cpu = multibox_prior(c.levels, c.h, c.w, c.opt);
    Tensor gpu = multibox_prior(c.levels, c.h, c.w, c.opt, Device::cuda());
    REQUIRE(gpu.is_cuda());
    REQUIRE_CLOSE(gpu.cpu(), cpu, test::kElementwiseAtol, test::kElementwiseRtol);
  }
}
