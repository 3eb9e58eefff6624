// box_head_postprocess front-end: checks (roi_image on the host), the kernel's dims, one
// dispatch by device (maths, slot layout and tie rules in
// kernels/include/kernels/box_head_postprocess.h). Not differentiable.
#include <cmath>
#include <vector>

#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/detection_two_stage.h"
#include "padded_detections.h"
#include "kernels/box_head_postprocess.h"

namespace eng::det {
using namespace eng::detail;

Detections box_head_postprocess(const Tensor& logits_in, const Tensor& deltas_in, const Tensor& proposals_in,
                                const Tensor& roi_image_in, int64_t batch, double image_h, double image_w,
                                const BoxHeadPostprocessOptions& o) {
  ENGINE_CHECK(batch >= 1, "box_head_postprocess: batch must be >= 1, got ", batch);
  const std::vector<ImageSize> sizes(static_cast<size_t>(batch), ImageSize{image_h, image_w});
  return box_head_postprocess(logits_in, deltas_in, proposals_in, roi_image_in, sizes, o);
}

Detections box_head_postprocess(const Tensor& logits_in, const Tensor& deltas_in, const Tensor& proposals_in,
                                const Tensor& roi_image_in, const std::vector<ImageSize>& image_sizes,
                                const BoxHeadPostprocessOptions& o) {
  const char* op = "box_head_postprocess";
  const int64_t batch = static_cast<int64_t>(image_sizes.size());
  check_dim(op, logits_in, 2, "class_logits");
  check_dim(op, deltas_in, 2, "box_deltas");
  check_dim(op, proposals_in, 2, "proposals");
  check_dim(op, roi_image_in, 1, "roi_image");
  const int64_t R = logits_in.size(0), C = logits_in.size(1);
  ENGINE_CHECK(C >= 2, op, ": class_logits needs C >= 2 classes (class 0 is the background), got shape ",
               shape_str(logits_in.sizes()));
  ENGINE_CHECK(deltas_in.size(0) == R && deltas_in.size(1) == 4 * C, op, ": box_deltas must be [R, 4 C] = [", R,
               ", ", 4 * C, "], got ", shape_str(deltas_in.sizes()));
  ENGINE_CHECK(proposals_in.size(0) == R && proposals_in.size(1) == 4, op, ": proposals must be [R, 4] = [", R,
               ", 4], got ", shape_str(proposals_in.sizes()));
  ENGINE_CHECK(roi_image_in.size(0) == R && roi_image_in.dtype() == DType::i64, op,
               ": roi_image must be i64 [R] = [", R, "], got ", dtype_name(roi_image_in.dtype()), " ",
               shape_str(roi_image_in.sizes()));
  check_floating(op, logits_in);
  check_same_device_dtype(op, {logits_in, deltas_in, proposals_in});
  ENGINE_CHECK(roi_image_in.device() == logits_in.device(), op, ": roi_image on ", roi_image_in.device().str(),
               " but class_logits on ", logits_in.device().str());
  ENGINE_CHECK(batch >= 1, op, ": batch must be >= 1, got ", batch);
  for (size_t b = 0; b < image_sizes.size(); ++b) {
    const ImageSize& s = image_sizes[b];
    ENGINE_CHECK(std::isfinite(s.h) && std::isfinite(s.w) && s.h > 0 && s.w > 0, op, ": image size of image ", b,
                 " must be positive and finite, got ", s.h, " x ", s.w);
  }
  ENGINE_CHECK(o.detections_per_image >= 1, op, ": detections_per_image must be >= 1, got ",
               o.detections_per_image);
  ENGINE_CHECK(!std::isnan(o.score_threshold) && !std::isnan(o.nms_threshold) && !std::isnan(o.min_size) &&
                   !std::isnan(o.clamp),
               op, ": score_threshold, nms_threshold, min_size and clamp must not be NaN");
  const BoxCoderWeights& w = o.weights;
  ENGINE_CHECK(w.wx > 0 && w.wy > 0 && w.ww > 0 && w.wh > 0 && std::isfinite(w.wx) && std::isfinite(w.wy) &&
                   std::isfinite(w.ww) && std::isfinite(w.wh),
               op, ": box coder weights must be positive and finite, got (", w.wx, ", ", w.wy, ", ", w.ww, ", ", w.wh,
               ")");

  // roi_image on the host (CUDA: the one host sync): checked, then turned into image starts.
  const Tensor ri = roi_image_in.cpu().contiguous();
  const int64_t* img = ri.data<int64_t>();
  std::vector<int64_t> start(static_cast<size_t>(batch + 1), 0);
  for (int64_t r = 0; r < R; ++r) {
    ENGINE_CHECK(img[r] >= 0 && img[r] < batch, op, ": roi_image[", r, "] = ", img[r], " is outside [0, ", batch,
                 ")");
    ENGINE_CHECK(r == 0 || img[r] >= img[r - 1], op, ": roi_image must be non-decreasing, but roi_image[", r,
                 "] = ", img[r], " < roi_image[", r - 1, "] = ", img[r - 1]);
    ++start[static_cast<size_t>(img[r] + 1)];
  }
  int64_t max_rois = 0;
  for (int64_t b = 0; b < batch; ++b) {
    max_rois = std::max(max_rois, start[b + 1]);
    start[b + 1] += start[b];
  }

  kern::BoxHeadDims d;
  d.R = R, d.C = C, d.B = batch, d.max_rois = max_rois;
  d.score_threshold = o.score_threshold, d.nms_threshold = o.nms_threshold;
  d.max_out = o.detections_per_image, d.min_size = o.min_size;
  d.wx = w.wx, d.wy = w.wy, d.ww = w.ww, d.wh = w.wh;
  d.clamp = o.clamp;
  const kern::NmsDims nd = kern::box_head_nms_dims(d);

  const Device dev = logits_in.device();
  if (dev.is_cuda()) {
    ENGINE_CHECK(logits_in.dtype() == DType::f32, op, ": CUDA tensors must be f32, got ",
                 dtype_name(logits_in.dtype()));
    ENGINE_CHECK(R * 4 * C < (int64_t(1) << 31) && batch * nd.K < (int64_t(1) << 31) &&
                     batch * d.max_out < (int64_t(1) << 31),
                 op, ": R * 4C = ", R * 4 * C, ", B * candidates = ", batch * nd.K, " and B * detections_per_image = ",
                 batch * d.max_out, " must be < 2^31 on CUDA");
    ENGINE_CHECK(nd.K <= kern::kNmsMaxCandidatesCuda, op, ": ", nd.K, " NMS candidates per image (", max_rois,
                 " RoIs x ", kern::box_head_slots_per_roi(C, o.score_threshold),
                 " classes that can pass the score threshold) exceed the CUDA limit of ",
                 kern::kNmsMaxCandidatesCuda);
  }

  Detections out = padded_detections(batch, d.max_out, logits_in.dtype(), dev);
  if (max_rois == 0) return out;  // no RoI: all padding

  Tensor logits = logits_in.detach().contiguous(), deltas = deltas_in.detach().contiguous();
  Tensor proposals = proposals_in.detach().contiguous();
  Tensor starts = from_vector(start, {batch + 1});
  std::vector<double> hw;
  for (const ImageSize& s : image_sizes) hw.insert(hw.end(), {s.h, s.w});
  const Tensor image_hw = from_vector(hw, {batch, 2}, TensorOptions(logits_in.dtype())).to(dev);
  dispatch_float(logits, op, [&](auto tag) {
    using T = decltype(tag);
    if (dev.is_cuda()) {
      ENGINE_IF_CUDA({
        const Tensor starts_dev = starts.to(dev);
        Tensor ws = empty({static_cast<int64_t>(kern::cuda::box_head_postprocess_workspace_bytes(d))},
                          TensorOptions(DType::u8).device(dev));
        kern::cuda::box_head_postprocess(d, logits.data<float>(), deltas.data<float>(), proposals.data<float>(),
                                         starts_dev.data<int64_t>(), image_hw.data<float>(),
                                         out.boxes.data<float>(), out.scores.data<float>(),
                                         out.labels.data<int64_t>(), out.counts.data<int64_t>(), ws.raw_data(),
                                         cuda::stream());
      });
    } else {
      kern::cpu::box_head_postprocess<T>(d, logits.data<T>(), deltas.data<T>(), proposals.data<T>(),
                                         starts.data<int64_t>(), image_hw.data<T>(), out.boxes.data<T>(), out.scores.data<T>(),
                                         out.labels.data<int64_t>(), out.counts.data<int64_t>());
    }
  });
  return out;
}

}  // namespace eng::det
