// A loader batch's images on the training device, with the copy overlapped (issue 12).
//
// With data::LoaderOptions{.pinned = true, .uint8_images = true} the loader hands out u8
// [n, 3, S, S] batches in pinned memory. batch_images_on() then uploads the u8 batch on the
// copy stream (eng::cuda::upload: 4x fewer bytes than f32, the compute stream waits for the
// copy's event, no host synchronisation) and normalises it on the compute stream
// (eng::normalize_images). A f32 batch (the default loader) is uploaded as is.
#pragma once
#include <vector>

#include "data/loader.h"
#include "engine/tensor.h"

namespace app {

// batch.images on `device` as the network's input ((x - mean[c]) / std[c], `dtype` f32 or
// bf16), with mean / std in 0..255 units (the model's pixel_mean() / pixel_std(), the same
// values the loader would have used): a u8 batch is normalised (on the device for CUDA),
// a f32 batch is taken as already normalised and only moved (and cast when dtype is bf16).
eng::Tensor batch_images_on(const data::Batch& batch, eng::Device device, const std::vector<double>& mean,
                            const std::vector<double>& std, eng::DType dtype = eng::DType::f32);

}  // namespace app
