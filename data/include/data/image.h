// Image files in and out, resizing, and conversion to normalised tensors.
//
// Decoders, chosen by the file's first bytes (not its name): JPEG (FF D8) through
// libjpeg-turbo, PNG (the 8-byte signature) through libpng, BMP ("BM") through stb_image.
// Anything else is "not a JPEG, PNG or BMP image". Every image comes back as 8-bit RGB:
// grayscale is replicated to three channels, an alpha channel is dropped (not blended),
// 16-bit PNG samples keep their high byte, palettes are expanded, CMYK/YCCK JPEGs are
// converted to RGB (Adobe's inverted CMYK convention when the file has an Adobe marker).
// Writing (save_png/save_jpg) uses stb_image_write.
//
// Untrusted input: the file size is checked before the file is read, and the dimensions
// in the header are checked against ImageLimits before any pixel memory is allocated;
// libjpeg's working memory is capped (ImageLimits::max_decoder_bytes) and a progressive
// JPEG may have at most ImageLimits::max_jpeg_scans scans. A missing, empty, oversized,
// non-image, corrupt or truncated file throws eng::Error with the one-line message
// "<path>: <problem>" (the decoder's reason included). JPEG warnings that mean pixel data
// is missing or wrong (premature end of data, bad Huffman or arithmetic code, lost
// synchronisation, inconsistent progression) are errors; junk bytes between segments and
// metadata warnings are accepted. PNG CRC errors are errors in every chunk; other libpng
// warnings (ancillary chunks, extra data after the image) are accepted.
//
// Scaled decoding: load_image_scaled() may decode a JPEG at 1/2, 1/4 or 1/8 of its size
// (libjpeg's DCT scaling, far cheaper than decoding the whole image and resizing) when the
// caller needs no more than DecodeOptions::min_width x min_height pixels. The result
// carries the original size, so annotation boxes in original pixels can be mapped.
//
// Resizing is bilinear with the half-pixel-centre convention of PyTorch's
// F.interpolate(mode='bilinear', align_corners=False) (also OpenCV's INTER_LINEAR without
// antialiasing): source = (dst + 0.5) * in / out - 0.5, clamped below at 0, neighbours
// clamped to the last row/column; results rounded to the nearest integer (halves up).
// Downscaling does not antialias.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace data {

// 8-bit RGB, row-major HWC: pixel (x, y) channel c is rgb[(y * width + x) * 3 + c].
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;

  bool empty() const { return width <= 0 || height <= 0; }
  uint8_t at(int x, int y, int c) const { return rgb[(static_cast<size_t>(y) * width + x) * 3 + c]; }
};

struct ImageLimits {
  uint64_t max_file_bytes = 64ull << 20;  // 64 MiB
  int64_t max_width = 16384;
  int64_t max_height = 16384;
  int64_t max_pixels = 100'000'000;        // width * height
  int64_t max_decoder_bytes = 1ll << 30;   // libjpeg's working memory (progressive coefficients)
  int max_jpeg_scans = 500;                // scans of a progressive JPEG (CPU bound)
};

// What load_image_scaled may reduce to: the decoded image stays at least min_width wide and
// min_height tall (0: no constraint on that side). Both 0: full size.
struct DecodeOptions {
  int min_width = 0;
  int min_height = 0;
};

// A decoded image and the size of the image in the file. image.width = ceil(original_width
// * scale) (likewise the height), scale being 1, 1/2, 1/4 or 1/8 (only JPEG is reduced).
// A point (x, y) in original pixels is (x * image.width / original_width, y * image.height
// / original_height) in the decoded image.
struct ScaledImage {
  Image image;
  int original_width = 0;
  int original_height = 0;
  int scale_denom = 1;  // 1, 2, 4 or 8
};

// The largest JPEG reduction 1/d (d in 8, 4, 2, 1) with ceil(width / d) >= min_width and
// ceil(height / d) >= min_height.
int jpeg_scale_denom_for(int width, int height, const DecodeOptions& options);

// Reads and decodes a JPEG, PNG or BMP file. Throws eng::Error "<path>: <problem>".
Image load_image(const std::string& path, const ImageLimits& limits = {});

// Decodes an encoded image held in memory; `name_for_errors` starts every error message.
Image decode_image(const uint8_t* data, size_t n, const std::string& name_for_errors,
                   const ImageLimits& limits = {});

// As load_image / decode_image, reduced as DecodeOptions allows (see above). The limits
// apply to the size in the file.
ScaledImage load_image_scaled(const std::string& path, const DecodeOptions& options,
                              const ImageLimits& limits = {});
ScaledImage decode_image_scaled(const uint8_t* data, size_t n, const std::string& name_for_errors,
                                const DecodeOptions& options, const ImageLimits& limits = {});

// Encodes and writes atomically: the bytes go to "<path>.tmp", which is then renamed to
// `path`; on any failure the .tmp file is removed. Errors name the file.
void save_png(const std::string& path, const Image& image);
void save_jpg(const std::string& path, const Image& image, int quality = 95);  // quality 1..100

// Bilinear resize (half-pixel centres, see above). Sizes equal: a copy.
Image resize_bilinear(const Image& image, int out_w, int out_h);

// f32 [3, H, W] on the CPU with value (pixel - mean[c]) / std[c], pixels in 0..255 units
// (the models' pixel_mean()/pixel_std() are in these units). mean and std hold 3 values.
eng::Tensor to_tensor(const Image& image, const std::vector<double>& mean, const std::vector<double>& std);

// f32 [B, 3, H, W]; every image must have the same size.
eng::Tensor to_batch(const std::vector<Image>& images, const std::vector<double>& mean,
                     const std::vector<double>& std);

// Bilinear resize (half-pixel centres) and normalisation in one pass, in floating point
// with no rounding to 8 bits: out is f32 CHW [3, out_h, out_w], value
// (interpolated pixel - mean[c]) / std[c]. Because normalisation is affine per channel,
// this equals torchvision's normalise-then-F.interpolate(bilinear, align_corners=False)
// up to float rounding. The inference and training paths use it.
void resize_normalize_into(const Image& image, int out_w, int out_h, const std::vector<double>& mean,
                           const std::vector<double>& std, float* out);

}  // namespace data
