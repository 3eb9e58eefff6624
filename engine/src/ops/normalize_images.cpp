// normalize_images front-end: uint8 images to the network's float (or bf16) input.
#include "engine/normalize_images.h"

#include <cmath>

#include "engine/cuda_context.h"
#include "engine/error.h"
#include "kernels/normalize_image.h"

namespace eng {

Tensor normalize_images(const Tensor& x_in, const std::vector<double>& mean, const std::vector<double>& std,
                        DType dtype) {
  ENGINE_CHECK(x_in.defined(), "normalize_images: undefined input");
  ENGINE_CHECK(x_in.dtype() == DType::u8, "normalize_images: expected a u8 image batch, got ", dtype_name(x_in.dtype()),
               " (shape ", shape_str(x_in.sizes()), ")");
  ENGINE_CHECK(x_in.dim() == 4, "normalize_images: expected a 4-d [B, C, H, W] batch, got shape ",
               shape_str(x_in.sizes()));
  const int64_t C = x_in.size(1);
  ENGINE_CHECK(C >= 1 && C <= kern::kMaxImageChannels, "normalize_images: ", C, " channels (shape ",
               shape_str(x_in.sizes()), "); at most ", kern::kMaxImageChannels, " are supported");
  ENGINE_CHECK(static_cast<int64_t>(mean.size()) == C && static_cast<int64_t>(std.size()) == C,
               "normalize_images: mean and std need ", C, " values each (got ", mean.size(), " and ", std.size(),
               ") for shape ", shape_str(x_in.sizes()));
  ENGINE_CHECK(dtype == DType::f32 || dtype == DType::bf16, "normalize_images: output dtype must be f32 or bf16, got ",
               dtype_name(dtype));
  kern::NormalizeImageDims d;
  d.batch = x_in.size(0);
  d.channels = C;
  d.plane = x_in.size(2) * x_in.size(3);
  for (int64_t c = 0; c < C; ++c) {
    ENGINE_CHECK(std::isfinite(mean[c]) && std::isfinite(std[c]) && std[c] > 0, "normalize_images: channel ", c,
                 " has mean ", mean[c], " and std ", std[c], " (std must be positive and both finite)");
    d.mean[c] = static_cast<float>(mean[c]);
    d.scale[c] = static_cast<float>(1.0 / std[c]);
  }
  Tensor x = x_in.detach().contiguous();
  Tensor y = empty(x.sizes(), TensorOptions(dtype).device(x.device()));
  const uint8_t* px = x.data<uint8_t>();
  if (dtype == DType::f32) {
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::normalize_image<float>(d, px, y.data<float>(), cuda::stream()));
    } else {
      kern::cpu::normalize_image<float>(d, px, y.data<float>());
    }
  } else {
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::normalize_image<kern::bf16>(d, px, y.data<kern::bf16>(), cuda::stream()));
    } else {
      kern::cpu::normalize_image<kern::bf16>(d, px, y.data<kern::bf16>());
    }
  }
  return y;
}

}  // namespace eng
