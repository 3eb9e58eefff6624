// stb_image and stb_image_write, compiled into this file only (static functions, so no
// symbol can clash with another copy), without stdio: BMP decoding, the PNG encoder,
// and the old stb JPEG/PNG decoding kept for bench_data's comparison (decode_with_stb).
#include <climits>
#include <memory>

#include "data/detail/image_decoders.h"
#include "engine/error.h"

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

struct StbiFree {
  void operator()(unsigned char* p) const { stbi_image_free(p); }
};

void append_bytes(void* ctx, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(ctx);
  const auto* p = static_cast<const uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

Image stb_decode(const uint8_t* data, size_t n, const std::string& name) {
  ENGINE_CHECK(n <= static_cast<size_t>(INT_MAX), name, ": ", n, " bytes, too large to decode");
  int w = 0, h = 0, c = 0;
  std::unique_ptr<unsigned char, StbiFree> px(stbi_load_from_memory(data, static_cast<int>(n), &w, &h, &c, 3));
  ENGINE_CHECK(px != nullptr, name, ": corrupt or truncated image (", stb_reason(), ")");
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(px.get(), px.get() + static_cast<size_t>(w) * h * 3);
  return img;
}

}  // namespace

namespace detail {

Image decode_bmp(const uint8_t* data, size_t n, const std::string& name, const ImageLimits& limits) {
  ENGINE_CHECK(n <= static_cast<size_t>(INT_MAX), name, ": ", n, " bytes, too large to decode");
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, static_cast<int>(n), &w, &h, &comp)) {
    const std::string reason = stb_reason();
    ENGINE_CHECK(reason != "too large", name, ": image dimensions over the limit (the header claims an image too ",
                 "large to decode)");
    ENGINE_FAIL(name, ": corrupt BMP header (", reason, ")");
  }
  check_dims(w, h, name, limits);
  Image img = stb_decode(data, n, name);
  ENGINE_CHECK(img.width == w && img.height == h, name, ": decoded size ", img.width, "x", img.height,
               " differs from the header's ", w, "x", h);
  return img;
}

Image decode_with_stb(const uint8_t* data, size_t n, const std::string& name) { return stb_decode(data, n, name); }

std::vector<uint8_t> encode_png(const Image& image, const std::string& name) {
  std::vector<uint8_t> out;
  const int ok = stbi_write_png_to_func(append_bytes, &out, image.width, image.height, 3, image.rgb.data(),
                                        image.width * 3);
  ENGINE_CHECK(ok && !out.empty(), name, ": PNG encoding failed");
  return out;
}

}  // namespace detail
}  // namespace data
