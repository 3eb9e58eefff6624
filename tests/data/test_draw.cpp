// Drawing: class colours, box outlines (exact pixels, clipping, degenerate boxes), bitmap
// text bounds, and labelled detection boxes.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <tuple>

#include "data/draw.h"
#include "data/image.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using data::Box;
using data::Image;
using data::Rgb;
using test::TempDir;

namespace {

const Rgb kGrey{128, 128, 128};
const Rgb kRed{255, 0, 0};

Image grey_image(int w, int h) {
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(static_cast<size_t>(w) * h * 3, 128);
  return img;
}

bool is(const Image& img, int x, int y, Rgb c) {
  return img.at(x, y, 0) == c.r && img.at(x, y, 1) == c.g && img.at(x, y, 2) == c.b;
}

// Counts the pixels that differ from the grey background, and their bounding box.
struct Changed {
  int count = 0, x0 = INT32_MAX, y0 = INT32_MAX, x1 = -1, y1 = -1;
};
Changed changed(const Image& img) {
  Changed c;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      if (!is(img, x, y, kGrey)) {
        ++c.count;
        c.x0 = std::min(c.x0, x), c.y0 = std::min(c.y0, y);
        c.x1 = std::max(c.x1, x), c.y1 = std::max(c.y1, y);
      }
  return c;
}

// Pixel (x, y) lies on the outline of [x0, x1] x [y0, y1] of thickness t.
bool on_outline(int x, int y, int x0, int y0, int x1, int y1, int t) {
  const bool inside = x >= x0 && x <= x1 && y >= y0 && y <= y1;
  const bool interior = x >= x0 + t && x <= x1 - t && y >= y0 + t && y <= y1 - t;
  return inside && !interior;
}

void require_exact_outline(const Image& img, int x0, int y0, int x1, int y1, int t, Rgb c) {
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      INFO("pixel (" << x << ", " << y << ")");
      REQUIRE(is(img, x, y, on_outline(x, y, x0, y0, x1, y1, t) ? c : kGrey));
    }
}

}  // namespace

TEST_CASE("class_colour: deterministic, bright and pairwise distinct", "[data][draw]") {
  std::set<std::tuple<int, int, int>> seen;
  for (int label = 0; label < 20; ++label) {
    const Rgb c = data::class_colour(label);
    REQUIRE(c == data::class_colour(label));
    REQUIRE(std::max({c.r, c.g, c.b}) >= 230);  // value 0.95
    REQUIRE(seen.emplace(c.r, c.g, c.b).second);
  }
  // Neighbouring labels are clearly different (not just one unit apart in a channel).
  for (int label = 0; label < 19; ++label) {
    const Rgb a = data::class_colour(label), b = data::class_colour(label + 1);
    const int d = std::abs(a.r - b.r) + std::abs(a.g - b.g) + std::abs(a.b - b.b);
    REQUIRE(d >= 100);
  }
  // Any label works, negative and extreme ones included.
  for (int label : {-1, -1000, 1000000, std::numeric_limits<int>::max(), std::numeric_limits<int>::min()}) {
    const Rgb c = data::class_colour(label);
    REQUIRE(std::max({c.r, c.g, c.b}) >= 230);
  }
}

TEST_CASE("text_colour_on picks black on light and white on dark", "[data][draw]") {
  REQUIRE(data::text_colour_on(Rgb{255, 255, 0}) == Rgb{0, 0, 0});
  REQUIRE(data::text_colour_on(Rgb{0, 0, 160}) == Rgb{255, 255, 255});
}

TEST_CASE("draw_rect colours exactly the outline at the rounded box corners", "[data][draw]") {
  SECTION("thickness 1") {
    Image img = grey_image(40, 30);
    data::draw_rect(img, Box{5, 4, 20, 15}, kRed, 1);
    require_exact_outline(img, 5, 4, 20, 15, 1, kRed);
  }
  SECTION("thickness 3 grows inward; fractional corners are rounded") {
    Image img = grey_image(40, 30);
    data::draw_rect(img, Box{4.6, 3.7, 20.4, 15.2}, kRed, 3);
    require_exact_outline(img, 5, 4, 20, 15, 3, kRed);
  }
  SECTION("corners in the wrong order are swapped") {
    Image img = grey_image(40, 30);
    data::draw_rect(img, Box{20, 15, 5, 4}, kRed, 2);
    require_exact_outline(img, 5, 4, 20, 15, 2, kRed);
  }
  SECTION("a thickness larger than the box fills it, never more") {
    Image img = grey_image(40, 30);
    data::draw_rect(img, Box{5, 4, 8, 6}, kRed, 50);
    require_exact_outline(img, 5, 4, 8, 6, 50, kRed);
  }
  SECTION("thickness below 1 draws 1") {
    Image img = grey_image(40, 30);
    data::draw_rect(img, Box{5, 4, 20, 15}, kRed, 0);
    require_exact_outline(img, 5, 4, 20, 15, 1, kRed);
  }
}

TEST_CASE("draw_rect pixels survive save_png and load_image", "[data][draw]") {
  TempDir dir("test_draw");
  Image img = grey_image(64, 48);
  const Rgb c = data::class_colour(3);
  data::draw_rect(img, Box{10, 8, 50, 40}, c, 2);
  const std::string file = (dir.path / "rect.png").string();
  data::save_png(file, img);
  const Image back = data::load_image(file);
  REQUIRE(back.width == 64);
  REQUIRE(back.height == 48);
  REQUIRE(back.rgb == img.rgb);
  require_exact_outline(back, 10, 8, 50, 40, 2, c);
}

TEST_CASE("draw_rect clips boxes partly outside and ignores degenerate ones", "[data][draw]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  SECTION("partly outside: only the visible edges are drawn") {
    Image img = grey_image(40, 30);
    data::draw_rect(img, Box{-10, -5, 20, 15}, kRed, 1);
    require_exact_outline(img, -10, -5, 20, 15, 1, kRed);
    Image img2 = grey_image(40, 30);
    data::draw_rect(img2, Box{30, 20, 100, 100}, kRed, 2);
    require_exact_outline(img2, 30, 20, 100, 100, 2, kRed);
  }
  SECTION("covering the whole image: nothing visible, nothing broken") {
    Image img = grey_image(40, 30);
    data::draw_rect(img, Box{-1, -1, 40, 30}, kRed, 1);
    REQUIRE(changed(img).count == 0);
  }
  SECTION("fully outside, NaN, infinite, huge: no crash, no stray pixels") {
    for (const Box& b : {Box{-50, -50, -10, -10}, Box{100, 5, 200, 20}, Box{5, 40, 20, 60}, Box{nan, 1, 5, 5},
                         Box{1, 1, nan, nan}, Box{-inf, -inf, inf, inf}, Box{-1e300, 2, 1e300, 3}}) {
      Image img = grey_image(40, 30);
      data::draw_rect(img, b, kRed, 3);
      data::draw_detection(img, b, "cat 0.50", kRed);
      const Changed c = changed(img);
      if (std::isnan(b.x1) || std::isnan(b.x2) || b.x2 < 0 || b.x1 >= 40 || b.y1 >= 30) REQUIRE(c.count == 0);
    }
  }
  SECTION("an empty image is left alone") {
    Image img;
    data::draw_rect(img, Box{0, 0, 5, 5}, kRed, 1);
    data::draw_text(img, 0, 0, "x", kRed, 1);
    data::draw_detection(img, Box{0, 0, 5, 5}, "x", kRed);
    REQUIRE(img.rgb.empty());
  }
}

TEST_CASE("draw_text writes only inside its text_width x text_height cell", "[data][draw]") {
  std::string all;
  for (char c = 32; c < 127; ++c) all += c;
  for (int scale : {1, 2, 3}) {
    for (const std::string& text : {std::string("dog 0.87"), std::string("gjpqy|_{}[]()"), all}) {
      const int w = data::text_width(text, scale), h = data::text_height(scale);
      Image img = grey_image(w + 20, h + 20);
      data::draw_text(img, 7, 5, text, kRed, scale);
      const Changed c = changed(img);
      INFO("scale " << scale << " text \"" << text << "\"");
      REQUIRE(c.count > 0);
      REQUIRE(c.x0 >= 7);
      REQUIRE(c.y0 >= 5);
      REQUIRE(c.x1 < 7 + w);
      REQUIRE(c.y1 < 5 + h);
      for (int y = 0; y < img.height; ++y)
        for (int x = 0; x < img.width; ++x) REQUIRE((is(img, x, y, kGrey) || is(img, x, y, kRed)));
    }
  }
  REQUIRE(data::text_height(1) == 9);
  REQUIRE(data::text_height(2) == 18);
  REQUIRE(data::text_width("", 1) == 0);
  REQUIRE(data::text_width("ab", 2) == 2 * data::text_width("ab", 1));
}

TEST_CASE("draw_text scales glyphs by whole pixels", "[data][draw]") {
  // Every lit pixel at scale 2 is a 2x2 block copy of the scale-1 rendering.
  const std::string text = "Ab9%";
  Image one = grey_image(40, 20), two = grey_image(80, 40);
  data::draw_text(one, 0, 0, text, kRed, 1);
  data::draw_text(two, 0, 0, text, kRed, 2);
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < 80; ++x) REQUIRE(is(two, x, y, kRed) == is(one, x / 2, y / 2, kRed));
}

TEST_CASE("draw_text clips and survives odd input", "[data][draw]") {
  Image img = grey_image(30, 12);
  data::draw_text(img, -15, -4, "clipped text", kRed, 2);
  data::draw_text(img, 25, 8, "WWW", kRed, 3);
  data::draw_text(img, 1000, 1000, "far away", kRed, 1);
  data::draw_text(img, -1000000, 0, "far left", kRed, 1);
  data::draw_text(img, 0, 0, std::string("ctl\x01\x7f\xff\n\t\xc3\xa9"), kRed, 1);  // non-ASCII drawn as '?'
  REQUIRE(data::text_width(std::string("\x01\x7f\xff"), 1) == data::text_width("???", 1));
  REQUIRE(changed(img).count > 0);
}

TEST_CASE("draw_detection: outline at the box and a filled tag above it", "[data][draw]") {
  Image img = grey_image(200, 150);  // thickness 2, scale 1
  const Rgb c = data::class_colour(5);
  REQUIRE(data::detection_thickness(img) == 2);
  REQUIRE(data::detection_text_scale(img) == 1);
  const std::string caption = "dog 0.87";
  data::draw_detection(img, Box{40, 60, 120, 130}, caption, c);

  // Outline: the box edges are exactly there, the interior is untouched.
  for (int x = 40; x <= 120; ++x) REQUIRE((is(img, x, 60, c) && is(img, x, 61, c) && is(img, x, 130, c)));
  for (int y = 60; y <= 130; ++y) REQUIRE((is(img, 40, y, c) && is(img, 41, y, c) && is(img, 120, y, c)));
  for (int y = 62; y <= 128; ++y)
    for (int x = 42; x <= 118; ++x) REQUIRE(is(img, x, y, kGrey));

  // Tag: directly above the top-left corner, [40, 40 + tag_w) x [60 - tag_h, 60).
  const int tag_w = data::text_width(caption, 1) + 3, tag_h = data::text_height(1) + 2;
  const Rgb ink = data::text_colour_on(c);
  int ink_pixels = 0;
  for (int y = 60 - tag_h; y < 60; ++y)
    for (int x = 40; x < 40 + tag_w; ++x) {
      REQUIRE((is(img, x, y, c) || is(img, x, y, ink)));
      ink_pixels += is(img, x, y, ink);
    }
  REQUIRE(ink_pixels > 20);
  // Nothing else above the box.
  for (int y = 0; y < 60; ++y)
    for (int x = 0; x < 200; ++x)
      if (!(y >= 60 - tag_h && x >= 40 && x < 40 + tag_w)) REQUIRE(is(img, x, y, kGrey));
}

TEST_CASE("draw_detection: the tag goes inside the box when there is no room above", "[data][draw]") {
  Image img = grey_image(200, 150);
  const Rgb c = data::class_colour(1);
  data::draw_detection(img, Box{10, 3, 100, 80}, "person 0.99", c);
  const int tag_w = data::text_width("person 0.99", 1) + 3, tag_h = data::text_height(1) + 2;
  const Rgb ink = data::text_colour_on(c);
  int ink_pixels = 0;
  for (int y = 3; y < 3 + tag_h; ++y)
    for (int x = 10; x < 10 + tag_w; ++x) ink_pixels += is(img, x, y, ink);
  REQUIRE(ink_pixels > 20);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 200; ++x) REQUIRE(is(img, x, y, kGrey));

  SECTION("near the right edge the tag shifts left to stay inside") {
    Image img2 = grey_image(200, 150);
    data::draw_detection(img2, Box{190, 50, 199, 80}, "person 0.99", c);
    for (int x = 200 - tag_w; x < 200; ++x) REQUIRE(is(img2, x, 50 - tag_h, c));
  }
}

TEST_CASE("draw_detection sizes lines and text from the image", "[data][draw]") {
  REQUIRE(data::detection_thickness(grey_image(100, 100)) == 2);
  REQUIRE(data::detection_thickness(grey_image(1000, 800)) == 4);
  REQUIRE(data::detection_text_scale(grey_image(640, 479)) == 1);
  REQUIRE(data::detection_text_scale(grey_image(640, 480)) == 2);
}
