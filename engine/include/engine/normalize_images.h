// Images that travel as uint8 and are normalised where they are used (issue 12): the loader
// hands out uint8 [B, 3, H, W] batches (data::LoaderOptions::uint8_images), the batch is
// uploaded as uint8 (4x fewer bytes) and this op writes the network's input on the device.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace eng {

// x: uint8 [B, C, H, W] (C <= 4) on any device; mean / std: C values in 0..255 units (the
// models' pixel_mean() / pixel_std()), std > 0. Returns (x - mean[c]) / std[c] as `dtype`
// (f32, or bf16 for autocast) on x's device, computed as (float(x) - mean) * float(1 / std)
// (kernels/normalize_image.h). Not differentiable (the input is integer).
Tensor normalize_images(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& std,
                        DType dtype = DType::f32);

}  // namespace eng
