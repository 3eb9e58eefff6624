// Image decoding (JPEG, PNG, BMP; test_image_decode.cpp has the crafted files), the limits and errors on bad files, atomic saving,
// the bilinear resize (half-pixel centres) and normalisation to tensors.
#include "test_helpers.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/image.h"
#include "engine/error.h"
#include "temp_dir.h"

// The test writes its PNG and BMP fixtures with stb_image_write (its own static copy), its
// JPEGs with data::save_jpg.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using test::TempDir;

namespace {
// JPEG fixtures through the project's writer (libjpeg-turbo): stb_image_write's JPEG encoder
// shifts negative values, undefined behaviour that the sanitizer build stops on.
bool write_jpg(const std::string& path, int w, int h, const std::vector<uint8_t>& rgb, int quality) {
  data::Image im;
  im.width = w;
  im.height = h;
  im.rgb = rgb;
  data::save_jpg(path, im, quality);
  return true;
}
}  // namespace

namespace {

std::vector<uint8_t> read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& p, const std::vector<uint8_t>& b) {
  test::write_file(p, std::string(b.begin(), b.end()));
}

// Known pixels: w x h x channels, a deterministic pattern.
std::vector<uint8_t> pattern(int w, int h, int ch) {
  std::vector<uint8_t> v(static_cast<size_t>(w) * h * ch);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < ch; ++c) v[(static_cast<size_t>(y) * w + x) * ch + c] = uint8_t((x * 37 + y * 91 + c * 53) & 255);
  return v;
}

// A smooth gradient (JPEG-friendly).
std::vector<uint8_t> gradient(int w, int h) {
  std::vector<uint8_t> v(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &v[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = uint8_t(x * 255 / (w - 1));
      p[1] = uint8_t(y * 255 / (h - 1));
      p[2] = uint8_t(128 + (x - y) * 2);
    }
  return v;
}

data::Image make_image(int w, int h, std::vector<uint8_t> rgb) {
  data::Image im;
  im.width = w;
  im.height = h;
  im.rgb = std::move(rgb);
  return im;
}

uint32_t crc32(const uint8_t* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}
void put_be32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(uint8_t(x >> s));
}
void put_le32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 0; s <= 24; s += 8) v.push_back(uint8_t(x >> s));
}
void put_le16(std::vector<uint8_t>& v, uint16_t x) {
  v.push_back(uint8_t(x));
  v.push_back(uint8_t(x >> 8));
}
void png_chunk(std::vector<uint8_t>& v, const char* type, const std::vector<uint8_t>& payload) {
  put_be32(v, static_cast<uint32_t>(payload.size()));
  std::vector<uint8_t> body(type, type + 4);
  body.insert(body.end(), payload.begin(), payload.end());
  v.insert(v.end(), body.begin(), body.end());
  put_be32(v, crc32(body.data(), body.size()));
}

// A well-formed PNG header (valid CRCs) claiming w x h 8-bit RGB, with no pixel data.
std::vector<uint8_t> png_header_only(uint32_t w, uint32_t h) {
  std::vector<uint8_t> v = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  put_be32(ihdr, w);
  put_be32(ihdr, h);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // depth 8, RGB, deflate, no filter, no interlace
  png_chunk(v, "IHDR", ihdr);
  png_chunk(v, "IEND", {});
  return v;
}

// A BMP header (BITMAPINFOHEADER, 24 bpp) claiming w x h, with no pixel data.
std::vector<uint8_t> bmp_header_only(int32_t w, int32_t h) {
  std::vector<uint8_t> v = {'B', 'M'};
  put_le32(v, 54);  // file size (a lie; the pixels are missing)
  put_le32(v, 0);
  put_le32(v, 54);  // pixel data offset
  put_le32(v, 40);  // header size
  put_le32(v, static_cast<uint32_t>(w));
  put_le32(v, static_cast<uint32_t>(h));
  put_le16(v, 1);   // planes
  put_le16(v, 24);  // bits per pixel
  for (int i = 0; i < 6; ++i) put_le32(v, 0);
  return v;
}

// Checks both the type and the message parts of the exception.
#define REQUIRE_IMAGE_ERROR(expr, path, problem)                   \
  do {                                                             \
    REQUIRE_THROWS_AS(expr, eng::Error);                           \
    REQUIRE_THROWS_WITH(expr, Contains(path) && Contains(problem)); \
  } while (0)

}  // namespace

TEST_CASE("PNG, BMP round-trip exactly, JPEG q95 within tolerance", "[data][image]") {
  TempDir dir("test_image");
  const int w = 7, h = 5;
  const std::vector<uint8_t> px = pattern(w, h, 3);

  SECTION("PNG") {
    const std::string p = dir / "a.png";
    REQUIRE(stbi_write_png(p.c_str(), w, h, 3, px.data(), w * 3));
    data::Image im = data::load_image(p);
    REQUIRE(im.width == w);
    REQUIRE(im.height == h);
    REQUIRE(im.rgb == px);
  }
  SECTION("BMP") {
    const std::string p = dir / "a.bmp";
    REQUIRE(stbi_write_bmp(p.c_str(), w, h, 3, px.data()));
    data::Image im = data::load_image(p);
    REQUIRE(im.width == w);
    REQUIRE(im.height == h);
    REQUIRE(im.rgb == px);
  }
  SECTION("JPEG") {
    const int jw = 24, jh = 16;
    const std::vector<uint8_t> g = gradient(jw, jh);
    const std::string p = dir / "a.jpg";
    REQUIRE(write_jpg(p, jw, jh, g, 95));
    data::Image im = data::load_image(p);
    REQUIRE(im.width == jw);
    REQUIRE(im.height == jh);
    REQUIRE(im.rgb.size() == g.size());
    int worst = 0;
    double total = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      const int d = std::abs(int(im.rgb[i]) - int(g[i]));
      worst = std::max(worst, d);
      total += d;
    }
    INFO("max abs error " << worst << ", mean " << total / g.size());
    REQUIRE(worst <= 12);
    REQUIRE(total / g.size() <= 3.0);
  }
}

TEST_CASE("grayscale and alpha PNGs become RGB", "[data][image]") {
  TempDir dir("test_image");
  const int w = 4, h = 3;
  SECTION("gray") {
    const std::vector<uint8_t> g = pattern(w, h, 1);
    const std::string p = dir / "gray.png";
    REQUIRE(stbi_write_png(p.c_str(), w, h, 1, g.data(), w));
    data::Image im = data::load_image(p);
    REQUIRE(im.width == w);
    REQUIRE(im.height == h);
    REQUIRE(im.rgb.size() == size_t(w * h * 3));
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < 3; ++c) REQUIRE(im.rgb[i * 3 + c] == g[i]);
  }
  SECTION("gray + alpha") {
    const std::vector<uint8_t> ga = pattern(w, h, 2);
    const std::string p = dir / "gray_alpha.png";
    REQUIRE(stbi_write_png(p.c_str(), w, h, 2, ga.data(), w * 2));
    data::Image im = data::load_image(p);
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < 3; ++c) REQUIRE(im.rgb[i * 3 + c] == ga[i * 2]);
  }
  SECTION("RGBA") {
    const std::vector<uint8_t> rgba = pattern(w, h, 4);
    const std::string p = dir / "rgba.png";
    REQUIRE(stbi_write_png(p.c_str(), w, h, 4, rgba.data(), w * 4));
    data::Image im = data::load_image(p);
    REQUIRE(im.width == w);
    REQUIRE(im.height == h);
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < 3; ++c) REQUIRE(im.rgb[i * 3 + c] == rgba[i * 4 + c]);  // alpha dropped
  }
}

TEST_CASE("save_png and save_jpg write atomically and read back", "[data][image]") {
  TempDir dir("test_image");
  const int w = 6, h = 4;
  data::Image im = make_image(w, h, pattern(w, h, 3));
  const std::string p = dir / "out.png";
  data::save_png(p, im);
  REQUIRE(fs::exists(p));
  REQUIRE_FALSE(fs::exists(p + ".tmp"));
  REQUIRE(data::load_image(p).rgb == im.rgb);
  data::save_png(p, im);  // overwrite
  REQUIRE_FALSE(fs::exists(p + ".tmp"));

  data::Image g = make_image(24, 16, gradient(24, 16));
  const std::string j = dir / "out.jpg";
  data::save_jpg(j, g, 95);
  REQUIRE_FALSE(fs::exists(j + ".tmp"));
  data::Image back = data::load_image(j);
  REQUIRE(back.width == 24);
  REQUIRE(back.height == 16);

  // Errors name the file; no .tmp is left.
  const std::string bad = dir / "no_such_dir/out.png";
  REQUIRE_IMAGE_ERROR(data::save_png(bad, im), bad, "cannot create");
  REQUIRE_IMAGE_ERROR(data::save_png(p, data::Image{}), p, "empty image");
  REQUIRE_IMAGE_ERROR(data::save_jpg(j, g, 0), j, "quality");
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir.path)) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  REQUIRE(left == std::vector<std::string>{"out.jpg", "out.png"});
}

TEST_CASE("resize_bilinear uses half-pixel centres", "[data][image]") {
  SECTION("2x2 -> 4x4") {
    // Per axis: out 0 -> in 0; 1 -> 0.25; 2 -> 0.75; 3 -> 1.25 clamped to in 1.
    const std::vector<uint8_t> ch = {0, 16, 32, 64};
    std::vector<uint8_t> rgb;
    for (uint8_t v : ch) rgb.insert(rgb.end(), {v, uint8_t(255 - v), uint8_t(v / 2)});
    data::Image out = data::resize_bilinear(make_image(2, 2, rgb), 4, 4);
    const int expected[4][4] = {{0, 4, 12, 16}, {8, 13, 23, 28}, {24, 31, 45, 52}, {32, 40, 56, 64}};
    REQUIRE(out.width == 4);
    REQUIRE(out.height == 4);
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) {
        INFO("x " << x << " y " << y);
        REQUIRE(int(out.at(x, y, 0)) == expected[y][x]);
        REQUIRE(int(out.at(x, y, 1)) == 255 - expected[y][x]);  // linear in the values
      }
    // Channel 2 is ch/2 = {0, 8, 16, 32}: row 1, column 1 is 6.5 -> rounds up to 7.
    REQUIRE(int(out.at(1, 1, 2)) == 7);
    REQUIRE(int(out.at(0, 0, 2)) == 0);
    REQUIRE(int(out.at(3, 3, 2)) == 32);
  }
  SECTION("4x4 -> 2x2 averages each 2x2 block") {
    // in(x, y) = 40 y + 4 x; out 0 -> in 0.5, out 1 -> in 2.5.
    std::vector<uint8_t> rgb;
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) rgb.insert(rgb.end(), {uint8_t(40 * y + 4 * x), 0, 255});
    data::Image out = data::resize_bilinear(make_image(4, 4, rgb), 2, 2);
    REQUIRE(out.width == 2);
    REQUIRE(out.height == 2);
    REQUIRE(int(out.at(0, 0, 0)) == 22);
    REQUIRE(int(out.at(1, 0, 0)) == 30);
    REQUIRE(int(out.at(0, 1, 0)) == 102);
    REQUIRE(int(out.at(1, 1, 0)) == 110);
    for (int i = 0; i < 4; ++i) {
      REQUIRE(out.rgb[i * 3 + 1] == 0);
      REQUIRE(out.rgb[i * 3 + 2] == 255);
    }
  }
  SECTION("non-square: 3x1 -> 2x1 and 1x1 -> 3x2") {
    // scale 1.5: out 0 -> 0.25, out 1 -> 1.75.
    data::Image row = make_image(3, 1, {0, 0, 0, 100, 100, 100, 200, 200, 200});
    data::Image out = data::resize_bilinear(row, 2, 1);
    REQUIRE(int(out.at(0, 0, 0)) == 25);
    REQUIRE(int(out.at(1, 0, 0)) == 175);
    data::Image dot = data::resize_bilinear(make_image(1, 1, {9, 8, 7}), 3, 2);
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x) REQUIRE((int(dot.at(x, y, 0)) == 9 && int(dot.at(x, y, 2)) == 7));
  }
  SECTION("same size is the identity") {
    data::Image im = make_image(5, 3, pattern(5, 3, 3));
    data::Image out = data::resize_bilinear(im, 5, 3);
    REQUIRE(out.width == 5);
    REQUIRE(out.height == 3);
    REQUIRE(out.rgb == im.rgb);
  }
  SECTION("bad arguments") {
    REQUIRE_THROWS_AS(data::resize_bilinear(make_image(2, 2, pattern(2, 2, 3)), 0, 4), eng::Error);
    REQUIRE_THROWS_AS(data::resize_bilinear(data::Image{}, 4, 4), eng::Error);
    REQUIRE_THROWS_AS(data::resize_bilinear(make_image(2, 2, {1, 2, 3}), 4, 4), eng::Error);
  }
}

TEST_CASE("to_tensor and to_batch normalise per channel in 0..255 units", "[data][image]") {
  // 2x1 image: pixel 0 = (10, 20, 30), pixel 1 = (110, 120, 255).
  data::Image im = make_image(2, 1, {10, 20, 30, 110, 120, 255});
  const std::vector<double> mean = {10, 20, 30}, std = {2, 4, 5};
  eng::Tensor t = data::to_tensor(im, mean, std);
  REQUIRE(t.sizes() == eng::Shape{3, 1, 2});
  REQUIRE(t.dtype() == eng::DType::f32);
  const std::vector<float> v = t.to_vector<float>();
  const std::vector<float> expected = {0, 50, 0, 25, 0, 45};  // CHW
  REQUIRE(v == expected);

  data::Image im2 = make_image(2, 1, {0, 0, 0, 255, 255, 255});
  eng::Tensor b = data::to_batch({im, im2}, mean, std);
  REQUIRE(b.sizes() == eng::Shape{2, 3, 1, 2});
  const std::vector<float> bv = b.to_vector<float>();
  const std::vector<float> expected2 = {0, 50, 0, 25, 0, 45, -5, 122.5f, -5, 58.75f, -6, 45};
  REQUIRE(bv == expected2);

  REQUIRE_THROWS_WITH(data::to_batch({im, make_image(1, 1, {1, 2, 3})}, mean, std), Contains("image 1 is 1x1"));
  REQUIRE_THROWS_AS(data::to_batch({}, mean, std), eng::Error);
  REQUIRE_THROWS_AS(data::to_tensor(im, {1, 2}, std), eng::Error);
  REQUIRE_THROWS_AS(data::to_tensor(im, mean, {1, 0, 1}), eng::Error);
}

TEST_CASE("bad image files are errors naming the file and the problem", "[data][image]") {
  TempDir dir("test_image");

  const std::string missing = dir / "missing.png";
  REQUIRE_IMAGE_ERROR(data::load_image(missing), missing, "image file not found");

  REQUIRE_IMAGE_ERROR(data::load_image(dir.path.string()), dir.path.string(), "is a directory");

  const std::string empty = dir / "empty.png";
  write_bytes(empty, {});
  REQUIRE_IMAGE_ERROR(data::load_image(empty), empty, "empty file");

  const std::string text = dir / "text.png";
  const std::string words = "this is not a picture, only some words\n";
  write_bytes(text, std::vector<uint8_t>(words.begin(), words.end()));
  REQUIRE_IMAGE_ERROR(data::load_image(text), text, "not a JPEG, PNG or BMP image");

  const std::string noise = dir / "noise.jpg";
  {
    std::mt19937 rng(7);
    std::vector<uint8_t> b(1000);
    for (auto& x : b) x = uint8_t(rng());
    write_bytes(noise, b);
  }
  REQUIRE_IMAGE_ERROR(data::load_image(noise), noise, "not a JPEG, PNG or BMP image");

  // Noise compresses badly, so the IDAT is most of the file and half of it is cut.
  const int w = 32, h = 32;
  std::vector<uint8_t> px(w * h * 3);
  {
    std::mt19937 rng(11);
    for (auto& x : px) x = uint8_t(rng());
  }
  const std::string good = dir / "good.png";
  REQUIRE(stbi_write_png(good.c_str(), w, h, 3, px.data(), w * 3));
  std::vector<uint8_t> bytes = read_bytes(good);
  REQUIRE(bytes.size() > 1000);
  const std::string truncated = dir / "truncated.png";
  write_bytes(truncated, std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  REQUIRE_IMAGE_ERROR(data::load_image(truncated), truncated, "corrupt or truncated");

  // Absurd dimensions fail on the limit, before anything is allocated for the pixels.
  const std::string huge = dir / "huge.png";
  write_bytes(huge, png_header_only(100000, 100000));
  REQUIRE_IMAGE_ERROR(data::load_image(huge), huge, "dimensions 100000x100000 over the limit");
  const std::string wide = dir / "wide.png";
  write_bytes(wide, png_header_only(20000, 1));  // within stb's own limits, over ours
  REQUIRE_IMAGE_ERROR(data::load_image(wide), wide, "dimensions 20000x1 over the limit");
  const std::string huge_bmp = dir / "huge.bmp";
  write_bytes(huge_bmp, bmp_header_only(100000, 100000));
  REQUIRE_IMAGE_ERROR(data::load_image(huge_bmp), huge_bmp, "dimensions 100000x100000 over the limit");
  // The pixel limit too.
  data::ImageLimits few_pixels;
  few_pixels.max_pixels = 100;
  REQUIRE_IMAGE_ERROR(data::load_image(good, few_pixels), good, "dimensions 32x32 over the limit");

  // A JPEG Huffman table claiming 16 x 255 symbols (stb_image 2.27 overran its tables):
  // libjpeg refuses it.
  const std::string bad_dht = dir / "bad_dht.jpg";
  {
    std::vector<uint8_t> b = {0xFF, 0xD8, 0xFF, 0xC4, 0x00, 19, 0x00};
    b.insert(b.end(), 16, 0xFF);
    b.insert(b.end(), 300, 0x01);
    b.insert(b.end(), {0xFF, 0xD9});
    write_bytes(bad_dht, b);
  }
  REQUIRE_IMAGE_ERROR(data::load_image(bad_dht), bad_dht, "Bogus Huffman table definition");

  data::ImageLimits tiny;
  tiny.max_file_bytes = 100;
  REQUIRE_IMAGE_ERROR(data::load_image(good, tiny), good, "larger than the limit of 100 bytes");

  // decode_image names what it was given.
  REQUIRE_IMAGE_ERROR(data::decode_image(bytes.data(), bytes.size() / 2, "frame 7", {}), "frame 7",
                      "corrupt or truncated");
  REQUIRE_IMAGE_ERROR(data::decode_image(bytes.data(), 0, "frame 8", {}), "frame 8", "empty");
  // The good file itself decodes.
  REQUIRE(data::load_image(good).rgb == px);
}

TEST_CASE("randomly corrupted PNG, JPEG and BMP files decode or throw eng::Error, never crash", "[data][image]") {
  TempDir dir("test_image");
  const int w = 24, h = 16;
  const std::string png = dir / "src.png", jpg = dir / "src.jpg", bmp = dir / "src.bmp";
  const std::vector<uint8_t> g = gradient(w, h);
  REQUIRE(stbi_write_png(png.c_str(), w, h, 3, g.data(), w * 3));
  REQUIRE(write_jpg(jpg, w, h, g, 90));
  REQUIRE(stbi_write_bmp(bmp.c_str(), w, h, 3, g.data()));
  data::ImageLimits limits;  // keep what a corrupt header may claim small
  limits.max_width = limits.max_height = 2048;
  limits.max_pixels = 1 << 20;

  std::mt19937_64 rng(20240611);
  for (const std::string& src : {png, jpg, bmp}) {
    const std::vector<uint8_t> orig = read_bytes(src);
    REQUIRE(orig.size() > 64);
    int decoded = 0, errors = 0;
    for (int k = 0; k < 200; ++k) {
      std::vector<uint8_t> b = orig;
      const int mode = int(rng() % 3);
      if (mode != 1) {  // flip 1..8 random bytes (some in the header)
        const int flips = 1 + int(rng() % 8);
        for (int f = 0; f < flips; ++f) {
          const size_t at = (rng() % 4 == 0) ? rng() % std::min<size_t>(64, b.size()) : rng() % b.size();
          b[at] ^= uint8_t(1 + rng() % 255);
        }
      }
      if (mode != 0) b.resize(1 + rng() % (b.size() - 1));  // truncate
      const std::string p = dir / ("c" + std::to_string(k) + fs::path(src).extension().string());
      write_bytes(p, b);
      INFO("copy " << k << " of " << src << " (mode " << mode << ", " << b.size() << " bytes)");
      try {
        data::Image im = data::load_image(p, limits);
        REQUIRE(im.width > 0);
        REQUIRE(im.height > 0);
        REQUIRE(im.rgb.size() == size_t(im.width) * im.height * 3);
        ++decoded;
      } catch (const eng::Error& e) {
        REQUIRE_THAT(e.what(), Contains(p));
        ++errors;
      }
      fs::remove(p);
    }
    INFO(src << ": " << decoded << " decoded, " << errors << " errors");
    REQUIRE(decoded + errors == 200);
    REQUIRE(errors > 0);
  }
}
