// augment_ssd makes only its output pixels (photometric distortion on the pixels that survive
// the crop, no zoom-out canvas); detail::augment_ssd_reference runs the steps one by one on
// whole images. They must agree byte for byte, boxes included; and the per-pixel photometric
// maths must equal the whole-buffer helpers it replaced (the same float operations).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "data/augment.h"

using namespace data;

namespace {

// Full-range noise (every HSV sector, greys, black and white), with a few flat patches.
Image noise_image(int w, int h, uint32_t seed) {
  Image im;
  im.width = w;
  im.height = h;
  im.rgb.resize(static_cast<size_t>(w) * h * 3);
  std::mt19937 rng(seed);
  for (auto& v : im.rgb) v = static_cast<uint8_t>(rng() % 256);
  for (int y = 0; y < h / 4; ++y)
    for (int x = 0; x < w / 4; ++x)
      for (int c = 0; c < 3; ++c) im.rgb[(static_cast<size_t>(y) * w + x) * 3 + c] = (x + y) % 2 ? 255 : 0;
  return im;
}

Object object(double x1, double y1, double x2, double y2, int label) {
  Object o;
  o.box = {x1, y1, x2, y2};
  o.label = label;
  o.area = (x2 - x1) * (y2 - y1);
  return o;
}

void require_same(const AnnotatedImage& a, const AnnotatedImage& b) {
  REQUIRE(a.image.width == b.image.width);
  REQUIRE(a.image.height == b.image.height);
  REQUIRE(a.image.rgb == b.image.rgb);
  REQUIRE(a.objects.size() == b.objects.size());
  for (size_t i = 0; i < a.objects.size(); ++i) {
    const Object &p = a.objects[i], &q = b.objects[i];
    CHECK(p.box.x1 == q.box.x1);
    CHECK(p.box.y1 == q.box.y1);
    CHECK(p.box.x2 == q.box.x2);
    CHECK(p.box.y2 == q.box.y2);
    CHECK(p.label == q.label);
    CHECK(p.area == q.area);
    CHECK(p.difficult == q.difficult);
  }
}

}  // namespace

TEST_CASE("augment_ssd equals the step-by-step reference byte for byte", "[data][augment]") {
  AnnotatedImage in;
  in.image = noise_image(61, 47, 3);
  in.objects = {object(5, 4, 30, 25, 0), object(20, 10, 58, 44, 2), object(-3, 30, 12, 60, 1),  // clipped
                object(40, 40, 40.5, 41, 3)};                                                   // dropped
  struct Case {
    const char* name;
    AugmentOptions o;
  };
  std::vector<Case> cases(7);
  cases[0].name = "defaults";
  cases[1].name = "always zoom out";
  cases[1].o.expand_prob = 1;
  cases[2].name = "no photometric";
  cases[2].o.photometric = false;
  cases[3].name = "no crop";
  cases[3].o.crop = false;
  cases[4].name = "no expand, no flip";
  cases[4].o.expand = false;
  cases[4].o.flip = false;
  cases[5].name = "odd fill, strong hue";
  cases[5].o.fill = {-20, 300.4, 17.5};
  cases[5].o.hue_delta = 170;
  cases[5].o.expand_max_ratio = 2;
  cases[6].name = "everything off";
  cases[6].o.photometric = cases[6].o.expand = cases[6].o.crop = cases[6].o.flip = false;
  for (const Case& c : cases) {
    for (uint64_t seed = 0; seed < 150; ++seed) {
      INFO(c.name << ", seed " << seed);
      require_same(augment_ssd(in, seed, c.o), detail::augment_ssd_reference(in, seed, c.o));
    }
  }
}

TEST_CASE("augment_ssd equals the reference without objects and on a 1x1 image", "[data][augment]") {
  AnnotatedImage empty;
  empty.image = noise_image(33, 20, 9);
  AnnotatedImage tiny;
  tiny.image = noise_image(1, 1, 4);
  tiny.objects = {object(0, 0, 1, 1, 1)};
  AugmentOptions o;
  o.expand_prob = 0.8;
  for (uint64_t seed = 0; seed < 60; ++seed) {
    INFO("seed " << seed);
    require_same(augment_ssd(empty, seed, o), detail::augment_ssd_reference(empty, seed, o));
    require_same(augment_ssd(tiny, seed, o), detail::augment_ssd_reference(tiny, seed, o));
  }
}

TEST_CASE("apply_photometric per pixel equals the whole-buffer steps for every gate combination",
          "[data][augment]") {
  const Image im = noise_image(40, 30, 11);
  for (int mask = 0; mask < 32; ++mask) {
    detail::PhotometricParams p;
    p.brightness = mask & 1;
    p.brightness_delta = -23.7;
    p.contrast = mask & 2;
    p.contrast_factor = 1.37;
    p.contrast_first = mask & 4;
    p.saturation = mask & 8;
    p.saturation_factor = 0.61;
    p.hue = mask & 16;
    p.hue_delta = mask & 1 ? 17.3 : -16.9;  // both wrap directions
    // The whole-buffer version, written out from the helpers.
    std::vector<float> px = detail::to_float(im);
    if (p.brightness) detail::add_brightness(px, p.brightness_delta);
    if (p.contrast && p.contrast_first) detail::scale_contrast(px, p.contrast_factor);
    if (p.saturation || p.hue) {
      detail::rgb_to_hsv(px);
      if (p.saturation) detail::scale_saturation(px, p.saturation_factor);
      if (p.hue) detail::shift_hue(px, p.hue_delta);
      detail::hsv_to_rgb(px);
    }
    if (p.contrast && !p.contrast_first) detail::scale_contrast(px, p.contrast_factor);
    const Image want = detail::from_float(px, im.width, im.height);
    INFO("gates " << mask);
    CHECK(detail::apply_photometric(im, p).rgb == want.rgb);
  }
}

TEST_CASE("hue wrapping without fmod equals fmod", "[data][augment]") {
  // shift_hue: (H + degrees) mod 360 into [0, 360), for hues in [0, 360) and any shift.
  std::vector<float> hues;
  for (float h = 0; h < 360.f; h += 0.37f) hues.push_back(h);
  for (float h : {0.f, 1e-6f, 359.99997f, 180.f, 359.5f}) hues.push_back(h);
  for (double d : {-359.9, -180.0, -18.0, -1e-9, 0.0, 1e-9, 17.99, 18.0, 200.0, 359.9, 725.0, -725.0}) {
    std::vector<float> hsv;
    for (float h : hues) hsv.insert(hsv.end(), {h, 0.5f, 100.f});
    detail::shift_hue(hsv, d);
    for (size_t i = 0; i < hues.size(); ++i) {
      double want = std::fmod(static_cast<double>(hues[i]) + d, 360.0);
      if (want < 0) want += 360.0;
      float wf = static_cast<float>(want);
      if (wf >= 360.f) wf = 0.f;
      INFO("h " << hues[i] << " + " << d);
      CHECK(hsv[3 * i] == wf);
      CHECK(hsv[3 * i] >= 0.f);
      CHECK(hsv[3 * i] < 360.f);
    }
  }
  // hsv_to_rgb takes H modulo 360 for any H, as fmod does.
  for (float h : {-725.f, -360.f, -10.f, -0.f, 0.f, 59.99f, 360.f, 400.f, 719.9f, 720.f, 1000.f}) {
    std::vector<float> got = {h, 0.8f, 200.f};
    float w = std::fmod(h, 360.f);
    if (w < 0) w += 360.f;
    std::vector<float> want = {w, 0.8f, 200.f};
    detail::hsv_to_rgb(got);
    detail::hsv_to_rgb(want);
    INFO("H " << h);
    CHECK(got == want);
  }
}

namespace {

// The conversions as the spec writes them (branches, a switch), to check the branch-free
// versions of data/src/augment.cpp against.
void spec_rgb_to_hsv(float* px) {
  const float r = std::min(255.f, std::max(0.f, px[0]));
  const float g = std::min(255.f, std::max(0.f, px[1]));
  const float b = std::min(255.f, std::max(0.f, px[2]));
  const float v = std::max(r, std::max(g, b));
  const float mn = std::min(r, std::min(g, b));
  const float c = v - mn;
  float h = 0;
  if (c > 0) {
    if (v == r) h = 60.f * (g - b) / c;
    else if (v == g) h = 120.f + 60.f * (b - r) / c;
    else h = 240.f + 60.f * (r - g) / c;
    if (h < 0) h += 360.f;
  }
  px[0] = h;
  px[1] = v > 0 ? c / v : 0.f;
  px[2] = v;
}

void spec_hsv_to_rgb(float* px) {
  float h = std::fmod(px[0], 360.f);
  if (h < 0) h += 360.f;
  const float s = px[1], v = px[2];
  const float h6 = h / 60.f;
  const float fl = std::floor(h6);
  const int k = static_cast<int>(fl) % 6;
  const float f = h6 - fl;
  const float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  float r, g, b;
  switch (k) {
    case 0: r = v; g = t; b = p; break;
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = t; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = t; g = p; b = v; break;
    default: r = v; g = p; b = q; break;
  }
  px[0] = r;
  px[1] = g;
  px[2] = b;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST_CASE("rgb_to_hsv and hsv_to_rgb equal the branchy spec bit for bit", "[data][augment]") {
  // Every 8-bit colour, then floats out of range and with fractions (brightness / contrast
  // come first in the pipeline), round trip included.
  std::vector<float> px, spec;
  px.reserve(3u << 24);
  for (int r = 0; r < 256; ++r)
    for (int g = 0; g < 256; ++g)
      for (int b = 0; b < 256; ++b) px.insert(px.end(), {float(r), float(g), float(b)});
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-40.f, 300.f);
  for (int i = 0; i < 300000; ++i) px.insert(px.end(), {u(rng), u(rng), u(rng)});
  spec = px;
  detail::rgb_to_hsv(px);
  for (size_t i = 0; i < spec.size(); i += 3) spec_rgb_to_hsv(&spec[i]);
  size_t bad = 0;
  for (size_t i = 0; i < px.size(); ++i) bad += !same_bits(px[i], spec[i]);
  CHECK(bad == 0);
  // Back, with S scaled past 1 for part of them (saturation factor up to 1.5).
  for (size_t i = 1; i < px.size(); i += 6) px[i] *= 1.37f, spec[i] *= 1.37f;
  detail::hsv_to_rgb(px);
  for (size_t i = 0; i < spec.size(); i += 3) spec_hsv_to_rgb(&spec[i]);
  bad = 0;
  for (size_t i = 0; i < px.size(); ++i) bad += !same_bits(px[i], spec[i]);
  CHECK(bad == 0);
}

TEST_CASE("from_float rounds as clamp then floor(v + 0.5)", "[data][augment]") {
  std::vector<float> v = {-1e30f, -300.f, -0.5f, -0.f, 0.f, 0.49999997f, 0.5f, 1.5f, 2.5f, 127.49999f, 127.5f,
                          254.5f, 254.49998f, 255.f, 255.5f, 1e30f, std::nanf("")};
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> u(-10.f, 270.f);
  for (int i = 0; i < 99999; ++i) v.push_back(u(rng));
  for (float x = 0.f; x < 256.f; x += 0.25f) v.push_back(x);
  while (v.size() % 3) v.push_back(0.f);
  const Image im = detail::from_float(v, static_cast<int>(v.size() / 3), 1);
  for (size_t i = 0; i < v.size(); ++i) {
    const double c = std::min(255.0, std::max(0.0, static_cast<double>(v[i])));
    INFO("v " << v[i]);
    REQUIRE(im.rgb[i] == static_cast<uint8_t>(std::floor(c + 0.5)));
  }
}
