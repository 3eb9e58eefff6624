// The targets of a training batch as the models' losses take them (models::Targets): boxes
// in input pixels, labels = dataset label + 1, counts; padded per batch.
#pragma once
#include <cstdint>

#include "data/annotation.h"
#include "data/loader.h"
#include "engine/tensor.h"
#include "models/detection_model.h"

namespace app {

// Padded targets of a batch on the host (pinned when `device` is CUDA, so that the upload is
// asynchronous). Padded to the batch's largest count, or to `pad_to` when > 0 (static shapes
// for --cuda-graph; more boxes than that is an error naming the image of `dataset`).
models::Targets host_targets(const data::Batch& b, eng::Device device, const data::Dataset* dataset = nullptr,
                             int64_t pad_to = 0);

// The batch's targets on `device`: on CUDA uploaded from pinned memory on the copy stream,
// the compute stream waiting for each copy's event (eng::cuda::upload), as the images are.
models::Targets make_targets(const data::Batch& b, eng::Device device);

// --cuda-graph: every training image must fit the padded maximum (checked before training,
// on the annotations: augmentation only drops boxes; each batch is checked again).
void check_max_gt(const data::Dataset& d, int64_t max_gt);

}  // namespace app
