// The hardened decoders (issue 18): libjpeg-turbo for JPEG, libpng for PNG. Regression
// inputs under tests/fixtures/bad_images/ (make_bad_images.py there writes them),
// pixel checks of every PNG layout and of grey/CMYK JPEGs, the decoder limits, scaled
// JPEG decoding, and the loader's use of it (boxes stay on their objects).
#include "test_helpers.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/detail/image_decoders.h"
#include "data/image.h"
#include "data/loader.h"
#include "engine/error.h"
#include "temp_dir.h"

using Catch::Matchers::Contains;
using test::TempDir;

namespace {

std::string fixture(const std::string& name) {
  return std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/bad_images/" + name;
}

// make_bad_images.py's test pattern.
int pix(int x, int y, int c) { return (x * 37 + y * 11 + c * 101) & 255; }

// The message of the eng::Error that `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const eng::Error& e) {
    return e.what();
  }
  return "";
}

double mean_abs_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  REQUIRE(a.size() == b.size());
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::abs(int(a[i]) - int(b[i]));
  return s / static_cast<double>(a.size());
}

// A smooth colour field (JPEG keeps it well): w x h.
data::Image smooth(int w, int h) {
  data::Image im;
  im.width = w;
  im.height = h;
  im.rgb.resize(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &im.rgb[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = static_cast<uint8_t>(40 + 150.0 * x / w);
      p[1] = static_cast<uint8_t>(40 + 150.0 * y / h);
      p[2] = static_cast<uint8_t>(120 + 60 * std::sin(0.02 * (x + y)));
    }
  return im;
}

}  // namespace

TEST_CASE("crafted and broken image files give one error line naming the file", "[data][image]") {
  struct Case {
    const char* file;
    const char* problem;
  };
  const Case cases[] = {
      // Issue 18's crash recipe: 0xFF before the SOI and a DHT table of 16 x 255 symbols.
      {"ff_before_soi_bad_dht.jpg", "Not a JPEG file: starts with 0xff 0xff"},
      {"bad_dht.jpg", "Bogus Huffman table definition"},
      // stb decoded this from uninitialised memory.
      {"progressive_undefined_huffman.jpg", "Huffman table 0x03 was not defined"},
      {"truncated.jpg", "Premature end of JPEG file"},
      {"no_eoi.jpg", "Premature end of JPEG file"},  // as PIL: "image file is truncated"
      {"huge_dims.jpg", "dimensions 65000x65000 over the limit"},
      {"bad_crc_idat.png", "IDAT: CRC error"},
      {"bad_crc_text.png", "tEXt: CRC error"},  // ancillary chunks too
      {"huge_dims.png", "dimensions 100000x100000 over the limit"},
      {"bomb_12000x12000.png", "dimensions 12000x12000 over the limit"},
      {"truncated.png", "premature end of file"},
  };
  for (const Case& c : cases) {
    const std::string path = fixture(c.file);
    INFO(path);
    const std::string msg = error_of([&] { data::load_image(path); });
    INFO("message: " << msg);
    CHECK_THAT(msg, Contains(path) && Contains(c.problem));
    CHECK(msg.find('\n') == std::string::npos);
    // The scaled path reports the same.
    CHECK(error_of([&] { data::load_image_scaled(path, {64, 64}); }) == msg);
  }
}

TEST_CASE("PNG layouts decode to 8-bit RGB", "[data][image]") {
  SECTION("8-bit RGB, and an IDAT holding 4 MB more than the image (not inflated, accepted)") {
    for (const char* f : {"good_rgb.png", "extra_idat_data.png"}) {
      const data::Image im = data::load_image(fixture(f));
      INFO(f);
      REQUIRE(im.width == (std::string(f) == "good_rgb.png" ? 8 : 16));
      for (int y = 0; y < im.height; ++y)
        for (int x = 0; x < im.width; ++x)
          for (int c = 0; c < 3; ++c) REQUIRE(int(im.at(x, y, c)) == pix(x, y, c));
    }
  }
  SECTION("16-bit keeps the high byte") {
    const data::Image im = data::load_image(fixture("rgb16.png"));
    REQUIRE((im.width == 8 && im.height == 6));
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 8; ++x)
        for (int c = 0; c < 3; ++c) REQUIRE(int(im.at(x, y, c)) == pix(x, y, c));
  }
  SECTION("2-bit palette expanded") {
    const int pal[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {17, 34, 51}};
    const data::Image im = data::load_image(fixture("palette.png"));
    REQUIRE((im.width == 5 && im.height == 3));
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 5; ++x)
        for (int c = 0; c < 3; ++c) REQUIRE(int(im.at(x, y, c)) == pal[(x + y) % 4][c]);
  }
  SECTION("grey + alpha: grey replicated, alpha dropped") {
    const data::Image im = data::load_image(fixture("gray_alpha.png"));
    REQUIRE((im.width == 8 && im.height == 6));
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 8; ++x)
        for (int c = 0; c < 3; ++c) REQUIRE(int(im.at(x, y, c)) == pix(x, y, 0));
  }
  SECTION("Adam7 interlaced") {
    const data::Image im = data::load_image(fixture("interlaced.png"));
    REQUIRE((im.width == 9 && im.height == 7));
    for (int y = 0; y < 7; ++y)
      for (int x = 0; x < 9; ++x)
        for (int c = 0; c < 3; ++c) REQUIRE(int(im.at(x, y, c)) == pix(x, y, c));
  }
}

TEST_CASE("JPEG: baseline, progressive, grey and Adobe CMYK decode to RGB", "[data][image]") {
  const data::Image base = data::load_image(fixture("good_baseline.jpg"));
  const data::Image prog = data::load_image(fixture("good_progressive.jpg"));
  REQUIRE((base.width == 64 && base.height == 48));
  REQUIRE((prog.width == 64 && prog.height == 48));
  // Pillow (libjpeg with its defaults: islow IDCT, fancy upsampling) decoded both files to
  // the _pillow.png references; libjpeg-turbo here gives the same bytes.
  CHECK(base.rgb == data::load_image(fixture("good_baseline_pillow.png")).rgb);
  CHECK(prog.rgb == data::load_image(fixture("good_progressive_pillow.png")).rgb);

  const data::Image grey = data::load_image(fixture("grey.jpg"));
  REQUIRE((grey.width == 32 && grey.height == 16));
  for (int c = 0; c < 3; ++c) {
    CHECK(std::abs(int(grey.at(4, 8, c)) - 40) <= 2);
    CHECK(std::abs(int(grey.at(28, 8, c)) - 200) <= 2);
  }
  // PIL reads the four blocks as cyan, (127, 0, 127), white and black.
  const data::Image cmyk = data::load_image(fixture("cmyk_adobe.jpg"));
  REQUIRE((cmyk.width == 64 && cmyk.height == 16));
  const int rgb[4][3] = {{0, 255, 255}, {127, 0, 127}, {255, 255, 255}, {0, 0, 0}};
  for (int b = 0; b < 4; ++b)
    for (int c = 0; c < 3; ++c) {
      INFO("block " << b << " channel " << c);
      CHECK(std::abs(int(cmyk.at(16 * b + 8, 8, c)) - rgb[b][c]) <= 3);
    }
}

TEST_CASE("the JPEG decoder's memory and scan limits", "[data][image]") {
  const std::string prog = fixture("progressive_640x480.jpg");
  data::ImageLimits memory;
  memory.max_decoder_bytes = 200000;  // its whole-image coefficient arrays need ~0.9 MB
  const std::string msg = error_of([&] { data::load_image(prog, memory); });
  CHECK_THAT(msg, Contains(prog) && Contains("more memory than the limit of 200000 bytes"));
  memory.max_decoder_bytes = 2000000;
  CHECK(data::load_image(prog, memory).width == 640);
  data::ImageLimits scans;
  scans.max_jpeg_scans = 2;
  CHECK_THAT(error_of([&] { data::load_image(prog, scans); }), Contains(prog) && Contains("more than 2 scans"));
  CHECK(data::load_image(prog).width == 640);  // within the defaults
  // The pixel limit applies to the size in the file, also when a reduced decode is asked.
  data::ImageLimits pixels;
  pixels.max_pixels = 64 * 48 - 1;
  CHECK_THAT(error_of([&] { data::load_image_scaled(fixture("good_baseline.jpg"), {8, 6}, pixels); }),
             Contains("dimensions 64x48 over the limit"));
}

TEST_CASE("jpeg_scale_denom_for picks the largest reduction that stays large enough", "[data][image]") {
  CHECK(data::jpeg_scale_denom_for(4000, 3000, {}) == 1);
  CHECK(data::jpeg_scale_denom_for(4000, 3000, {300, 300}) == 8);   // 500 x 375
  CHECK(data::jpeg_scale_denom_for(2000, 1500, {300, 300}) == 4);   // 500 x 375 (1/8: 188 tall)
  CHECK(data::jpeg_scale_denom_for(1000, 750, {300, 300}) == 2);    // 500 x 375
  CHECK(data::jpeg_scale_denom_for(500, 375, {300, 300}) == 1);     // 1/2 would be 188 tall
  CHECK(data::jpeg_scale_denom_for(601, 601, {300, 300}) == 2);     // ceil(601 / 2) = 301
  CHECK(data::jpeg_scale_denom_for(2401, 100, {300, 0}) == 8);      // ceil(2401 / 8) = 301, height free
  CHECK(data::jpeg_scale_denom_for(2400, 2400, {301, 301}) == 4);
}

TEST_CASE("scaled JPEG decoding: size, original size and pixels", "[data][image]") {
  TempDir dir("test_image_decode");
  const std::string jpg = dir / "big.jpg", png = dir / "big.png";
  const data::Image src = smooth(400, 300);
  data::save_jpg(jpg, src, 95);
  data::save_png(png, src);
  const data::Image full = data::load_image(jpg);
  std::vector<uint8_t> bytes;
  {
    std::ifstream f(jpg, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  REQUIRE(!bytes.empty());
  for (int d : {1, 2, 4, 8}) {
    INFO("1/" << d);
    const int need_w = (400 + d - 1) / d, need_h = (300 + d - 1) / d;
    const data::ScaledImage s = data::load_image_scaled(jpg, {need_w, need_h});
    CHECK(s.scale_denom == d);
    CHECK(s.original_width == 400);
    CHECK(s.original_height == 300);
    REQUIRE(s.image.width == need_w);
    REQUIRE(s.image.height == need_h);
    // The reduced decode is close to the full decode resized (a smooth image).
    const data::Image resized = data::resize_bilinear(full, need_w, need_h);
    CHECK(mean_abs_diff(s.image.rgb, resized.rgb) < 2.0);
    // Asking for the scale directly gives the same pixels.
    CHECK(data::detail::decode_jpeg(bytes.data(), bytes.size(), jpg, {}, {}, d).image.rgb == s.image.rgb);
  }
  // PNG is never reduced.
  const data::ScaledImage p = data::load_image_scaled(png, {50, 50});
  CHECK(p.scale_denom == 1);
  CHECK((p.image.width == 400 && p.image.height == 300));
  CHECK(p.image.rgb == src.rgb);
}

namespace {

// A dataset of `n` smooth w x h JPEGs, each with one bright box (a white rectangle drawn on
// the image, the object's box exactly).
data::Dataset box_dataset(const TempDir& dir, int n, int w, int h) {
  data::Dataset ds;
  ds.class_names = {"box"};
  ds.category_ids = {1};
  for (int i = 0; i < n; ++i) {
    data::Image im = smooth(w, h);
    for (auto& v : im.rgb) v = static_cast<uint8_t>(v / 4);  // dark background
    const int x1 = w / 8 + i * w / 40, y1 = h / 6 + i * h / 50, x2 = x1 + w / 2, y2 = y1 + h / 2;
    for (int y = y1; y < y2; ++y)
      for (int x = x1; x < x2; ++x)
        for (int c = 0; c < 3; ++c) im.rgb[(static_cast<size_t>(y) * w + x) * 3 + c] = 255;
    data::Sample s;
    s.image_path = dir / ("img" + std::to_string(i) + ".jpg");
    s.key = "img" + std::to_string(i);
    data::save_jpg(s.image_path, im, 95);
    data::Object o;
    o.box = {double(x1), double(y1), double(x2), double(y2)};
    s.objects.push_back(o);
    ds.samples.push_back(s);
  }
  return ds;
}

data::AugmentOptions no_augment() {
  data::AugmentOptions a;
  a.photometric = a.expand = a.crop = a.flip = false;
  return a;
}

std::vector<data::Batch> take(data::Loader& loader, int n) {
  std::vector<data::Batch> out;
  data::Batch b;
  for (int i = 0; i < n && loader.next(b); ++i) out.push_back(b);
  return out;
}

}  // namespace

TEST_CASE("loader: scaled decoding keeps boxes on their objects", "[data][image][loader]") {
  TempDir dir("test_image_decode");
  const int S = 64;
  // 960 x 720: evaluation (needs >= 64) decodes at 1/8 (120 x 90); training with the crop
  // (needs >= 64 / 0.3 = 214) at 1/2 (480 x 360); training without the crop at 1/8.
  const data::Dataset ds = box_dataset(dir, 6, 960, 720);
  data::LoaderOptions o;
  o.batch_size = 3;
  o.workers = 0;
  o.input_sizes = {S};
  o.seed = 5;

  SECTION("no augmentation: the same boxes and nearly the same images as a full decode") {
    for (bool train : {true, false}) {
      INFO("train " << train);
      o.train = train;
      o.augment = no_augment();
      o.scaled_decode = false;
      data::Loader full(ds, o);
      o.scaled_decode = true;
      data::Loader scaled(ds, o);
      const auto a = take(full, 2), b = take(scaled, 2);
      REQUIRE((a.size() == 2 && b.size() == 2));
      for (int k = 0; k < 2; ++k) {
        REQUIRE(a[k].samples == b[k].samples);
        CHECK(b[k].widths == std::vector<int>(3, 960));  // original sizes
        CHECK(b[k].heights == std::vector<int>(3, 720));
        if (train)
          for (size_t i = 0; i < a[k].objects.size(); ++i) {
            REQUIRE(a[k].objects[i].size() == 1);
            REQUIRE(b[k].objects[i].size() == 1);
            const data::Box& p = a[k].objects[i][0].box;
            const data::Box& q = b[k].objects[i][0].box;
            CHECK(q.x1 == Approx(p.x1).margin(1e-9));
            CHECK(q.y1 == Approx(p.y1).margin(1e-9));
            CHECK(q.x2 == Approx(p.x2).margin(1e-9));
            CHECK(q.y2 == Approx(p.y2).margin(1e-9));
          }
        // Images: the 1/8 DCT decode averages where the full-size bilinear resize samples;
        // on these flat areas and hard box edges they agree to a few grey levels on average.
        const std::vector<float> x = a[k].images.to_vector<float>(), y = b[k].images.to_vector<float>();
        double diff = 0;
        for (size_t i = 0; i < x.size(); ++i) diff += std::abs(x[i] - y[i]);
        CHECK(diff / x.size() < 4.0);
      }
    }
  }

  SECTION("full SSD augmentation (expand, crop, flip): the box still frames the white rectangle") {
    o.train = true;
    o.augment = data::AugmentOptions{};
    o.augment.photometric = false;  // keep white white
    data::Loader loader(ds, o);
    int checked = 0;
    for (const data::Batch& b : take(loader, 8)) {
      const std::vector<float> px = b.images.to_vector<float>();  // mean 0, std 1: pixel units
      for (size_t i = 0; i < b.objects.size(); ++i) {
        for (const data::Object& obj : b.objects[i]) {
          const data::Box& bx = obj.box;
          if (bx.x2 - bx.x1 < 8 || bx.y2 - bx.y1 < 8) continue;  // too small to sample inside
          auto at = [&](int x, int y) {  // mean over channels of batch pixel (x, y)
            double s = 0;
            for (int c = 0; c < 3; ++c) s += px[((i * 3 + c) * S + y) * S + x];
            return s / 3;
          };
          // Inside, 2 px in from the edges: white (the rectangle may be cut by the crop,
          // but the box is clipped with it).
          for (int y = int(std::ceil(bx.y1)) + 2; y <= int(bx.y2) - 3; ++y)
            for (int x = int(std::ceil(bx.x1)) + 2; x <= int(bx.x2) - 3; ++x) REQUIRE(at(x, y) > 200);
          // Outside, 2 px beyond each edge still inside the input: dark or expand fill.
          const int cx = int((bx.x1 + bx.x2) / 2), cy = int((bx.y1 + bx.y2) / 2);
          if (bx.x1 - 3 >= 0) CHECK(at(int(bx.x1) - 3, cy) < 160);
          if (bx.x2 + 3 < S) CHECK(at(int(bx.x2) + 2, cy) < 160);
          if (bx.y1 - 3 >= 0) CHECK(at(cx, int(bx.y1) - 3) < 160);
          if (bx.y2 + 3 < S) CHECK(at(cx, int(bx.y2) + 2) < 160);
          ++checked;
        }
      }
    }
    CHECK(checked >= 10);
  }
}

TEST_CASE("mutated progressive, CMYK, grey, interlaced, palette and 16-bit files decode or throw", "[data][image]") {
  // Complements test_image.cpp's corruption test (baseline JPEG, 8-bit PNG, BMP written by
  // stb) with the layouts stb_image_write cannot produce. Run under ASan+UBSan by hand too
  // (docs/_pending/decode.md).
  data::ImageLimits limits;
  limits.max_width = limits.max_height = 4096;
  limits.max_pixels = 1 << 22;
  std::mt19937_64 rng(18);
  for (const char* f : {"good_progressive.jpg", "cmyk_adobe.jpg", "grey.jpg", "interlaced.png", "palette.png",
                        "rgb16.png", "gray_alpha.png"}) {
    std::vector<uint8_t> orig;
    {
      std::ifstream in(fixture(f), std::ios::binary);
      orig.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    REQUIRE(orig.size() > 32);
    int decoded = 0, errors = 0;
    for (int k = 0; k < 150; ++k) {
      std::vector<uint8_t> b = orig;
      const int mode = int(rng() % 4);
      if (mode == 0 || mode == 2) {  // flip 1..8 bytes, a quarter of them in the first 64
        const int flips = 1 + int(rng() % 8);
        for (int i = 0; i < flips; ++i) {
          const size_t at = (rng() % 4 == 0) ? rng() % std::min<size_t>(64, b.size()) : rng() % b.size();
          b[at] ^= uint8_t(1 + rng() % 255);
        }
      }
      if (mode == 1 || mode == 2) b.resize(1 + rng() % (b.size() - 1));  // truncate
      if (mode == 3) b.insert(b.begin() + static_cast<long>(rng() % b.size()), uint8_t(0xFF));  // a marker byte
      const std::string name = std::string("mutant ") + std::to_string(k) + " of " + f;
      INFO(name << " (mode " << mode << ", " << b.size() << " bytes)");
      try {
        const data::Image im = data::decode_image(b.data(), b.size(), name, limits);
        REQUIRE((im.width > 0 && im.height > 0));
        REQUIRE(im.rgb.size() == size_t(im.width) * im.height * 3);
        ++decoded;
      } catch (const eng::Error& e) {
        REQUIRE_THAT(e.what(), Contains(name));
        REQUIRE(std::string(e.what()).find('\n') == std::string::npos);
        ++errors;
      }
    }
    INFO(f << ": " << decoded << " decoded, " << errors << " errors");
    CHECK(errors > 0);
  }
}

TEST_CASE("JPEG warnings: junk between segments is accepted, a cut-short scan is an error", "[data][image]") {
  std::vector<uint8_t> orig;
  {
    std::ifstream in(fixture("good_baseline.jpg"), std::ios::binary);
    orig.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const data::Image want = data::decode_image(orig.data(), orig.size(), "orig");
  // The SOS marker: the entropy-coded data follows its header.
  size_t sos = 0;
  for (size_t i = 2; i + 1 < orig.size(); ++i)
    if (orig[i] == 0xFF && orig[i + 1] == 0xDA) {
      sos = i;
      break;
    }
  REQUIRE(sos > 0);

  // Three junk bytes before the SOS marker: libjpeg warns "3 extraneous bytes before marker
  // 0xda" and decodes the same pixels (Pillow accepts such files too).
  std::vector<uint8_t> junk = orig;
  junk.insert(junk.begin() + static_cast<long>(sos), {0x12, 0x34, 0x56});
  CHECK(data::decode_image(junk.data(), junk.size(), "junk").rgb == want.rgb);

  // An EOI marker in the middle of the scan data: the scan ends early, libjpeg would fill
  // the rest with grey after "premature end of data segment"; we refuse it.
  const size_t data_start = sos + 2 + ((size_t(orig[sos + 2]) << 8) | orig[sos + 3]);
  std::vector<uint8_t> cut = orig;
  cut.insert(cut.begin() + static_cast<long>(data_start + (orig.size() - data_start) / 3), {0xFF, 0xD9});
  CHECK_THAT(error_of([&] { data::decode_image(cut.data(), cut.size(), "cut scan"); }),
             Contains("cut scan: corrupt or truncated JPEG") && Contains("Corrupt JPEG data"));
}
