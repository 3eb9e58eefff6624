// The per-format decoders behind data::decode_image (data/src/image_*.cpp). Internal:
// callers use load_image / decode_image / load_image_scaled; bench_data and the tests use
// these directly (decode_with_stb only exists to compare the old decoder's speed).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"

namespace data {
namespace detail {

// Throws eng::Error "<name>: invalid image dimensions ..." or "... over the limit ...".
void check_dims(int64_t w, int64_t h, const std::string& name, const ImageLimits& limits);

// JPEG through libjpeg-turbo, decoded at 1/scale_denom (1, 2, 4 or 8), or at the largest
// reduction `options` allows when scale_denom is 0.
ScaledImage decode_jpeg(const uint8_t* data, size_t n, const std::string& name, const ImageLimits& limits,
                        const DecodeOptions& options, int scale_denom = 0);
// PNG through libpng (never reduced).
Image decode_png(const uint8_t* data, size_t n, const std::string& name, const ImageLimits& limits);
// BMP through stb_image.
Image decode_bmp(const uint8_t* data, size_t n, const std::string& name, const ImageLimits& limits);

// stb_image 2.27 for JPEG, PNG or BMP, as the project decoded before libjpeg-turbo/libpng.
// NOT hardened against crafted files: for benchmarks on trusted files only.
Image decode_with_stb(const uint8_t* data, size_t n, const std::string& name);

// Encoders (the bytes of a whole file); throw eng::Error naming `name`. PNG through
// stb_image_write (image_stb.cpp), JPEG through libjpeg-turbo (image_jpeg_write.cpp).
std::vector<uint8_t> encode_png(const Image& image, const std::string& name);
std::vector<uint8_t> encode_jpg(const Image& image, int quality, const std::string& name);

}  // namespace detail
}  // namespace data
