// Reading image files: the size checks, and the choice of decoder by the first bytes
// (image_jpeg.cpp, image_png.cpp, image_stb.cpp hold the decoders).
#include <algorithm>
#include <cstring>

#include "data/detail/image_decoders.h"
#include "engine/error.h"
#include "engine/io/read_file.h"

namespace data {
namespace {

const uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

std::string first_bytes_hex(const uint8_t* d, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < std::min<size_t>(n, 4); ++i) {
    if (i) s += ' ';
    s += digits[d[i] >> 4];
    s += digits[d[i] & 15];
  }
  return s;
}

ScaledImage full_size(Image image) {
  ScaledImage s;
  s.original_width = image.width;
  s.original_height = image.height;
  s.image = std::move(image);
  return s;
}

}  // namespace

namespace detail {

void check_dims(int64_t w, int64_t h, const std::string& name, const ImageLimits& limits) {
  ENGINE_CHECK(w > 0 && h > 0, name, ": invalid image dimensions ", w, "x", h);
  ENGINE_CHECK(w <= limits.max_width && h <= limits.max_height && w * h <= limits.max_pixels, name,
               ": image dimensions ", w, "x", h, " over the limit (max ", limits.max_width, "x",
               limits.max_height, ", ", limits.max_pixels, " pixels)");
}

}  // namespace detail

ScaledImage decode_image_scaled(const uint8_t* data, size_t n, const std::string& name, const DecodeOptions& options,
                                const ImageLimits& limits) {
  ENGINE_CHECK(data != nullptr || n == 0, name, ": no data");
  ENGINE_CHECK(n > 0, name, ": empty file");
  ENGINE_CHECK(n <= limits.max_file_bytes, name, ": ", n, " bytes, over the limit of ", limits.max_file_bytes,
               " bytes");
  // JPEG: FF D8 (anything else starting with FF goes to libjpeg too, which names the bytes).
  if (data[0] == 0xFF) return detail::decode_jpeg(data, n, name, limits, options);
  if (n >= 8 && std::memcmp(data, kPngSignature, 8) == 0) {
    // The IHDR size, checked here so that an absurd one reads the same for every format.
    if (n >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0) detail::check_dims(be32(data + 16), be32(data + 20), name, limits);
    return full_size(detail::decode_png(data, n, name, limits));
  }
  if (n >= 2 && data[0] == 'B' && data[1] == 'M') return full_size(detail::decode_bmp(data, n, name, limits));
  ENGINE_FAIL(name, ": not a JPEG, PNG or BMP image (starts with ", first_bytes_hex(data, n), ")");
}

Image decode_image(const uint8_t* data, size_t n, const std::string& name, const ImageLimits& limits) {
  return decode_image_scaled(data, n, name, DecodeOptions{}, limits).image;
}

ScaledImage load_image_scaled(const std::string& path, const DecodeOptions& options, const ImageLimits& limits) {
  // The engine's capped reader: a regular file only (a FIFO or a device is refused without
  // reading), at most max_file_bytes, a file that grows meanwhile refused.
  const std::string bytes = eng::io::read_file_capped(path, limits.max_file_bytes, "image file");
  return decode_image_scaled(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path, options, limits);
}

Image load_image(const std::string& path, const ImageLimits& limits) {
  return load_image_scaled(path, DecodeOptions{}, limits).image;
}

}  // namespace data
