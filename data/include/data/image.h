// Image files in and out, resizing, and conversion to normalised tensors.
//
// Decoding uses stb_image restricted to JPEG (baseline and progressive), PNG and BMP.
// Every image comes back as 8-bit RGB: grayscale is replicated to three channels and an
// alpha channel is dropped (not blended). 16-bit PNGs are reduced to 8 bits.
//
// Untrusted input: the file size is checked before the file is read, and the dimensions
// in the header are checked against ImageLimits before any pixel memory is allocated.
// A missing, empty, oversized, non-image, corrupt or truncated file throws eng::Error
// with the message "<path>: <problem>" (stb's failure reason included where it has one).
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
};

// Reads and decodes a JPEG, PNG or BMP file. Throws eng::Error "<path>: <problem>".
Image load_image(const std::string& path, const ImageLimits& limits = {});

// Decodes an encoded image held in memory; `name_for_errors` starts every error message.
Image decode_image(const uint8_t* data, size_t n, const std::string& name_for_errors,
                   const ImageLimits& limits = {});

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
