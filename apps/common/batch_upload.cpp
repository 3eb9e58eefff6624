// batch_images_on: upload on the copy stream, normalise on the compute stream.
#include "common/batch_upload.h"

#include "engine/cuda_context.h"
#include "engine/error.h"
#include "engine/normalize_images.h"

namespace app {

eng::Tensor batch_images_on(const data::Batch& batch, eng::Device device, const std::vector<double>& mean,
                            const std::vector<double>& std, eng::DType dtype) {
  const eng::Tensor& images = batch.images;
  ENGINE_CHECK(images.defined(), "batch_images_on: batch ", batch.number, " has no images");
  ENGINE_CHECK(images.device().is_cpu(), "batch_images_on: the batch's images must be on the CPU (got ",
               images.device().str(), ")");
  ENGINE_CHECK(images.dtype() == eng::DType::u8 || images.dtype() == eng::DType::f32, "batch_images_on: batch ",
               batch.number, " holds ", eng::dtype_name(images.dtype()), " images; expected u8 or f32");
  if (images.dtype() == eng::DType::u8) {
    if (device.is_cpu()) return eng::normalize_images(images, mean, std, dtype);
    // The compute stream waits for the copy's event inside upload(); normalising is the
    // first compute-stream work that reads the uploaded bytes.
    return eng::normalize_images(eng::cuda::upload(images.contiguous()), mean, std, dtype);
  }
  eng::Tensor x = device.is_cpu() ? images : eng::cuda::upload(images.contiguous());
  return x.dtype() == dtype ? x : x.to(dtype);
}

}  // namespace app
