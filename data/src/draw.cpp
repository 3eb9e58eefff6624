// Box outlines, bitmap text and labelled detection boxes. See data/draw.h.
#include "data/draw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/error.h"

// stb_easy_font is header-only with static functions; it is included here and nowhere else.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wcast-align"
#endif
#include <stb/stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace data {
namespace {

constexpr int kGlyphHeight = 9;        // stb_easy_font glyph quads lie in rows [0, 9)
constexpr double kCoordLimit = 1e15;   // far outside any image, still exact in long long

// Empty images are a no-op for every drawing function; inconsistent ones are an error.
bool drawable(const Image& img) {
  if (img.empty()) return false;
  ENGINE_CHECK(img.rgb.size() == static_cast<size_t>(img.width) * img.height * 3, "draw: image of ", img.width,
               "x", img.height, " holds ", img.rgb.size(), " bytes");
  return true;
}

void put(Image& img, int x, int y, Rgb c) {
  uint8_t* p = &img.rgb[(static_cast<size_t>(y) * img.width + x) * 3];
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

long long to_pixel(double v) { return std::llround(std::clamp(v, -kCoordLimit, kCoordLimit)); }

// Pixel corners of a box, ordered (x0 <= x1, y0 <= y1). False when a corner is NaN.
struct PixelBox {
  long long x0, y0, x1, y1;
};
bool pixel_box(const Box& b, PixelBox& out) {
  if (std::isnan(b.x1) || std::isnan(b.y1) || std::isnan(b.x2) || std::isnan(b.y2)) return false;
  const long long xa = to_pixel(b.x1), xb = to_pixel(b.x2), ya = to_pixel(b.y1), yb = to_pixel(b.y2);
  out = {std::min(xa, xb), std::min(ya, yb), std::max(xa, xb), std::max(ya, yb)};
  return true;
}

bool overlaps_image(const PixelBox& p, const Image& img) {
  return p.x1 >= 0 && p.y1 >= 0 && p.x0 < img.width && p.y0 < img.height;
}

// Printable ASCII only: stb_easy_font has glyphs for 32..126 and indexes its table with
// the character code, so anything else must not reach it.
std::string printable(const std::string& text) {
  std::string s = text;
  for (char& c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u == '\n' || u == '\t') c = ' ';
    else if (u < 32 || u > 126) c = '?';
  }
  return s;
}

int advance(char c) {
  char s[2] = {c, 0};
  return stb_easy_font_width(s);
}

// Rasterises one glyph with its cell's top-left corner at (x, y), magnified by `scale`.
void draw_glyph(Image& img, long long x, long long y, char c, Rgb fg, int scale) {
  char s[2] = {c, 0};
  float quads[64 * 4 * 4];  // 4 vertices of 16 bytes per quad; a glyph has at most 11 quads
  const int n = stb_easy_font_print(0, 0, s, nullptr, quads, static_cast<int>(sizeof(quads)));
  for (int q = 0; q < n; ++q) {
    const float* v = quads + q * 16;  // vertex k: v[4k] = x, v[4k + 1] = y
    const float qx0 = std::min(v[0], v[8]), qx1 = std::max(v[0], v[8]);
    const float qy0 = std::min(v[1], v[9]), qy1 = std::max(v[1], v[9]);
    fill_rect(img, x + std::lround(qx0) * scale, y + std::lround(qy0) * scale,
              x + std::lround(qx1) * scale - 1, y + std::lround(qy1) * scale - 1, fg);
  }
}

Rgb hsv_to_rgb(double h, double s, double v) {
  const double sector = h * 6.0;
  const int i = static_cast<int>(std::floor(sector)) % 6;
  const double f = sector - std::floor(sector);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r = v, g = t, b = p;
  switch (i) {
    case 0: r = v, g = t, b = p; break;
    case 1: r = q, g = v, b = p; break;
    case 2: r = p, g = v, b = t; break;
    case 3: r = p, g = q, b = v; break;
    case 4: r = t, g = p, b = v; break;
    default: r = v, g = p, b = q; break;
  }
  auto byte = [](double x) { return static_cast<uint8_t>(std::lround(std::clamp(x, 0.0, 1.0) * 255)); };
  return Rgb{byte(r), byte(g), byte(b)};
}

}  // namespace

Rgb class_colour(int label) {
  constexpr double kGoldenTurn = 0.6180339887498949;  // 1 / golden ratio
  const double h = 0.05 + static_cast<double>(label) * kGoldenTurn;
  return hsv_to_rgb(h - std::floor(h), 0.85, 0.95);
}

Rgb text_colour_on(Rgb bg) {
  const double luminance = 0.299 * bg.r + 0.587 * bg.g + 0.114 * bg.b;  // ITU-R BT.601
  return luminance >= 140 ? Rgb{0, 0, 0} : Rgb{255, 255, 255};
}

void fill_rect(Image& img, long long x0, long long y0, long long x1, long long y1, Rgb colour) {
  if (!drawable(img)) return;
  if (x0 > x1) std::swap(x0, x1);
  if (y0 > y1) std::swap(y0, y1);
  const long long xa = std::max(x0, 0LL), xb = std::min(x1, img.width - 1LL);
  const long long ya = std::max(y0, 0LL), yb = std::min(y1, img.height - 1LL);
  for (long long y = ya; y <= yb; ++y)
    for (long long x = xa; x <= xb; ++x) put(img, static_cast<int>(x), static_cast<int>(y), colour);
}

void draw_rect(Image& img, const Box& box, Rgb colour, int thickness) {
  PixelBox p;
  if (!drawable(img) || !pixel_box(box, p) || !overlaps_image(p, img)) return;
  const long long t = std::max(thickness, 1);
  fill_rect(img, p.x0, p.y0, p.x1, std::min(p.y0 + t - 1, p.y1), colour);  // top
  fill_rect(img, p.x0, std::max(p.y1 - t + 1, p.y0), p.x1, p.y1, colour);  // bottom
  fill_rect(img, p.x0, p.y0, std::min(p.x0 + t - 1, p.x1), p.y1, colour);  // left
  fill_rect(img, std::max(p.x1 - t + 1, p.x0), p.y0, p.x1, p.y1, colour);  // right
}

int text_width(const std::string& text, int scale) {
  long long w = 0;
  for (char c : printable(text)) w += advance(c);
  return static_cast<int>(std::min<long long>(w * std::max(scale, 1), 1LL << 30));
}

int text_height(int scale) { return kGlyphHeight * std::max(scale, 1); }

void draw_text(Image& img, int x, int y, const std::string& text, Rgb fg, int scale) {
  if (!drawable(img)) return;
  scale = std::max(scale, 1);
  if (y >= img.height || static_cast<long long>(y) + text_height(scale) <= 0) return;
  long long pen = x;
  for (char c : printable(text)) {
    if (pen >= img.width) break;
    const long long step = static_cast<long long>(advance(c)) * scale;
    if (pen + step > 0) draw_glyph(img, pen, y, c, fg, scale);
    pen += step;
  }
}

int detection_thickness(const Image& img) { return std::max(2, std::min(img.width, img.height) / 200); }

int detection_text_scale(const Image& img) { return std::min(img.width, img.height) >= 480 ? 2 : 1; }

void draw_detection(Image& img, const Box& box, const std::string& caption, Rgb colour) {
  PixelBox p;
  if (!drawable(img) || !pixel_box(box, p) || !overlaps_image(p, img)) return;
  draw_rect(img, box, colour, detection_thickness(img));
  if (caption.empty()) return;

  // The tag: padding of 2 units left, 1 right (the last advance already ends in a blank
  // column), 1 above and 1 below the 9-unit glyph cell.
  const int s = detection_text_scale(img);
  const long long tag_w = text_width(caption, s) + 3LL * s, tag_h = text_height(s) + 2LL * s;
  long long tag_x = p.x0;
  if (tag_x + tag_w > img.width) tag_x = img.width - tag_w;
  tag_x = std::max(tag_x, 0LL);
  const long long above = p.y0 - tag_h;
  const long long tag_y = above >= 0 ? above : std::max(p.y0, 0LL);
  fill_rect(img, tag_x, tag_y, tag_x + tag_w - 1, tag_y + tag_h - 1, colour);
  draw_text(img, static_cast<int>(tag_x + 2 * s), static_cast<int>(tag_y + s), caption, text_colour_on(colour), s);
}

}  // namespace data
