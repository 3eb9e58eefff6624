#include "data/image.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <system_error>

#include "engine/error.h"

// stb_image / stb_image_write compiled into this file only (static functions, so no symbol
// can clash with another copy), limited to the three formats we accept, with no stdio: we
// read and write the files ourselves to apply the limits and the atomic rename.
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wtype-limits"
#endif
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace data {
namespace {

std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return r ? std::string(r) : std::string("unknown reason");
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

void check_dims(int64_t w, int64_t h, const std::string& name, const ImageLimits& limits) {
  ENGINE_CHECK(w > 0 && h > 0, name, ": invalid image dimensions ", w, "x", h);
  ENGINE_CHECK(w <= limits.max_width && h <= limits.max_height && w * h <= limits.max_pixels, name,
               ": image dimensions ", w, "x", h, " over the limit (max ", limits.max_width, "x",
               limits.max_height, ", ", limits.max_pixels, " pixels)");
}

// stb_image 2.27 (Debian's copy) trusts the symbol counts of a JPEG Huffman table (DHT
// segment): more than 256 symbols in one table overrun its fixed arrays (fixed upstream in
// 2.28). Walk the JPEG segments as stb does and refuse such a table before stb sees it.
// Returns false when a table would overrun. Not a JPEG: true (stb will not parse it as one).
bool jpeg_huffman_tables_ok(const uint8_t* d, size_t n) {
  if (n < 2 || d[0] != 0xFF || d[1] != 0xD8) return true;
  auto byte = [&](size_t i) -> unsigned { return i < n ? d[i] : 0u; };  // stb reads 0 past the end
  size_t p = 2;
  while (p < n) {
    if (d[p] != 0xFF) {  // junk between segments: stb skips it (or fails)
      ++p;
      continue;
    }
    while (p < n && d[p] == 0xFF) ++p;  // fill bytes
    if (p >= n) break;
    const unsigned m = d[p++];
    if (m == 0xD9) break;                                                     // EOI
    if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) continue;  // no length field
    if (p + 2 > n) break;
    const size_t len = (size_t(d[p]) << 8) | d[p + 1];
    if (m == 0xC4) {  // DHT: tables one after another while stb's remaining length is positive
      long remaining = static_cast<long>(len) - 2;
      size_t q = p + 2;
      while (remaining > 0 && q < n) {
        unsigned symbols = 0;
        for (size_t i = 0; i < 16; ++i) symbols += byte(q + 1 + i);
        if (symbols > 256) return false;
        q += 17 + symbols;
        remaining -= 17 + static_cast<long>(symbols);
      }
      p = q;
      continue;
    }
    p += len;  // every other segment stb accepts ends exactly at its declared length
    if (m == 0xDA) {  // SOS: entropy-coded data up to the next marker other than RSTn
      while (p < n) {
        if (d[p] != 0xFF) {
          ++p;
          continue;
        }
        size_t r = p + 1;
        while (r < n && d[r] == 0xFF) ++r;
        if (r >= n) {
          p = n;
          break;
        }
        if (d[r] == 0x00 || (d[r] >= 0xD0 && d[r] <= 0xD7)) {  // stuffed byte or restart marker
          p = r + 1;
          continue;
        }
        break;  // p at the marker's 0xFF
      }
    }
  }
  return true;
}

struct StbiFree {
  void operator()(unsigned char* p) const { stbi_image_free(p); }
};

void check_image(const Image& image, const char* what) {
  ENGINE_CHECK(image.width > 0 && image.height > 0, what, ": empty image (", image.width, "x", image.height,
               ")");
  ENGINE_CHECK(image.rgb.size() == static_cast<size_t>(image.width) * image.height * 3, what, ": image of ",
               image.width, "x", image.height, " holds ", image.rgb.size(), " bytes, expected ",
               static_cast<size_t>(image.width) * image.height * 3);
}

void append_bytes(void* ctx, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(ctx);
  const auto* p = static_cast<const uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

// Writes bytes to path.tmp, then renames it over path; removes the .tmp on failure.
void write_atomically(const std::string& path, const std::vector<uint8_t>& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) {
      const int err = errno;
      ENGINE_FAIL(path, ": cannot create ", tmp, " (", std::strerror(err), ")");
    }
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    f.close();
    if (!f) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      ENGINE_FAIL(path, ": write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ec2;
    std::filesystem::remove(tmp, ec2);
    ENGINE_FAIL(path, ": cannot rename ", tmp, " into place (", ec.message(), ")");
  }
}

void check_norm(const std::vector<double>& mean, const std::vector<double>& std) {
  ENGINE_CHECK(mean.size() == 3 && std.size() == 3, "to_tensor: need 3 mean and 3 std values (got ", mean.size(),
               " and ", std.size(), ")");
  for (double s : std) ENGINE_CHECK(s != 0 && std::isfinite(s), "to_tensor: std values must be finite and non-zero");
}

// Writes (pixel - mean) / std as CHW floats at out.
// One output column (or row) of a bilinear resize: the two source indices and the weight
// of the second. Half-pixel centres: s = (d + 0.5) * in / out - 0.5, clamped below at 0.
struct Tap {
  int i0, i1;
  double t;
};

std::vector<Tap> bilinear_taps(int in, int out) {
  std::vector<Tap> v(static_cast<size_t>(out));
  const double scale = static_cast<double>(in) / out;
  for (int d = 0; d < out; ++d) {
    double s = (d + 0.5) * scale - 0.5;
    if (s < 0) s = 0;
    int i0 = static_cast<int>(s);  // s >= 0: truncation is floor
    if (i0 > in - 1) i0 = in - 1;
    const int i1 = std::min(i0 + 1, in - 1);
    v[d] = {i0, i1, s - i0};
  }
  return v;
}

// Calls store(x, y, c, value) for every output pixel and channel of a bilinear resize of
// `image` to out_w x out_h, value in 0..255 units, unrounded.
template <typename Store>
void for_each_bilinear(const Image& image, int out_w, int out_h, Store store) {
  const std::vector<Tap> tx = bilinear_taps(image.width, out_w), ty = bilinear_taps(image.height, out_h);
  const size_t row = static_cast<size_t>(image.width) * 3;
  for (int y = 0; y < out_h; ++y) {
    const uint8_t* r0 = image.rgb.data() + ty[y].i0 * row;
    const uint8_t* r1 = image.rgb.data() + ty[y].i1 * row;
    const double wy = ty[y].t;
    for (int x = 0; x < out_w; ++x) {
      const size_t a = static_cast<size_t>(tx[x].i0) * 3, b = static_cast<size_t>(tx[x].i1) * 3;
      const double wx = tx[x].t;
      for (int c = 0; c < 3; ++c) {
        const double top = r0[a + c] + wx * (r0[b + c] - r0[a + c]);
        const double bot = r1[a + c] + wx * (r1[b + c] - r1[a + c]);
        store(x, y, c, top + wy * (bot - top));
      }
    }
  }
}

void fill_chw(const Image& image, const std::vector<double>& mean, const std::vector<double>& std, float* out) {
  const size_t hw = static_cast<size_t>(image.width) * image.height;
  for (int c = 0; c < 3; ++c) {
    const double m = mean[c], inv = 1.0 / std[c];
    float* plane = out + c * hw;
    for (size_t i = 0; i < hw; ++i) plane[i] = static_cast<float>((image.rgb[i * 3 + c] - m) * inv);
  }
}

}  // namespace

Image decode_image(const uint8_t* data, size_t n, const std::string& name, const ImageLimits& limits) {
  ENGINE_CHECK(data != nullptr || n == 0, name, ": no data");
  ENGINE_CHECK(n > 0, name, ": empty file");
  ENGINE_CHECK(n <= limits.max_file_bytes, name, ": ", n, " bytes, over the limit of ", limits.max_file_bytes,
               " bytes");
  ENGINE_CHECK(n <= static_cast<size_t>(INT_MAX), name, ": ", n, " bytes, too large to decode");
  const int len = static_cast<int>(n);

  // A PNG names its size at a fixed place: check it ourselves, so that an absurd size is
  // reported as such (stb refuses some of them with a bare "too large").
  static const uint8_t kPngSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 24 && std::memcmp(data, kPngSig, 8) == 0 && std::memcmp(data + 12, "IHDR", 4) == 0)
    check_dims(be32(data + 16), be32(data + 20), name, limits);

  ENGINE_CHECK(jpeg_huffman_tables_ok(data, n), name,
               ": corrupt or truncated image (bad JPEG Huffman table: more than 256 symbols)");

  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &comp)) {
    const std::string reason = stb_reason();
    ENGINE_CHECK(reason != "too large", name, ": image dimensions over the limit (the header claims an image too ",
                 "large to decode)");
    ENGINE_FAIL(name, ": not a JPEG, PNG or BMP image, or a corrupt header (", reason, ")");
  }
  check_dims(w, h, name, limits);

  int dw = 0, dh = 0, dc = 0;
  std::unique_ptr<unsigned char, StbiFree> pixels(stbi_load_from_memory(data, len, &dw, &dh, &dc, 3));
  ENGINE_CHECK(pixels != nullptr, name, ": corrupt or truncated image (", stb_reason(), ")");
  ENGINE_CHECK(dw == w && dh == h, name, ": decoded size ", dw, "x", dh, " differs from the header's ", w, "x", h);

  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(pixels.get(), pixels.get() + static_cast<size_t>(w) * h * 3);
  return img;
}

Image load_image(const std::string& path, const ImageLimits& limits) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) ENGINE_FAIL(path, ": cannot open file (", ec ? ec.message() : "no such file", ")");
  ENGINE_CHECK(!fs::is_directory(st), path, ": is a directory, not an image file");
  ENGINE_CHECK(fs::is_regular_file(st), path, ": not a regular file");
  const uintmax_t size = fs::file_size(path, ec);
  ENGINE_CHECK(!ec, path, ": cannot read file size (", ec.message(), ")");
  ENGINE_CHECK(size > 0, path, ": empty file");
  ENGINE_CHECK(size <= limits.max_file_bytes, path, ": file is ", size, " bytes, over the limit of ",
               limits.max_file_bytes, " bytes");

  std::ifstream f(path, std::ios::binary);
  if (!f) {
    const int err = errno;
    ENGINE_FAIL(path, ": cannot open file (", std::strerror(err), ")");
  }
  // Read at most one byte past the checked size: a file that grew meanwhile is caught.
  std::vector<uint8_t> bytes(static_cast<size_t>(size) + 1);
  f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  const size_t got = static_cast<size_t>(f.gcount());
  ENGINE_CHECK(!f.bad(), path, ": read error");
  ENGINE_CHECK(got == size, path, ": file changed size while being read");
  bytes.resize(got);
  return decode_image(bytes.data(), bytes.size(), path, limits);
}

void save_png(const std::string& path, const Image& image) {
  check_image(image, path.c_str());
  std::vector<uint8_t> out;
  const int ok = stbi_write_png_to_func(append_bytes, &out, image.width, image.height, 3, image.rgb.data(),
                                        image.width * 3);
  ENGINE_CHECK(ok && !out.empty(), path, ": PNG encoding failed");
  write_atomically(path, out);
}

void save_jpg(const std::string& path, const Image& image, int quality) {
  check_image(image, path.c_str());
  ENGINE_CHECK(quality >= 1 && quality <= 100, path, ": JPEG quality must be 1..100 (got ", quality, ")");
  std::vector<uint8_t> out;
  const int ok = stbi_write_jpg_to_func(append_bytes, &out, image.width, image.height, 3, image.rgb.data(), quality);
  ENGINE_CHECK(ok && !out.empty(), path, ": JPEG encoding failed");
  write_atomically(path, out);
}

Image resize_bilinear(const Image& image, int out_w, int out_h) {
  check_image(image, "resize_bilinear");
  ENGINE_CHECK(out_w > 0 && out_h > 0, "resize_bilinear: output size must be positive (got ", out_w, "x", out_h, ")");
  if (out_w == image.width && out_h == image.height) return image;
  Image out;
  out.width = out_w;
  out.height = out_h;
  out.rgb.resize(static_cast<size_t>(out_w) * out_h * 3);
  for_each_bilinear(image, out_w, out_h, [&](int x, int y, int c, double v) {
    // Round half up; tiny epsilon so that exact halves computed with rounding error
    // (e.g. 12.4999999) still go up.
    out.rgb[(static_cast<size_t>(y) * out_w + x) * 3 + c] =
        static_cast<uint8_t>(std::clamp(std::floor(v + 0.5 + 1e-9), 0.0, 255.0));
  });
  return out;
}

eng::Tensor to_tensor(const Image& image, const std::vector<double>& mean, const std::vector<double>& std) {
  check_image(image, "to_tensor");
  check_norm(mean, std);
  eng::Tensor t = eng::empty({3, image.height, image.width}, eng::TensorOptions(eng::DType::f32));
  fill_chw(image, mean, std, t.data<float>());
  return t;
}

eng::Tensor to_batch(const std::vector<Image>& images, const std::vector<double>& mean,
                     const std::vector<double>& std) {
  ENGINE_CHECK(!images.empty(), "to_batch: no images");
  check_norm(mean, std);
  const int w = images[0].width, h = images[0].height;
  for (size_t i = 0; i < images.size(); ++i) {
    check_image(images[i], "to_batch");
    ENGINE_CHECK(images[i].width == w && images[i].height == h, "to_batch: image ", i, " is ", images[i].width, "x",
                 images[i].height, ", image 0 is ", w, "x", h, " (resize them to one size first)");
  }
  const int64_t b = static_cast<int64_t>(images.size());
  eng::Tensor t = eng::empty({b, 3, h, w}, eng::TensorOptions(eng::DType::f32));
  float* p = t.data<float>();
  const size_t per = static_cast<size_t>(3) * w * h;
  for (size_t i = 0; i < images.size(); ++i) fill_chw(images[i], mean, std, p + i * per);
  return t;
}

void resize_normalize_into(const Image& image, int out_w, int out_h, const std::vector<double>& mean,
                           const std::vector<double>& std, float* out) {
  check_image(image, "resize_normalize_into");
  check_norm(mean, std);
  ENGINE_CHECK(out_w > 0 && out_h > 0, "resize_normalize_into: output size must be positive (got ", out_w, "x", out_h,
               ")");
  const size_t plane = static_cast<size_t>(out_w) * out_h;
  const double inv[3] = {1.0 / std[0], 1.0 / std[1], 1.0 / std[2]};
  for_each_bilinear(image, out_w, out_h, [&](int x, int y, int c, double v) {
    out[c * plane + static_cast<size_t>(y) * out_w + x] = static_cast<float>((v - mean[c]) * inv[c]);
  });
}

}  // namespace data
