// Synthetic shape scenes and their VOC / COCO datasets (data/synth.h).
//
// Drawing happens on a float RGB canvas (0..255). Every shape is rasterised into a small
// coverage window (fraction of each pixel inside the shape, from 4x4 sub-samples) and then
// blended into the canvas at an integer offset; the coverage decides both the anti-aliased
// edge and the object's box (pixels at least half covered).
#include "data/synth.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <string>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>
#include <pugixml.hpp>

#include "engine/error.h"
#include "engine/random.h"

namespace data {
namespace {

namespace fs = std::filesystem;
constexpr double kPi = 3.14159265358979323846;

// ---- random numbers -------------------------------------------------------------------------

// Draws from mt19937_64's raw 64-bit output only, so the numbers are the same with every
// standard library (std::uniform_real_distribution and friends are not specified exactly).
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  double uniform() { return static_cast<double>(gen_.next_u64() >> 11) * 0x1.0p-53; }  // [0, 1)
  double range(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int int_in(int lo, int hi) {  // inclusive; the modulo bias is negligible for small ranges
    return lo + static_cast<int>(gen_.next_u64() % static_cast<uint64_t>(hi - lo + 1));
  }
  bool chance(double p) { return uniform() < p; }
  double normal() {  // Box-Muller
    const double u1 = 1.0 - uniform();  // (0, 1], keeps log finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
  }

 private:
  eng::Generator gen_;
};

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// ---- colours and the canvas -----------------------------------------------------------------

struct Rgb {
  double r = 0, g = 0, b = 0;
};

Rgb mix(const Rgb& a, const Rgb& b, double t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}
Rgb scaled(const Rgb& c, double k) { return {c.r * k, c.g * k, c.b * k}; }
double distance(const Rgb& a, const Rgb& b) {
  return std::sqrt((a.r - b.r) * (a.r - b.r) + (a.g - b.g) * (a.g - b.g) + (a.b - b.b) * (a.b - b.b));
}

// h, s, v in [0, 1] -> 0..255 RGB.
Rgb hsv(double h, double s, double v) {
  const double h6 = (h - std::floor(h)) * 6.0;
  const int sector = std::min(5, static_cast<int>(h6));
  const double f = h6 - sector;
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  Rgb c;
  switch (sector) {
    case 0: c = {v, t, p}; break;
    case 1: c = {q, v, p}; break;
    case 2: c = {p, v, t}; break;
    case 3: c = {p, q, v}; break;
    case 4: c = {t, p, v}; break;
    default: c = {v, p, q}; break;
  }
  return scaled(c, 255.0);
}

struct Canvas {
  int width = 0, height = 0;
  std::vector<float> px;  // RGB, row-major, 0..255

  Canvas(int w, int h) : width(w), height(h), px(static_cast<size_t>(w) * h * 3, 0.f) {}
  bool contains(int x, int y) const { return x >= 0 && y >= 0 && x < width && y < height; }
  size_t index(int x, int y) const { return (static_cast<size_t>(y) * width + x) * 3; }
  Rgb get(int x, int y) const {
    const size_t i = index(x, y);
    return {px[i], px[i + 1], px[i + 2]};
  }
  void set(int x, int y, const Rgb& c) {
    const size_t i = index(x, y);
    px[i] = static_cast<float>(c.r);
    px[i + 1] = static_cast<float>(c.g);
    px[i + 2] = static_cast<float>(c.b);
  }
  void blend(int x, int y, const Rgb& c, double alpha) { set(x, y, mix(get(x, y), c, alpha)); }
};

Image to_image(const Canvas& canvas) {
  Image image;
  image.width = canvas.width;
  image.height = canvas.height;
  image.rgb.resize(canvas.px.size());
  for (size_t i = 0; i < canvas.px.size(); ++i)
    image.rgb[i] = static_cast<uint8_t>(std::clamp(std::lround(canvas.px[i]), 0L, 255L));
  return image;
}

// ---- coverage windows -----------------------------------------------------------------------

constexpr int kSub = 4;  // sub-samples per pixel side

// Fraction of each pixel of a (2r + 2)-pixel square window covered by a shape.
struct Coverage {
  int size = 0;
  double cx = 0, cy = 0;  // the shape's centre in window coordinates
  std::vector<float> a;
  float at(int i, int j) const { return a[static_cast<size_t>(j) * size + i]; }
};

// Rasterises `inside(dx, dy)` (a point at offset dx, dy from the centre) into a window whose
// pixel (i, j) spans [i, i+1) x [j, j+1) and whose centre sits at (r + fx, r + fy). A pixel
// whose centre and four corners agree is taken as fully in or out; the others are sampled
// kSub x kSub times (a feature at least 1 px wide always touches one of those five points).
template <class Inside>
Coverage rasterize(int r, double fx, double fy, const Inside& inside) {
  Coverage c;
  c.size = 2 * r + 2;
  c.cx = r + fx;
  c.cy = r + fy;
  c.a.assign(static_cast<size_t>(c.size) * c.size, 0.f);
  for (int j = 0; j < c.size; ++j) {
    for (int i = 0; i < c.size; ++i) {
      const double x0 = i - c.cx, y0 = j - c.cy;
      const bool centre = inside(x0 + 0.5, y0 + 0.5);
      const bool uniform = inside(x0, y0) == centre && inside(x0 + 1, y0) == centre &&
                           inside(x0, y0 + 1) == centre && inside(x0 + 1, y0 + 1) == centre;
      if (uniform) {
        c.a[static_cast<size_t>(j) * c.size + i] = centre ? 1.f : 0.f;
        continue;
      }
      int hits = 0;
      for (int sy = 0; sy < kSub; ++sy)
        for (int sx = 0; sx < kSub; ++sx)
          hits += inside(x0 + (sx + 0.5) / kSub, y0 + (sy + 0.5) / kSub) ? 1 : 0;
      c.a[static_cast<size_t>(j) * c.size + i] = static_cast<float>(hits) / (kSub * kSub);
    }
  }
  return c;
}

// Inclusive pixel rectangle; empty when x1 < x0.
struct PixelRect {
  int x0 = 0, y0 = 0, x1 = -1, y1 = -1;
  bool empty() const { return x1 < x0 || y1 < y0; }
  int width() const { return x1 - x0 + 1; }
  int height() const { return y1 - y0 + 1; }
};

// Bounds of the window pixels with coverage >= min_coverage (> 0 when min_coverage is 0).
PixelRect bounds(const Coverage& c, float min_coverage) {
  PixelRect r{c.size, c.size, -1, -1};
  for (int j = 0; j < c.size; ++j) {
    for (int i = 0; i < c.size; ++i) {
      const float a = c.at(i, j);
      if (a <= 0.f || a < min_coverage) continue;
      r.x0 = std::min(r.x0, i);
      r.y0 = std::min(r.y0, j);
      r.x1 = std::max(r.x1, i);
      r.y1 = std::max(r.y1, j);
    }
  }
  return r;
}

// Blends colour_at(i, j) into the canvas with window pixel (i, j) at canvas (ox + i, oy + j);
// pixels outside the canvas are skipped.
template <class ColourAt>
void paint(Canvas& canvas, const Coverage& c, int ox, int oy, double opacity, const ColourAt& colour_at) {
  for (int j = 0; j < c.size; ++j) {
    for (int i = 0; i < c.size; ++i) {
      const float a = c.at(i, j);
      if (a <= 0.f || !canvas.contains(ox + i, oy + j)) continue;
      canvas.blend(ox + i, oy + j, colour_at(i, j), a * opacity);
    }
  }
}

// ---- shapes ---------------------------------------------------------------------------------

enum Shape { kCircle, kSquare, kTriangle, kDiamond, kCross, kStar, kRing, kHexagon, kCrescent, kHeart };
const std::array<const char*, kMaxSynthClasses> kShapeNames = {
    "circle", "square", "triangle", "diamond", "cross", "star", "ring", "hexagon", "crescent", "heart"};

using Polygon = std::vector<std::pair<double, double>>;

// Even-odd rule: count the edges crossed by a ray going right from (u, v).
bool polygon_contains(const Polygon& p, double u, double v) {
  bool in = false;
  for (size_t i = 0, j = p.size() - 1; i < p.size(); j = i++) {
    const auto [xi, yi] = p[i];
    const auto [xj, yj] = p[j];
    if ((yi > v) != (yj > v) && u < xj + (v - yj) * (xi - xj) / (yi - yj)) in = !in;
  }
  return in;
}

// Vertices alternating between radius `outer` and `inner` (inner == outer: a regular polygon),
// starting at angle `start` (radians, v pointing down so -pi/2 is straight up).
Polygon radial_polygon(int corners, double outer, double inner, double start) {
  Polygon p;
  const int n = inner == outer ? corners : 2 * corners;
  for (int k = 0; k < n; ++k) {
    const double radius = (k % 2 == 1 && inner != outer) ? inner : outer;
    const double angle = start + 2.0 * kPi * k / n;
    p.emplace_back(radius * std::cos(angle), radius * std::sin(angle));
  }
  return p;
}

// Whether the unit shape contains (u, v). Each shape fits in [-1, 1]^2; v points down.
bool unit_shape_contains(int shape, double u, double v) {
  static const Polygon triangle = {{0.0, -1.0}, {1.0, 1.0}, {-1.0, 1.0}};
  static const Polygon star = radial_polygon(5, 1.0, 0.45, -kPi / 2);
  static const Polygon hexagon = radial_polygon(6, 1.0, 1.0, 0.0);
  const double r2 = u * u + v * v;
  switch (shape) {
    case kCircle: return r2 <= 1.0;
    case kSquare: return std::abs(u) <= 1.0 && std::abs(v) <= 1.0;
    case kTriangle: return polygon_contains(triangle, u, v);
    case kDiamond: return std::abs(u) + std::abs(v) <= 1.0;
    case kCross: return (std::abs(u) <= 0.32 && std::abs(v) <= 1.0) || (std::abs(v) <= 0.32 && std::abs(u) <= 1.0);
    case kStar: return polygon_contains(star, u, v);
    case kRing: return r2 <= 1.0 && r2 >= 0.55 * 0.55;
    case kHexagon: return polygon_contains(hexagon, u, v);
    case kCrescent: return r2 <= 1.0 && (u - 0.4) * (u - 0.4) + v * v >= 0.8 * 0.8;  // disc minus a disc
    case kHeart: {
      // (x^2 + y^2 - 1)^3 <= x^2 y^3 spans x in [-1.14, 1.14], y in [-1, 1.24] (y up).
      const double x = u * 1.14, y = 0.12 - 1.12 * v;
      const double q = x * x + y * y - 1.0;
      return q * q * q <= x * x * y * y * y;
    }
    default: return false;
  }
}

// Circles, squares and rings keep their proportions (a stretched one would look like another
// class); the symmetric circle and ring are never rotated.
bool allows_aspect(int shape) { return shape != kCircle && shape != kSquare && shape != kRing; }
bool allows_rotation(int shape) { return shape != kCircle && shape != kRing; }

struct ShapeGeometry {
  int shape = 0;
  double half_w = 0, half_h = 0;  // half extents of the unit square before rotation
  double angle = 0;               // radians
  double fx = 0, fy = 0;          // sub-pixel position of the centre
};

// The longer nominal side is 15%-55% of the shorter image side; aspect 0.75-1.33 where the
// shape allows it; rotation up to +-12 degrees.
ShapeGeometry sample_geometry(int shape, double short_side, const SynthOptions& o, Rng& rng) {
  ShapeGeometry g;
  g.shape = shape;
  const double side = rng.range(o.min_size, o.max_size) * short_side;
  const double aspect = allows_aspect(shape) ? std::exp(rng.range(std::log(0.75), std::log(4.0 / 3.0))) : 1.0;
  g.half_w = 0.5 * side * std::min(1.0, aspect);
  g.half_h = 0.5 * side * std::min(1.0, 1.0 / aspect);
  g.angle = allows_rotation(shape) ? rng.range(-12.0, 12.0) * kPi / 180.0 : 0.0;
  g.fx = rng.uniform();
  g.fy = rng.uniform();
  return g;
}

Coverage rasterize_shape(const ShapeGeometry& g) {
  // The rotated unit square fits in a circle of radius sqrt(2) * max half extent.
  const int r = static_cast<int>(std::ceil(std::max(g.half_w, g.half_h) * std::sqrt(2.0))) + 2;
  const double c = std::cos(g.angle), s = std::sin(g.angle);
  return rasterize(r, g.fx, g.fy, [&](double dx, double dy) {
    // Undo the rotation, then the scaling, to land in the unit shape's frame.
    const double u = (c * dx + s * dy) / g.half_w;
    const double v = (-s * dx + c * dy) / g.half_h;
    return unit_shape_contains(g.shape, u, v);
  });
}

// ---- background and clutter -----------------------------------------------------------------

Rgb muted_colour(Rng& rng) { return hsv(rng.uniform(), rng.range(0.0, 0.45), rng.range(0.15, 0.95)); }

// Linear gradient between two muted colours along a random direction.
void fill_gradient(Canvas& canvas, Rng& rng) {
  const Rgb a = muted_colour(rng), b = muted_colour(rng);
  const double theta = rng.range(0.0, 2.0 * kPi);
  const double dx = std::cos(theta), dy = std::sin(theta);
  // Project the four corners to normalise the ramp to 0..1 over the image.
  const double w = canvas.width - 1, h = canvas.height - 1;
  const double p[4] = {0.0, w * dx, h * dy, w * dx + h * dy};
  const double lo = *std::min_element(p, p + 4), hi = *std::max_element(p, p + 4);
  for (int y = 0; y < canvas.height; ++y)
    for (int x = 0; x < canvas.width; ++x) canvas.set(x, y, mix(a, b, (x * dx + y * dy - lo) / (hi - lo)));
}

// A 3x3 grid of random blends of two muted colours, interpolated smoothly (smoothstep).
void fill_blend(Canvas& canvas, Rng& rng) {
  const Rgb a = muted_colour(rng), b = muted_colour(rng);
  Rgb grid[3][3];
  for (auto& row : grid)
    for (auto& node : row) node = mix(a, b, rng.uniform());
  auto smooth = [](double t) { return t * t * (3 - 2 * t); };
  for (int y = 0; y < canvas.height; ++y) {
    const double gy = 2.0 * y / std::max(1, canvas.height - 1);  // 0..2 over the grid rows
    const int j = std::min(1, static_cast<int>(gy));
    const double ty = smooth(gy - j);
    for (int x = 0; x < canvas.width; ++x) {
      const double gx = 2.0 * x / std::max(1, canvas.width - 1);
      const int i = std::min(1, static_cast<int>(gx));
      const double tx = smooth(gx - i);
      const Rgb top = mix(grid[j][i], grid[j][i + 1], tx);
      const Rgb bottom = mix(grid[j + 1][i], grid[j + 1][i + 1], tx);
      canvas.set(x, y, mix(top, bottom, ty));
    }
  }
}

// A thin line or a small blob of any colour, at most 6% of the shorter side across.
void draw_clutter_mark(Canvas& canvas, double short_side, Rng& rng) {
  const Rgb colour = hsv(rng.uniform(), rng.uniform(), rng.range(0.1, 1.0));
  const double opacity = rng.range(0.5, 1.0);
  const double angle = rng.range(0.0, kPi);
  const double c = std::cos(angle), s = std::sin(angle);
  Coverage cov;
  if (rng.chance(0.5)) {  // line segment of half length `half` and thickness `t`
    const double half = 0.5 * rng.range(0.025, 0.06) * short_side;
    const double t = rng.range(1.0, 2.0);
    cov = rasterize(static_cast<int>(std::ceil(half + t)) + 1, rng.uniform(), rng.uniform(),
                    [&](double dx, double dy) {
                      const double along = c * dx + s * dy, across = -s * dx + c * dy;
                      const double beyond = std::max(0.0, std::abs(along) - half);  // past an end
                      return beyond * beyond + across * across <= 0.25 * t * t;
                    });
  } else {  // ellipse with semi-axes ra, rb
    const double ra = std::max(1.0, rng.range(0.008, 0.03) * short_side);
    const double rb = std::max(1.0, rng.range(0.008, 0.03) * short_side);
    cov = rasterize(static_cast<int>(std::ceil(std::max(ra, rb))) + 1, rng.uniform(), rng.uniform(),
                    [&](double dx, double dy) {
                      const double u = (c * dx + s * dy) / ra, v = (-s * dx + c * dy) / rb;
                      return u * u + v * v <= 1.0;
                    });
  }
  // Centre anywhere in the image; marks may run off the edge.
  const int ox = rng.int_in(0, canvas.width - 1) - cov.size / 2;
  const int oy = rng.int_in(0, canvas.height - 1) - cov.size / 2;
  paint(canvas, cov, ox, oy, opacity, [&](int, int) { return colour; });
}

void draw_background(Canvas& canvas, Rng& rng) {
  if (rng.chance(0.5)) {
    fill_gradient(canvas, rng);
  } else {
    fill_blend(canvas, rng);
  }
  const double short_side = std::min(canvas.width, canvas.height);
  const int marks = rng.int_in(10, 30);
  for (int k = 0; k < marks; ++k) draw_clutter_mark(canvas, short_side, rng);
}

void add_noise(Canvas& canvas, Rng& rng) {
  const double sigma = rng.range(2.0, 6.0);
  for (float& v : canvas.px) v += static_cast<float>(sigma * rng.normal());
}

// ---- objects --------------------------------------------------------------------------------

double box_area(const Box& b) { return (b.x2 - b.x1 + 1) * (b.y2 - b.y1 + 1); }  // inclusive pixels

double overlap_area(const Box& a, const Box& b) {
  const double w = std::min(a.x2, b.x2) - std::max(a.x1, b.x1) + 1;
  const double h = std::min(a.y2, b.y2) - std::max(a.y1, b.y1) + 1;
  return w > 0 && h > 0 ? w * h : 0.0;
}

// Whether `box`, drawn on top, would hide more than kSynthMaxCover of an earlier object's box.
bool covers_too_much(const Box& box, const std::vector<Object>& earlier) {
  for (const Object& o : earlier)
    if (overlap_area(box, o.box) > kSynthMaxCover * box_area(o.box)) return true;
  return false;
}

Rgb mean_colour(const Canvas& canvas, const Box& box) {
  Rgb sum;
  double n = 0;
  for (int y = static_cast<int>(box.y1); y <= static_cast<int>(box.y2); ++y) {
    for (int x = static_cast<int>(box.x1); x <= static_cast<int>(box.x2); ++x) {
      const Rgb c = canvas.get(x, y);
      sum = {sum.r + c.r, sum.g + c.g, sum.b + c.b};
      n += 1;
    }
  }
  return scaled(sum, 1.0 / std::max(1.0, n));
}

// A saturated colour far (in RGB) from `background`: the first of 16 candidates at least 120
// away, else the farthest one.
Rgb contrasting_colour(const Rgb& background, Rng& rng) {
  Rgb best;
  double best_distance = -1;
  for (int k = 0; k < 16; ++k) {
    const Rgb c = hsv(rng.uniform(), rng.range(0.55, 1.0), rng.range(0.45, 1.0));
    const double d = distance(c, background);
    if (d > best_distance) {
      best = c;
      best_distance = d;
    }
    if (d >= 120) break;
  }
  return best;
}

// Pixels at least half covered that lie within `t` pixels (Chebyshev) of one that is not.
std::vector<uint8_t> outline_mask(const Coverage& c, int t) {
  auto solid = [&](int i, int j) { return i >= 0 && j >= 0 && i < c.size && j < c.size && c.at(i, j) >= 0.5f; };
  std::vector<uint8_t> edge(c.a.size(), 0);
  for (int j = 0; j < c.size; ++j) {
    for (int i = 0; i < c.size; ++i) {
      if (!solid(i, j)) continue;
      bool near_outside = false;
      for (int dj = -t; dj <= t && !near_outside; ++dj)
        for (int di = -t; di <= t && !near_outside; ++di) near_outside = !solid(i + di, j + dj);
      edge[static_cast<size_t>(j) * c.size + i] = near_outside ? 1 : 0;
    }
  }
  return edge;
}

// Fills the shape with `fill`, shaded by up to +-15% along a random direction (a hint of
// lighting), with an optional 1-2 px darker outline.
void paint_shape(Canvas& canvas, const Coverage& cov, int ox, int oy, const Rgb& fill, Rng& rng) {
  const double shade = rng.range(0.0, 0.15);
  const double theta = rng.range(0.0, 2.0 * kPi);
  const double gx = std::cos(theta), gy = std::sin(theta);
  const double radius = 0.5 * cov.size;
  std::vector<uint8_t> edge;
  Rgb edge_colour;
  if (rng.chance(0.5)) {
    edge = outline_mask(cov, rng.int_in(1, 2));
    edge_colour = scaled(fill, rng.range(0.35, 0.6));
  }
  paint(canvas, cov, ox, oy, 1.0, [&](int i, int j) {
    // Partly covered rim pixels belong to the outline too, or the outline would look broken.
    if (!edge.empty() && (edge[static_cast<size_t>(j) * cov.size + i] || cov.at(i, j) < 0.5f)) return edge_colour;
    const double t = ((i + 0.5 - cov.cx) * gx + (j + 0.5 - cov.cy) * gy) / radius;  // about -1..1
    return scaled(fill, 1.0 + shade * t);
  });
}

// Which object shows at each pixel, so that hidden pixels can be counted. An object's pixels
// are those at least half covered (the ones that make up its box).
class Layers {
 public:
  Layers(int width, int height) : width_(width), owner_(static_cast<size_t>(width) * height, -1) {}

  // Whether drawing `cov` at (ox, oy) would leave some earlier object with more than
  // kSynthMaxCover of its own pixels hidden (counting what earlier objects hide already).
  bool hides_too_much(const Coverage& cov, int ox, int oy) const {
    std::vector<int> newly_hidden(drawn_.size(), 0);
    for_each_solid(cov, ox, oy, [&](size_t p) {
      if (owner_[p] >= 0) ++newly_hidden[owner_[p]];
    });
    for (size_t k = 0; k < drawn_.size(); ++k)
      if (visible_[k] - newly_hidden[k] < (1.0 - kSynthMaxCover) * drawn_[k]) return true;
    return false;
  }

  // Records `cov` at (ox, oy) as the newest, topmost object.
  void add(const Coverage& cov, int ox, int oy) {
    const int id = static_cast<int>(drawn_.size());
    drawn_.push_back(0);
    visible_.push_back(0);
    for_each_solid(cov, ox, oy, [&](size_t p) {
      if (owner_[p] >= 0) --visible_[owner_[p]];
      owner_[p] = id;
      ++drawn_[id];
      ++visible_[id];
    });
  }

 private:
  // Calls f(pixel index) for each window pixel at least half covered (inside the image).
  template <class F>
  void for_each_solid(const Coverage& cov, int ox, int oy, const F& f) const {
    for (int j = 0; j < cov.size; ++j)
      for (int i = 0; i < cov.size; ++i)
        if (cov.at(i, j) >= 0.5f) f(static_cast<size_t>(oy + j) * width_ + (ox + i));
  }

  int width_;
  std::vector<int> owner_;    // object index per pixel, -1: background
  std::vector<int> drawn_;    // pixels per object when drawn
  std::vector<int> visible_;  // of those, still on top
};

constexpr int kMinObjectSide = 8;
constexpr int kGeometryTries = 4;   // shapes (size, aspect, rotation) tried per object
constexpr int kPositionTries = 12;  // positions tried per shape

// Draws one object of class `label` where it hides at most kSynthMaxCover of every earlier
// object's box and of its pixels, and records it. Returns false (nothing drawn) when no try fits.
bool place_object(Canvas& canvas, Layers& layers, int label, std::vector<Object>& objects, const SynthOptions& o,
                  Rng& rng) {
  const double short_side = std::min(canvas.width, canvas.height);
  for (int g = 0; g < kGeometryTries; ++g) {
    const Coverage cov = rasterize_shape(sample_geometry(label, short_side, o, rng));
    const PixelRect drawn = bounds(cov, 0.5f);  // the box
    const PixelRect footprint = bounds(cov, 0.f);  // every touched pixel, kept inside the image
    if (drawn.empty() || drawn.width() < kMinObjectSide || drawn.height() < kMinObjectSide) continue;
    // Window offsets (ox, oy) that keep the footprint inside the image.
    const int ox_lo = -footprint.x0, ox_hi = canvas.width - 1 - footprint.x1;
    const int oy_lo = -footprint.y0, oy_hi = canvas.height - 1 - footprint.y1;
    if (ox_hi < ox_lo || oy_hi < oy_lo) continue;
    for (int p = 0; p < kPositionTries; ++p) {
      const int ox = rng.int_in(ox_lo, ox_hi), oy = rng.int_in(oy_lo, oy_hi);
      Object object;
      object.label = label;
      object.box = {static_cast<double>(ox + drawn.x0), static_cast<double>(oy + drawn.y0),
                    static_cast<double>(ox + drawn.x1), static_cast<double>(oy + drawn.y1)};
      if (covers_too_much(object.box, objects) || layers.hides_too_much(cov, ox, oy)) continue;
      const Rgb under = mean_colour(canvas, object.box);
      const Rgb colour = contrasting_colour(under, rng);
      paint_shape(canvas, cov, ox, oy, o.contrast < 1 ? mix(under, colour, o.contrast) : colour, rng);
      layers.add(cov, ox, oy);
      objects.push_back(object);
      return true;
    }
  }
  return false;
}

}  // namespace

// ---- public: scenes -------------------------------------------------------------------------

std::vector<std::string> synth_class_names(int k) {
  ENGINE_CHECK(k >= 1 && k <= kMaxSynthClasses, "number of classes must be 1..", kMaxSynthClasses, " (got ", k, ")");
  return std::vector<std::string>(kShapeNames.begin(), kShapeNames.begin() + k);
}

void validate_synth_options(const SynthOptions& o) {
  ENGINE_CHECK(o.width >= kSynthMinSide && o.width <= kSynthMaxSide && o.height >= kSynthMinSide &&
                   o.height <= kSynthMaxSide,
               "image size must be ", kSynthMinSide, "..", kSynthMaxSide, " pixels per side (got ", o.width, "x",
               o.height, ")");
  synth_class_names(o.num_classes);  // checks the range
  ENGINE_CHECK(o.min_objects >= 0 && o.min_objects <= o.max_objects && o.max_objects <= 50,
               "objects per image must satisfy 0 <= min <= max <= 50 (got ", o.min_objects, "..", o.max_objects, ")");
  ENGINE_CHECK(o.min_size > 0 && o.min_size <= o.max_size && o.max_size <= 0.9,
               "object sizes must satisfy 0 < min <= max <= 0.9 of the shorter side (got ", o.min_size, "..",
               o.max_size, ")");
  ENGINE_CHECK(o.contrast > 0 && o.contrast <= 1, "object contrast must lie in (0, 1] (got ", o.contrast, ")");
}

namespace {
// A positive decimal of at most 5 digits, else -1.
int parse_side(const std::string& s) {
  if (s.empty() || s.size() > 5 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoi(s);
}
}  // namespace

void parse_synth_size(const std::string& text, SynthOptions& options) {
  const size_t x = text.find_first_of("xX");
  const int w = x == std::string::npos ? -1 : parse_side(text.substr(0, x));
  const int h = x == std::string::npos ? -1 : parse_side(text.substr(x + 1));
  ENGINE_CHECK(w > 0 && h > 0, "bad image size '", text, "' (expected WxH, e.g. 320x240)");
  ENGINE_CHECK(w >= kSynthMinSide && w <= kSynthMaxSide && h >= kSynthMinSide && h <= kSynthMaxSide,
               "image size must be ", kSynthMinSide, "..", kSynthMaxSide, " pixels per side (got ", text, ")");
  options.width = w;
  options.height = h;
}

uint64_t synth_image_seed(uint64_t dataset_seed, uint64_t stream, uint64_t index) {
  return splitmix64(splitmix64(splitmix64(dataset_seed) ^ stream) ^ index);
}

SynthScene render_scene(const SynthOptions& options, uint64_t seed) {
  validate_synth_options(options);
  Rng rng(seed);
  Canvas canvas(options.width, options.height);
  draw_background(canvas, rng);
  SynthScene scene;
  const int count = rng.int_in(options.min_objects, options.max_objects);
  Layers layers(options.width, options.height);
  for (int k = 0; k < count; ++k)
    place_object(canvas, layers, rng.int_in(0, options.num_classes - 1), scene.objects, options, rng);
  add_noise(canvas, rng);
  scene.image = to_image(canvas);
  return scene;
}

// ---- public: datasets on disk ---------------------------------------------------------------

namespace {

std::string image_id(int number) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06d", number);
  return buf;
}

void make_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  ENGINE_CHECK(!ec && fs::is_directory(dir), "cannot create directory '", dir.string(), "': ",
               ec ? ec.message() : "a file is in the way");
}

// Moves `tmp` to `path`; on failure removes `tmp` and throws.
void commit(const fs::path& tmp, const fs::path& path) {
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    ENGINE_FAIL(path.string(), ": cannot write (rename failed)");
  }
}

void write_text_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      ENGINE_FAIL(path.string(), ": cannot write");
    }
  }
  commit(tmp, path);
}

void add_text(pugi::xml_node parent, const char* name, const std::string& value) {
  parent.append_child(name).text().set(value.c_str());
}

// Pascal VOC annotation; coordinates are 1-based inclusive (pixel index + 1).
void save_voc_xml(const fs::path& path, const std::string& file_name, const SynthScene& scene,
                  const std::vector<std::string>& names) {
  pugi::xml_document doc;
  pugi::xml_node root = doc.append_child("annotation");
  add_text(root, "folder", "JPEGImages");
  add_text(root, "filename", file_name);
  pugi::xml_node size = root.append_child("size");
  add_text(size, "width", std::to_string(scene.image.width));
  add_text(size, "height", std::to_string(scene.image.height));
  add_text(size, "depth", "3");
  for (const Object& o : scene.objects) {
    pugi::xml_node obj = root.append_child("object");
    add_text(obj, "name", names[o.label]);
    add_text(obj, "pose", "Unspecified");
    add_text(obj, "truncated", "0");
    add_text(obj, "difficult", "0");
    pugi::xml_node box = obj.append_child("bndbox");
    add_text(box, "xmin", std::to_string(std::lround(o.box.x1) + 1));
    add_text(box, "ymin", std::to_string(std::lround(o.box.y1) + 1));
    add_text(box, "xmax", std::to_string(std::lround(o.box.x2) + 1));
    add_text(box, "ymax", std::to_string(std::lround(o.box.y2) + 1));
  }
  const fs::path tmp = path.string() + ".tmp";
  if (!doc.save_file(tmp.c_str(), "  ")) {
    std::error_code ec;
    fs::remove(tmp, ec);
    ENGINE_FAIL(path.string(), ": cannot write");
  }
  commit(tmp, path);
}

// Collects one split's COCO "instances" document.
class CocoSplit {
 public:
  void add(int image_id, const std::string& file_name, const SynthScene& scene) {
    images_.push_back({{"id", image_id}, {"file_name", file_name}, {"width", scene.image.width},
                       {"height", scene.image.height}});
    for (const Object& o : scene.objects) {
      const double w = o.box.x2 - o.box.x1 + 1, h = o.box.y2 - o.box.y1 + 1;  // inclusive pixels
      annotations_.push_back({{"id", next_annotation_id_++}, {"image_id", image_id}, {"category_id", o.label + 1},
                              {"bbox", {o.box.x1, o.box.y1, w, h}}, {"area", w * h}, {"iscrowd", 0}});
    }
  }
  void save(const fs::path& path, const std::vector<std::string>& names) const {
    nlohmann::json categories = nlohmann::json::array();
    for (size_t k = 0; k < names.size(); ++k)
      categories.push_back({{"id", static_cast<int>(k) + 1}, {"name", names[k]}, {"supercategory", "shape"}});
    const nlohmann::json doc = {{"info", {{"description", "ssd_data synthetic shapes"}}},
                                {"licenses", nlohmann::json::array()},
                                {"images", images_},
                                {"annotations", annotations_},
                                {"categories", categories}};
    write_text_atomic(path, doc.dump(1) + "\n");
  }

 private:
  nlohmann::json images_ = nlohmann::json::array();
  nlohmann::json annotations_ = nlohmann::json::array();
  int next_annotation_id_ = 1;
};

struct SplitPlan {
  std::string name;
  uint64_t stream = 0;   // seed stream (synth_image_seed)
  int first_number = 1;  // id of its first image
  int count = 0;
};

void check_split_name(const std::string& split, int n_val) {
  const bool ok = !split.empty() && std::all_of(split.begin(), split.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
  ENGINE_CHECK(ok, "bad split name '", split, "' (letters, digits, '_' and '-' only)");
  ENGINE_CHECK(!(split == "test" && n_val > 0), "split name 'test' is taken by the held-out images (--val)");
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += l + "\n";
  return s;
}

}  // namespace

SynthSummary write_synth_dataset(const std::string& out_dir, SynthFormat format, int n, int n_val, uint64_t seed,
                                 const SynthOptions& options, const std::string& split) {
  validate_synth_options(options);
  ENGINE_CHECK(n >= 1, "number of images must be >= 1 (got ", n, ")");
  ENGINE_CHECK(n_val >= 0, "number of held-out images must be >= 0 (got ", n_val, ")");
  ENGINE_CHECK(static_cast<int64_t>(n) + n_val <= 999999, "at most 999999 images in all (got ", n, " + ", n_val, ")");
  check_split_name(split, n_val);

  const fs::path dir(out_dir);
  const bool voc = format == SynthFormat::Voc;
  const fs::path image_dir = voc ? dir / "JPEGImages" : dir;
  make_dir(image_dir);
  if (voc) {
    make_dir(dir / "Annotations");
    make_dir(dir / "ImageSets" / "Main");
  }

  SynthSummary summary;
  summary.class_names = synth_class_names(options.num_classes);
  summary.objects_per_class.assign(summary.class_names.size(), 0);
  std::vector<SplitPlan> plans = {{split, 0, 1, n}};
  if (n_val > 0) plans.push_back({"test", 1, n + 1, n_val});

  for (const SplitPlan& plan : plans) {
    std::vector<std::string> ids;
    CocoSplit coco;
    for (int j = 0; j < plan.count; ++j) {
      const int number = plan.first_number + j;
      const std::string id = image_id(number);
      const SynthScene scene = render_scene(options, synth_image_seed(seed, plan.stream, static_cast<uint64_t>(j)));
      for (const Object& o : scene.objects) ++summary.objects_per_class[o.label];
      save_jpg((image_dir / (id + ".jpg")).string(), scene.image, 95);
      if (voc) {
        save_voc_xml(dir / "Annotations" / (id + ".xml"), id + ".jpg", scene, summary.class_names);
      } else {
        coco.add(number, id + ".jpg", scene);
      }
      ids.push_back(id);
    }
    if (voc) {
      write_text_atomic(dir / "ImageSets" / "Main" / (plan.name + ".txt"), join_lines(ids));
    } else {
      coco.save(dir / ("instances_" + plan.name + ".json"), summary.class_names);
    }
    summary.splits.push_back(plan.name);
    summary.images_per_split.push_back(plan.count);
  }
  if (voc) write_text_atomic(dir / "classes.txt", join_lines(summary.class_names));
  return summary;
}

}  // namespace data
