// Saving (atomic), resizing and conversion to tensors; decoding is in image_decode.cpp.
#include "data/image.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "data/detail/image_decoders.h"
#include "engine/error.h"

namespace data {
namespace {

void check_image(const Image& image, const char* what) {
  ENGINE_CHECK(image.width > 0 && image.height > 0, what, ": empty image (", image.width, "x", image.height,
               ")");
  ENGINE_CHECK(image.rgb.size() == static_cast<size_t>(image.width) * image.height * 3, what, ": image of ",
               image.width, "x", image.height, " holds ", image.rgb.size(), " bytes, expected ",
               static_cast<size_t>(image.width) * image.height * 3);
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

void save_png(const std::string& path, const Image& image) {
  check_image(image, path.c_str());
  write_atomically(path, detail::encode_png(image, path));
}

void save_jpg(const std::string& path, const Image& image, int quality) {
  check_image(image, path.c_str());
  ENGINE_CHECK(quality >= 1 && quality <= 100, path, ": JPEG quality must be 1..100 (got ", quality, ")");
  write_atomically(path, detail::encode_jpg(image, quality, path));
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
