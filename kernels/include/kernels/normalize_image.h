// Normalisation of uint8 images on the device: the loader ships images as uint8 (4x fewer
// bytes to copy than float) and this op turns them into the network's input.
//
// Layout: x uint8 [B, C, H, W] contiguous (C <= kMaxImageChannels), y [B, C, H, W]
// contiguous in T = float or kern::bf16 (autocast's input dtype).
//   y[b, c, h, w] = T((float(x[b, c, h, w]) - mean[c]) * scale[c])
// with mean[c] and scale[c] = 1 / std[c] held as floats (the front-end rounds 1 / std, computed
// in double, to float once), so the CPU and CUDA versions evaluate the same float expression
// and agree bit for bit; bf16 is rounded to nearest even from that float.
// Equals torchvision's Normalize(mean, std) on x.float() up to float rounding (mean / std in
// 0..255 units, as the models' pixel_mean() / pixel_std()).
#pragma once
#include "kernels/common.h"

namespace kern {

constexpr int kMaxImageChannels = 4;

struct NormalizeImageDims {
  int64_t batch = 0, channels = 0, plane = 0;  // plane = H * W
  float mean[kMaxImageChannels] = {};
  float scale[kMaxImageChannels] = {};  // 1 / std
};

namespace cpu {
template <typename T>
void normalize_image(const NormalizeImageDims& d, const uint8_t* x, T* y);
}  // namespace cpu

namespace cuda {
template <typename T>
void normalize_image(const NormalizeImageDims& d, const uint8_t* x, T* y, Stream stream);
}  // namespace cuda

}  // namespace kern
