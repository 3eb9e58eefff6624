// The loader's keep_aspect mode (data/loader.h, data/input_fit.h): torchvision's
// GeneralizedRCNNTransform with min_size = max_size = S, padded to S x S at the top-left.
// fit_input's sizes (including torchvision's floor, which can give S - 1), the evaluation
// image (content bit for bit the resize of the valid size, padding exactly the normalised 0;
// the u8 path with the rounded mean), training boxes scaled with the image and consistent
// with the drawn content after the SSD augmentation, and the stretch mode's fits.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/image.h"
#include "data/input_fit.h"
#include "data/loader.h"
#include "engine/error.h"
#include "temp_dir.h"

namespace {

constexpr int kW = 200, kH = 100;               // the test image (wide)
const data::Box kRect{120, 20, 170, 70};        // the filled rectangle and its object
constexpr uint8_t kBackground = 10, kFilled = 250;

// A 200 x 100 image: a gradient (evaluation content checks) or a dark background with a
// bright filled rectangle at kRect (the box check).
data::Image make_image(bool rectangle) {
  data::Image im;
  im.width = kW;
  im.height = kH;
  im.rgb.resize(static_cast<size_t>(kW) * kH * 3);
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x)
      for (int c = 0; c < 3; ++c) {
        uint8_t v;
        if (rectangle)
          v = (x >= kRect.x1 && x < kRect.x2 && y >= kRect.y1 && y < kRect.y2) ? kFilled : kBackground;
        else
          v = static_cast<uint8_t>((x * 5 + y * 3 + c * 40) % 256);
        im.rgb[(static_cast<size_t>(y) * kW + x) * 3 + c] = v;
      }
  return im;
}

// A one-image dataset (class "box") in `dir`, the image saved as PNG (lossless).
data::Dataset one_image_dataset(const test::TempDir& dir, const data::Image& im) {
  const std::string path = dir / "img.png";
  data::save_png(path, im);
  data::Dataset d;
  d.class_names = {"box"};
  d.category_ids = {1};
  data::Object o;
  o.box = kRect;
  o.label = 0;
  d.samples.push_back({path, "img", kW, kH, {o}});
  return d;
}

data::LoaderOptions options(bool train, bool u8) {
  data::LoaderOptions o;
  o.batch_size = 1;
  o.workers = 0;
  o.seed = 3;
  o.train = train;
  o.input_sizes = {64};
  o.mean = {123.675, 116.28, 103.53};
  o.std = {58.395, 57.12, 57.375};
  o.keep_aspect = true;
  o.uint8_images = u8;
  o.augment.photometric = o.augment.expand = o.augment.crop = o.augment.flip = false;
  return o;
}

// Value of channel c at (x, y) of item 0 of an S x S batch, as float.
float at(const eng::Tensor& t, int side, int c, int x, int y) {
  const size_t i = (static_cast<size_t>(c) * side + y) * side + x;
  return t.dtype() == eng::DType::u8 ? static_cast<float>(t.data<uint8_t>()[i]) : t.data<float>()[i];
}

}  // namespace

TEST_CASE("fit_input: stretch, keep_aspect and torchvision's floor", "[data][loader]") {
  const data::InputFit s = data::fit_input(kW, kH, 64, false);
  CHECK(s.width == 64);
  CHECK(s.height == 64);
  CHECK(s.scale_x == 64.0 / 200);
  CHECK(s.scale_y == 64.0 / 100);
  const data::InputFit k = data::fit_input(kW, kH, 64, true);
  CHECK(k.width == 64);
  CHECK(k.height == 32);
  CHECK(k.ref_width == kW);
  CHECK(k.ref_height == kH);
  CHECK(k.scale_x == Approx(0.32).epsilon(1e-15));
  CHECK(k.scale_y == Approx(0.32).epsilon(1e-15));
  // Tall image: the height is the long side.
  const data::InputFit t = data::fit_input(50, 400, 128, true);
  CHECK(t.width == 16);
  CHECK(t.height == 128);
  // torchvision: scale = 64 / 49 in double and floor(49 * scale) = 63 (interpolate with
  // recompute_scale_factor; checked with torch 2.x: [1, 3, 49, 30] -> [1, 3, 63, 39]).
  const data::InputFit f = data::fit_input(30, 49, 64, true);
  CHECK(f.height == 63);
  CHECK(f.width == 39);
  CHECK(f.scale_y == 63.0 / 49);
  // A sliver keeps one pixel.
  CHECK(data::fit_input(100000, 1, 8, true).height == 1);
  CHECK_THROWS_AS(data::fit_input(0, 10, 64, true), eng::Error);
  CHECK_THROWS_AS(data::fit_input(10, 10, 0, true), eng::Error);
}

TEST_CASE("box_to_reference and unmirror_box invert the fit", "[data][loader]") {
  const data::InputFit k = data::fit_input(kW, kH, 64, true);
  const data::Box in{38.4, 6.4, 54.4, 22.4};  // kRect * 0.32
  const data::Box back = data::box_to_reference(in, k);
  CHECK(back.x1 == Approx(kRect.x1));
  CHECK(back.y1 == Approx(kRect.y1));
  CHECK(back.x2 == Approx(kRect.x2));
  CHECK(back.y2 == Approx(kRect.y2));
  // Stretch: exactly x * w / S, y * h / S.
  const data::InputFit s = data::fit_input(kW, kH, 64, false);
  const data::Box bs = data::box_to_reference({16, 16, 32, 48}, s);
  CHECK(bs.x1 == 16 * (200.0 / 64));
  CHECK(bs.y2 == 48 * (100.0 / 64));
  // Mirrored within the valid width 64 (not the canvas): [10, 20] -> [44, 54].
  const data::Box m = data::unmirror_box({10, 1, 20, 2}, k);
  CHECK(m.x1 == 44);
  CHECK(m.x2 == 54);
  CHECK(m.y1 == 1);
  CHECK(m.y2 == 2);
  // Clipping to the valid region: letterboxed fits only.
  CHECK(k.keep_aspect);
  CHECK_FALSE(s.keep_aspect);
  const data::Box c = data::clip_to_valid({-3, 10, 70, 50}, k);
  CHECK(c.x1 == 0);
  CHECK(c.y1 == 10);
  CHECK(c.x2 == 64);
  CHECK(c.y2 == 32);
  const data::Box u = data::clip_to_valid({-3, 10, 70, 50}, s);
  CHECK(u.x1 == -3);
  CHECK(u.y2 == 50);
}

TEST_CASE("loader keep_aspect evaluation: content at the top-left, padding the normalised 0", "[data][loader]") {
  test::TempDir dir("letterbox");
  const data::Image im = make_image(false);
  const data::Dataset d = one_image_dataset(dir, im);
  for (bool u8 : {false, true}) {
    INFO("uint8_images " << u8);
    data::LoaderOptions o = options(false, u8);
    o.input_sizes = {64, 96};
    data::Loader loader(d, o);
    data::Batch b;
    REQUIRE(loader.next(b));
    REQUIRE(b.size() == 1);
    REQUIRE(b.fits_at.size() == 2);
    REQUIRE(b.fits.size() == 1);
    CHECK(b.widths[0] == kW);
    CHECK(b.heights[0] == kH);
    for (size_t si = 0; si < 2; ++si) {
      const int side = o.input_sizes[si];
      const data::InputFit& f = b.fits_at[si][0];
      CHECK(f.width == side);
      CHECK(f.height == side / 2);
      CHECK(f.scale_x == Approx(side / 200.0).epsilon(1e-15));
      CHECK(f.scale_y == Approx(side / 200.0).epsilon(1e-15));
      const eng::Tensor& t = b.images_at[si];
      REQUIRE(t.sizes() == eng::Shape{1, 3, side, side});
      CHECK(t.dtype() == (u8 ? eng::DType::u8 : eng::DType::f32));
      // The valid region is the plain resize to the valid size (bit for bit), u8: rounded.
      std::vector<float> ref(static_cast<size_t>(3) * f.width * f.height);
      if (u8)
        data::resize_normalize_into(im, f.width, f.height, {0, 0, 0}, {1, 1, 1}, ref.data());
      else
        data::resize_normalize_into(im, f.width, f.height, o.mean, o.std, ref.data());
      int bad_content = 0, bad_pad = 0;
      for (int c = 0; c < 3; ++c) {
        // u8 padding: the mean rounded to an integer (124, 116, 104), which the device
        // normalises to (round(mean) - mean) / std, |.| <= 0.5 / std.
        const float pad = u8 ? static_cast<float>(std::lround(o.mean[static_cast<size_t>(c)])) : 0.0f;
        for (int y = 0; y < side; ++y)
          for (int x = 0; x < side; ++x) {
            const float v = at(t, side, c, x, y);
            if (x < f.width && y < f.height) {
              float want = ref[(static_cast<size_t>(c) * f.height + y) * f.width + x];
              if (u8) want = static_cast<float>(std::lround(std::clamp(want, 0.0f, 255.0f)));
              bad_content += v != want;
            } else {
              bad_pad += v != pad;
            }
          }
      }
      CHECK(bad_content == 0);
      CHECK(bad_pad == 0);
    }
    if (u8) {
      CHECK(at(b.images, 64, 0, 63, 63) == 124);
      CHECK(at(b.images, 64, 1, 63, 63) == 116);
      CHECK(at(b.images, 64, 2, 63, 63) == 104);
    }
  }
}

TEST_CASE("loader stretch mode reports the stretched fits", "[data][loader]") {
  test::TempDir dir("letterbox");
  const data::Dataset d = one_image_dataset(dir, make_image(false));
  data::LoaderOptions o = options(false, false);
  o.keep_aspect = false;
  data::Loader loader(d, o);
  data::Batch b;
  REQUIRE(loader.next(b));
  REQUIRE(b.fits.size() == 1);
  CHECK(b.fits[0].width == 64);
  CHECK(b.fits[0].height == 64);
  CHECK(b.fits[0].scale_x == 64.0 / 200);
  CHECK(b.fits[0].scale_y == 64.0 / 100);
  // Training without augmentation: boxes by S / w, S / h.
  o.train = true;
  data::Loader tl(d, o);
  REQUIRE(tl.next(b));
  REQUIRE(b.objects[0].size() == 1);
  CHECK(b.objects[0][0].box.x1 == Approx(120 * 0.32));
  CHECK(b.objects[0][0].box.y1 == Approx(20 * 0.64));
}

TEST_CASE("loader keep_aspect training: boxes scaled by the fit, no augmentation", "[data][loader]") {
  test::TempDir dir("letterbox");
  const data::Dataset d = one_image_dataset(dir, make_image(true));
  data::Loader loader(d, options(true, false));
  data::Batch b;
  REQUIRE(loader.next(b));
  REQUIRE(b.objects.size() == 1);
  REQUIRE(b.objects[0].size() == 1);
  const data::Box& bx = b.objects[0][0].box;
  CHECK(bx.x1 == Approx(120 * 0.32));
  CHECK(bx.y1 == Approx(20 * 0.32));
  CHECK(bx.x2 == Approx(170 * 0.32));
  CHECK(bx.y2 == Approx(70 * 0.32));
  CHECK(b.fits[0].width == 64);
  CHECK(b.fits[0].height == 32);
}

// The bright rectangle seen in item 0 of a training batch: the bounding box of the pixels
// whose channel 0 is above the midpoint of the raw values (within the valid region), and
// whether the padding is exactly the pad value everywhere.
struct Seen {
  int x1 = 1 << 30, y1 = 1 << 30, x2 = -1, y2 = -1;
  bool pad_ok = true;
};

Seen look(const data::Batch& b, const data::LoaderOptions& o) {
  const int side = b.input_size;
  const data::InputFit& f = b.fits[0];
  Seen s;
  const double mid = (kBackground + kFilled) / 2.0;
  for (int c = 0; c < 3; ++c) {
    const double m = o.mean[static_cast<size_t>(c)], sd = o.std[static_cast<size_t>(c)];
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x) {
        const float v = at(b.images, side, c, x, y);
        if (x >= f.width || y >= f.height) {
          const float pad = o.uint8_images ? static_cast<float>(std::lround(m)) : 0.0f;
          s.pad_ok = s.pad_ok && v == pad;
          continue;
        }
        const double raw = o.uint8_images ? v : v * sd + m;
        if (c == 0 && raw > mid) {
          s.x1 = std::min(s.x1, x);
          s.y1 = std::min(s.y1, y);
          s.x2 = std::max(s.x2, x + 1);
          s.y2 = std::max(s.y2, y + 1);
        }
      }
  }
  return s;
}

TEST_CASE("loader keep_aspect training: augmented boxes follow the drawn rectangle", "[data][loader]") {
  test::TempDir dir("letterbox");
  const data::Dataset d = one_image_dataset(dir, make_image(true));
  for (bool u8 : {false, true}) {
    INFO("uint8_images " << u8);
    data::LoaderOptions o = options(true, u8);
    o.input_sizes = {64, 96};
    // Zoom-out (canvas in the mean colour, below the midpoint), crop, flip; no colour change.
    o.augment.expand = o.augment.crop = o.augment.flip = true;
    o.augment.fill = o.mean;
    data::Loader loader(d, o);
    int checked = 0, padded = 0;
    for (int i = 0; i < 40; ++i) {
      data::Batch b;
      REQUIRE(loader.next(b));
      REQUIRE(b.size() == 1);
      const data::InputFit& f = b.fits[0];
      INFO("batch " << i << ", input " << b.input_size << ", fit " << f.width << "x" << f.height << " of "
                    << f.ref_width << "x" << f.ref_height);
      // The long side fills the input (torchvision's floor may leave S - 1).
      CHECK(std::max(f.width, f.height) >= b.input_size - 1);
      CHECK(std::max(f.width, f.height) <= b.input_size);
      CHECK(f.scale_x == static_cast<double>(f.width) / f.ref_width);
      padded += std::min(f.width, f.height) < b.input_size;
      const Seen s = look(b, o);
      CHECK(s.pad_ok);
      if (b.objects[0].empty()) continue;  // the crop left the object out
      REQUIRE(b.objects[0].size() == 1);
      const data::Box& bx = b.objects[0][0].box;
      // The box stays inside the valid region and covers the bright pixels to within one
      // input pixel on every side (bilinear: a pixel is bright when its centre is inside).
      CHECK(bx.x2 <= f.width + 1e-9);
      CHECK(bx.y2 <= f.height + 1e-9);
      if (bx.x2 - bx.x1 < 2 || bx.y2 - bx.y1 < 2) continue;  // too thin to be sure of a bright pixel
      REQUIRE(s.x2 > s.x1);
      CHECK(std::abs(s.x1 - bx.x1) <= 1.0);
      CHECK(std::abs(s.y1 - bx.y1) <= 1.0);
      CHECK(std::abs(s.x2 - bx.x2) <= 1.0);
      CHECK(std::abs(s.y2 - bx.y2) <= 1.0);
      ++checked;
    }
    CHECK(checked >= 10);
    CHECK(padded >= 10);
  }
}

TEST_CASE("loader keep_aspect evaluation with a reduced JPEG decode fits the original size", "[data][loader]") {
  test::TempDir dir("letterbox");
  // 400 x 200 at S = 64: libjpeg decodes it at 1/2 (200 x 100: the loader keeps every side
  // >= S), but the fit is computed from the original size, so the mapping back uses 400 x 200.
  data::Image im;
  im.width = 400;
  im.height = 200;
  im.rgb.assign(static_cast<size_t>(400) * 200 * 3, 200);
  const std::string path = dir / "big.jpg";
  data::save_jpg(path, im, 95);
  data::Dataset d;
  d.class_names = {"box"};
  d.category_ids = {1};
  d.samples.push_back({path, "big", 400, 200, {}});
  data::LoaderOptions o = options(false, false);
  REQUIRE(o.scaled_decode);
  data::Loader loader(d, o);
  data::Batch b;
  REQUIRE(loader.next(b));
  REQUIRE(b.size() == 1);
  const data::InputFit& f = b.fits[0];
  CHECK(f.ref_width == 400);
  CHECK(f.ref_height == 200);
  CHECK(f.width == 64);
  CHECK(f.height == 32);
  CHECK(b.widths[0] == 400);
  // Content (grey 200, JPEG error aside) inside, exact padding outside.
  CHECK(at(b.images, 64, 0, 10, 10) * o.std[0] + o.mean[0] == Approx(200).margin(3));
  CHECK(at(b.images, 64, 0, 10, 40) == 0.0f);
}

TEST_CASE("fit_input: torchvision's min_size / max_size limits (GeneralizedRCNNTransform(800, 1333))", "[data][loader]") {
  // The image sizes torchvision 0.29.2's transform gives (measured with it): w x h -> w' x h'.
  const data::AspectLimits tv{800, 1333, 1344};
  struct Case { int w, h, fw, fh; };
  for (const Case& c : {Case{640, 480, 1066, 800}, Case{2000, 500, 1333, 333}, Case{300, 1000, 399, 1333},
                        Case{500, 375, 1066, 800}}) {
    INFO(c.w << "x" << c.h);
    const data::InputFit f = data::fit_input(c.w, c.h, 1344, true, tv);
    CHECK(f.width == c.fw);
    CHECK(f.height == c.fh);
  }
  // At another input side the limits scale with it: 672 -> 400 / 666.5 (torchvision
  // GeneralizedRCNNTransform(400, 666.5) gives 533 x 400 and 666 x 166).
  data::InputFit half = data::fit_input(640, 480, 672, true, tv);
  CHECK(half.width == 533);
  CHECK(half.height == 400);
  half = data::fit_input(2000, 500, 672, true, tv);
  CHECK(half.width == 666);
  CHECK(half.height == 166);
  // Stretch fits ignore the limits; limits above the side are refused (the image would not fit).
  CHECK(data::fit_input(640, 480, 1344, false, tv).width == 1344);
  CHECK_THROWS_WITH(data::fit_input(640, 480, 1344, true, data::AspectLimits{800, 1400, 1344}),
                    Catch::Contains("must be in (0, 1344]"));
}

TEST_CASE("loader keep_aspect with size limits: the short side's target binds", "[data][loader]") {
  test::TempDir dir("letterbox_limits");
  const data::Image im = make_image(false);  // 200 x 100
  const data::Dataset d = one_image_dataset(dir, im);
  data::LoaderOptions o = options(false, false);
  o.input_sizes = {64, 96};
  o.aspect_limits = {24, 64, 64};  // min(24 / 100, 64 / 200) = 0.24 at 64; 36 and 96 at 96
  data::Loader loader(d, o);
  data::Batch b;
  REQUIRE(loader.next(b));
  CHECK(b.fits_at[0][0].width == 48);
  CHECK(b.fits_at[0][0].height == 24);
  CHECK(b.fits_at[1][0].width == 72);
  CHECK(b.fits_at[1][0].height == 36);
  // Everything beyond the valid region is the padding (0 after normalisation).
  const eng::Tensor& t = b.images_at[0];
  int bad_pad = 0;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x)
        if (x >= 48 || y >= 24) bad_pad += at(t, 64, c, x, y) != 0.0f;
  CHECK(bad_pad == 0);
}
