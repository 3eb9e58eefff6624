// The targets of a training batch, on the host and on the device (see train_targets.h).
#include "common/train_targets.h"

#include <algorithm>
#include <cstring>

#include "engine/allocator.h"
#include "engine/cuda_context.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace app {

namespace {

// A zero-filled host tensor; in pinned memory when it is going to a CUDA device, so that its
// upload is an asynchronous copy (Tensor::to) and not a host sync.
eng::Tensor host_zeros(const eng::Shape& shape, eng::DType dtype, eng::Device target) {
  if (target.is_cpu()) return eng::zeros(shape, eng::TensorOptions(dtype));
  eng::Tensor t = eng::empty_pinned(shape, dtype);
  std::memset(t.raw_data(), 0, static_cast<size_t>(t.numel()) * eng::dtype_size(dtype));
  return t;
}

}  // namespace

// Padded targets of a batch (boxes in input pixels, labels = dataset label + 1), on the host
// (pinned when `device` is CUDA). Padded to the batch's largest count, or to `pad_to` when
// > 0 (static shapes for --cuda-graph; more boxes than that is an error naming the image).
models::Targets host_targets(const data::Batch& b, eng::Device device, const data::Dataset* dataset,
                             int64_t pad_to) {
  const int64_t n = b.size();
  int64_t g = 1;
  for (const auto& objs : b.objects) g = std::max<int64_t>(g, static_cast<int64_t>(objs.size()));
  if (pad_to > 0) {
    for (int64_t i = 0; i < n; ++i) {
      const auto count = static_cast<int64_t>(b.objects[static_cast<size_t>(i)].size());
      ENGINE_CHECK(count <= pad_to, dataset->samples[static_cast<size_t>(b.samples[static_cast<size_t>(i)])].image_path,
                   ": ", count, " training boxes, more than --max-gt ", pad_to,
                   " (the padded maximum of --cuda-graph); raise --max-gt");
    }
    g = pad_to;
  }
  eng::Tensor boxes = host_zeros({n, g, 4}, eng::DType::f32, device);
  eng::Tensor labels = host_zeros({n, g}, eng::DType::i64, device);
  eng::Tensor counts = host_zeros({n}, eng::DType::i64, device);
  eng::Tensor ignore = host_zeros({n, g}, eng::DType::u8, device);
  float* pb = boxes.data<float>();
  uint8_t* pi = ignore.data<uint8_t>();
  int64_t* pl = labels.data<int64_t>();
  int64_t* pc = counts.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const auto& objs = b.objects[static_cast<size_t>(i)];
    pc[i] = static_cast<int64_t>(objs.size());
    for (size_t j = 0; j < objs.size(); ++j) {
      float* q = pb + (i * g + static_cast<int64_t>(j)) * 4;
      q[0] = static_cast<float>(objs[j].box.x1);
      q[1] = static_cast<float>(objs[j].box.y1);
      q[2] = static_cast<float>(objs[j].box.x2);
      q[3] = static_cast<float>(objs[j].box.y2);
      pl[i * g + static_cast<int64_t>(j)] = objs[j].label + 1;
      // The loader leaves a difficult (unless LoaderOptions::keep_difficult) or crowd object flagged.
      pi[i * g + static_cast<int64_t>(j)] = (objs[j].difficult || objs[j].iscrowd) ? 1 : 0;
    }
  }
  return {boxes, labels, counts, ignore};
}

// The batch's targets on `device`: on CUDA uploaded from pinned memory on the copy stream,
// the compute stream waiting for each copy's event (eng::cuda::upload), as the images are.
models::Targets make_targets(const data::Batch& b, eng::Device device) {
  models::Targets t = host_targets(b, device);
  if (device.is_cpu()) return t;
  return {eng::cuda::upload(t.boxes), eng::cuda::upload(t.labels), eng::cuda::upload(t.counts),
          eng::cuda::upload(t.ignore)};
}

// --cuda-graph: every training image must fit the padded maximum (checked before training,
// on the annotations: augmentation only drops boxes; each batch is checked again).
void check_max_gt(const data::Dataset& d, int64_t max_gt) {
  for (const data::Sample& s : d.samples) {
    // Difficult and crowd objects travel as ignored targets: they take rows too.
    const auto count = static_cast<int64_t>(s.objects.size());
    ENGINE_CHECK(count <= max_gt, s.image_path, ": ", count, " training boxes, more than --max-gt ", max_gt,
                 " (the padded maximum of --cuda-graph); raise --max-gt");
  }
}

}  // namespace app
