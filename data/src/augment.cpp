// SSD training augmentation. See data/augment.h and docs/augmentation.md.
#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "engine/error.h"

namespace data {
namespace {

// ---- Random draws (all from the one Generator, in program order) ----

bool coin(eng::Generator& gen, double p) { return gen.uniform() < p; }

double uniform(eng::Generator& gen, double lo, double hi) { return lo + (hi - lo) * gen.uniform(); }

// Uniform integer in [0, n] (n >= 0): floor(u * (n + 1)), u in [0, 1).
int uniform_int(eng::Generator& gen, int n) {
  const int v = static_cast<int>(std::floor(gen.uniform() * (static_cast<double>(n) + 1.0)));
  return std::min(v, n);
}

// ---- Checks ----

void check_sample(const AnnotatedImage& s, const char* what) {
  const Image& im = s.image;
  ENGINE_CHECK(!im.empty(), what, ": empty image (", im.width, "x", im.height, ")");
  ENGINE_CHECK(im.rgb.size() == static_cast<size_t>(im.width) * im.height * 3, what,
               ": image buffer holds ", im.rgb.size(), " bytes, expected ", im.width, "x", im.height, "x3");
}

void check_options(const AugmentOptions& o) {
  ENGINE_CHECK(o.brightness_delta >= 0, "augment_ssd: brightness_delta must be >= 0");
  ENGINE_CHECK(o.contrast_lower > 0 && o.contrast_lower <= o.contrast_upper,
               "augment_ssd: need 0 < contrast_lower <= contrast_upper");
  ENGINE_CHECK(o.saturation_lower >= 0 && o.saturation_lower <= o.saturation_upper,
               "augment_ssd: need 0 <= saturation_lower <= saturation_upper");
  ENGINE_CHECK(o.hue_delta >= 0, "augment_ssd: hue_delta must be >= 0");
  ENGINE_CHECK(o.expand_prob >= 0 && o.expand_prob <= 1, "augment_ssd: expand_prob must lie in [0, 1]");
  ENGINE_CHECK(o.expand_max_ratio >= 1, "augment_ssd: expand_max_ratio must be >= 1");
  ENGINE_CHECK(o.fill.size() == 3, "augment_ssd: fill needs 3 values (got ", o.fill.size(), ")");
  ENGINE_CHECK(o.crop_max_trials >= 0, "augment_ssd: crop_max_trials must be >= 0");
  ENGINE_CHECK(o.crop_min_scale > 0 && o.crop_min_scale <= 1, "augment_ssd: crop_min_scale must lie in (0, 1]");
  ENGINE_CHECK(o.crop_min_aspect > 0 && o.crop_min_aspect <= o.crop_max_aspect,
               "augment_ssd: need 0 < crop_min_aspect <= crop_max_aspect");
}

// Clamp to [0, 255], round halves up. After the clamp v + 0.5 > 0, where truncation is
// floor (a cast, where std::floor would be a libm call without SSE4.1). NaN clamps to 0.
uint8_t to_u8(double v) {
  v = std::min(255.0, std::max(0.0, v));
  return static_cast<uint8_t>(static_cast<int>(v + 0.5));
}

// ---- Photometric maths on one pixel (3 floats); the vector functions of detail:: and the
// fused path of augment_ssd both use these, so they agree bit for bit. ----

// Branch-free (each candidate computed, then selected), so that noisy images do not pay a
// mispredicted branch per pixel; the selected value is computed exactly as the branchy
// formula would.
inline void rgb_to_hsv_px(float* px) {
  const float r = std::min(255.f, std::max(0.f, px[0]));
  const float g = std::min(255.f, std::max(0.f, px[1]));
  const float b = std::min(255.f, std::max(0.f, px[2]));
  const float v = std::max(r, std::max(g, b));
  const float mn = std::min(r, std::min(g, b));
  const float c = v - mn;  // chroma
  const float cs = c > 0 ? c : 1.f;  // divisor that is never 0 (the result is unused then)
  const float hr = 60.f * (g - b) / cs, hg = 120.f + 60.f * (b - r) / cs, hb = 240.f + 60.f * (r - g) / cs;
  float h = v == r ? hr : (v == g ? hg : hb);
  h = h < 0 ? h + 360.f : h;
  px[0] = c > 0 ? h : 0.f;
  px[1] = v > 0 ? c / (v > 0 ? v : 1.f) : 0.f;
  px[2] = v;
}

// H mod 360 into [0, 360). For H in [0, 720) (every H this code produces) the subtraction is
// exact (Sterbenz), so it equals fmod; fmod stays for anything else.
inline float wrap_degrees(float h) {
  if (h >= 0.f && h < 360.f) return h;
  if (h >= 360.f && h < 720.f) return h - 360.f;
  h = std::fmod(h, 360.f);
  return h < 0 ? h + 360.f : h;
}

inline void hsv_to_rgb_px(float* px) {
  const float h = wrap_degrees(px[0]);
  const float s = px[1], v = px[2];
  const float h6 = h / 60.f;
  // h6 in [0, 6]: truncation is floor (std::floor stays for NaN).
  const float fl = h6 >= 0.f ? static_cast<float>(static_cast<int>(h6)) : std::floor(h6);
  const int k = static_cast<int>(fl) % 6;
  const float f = h6 - fl;
  const float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  // (R, G, B) per sector as indices into {v, p, q, t}; k outside 0..5 (NaN input) takes 5.
  static constexpr uint8_t kR[6] = {0, 2, 1, 1, 3, 0}, kG[6] = {3, 0, 0, 2, 1, 1}, kB[6] = {1, 1, 3, 0, 0, 2};
  const float vals[4] = {v, p, q, t};
  const int sector = k >= 0 && k < 6 ? k : 5;
  px[0] = vals[kR[sector]];
  px[1] = vals[kG[sector]];
  px[2] = vals[kB[sector]];
}

// (H + degrees) mod 360 in double, as a float in [0, 360). With |degrees| < 360 and H in
// [0, 360) the sum lies in (-360, 720), where the branches below are exact, so they equal
// the fmod they replace (kept for other inputs).
inline float shift_hue_px(float hue, double degrees) {
  double h = static_cast<double>(hue) + degrees;
  if (h >= 360.0 && h < 720.0) {
    h -= 360.0;
  } else if (!(h > -360.0 && h < 360.0)) {
    h = std::fmod(h, 360.0);
  }
  if (h < 0) h += 360.0;
  float hf = static_cast<float>(h);
  if (hf >= 360.f) hf = 0.f;  // h just below 360 can round up to 360 in float
  return hf;
}

// brightness, then [contrast, HSV part] or [HSV part, contrast]; the HSV part is
// RGB -> HSV, saturation, hue, HSV -> RGB (skipped when neither applies); clamp and round.
inline void photometric_px(const uint8_t* in, uint8_t* out, const detail::PhotometricParams& p) {
  float v[3] = {static_cast<float>(in[0]), static_cast<float>(in[1]), static_cast<float>(in[2])};
  if (p.brightness) {
    const float d = static_cast<float>(p.brightness_delta);
    for (float& x : v) x += d;
  }
  const float cf = static_cast<float>(p.contrast_factor);
  if (p.contrast && p.contrast_first)
    for (float& x : v) x *= cf;
  if (p.saturation || p.hue) {
    rgb_to_hsv_px(v);
    if (p.saturation) v[1] *= static_cast<float>(p.saturation_factor);
    if (p.hue) v[0] = shift_hue_px(v[0], p.hue_delta);
    hsv_to_rgb_px(v);
  }
  if (p.contrast && !p.contrast_first)
    for (float& x : v) x *= cf;
  for (int c = 0; c < 3; ++c) out[c] = to_u8(v[c]);
}

// ---- The random steps ----

// ---- Box-only geometry (the pixel work is done by the callers) ----

// A zoom-out canvas: cw x ch, the image's top-left corner at (left, top).
struct Expansion {
  int cw = 0, ch = 0, left = 0, top = 0;
};

// Zoom-out with probability expand_prob for a w x h image: the draws, no pixels.
bool draw_expand(int w, int h, eng::Generator& gen, const AugmentOptions& o, Expansion& e) {
  if (!coin(gen, o.expand_prob)) return false;
  const double ratio = uniform(gen, 1.0, o.expand_max_ratio);
  // floor(ratio * side) >= side since ratio >= 1; max() guards against rounding.
  e.cw = std::max(w, static_cast<int>(std::floor(ratio * w)));
  e.ch = std::max(h, static_cast<int>(std::floor(ratio * h)));
  e.left = uniform_int(gen, e.cw - w);
  e.top = uniform_int(gen, e.ch - h);
  return true;
}

void shift_objects(std::vector<Object>& objects, int left, int top) {
  for (Object& ob : objects) {
    ob.box = Box{ob.box.x1 + left, ob.box.y1 + top, ob.box.x2 + left, ob.box.y2 + top};
    ob.area = -1;
  }
}

bool centre_inside(const Box& b, const Box& rect);

// The objects of a crop [x0, x1) x [y0, y1): centre strictly inside, clipped, shifted.
std::vector<Object> crop_objects(const std::vector<Object>& objects, int x0, int y0, int x1, int y1) {
  const Box rect{double(x0), double(y0), double(x1), double(y1)};
  std::vector<Object> out;
  for (const Object& ob : objects) {
    if (!centre_inside(ob.box, rect)) continue;
    Object o = ob;
    o.box = Box{std::max(ob.box.x1, rect.x1) - x0, std::max(ob.box.y1, rect.y1) - y0,
                std::min(ob.box.x2, rect.x2) - x0, std::min(ob.box.y2, rect.y2) - y0};
    o.area = -1;
    out.push_back(o);
  }
  return out;
}

void flip_objects(std::vector<Object>& objects, int w) {
  for (Object& ob : objects) {
    ob.box = Box{w - ob.box.x2, ob.box.y1, w - ob.box.x1, ob.box.y2};
    ob.area = -1;
  }
}

std::vector<Object> clip_and_drop(const std::vector<Object>& objects, double W, double H) {
  std::vector<Object> kept;
  kept.reserve(objects.size());
  for (Object ob : objects) {
    const Box b = ob.box;
    const Box c{std::max(0.0, b.x1), std::max(0.0, b.y1), std::min(W, b.x2), std::min(H, b.y2)};
    if (!(c.x2 - c.x1 >= 1 && c.y2 - c.y1 >= 1)) continue;  // also drops NaN boxes
    if (c.x1 != b.x1 || c.y1 != b.y1 || c.x2 != b.x2 || c.y2 != b.y2) ob.area = -1;
    ob.box = c;
    kept.push_back(ob);
  }
  return kept;
}

// Zoom-out with probability expand_prob. Returns whether it happened.
bool random_expand(AnnotatedImage& s, eng::Generator& gen, const AugmentOptions& o) {
  Expansion e;
  if (!draw_expand(s.image.width, s.image.height, gen, o, e)) return false;
  s = detail::expand_canvas(s, e.cw, e.ch, e.left, e.top, o.fill);
  return true;
}

bool centre_inside(const Box& b, const Box& rect) {
  const double cx = 0.5 * (b.x1 + b.x2), cy = 0.5 * (b.y1 + b.y2);
  return rect.x1 < cx && cx < rect.x2 && rect.y1 < cy && cy < rect.y2;
}

// Whether a crop satisfies its mode's IoU constraint. By default (Caffe's SSD sampler and
// torchvision's RandomIoUCrop) some box whose centre lies strictly inside the crop, i.e. a
// box the crop keeps, has IoU >= min_iou; torchvision takes the max IoU over exactly those
// boxes. With every_box (GluonCV's random_crop_with_constraints) the IoU of every box must
// reach min_iou and some centre must lie inside, the box meeting the IoU not necessarily
// being the one kept.
bool overlap_ok(const std::vector<Object>& objects, const Box& rect, double min_iou, bool every_box) {
  if (every_box) {
    for (const Object& ob : objects)
      if (detail::box_iou(ob.box, rect) < min_iou) return false;
    return std::any_of(objects.begin(), objects.end(), [&](const Object& ob) { return centre_inside(ob.box, rect); });
  }
  return std::any_of(objects.begin(), objects.end(), [&](const Object& ob) {
    return centre_inside(ob.box, rect) && detail::box_iou(ob.box, rect) >= min_iou;
  });
}

// SSD's batch sampler: draw a mode from {none, 0.1, 0.3, 0.5, 0.7, 0.9, any}; a threshold
// mode gets detail::min_iou_crop_trials. A mode whose trials all fail draws a new mode;
// after kMaxModeDraws draws the sample is left unchanged (so this can never loop forever).
struct CropRect {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

bool find_crop(const std::vector<Object>& objects, int W, int H, eng::Generator& gen, const AugmentOptions& o,
               double min_iou, CropRect& r);

bool random_crop_rect(const std::vector<Object>& objects, int W, int H, eng::Generator& gen,
                      const AugmentOptions& o, CropRect& r) {
  constexpr int kMaxModeDraws = 50;
  const double kInf = std::numeric_limits<double>::infinity();
  const double modes[] = {kInf /* none */, 0.1, 0.3, 0.5, 0.7, 0.9, -kInf /* any */};
  constexpr int kModes = 7;
  for (int draw = 0; draw < kMaxModeDraws; ++draw) {
    const double min_iou = modes[uniform_int(gen, kModes - 1)];
    if (min_iou == kInf) return false;  // "none": keep the whole image
    if (find_crop(objects, W, H, gen, o, min_iou, r)) return true;
  }
  return false;
}

bool random_min_iou_crop(AnnotatedImage& s, eng::Generator& gen, const AugmentOptions& o) {
  CropRect r;
  if (!random_crop_rect(s.objects, s.image.width, s.image.height, gen, o, r)) return false;
  s = detail::crop_annotated(s, r.x0, r.y0, r.x1, r.y1);
  return true;
}

// Up to crop_max_trials trials: crop side w = uniform(min_scale W, W), h likewise, rejected
// unless min_aspect <= w / h <= max_aspect; origin uniform over the positions that fit; the
// rectangle is truncated to whole pixels. Accepted when a box whose centre lies strictly
// inside has IoU(box, crop) >= min_iou (or, with crop_every_box, when every box reaches
// min_iou and some centre lies inside): overlap_ok. Without objects the first crop of valid
// shape is accepted (the IoU and centre rules are vacuous).
bool find_crop(const std::vector<Object>& objects, int W, int H, eng::Generator& gen, const AugmentOptions& o,
               double min_iou, CropRect& r) {
  for (int trial = 0; trial < o.crop_max_trials; ++trial) {
    const double w = uniform(gen, o.crop_min_scale * W, W);
    const double h = uniform(gen, o.crop_min_scale * H, H);
    const double aspect = w / h;
    if (aspect < o.crop_min_aspect || aspect > o.crop_max_aspect) continue;
    const double left = uniform(gen, 0.0, W - w);
    const double top = uniform(gen, 0.0, H - h);
    // Integer pixel rectangle [x0, x1) x [y0, y1) inside the image, at least 1 px each way.
    const int x0 = static_cast<int>(left), y0 = static_cast<int>(top);
    const int x1 = std::min(W, static_cast<int>(left + w)), y1 = std::min(H, static_cast<int>(top + h));
    if (x1 - x0 < 1 || y1 - y0 < 1) continue;
    const Box rect{double(x0), double(y0), double(x1), double(y1)};
    if (!objects.empty() && !overlap_ok(objects, rect, min_iou, o.crop_every_box)) continue;
    r = {x0, y0, x1, y1};
    return true;
  }
  return false;
}

}  // namespace

// ============================== detail: photometric ==============================
namespace detail {

std::vector<float> to_float(const Image& image) {
  return std::vector<float>(image.rgb.begin(), image.rgb.end());
}

Image from_float(const std::vector<float>& rgb, int width, int height) {
  ENGINE_CHECK(rgb.size() == static_cast<size_t>(width) * height * 3, "from_float: buffer size mismatch");
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(rgb.size());
  for (size_t i = 0; i < rgb.size(); ++i) out.rgb[i] = to_u8(rgb[i]);
  return out;
}

void add_brightness(std::vector<float>& rgb, double delta) {
  const float d = static_cast<float>(delta);
  for (float& v : rgb) v += d;
}

void scale_contrast(std::vector<float>& rgb, double factor) {
  const float f = static_cast<float>(factor);
  for (float& v : rgb) v *= f;
}

// V = max(R, G, B); S = (V - min) / V (0 when V = 0);
// H = 60 * (G - B) / (V - min)        when V = R,
//     120 + 60 * (B - R) / (V - min)  when V = G,
//     240 + 60 * (R - G) / (V - min)  when V = B   (0 for greys), then wrapped into [0, 360).
void rgb_to_hsv(std::vector<float>& px) {
  for (size_t i = 0; i + 2 < px.size(); i += 3) rgb_to_hsv_px(&px[i]);
}

// Sector k = floor(H / 60) mod 6, f = H / 60 - floor(H / 60);
// p = V (1 - S), q = V (1 - S f), t = V (1 - S (1 - f)); (R, G, B) per sector:
// 0: (V, t, p)  1: (q, V, p)  2: (p, V, t)  3: (p, q, V)  4: (t, p, V)  5: (V, p, q).
void hsv_to_rgb(std::vector<float>& px) {
  for (size_t i = 0; i + 2 < px.size(); i += 3) hsv_to_rgb_px(&px[i]);
}

void scale_saturation(std::vector<float>& hsv, double factor) {
  const float f = static_cast<float>(factor);
  for (size_t i = 1; i < hsv.size(); i += 3) hsv[i] *= f;
}

void shift_hue(std::vector<float>& hsv, double degrees) {
  for (size_t i = 0; i < hsv.size(); i += 3) hsv[i] = shift_hue_px(hsv[i], degrees);
}

// Draw order: brightness gate (+ delta), order coin, contrast gate (+ factor),
// saturation gate (+ factor), hue gate (+ delta). Values are drawn only when a gate opens.
PhotometricParams draw_photometric(eng::Generator& gen, const AugmentOptions& o) {
  PhotometricParams p;
  if ((p.brightness = coin(gen, 0.5))) p.brightness_delta = uniform(gen, -o.brightness_delta, o.brightness_delta);
  p.contrast_first = coin(gen, 0.5);
  if ((p.contrast = coin(gen, 0.5))) p.contrast_factor = uniform(gen, o.contrast_lower, o.contrast_upper);
  if ((p.saturation = coin(gen, 0.5))) p.saturation_factor = uniform(gen, o.saturation_lower, o.saturation_upper);
  if ((p.hue = coin(gen, 0.5))) p.hue_delta = uniform(gen, -o.hue_delta, o.hue_delta);
  return p;
}

// brightness, then [contrast, HSV part] or [HSV part, contrast]; the HSV part is
// RGB -> HSV, saturation, hue, HSV -> RGB. Skipped entirely when neither applies.
// Pixel by pixel (photometric_px), which gives what the steps above give on the whole float
// buffer: the same float operations in the same order.
Image apply_photometric(const Image& image, const PhotometricParams& p) {
  Image out = image;
  const size_t n = image.rgb.size() / 3;
  for (size_t i = 0; i < n; ++i) photometric_px(&image.rgb[3 * i], &out.rgb[3 * i], p);
  return out;
}

// ============================== detail: geometry ==============================

double box_iou(const Box& a, const Box& b) {
  const double iw = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  const double ih = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  if (iw <= 0 || ih <= 0) return 0;
  const double inter = iw * ih;
  const double area_a = (a.x2 - a.x1) * (a.y2 - a.y1), area_b = (b.x2 - b.x1) * (b.y2 - b.y1);
  const double uni = area_a + area_b - inter;
  return uni > 0 ? inter / uni : 0;
}

AnnotatedImage expand_canvas(const AnnotatedImage& in, int canvas_w, int canvas_h, int left, int top,
                             const std::vector<double>& fill) {
  check_sample(in, "expand_canvas");
  const int w = in.image.width, h = in.image.height;
  ENGINE_CHECK(fill.size() == 3, "expand_canvas: fill needs 3 values");
  ENGINE_CHECK(left >= 0 && top >= 0 && left + w <= canvas_w && top + h <= canvas_h,
               "expand_canvas: image does not fit the canvas");
  AnnotatedImage out;
  out.image.width = canvas_w;
  out.image.height = canvas_h;
  out.image.rgb.resize(static_cast<size_t>(canvas_w) * canvas_h * 3);
  const uint8_t f[3] = {to_u8(fill[0]), to_u8(fill[1]), to_u8(fill[2])};
  for (size_t i = 0; i < out.image.rgb.size(); i += 3) std::copy(f, f + 3, out.image.rgb.begin() + i);
  const size_t src_row = static_cast<size_t>(w) * 3;
  for (int y = 0; y < h; ++y) {
    const auto src = in.image.rgb.begin() + y * src_row;
    const size_t dst = (static_cast<size_t>(top + y) * canvas_w + left) * 3;
    std::copy(src, src + src_row, out.image.rgb.begin() + dst);
  }
  out.objects = in.objects;
  shift_objects(out.objects, left, top);
  return out;
}

AnnotatedImage crop_annotated(const AnnotatedImage& in, int x0, int y0, int x1, int y1) {
  check_sample(in, "crop_annotated");
  ENGINE_CHECK(0 <= x0 && x0 < x1 && x1 <= in.image.width && 0 <= y0 && y0 < y1 && y1 <= in.image.height,
               "crop_annotated: rectangle [", x0, ", ", x1, ") x [", y0, ", ", y1, ") outside the ",
               in.image.width, "x", in.image.height, " image");
  AnnotatedImage out;
  out.image.width = x1 - x0;
  out.image.height = y1 - y0;
  out.image.rgb.resize(static_cast<size_t>(out.image.width) * out.image.height * 3);
  const size_t row = static_cast<size_t>(out.image.width) * 3;
  for (int y = y0; y < y1; ++y) {
    const auto src = in.image.rgb.begin() + (static_cast<size_t>(y) * in.image.width + x0) * 3;
    std::copy(src, src + row, out.image.rgb.begin() + (y - y0) * row);
  }
  out.objects = crop_objects(in.objects, x0, y0, x1, y1);
  return out;
}

bool min_iou_crop_trials(AnnotatedImage& s, eng::Generator& gen, const AugmentOptions& o, double min_iou) {
  CropRect r;
  if (!find_crop(s.objects, s.image.width, s.image.height, gen, o, min_iou, r)) return false;
  s = crop_annotated(s, r.x0, r.y0, r.x1, r.y1);
  return true;
}

AnnotatedImage hflip(const AnnotatedImage& in) {
  check_sample(in, "hflip");
  AnnotatedImage out = in;
  const int w = in.image.width;
  for (int y = 0; y < in.image.height; ++y) {
    const size_t row = static_cast<size_t>(y) * w * 3;
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) out.image.rgb[row + x * 3 + c] = in.image.rgb[row + (w - 1 - x) * 3 + c];
  }
  flip_objects(out.objects, w);
  return out;
}

void clip_and_drop_degenerate(AnnotatedImage& s) { s.objects = clip_and_drop(s.objects, s.image.width, s.image.height); }

}  // namespace detail

// ============================== public API ==============================

// The step-by-step pipeline: every step makes its whole image (the zoom-out canvas too).
AnnotatedImage detail::augment_ssd_reference(const AnnotatedImage& in, uint64_t seed, const AugmentOptions& options) {
  check_sample(in, "augment_ssd");
  check_options(options);
  eng::Generator gen(seed);
  AnnotatedImage s = in;
  detail::clip_and_drop_degenerate(s);

  if (options.photometric) s.image = detail::apply_photometric(s.image, detail::draw_photometric(gen, options));
  if (options.expand) random_expand(s, gen, options);
  if (options.crop) random_min_iou_crop(s, gen, options);
  if (options.flip && coin(gen, 0.5)) s = detail::hflip(s);

  detail::clip_and_drop_degenerate(s);
  return s;
}

// The same draws in the same order, but only the boxes follow each step; the pixels are
// made once at the end. Output pixel (x, y) is canvas pixel (x0 + x', y0 + y) with x' = x, or
// W - 1 - x when flipped (W: the output width); a canvas pixel is the source pixel
// (X - left, Y - top) put through the photometric distortion when inside the source, else
// the fill colour. The photometric maths is per pixel, so distorting only the pixels that
// survive the crop gives the reference's bytes (test: "augment_ssd equals the step-by-step
// reference").
AnnotatedImage augment_ssd(const AnnotatedImage& in, uint64_t seed, const AugmentOptions& options) {
  check_sample(in, "augment_ssd");
  check_options(options);
  eng::Generator gen(seed);
  const int w = in.image.width, h = in.image.height;
  AnnotatedImage out;
  out.objects = clip_and_drop(in.objects, w, h);

  detail::PhotometricParams photo;  // all gates closed: the identity
  if (options.photometric) photo = detail::draw_photometric(gen, options);
  Expansion e{w, h, 0, 0};
  if (options.expand && draw_expand(w, h, gen, options, e)) shift_objects(out.objects, e.left, e.top);
  CropRect r{0, 0, e.cw, e.ch};
  if (options.crop) {
    CropRect c;
    if (random_crop_rect(out.objects, e.cw, e.ch, gen, options, c)) {
      r = c;
      out.objects = crop_objects(out.objects, r.x0, r.y0, r.x1, r.y1);
    }
  }
  const int W = r.x1 - r.x0, H = r.y1 - r.y0;
  const bool flip = options.flip && coin(gen, 0.5);
  if (flip) flip_objects(out.objects, W);
  out.objects = clip_and_drop(out.objects, W, H);

  const bool distort = photo.brightness || photo.contrast || photo.saturation || photo.hue;
  // Without the HSV part each channel's output depends on that channel's byte alone (the
  // same brightness and contrast for all three): a 256-entry table of photometric_px.
  const bool by_table = distort && !photo.saturation && !photo.hue;
  uint8_t table[256];
  if (by_table)
    for (int v = 0; v < 256; ++v) {
      const uint8_t in3[3] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v), static_cast<uint8_t>(v)};
      uint8_t out3[3];
      photometric_px(in3, out3, photo);
      table[v] = out3[0];
    }
  const uint8_t fill[3] = {to_u8(options.fill[0]), to_u8(options.fill[1]), to_u8(options.fill[2])};
  Image& img = out.image;
  img.width = W;
  img.height = H;
  img.rgb.resize(static_cast<size_t>(W) * H * 3);
  for (int y = 0; y < H; ++y) {
    uint8_t* dst = &img.rgb[static_cast<size_t>(y) * W * 3];
    const int sy = r.y0 + y - e.top;
    const uint8_t* src_row = sy >= 0 && sy < h ? &in.image.rgb[static_cast<size_t>(sy) * w * 3] : nullptr;
    for (int x = 0; x < W; ++x, dst += 3) {
      const int sx = r.x0 + (flip ? W - 1 - x : x) - e.left;
      if (src_row == nullptr || sx < 0 || sx >= w) {
        dst[0] = fill[0], dst[1] = fill[1], dst[2] = fill[2];
      } else if (by_table) {
        const uint8_t* sp = src_row + static_cast<size_t>(sx) * 3;
        dst[0] = table[sp[0]], dst[1] = table[sp[1]], dst[2] = table[sp[2]];
      } else if (distort) {
        photometric_px(src_row + static_cast<size_t>(sx) * 3, dst, photo);
      } else {
        std::copy(src_row + static_cast<size_t>(sx) * 3, src_row + static_cast<size_t>(sx) * 3 + 3, dst);
      }
    }
  }
  return out;
}

AnnotatedImage resize_annotated(const AnnotatedImage& in, int out_w, int out_h) {
  check_sample(in, "resize_annotated");
  AnnotatedImage out;
  out.image = resize_bilinear(in.image, out_w, out_h);
  const double sx = static_cast<double>(out_w) / in.image.width;
  const double sy = static_cast<double>(out_h) / in.image.height;
  out.objects = in.objects;
  if (out_w == in.image.width && out_h == in.image.height) return out;
  for (Object& ob : out.objects) {
    ob.box = Box{ob.box.x1 * sx, ob.box.y1 * sy, ob.box.x2 * sx, ob.box.y2 * sy};
    ob.area = -1;
  }
  return out;
}

int64_t scale_and_drop_small_boxes(std::vector<Object>& objects, int width, int height, int input_w, int input_h,
                                   double min_side) {
  ENGINE_CHECK(width > 0 && height > 0 && input_w > 0 && input_h > 0,
               "scale_and_drop_small_boxes: sizes must be positive (image ", width, "x", height, ", input ", input_w,
               "x", input_h, ")");
  const double fx = static_cast<double>(input_w) / width, fy = static_cast<double>(input_h) / height;
  const size_t before = objects.size();
  std::vector<Object> kept;
  kept.reserve(before);
  for (Object o : objects) {
    o.box = {o.box.x1 * fx, o.box.y1 * fy, o.box.x2 * fx, o.box.y2 * fy};
    o.area = -1;
    // Written so that NaN fails the test (and so the box is dropped).
    if (!(o.box.x2 - o.box.x1 >= min_side && o.box.y2 - o.box.y1 >= min_side)) continue;
    if (!std::isfinite(o.box.x1) || !std::isfinite(o.box.y1) || !std::isfinite(o.box.x2) || !std::isfinite(o.box.y2))
      continue;
    kept.push_back(o);
  }
  objects = std::move(kept);
  return static_cast<int64_t>(before - objects.size());
}

namespace {
// One splitmix64 output step: add the golden-ratio increment, then the finaliser
// (xor-shift / multiply rounds, a bijection on 64-bit words).
uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

// h = mix(mix(mix(run_seed) ^ epoch) ^ index): each stage is a bijection of its input word,
// so for a fixed prefix distinct last arguments never collide.
uint64_t sample_seed(uint64_t run_seed, uint64_t epoch, uint64_t index) {
  uint64_t h = splitmix64(run_seed);
  h = splitmix64(h ^ epoch);
  return splitmix64(h ^ index);
}

}  // namespace data
