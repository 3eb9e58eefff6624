// rpn_proposals front-end: checks, the kernel's dims, one dispatch by device (maths, slot
// layout and tie rules in kernels/include/kernels/rpn_proposals.h). Not differentiable.
#include <cmath>

#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/detection_two_stage.h"
#include "kernels/rpn_proposals.h"

namespace eng::det {
using namespace eng::detail;

Proposals rpn_proposals(const Tensor& logits_in, const Tensor& deltas_in, const Tensor& anchors_in,
                        const std::vector<int64_t>& level_sizes, double image_h, double image_w,
                        const ProposalOptions& o) {
  check_dim("rpn_proposals", logits_in, 2, "objectness");
  const std::vector<ImageSize> sizes(static_cast<size_t>(logits_in.size(0)), ImageSize{image_h, image_w});
  return rpn_proposals(logits_in, deltas_in, anchors_in, level_sizes, sizes, o);
}

Proposals rpn_proposals(const Tensor& logits_in, const Tensor& deltas_in, const Tensor& anchors_in,
                        const std::vector<int64_t>& level_sizes, const std::vector<ImageSize>& image_sizes,
                        const ProposalOptions& o) {
  const char* op = "rpn_proposals";
  check_dim(op, logits_in, 2, "objectness");
  check_dim(op, deltas_in, 3, "deltas");
  check_dim(op, anchors_in, 2, "anchors");
  const int64_t B = logits_in.size(0), A = logits_in.size(1);
  ENGINE_CHECK(deltas_in.size(0) == B && deltas_in.size(1) == A && deltas_in.size(2) == 4, op,
               ": deltas must be [B, A, 4] = [", B, ", ", A, ", 4] for objectness of shape ",
               shape_str(logits_in.sizes()), ", got ", shape_str(deltas_in.sizes()));
  ENGINE_CHECK(anchors_in.size(0) == A && anchors_in.size(1) == 4, op, ": anchors must be [A, 4] = [", A,
               ", 4], got ", shape_str(anchors_in.sizes()));
  check_floating(op, logits_in);
  check_same_device_dtype(op, {logits_in, deltas_in, anchors_in});
  ENGINE_CHECK(!level_sizes.empty() && static_cast<int>(level_sizes.size()) <= kern::kMaxLevels, op, ": 1 to ",
               kern::kMaxLevels, " levels, got ", level_sizes.size());
  kern::RpnProposalDims d;
  d.B = B, d.A = A;
  d.num_levels = static_cast<int>(level_sizes.size());
  int64_t total = 0;
  for (size_t l = 0; l < level_sizes.size(); ++l) {
    ENGINE_CHECK(level_sizes[l] >= 0, op, ": level_sizes[", l, "] is negative (", level_sizes[l], ")");
    d.level_sizes[l] = level_sizes[l];
    total += level_sizes[l];
  }
  ENGINE_CHECK(total == A, op, ": level_sizes sum to ", total, " but there are ", A, " anchors");
  ENGINE_CHECK(o.pre_nms_top_n >= 1, op, ": pre_nms_top_n must be >= 1, got ", o.pre_nms_top_n);
  ENGINE_CHECK(o.post_nms_top_n >= 1, op, ": post_nms_top_n must be >= 1, got ", o.post_nms_top_n);
  ENGINE_CHECK(static_cast<int64_t>(image_sizes.size()) == B, op, ": ", image_sizes.size(), " image sizes for ", B,
               " images");
  for (size_t b = 0; b < image_sizes.size(); ++b) {
    const ImageSize& s = image_sizes[b];
    ENGINE_CHECK(std::isfinite(s.h) && std::isfinite(s.w) && s.h > 0 && s.w > 0, op, ": image size of image ", b,
                 " must be positive and finite, got ", s.h, " x ", s.w);
  }
  ENGINE_CHECK(!std::isnan(o.nms_threshold), op, ": nms_threshold is NaN");
  ENGINE_CHECK(!std::isnan(o.min_size), op, ": min_size is NaN");
  ENGINE_CHECK(!std::isnan(o.score_threshold), op, ": score_threshold is NaN");
  ENGINE_CHECK(!std::isnan(o.clamp), op, ": clamp is NaN");
  d.pre_nms_top_n = o.pre_nms_top_n, d.post_nms_top_n = o.post_nms_top_n;
  d.nms_threshold = o.nms_threshold, d.min_size = o.min_size, d.score_threshold = o.score_threshold;
  d.clamp = o.clamp;
  const kern::RpnProposalLayout layout = kern::rpn_proposal_layout(d);

  const Device dev = logits_in.device();
  if (dev.is_cuda()) {
    ENGINE_CHECK(logits_in.dtype() == DType::f32, op, ": CUDA tensors must be f32, got ",
                 dtype_name(logits_in.dtype()));
    ENGINE_CHECK(B * A < (int64_t(1) << 31) && B * o.post_nms_top_n < (int64_t(1) << 31), op, ": B * A = ", B * A,
                 " and B * post_nms_top_n = ", B * o.post_nms_top_n, " must be < 2^31 on CUDA");
    ENGINE_CHECK(layout.candidates <= kern::kNmsMaxCandidatesCuda, op, ": ", layout.candidates,
                 " NMS candidates per image (sum over levels of min(pre_nms_top_n, level size)) exceed the CUDA "
                 "limit of ",
                 kern::kNmsMaxCandidatesCuda);
  }

  const int64_t N = o.post_nms_top_n;
  Proposals out;
  out.boxes = zeros({B, N, 4}, TensorOptions(logits_in.dtype()).device(dev));
  out.scores = zeros({B, N}, TensorOptions(logits_in.dtype()).device(dev));
  out.levels = full({B, N}, -1.0, TensorOptions(DType::i64).device(dev));
  out.counts = zeros({B}, TensorOptions(DType::i64).device(dev));
  if (B == 0 || layout.candidates == 0) return out;  // no anchor: all padding

  Tensor logits = logits_in.detach().contiguous(), deltas = deltas_in.detach().contiguous();
  Tensor anchors = anchors_in.detach().contiguous();
  std::vector<double> hw;
  for (const ImageSize& s : image_sizes) hw.insert(hw.end(), {s.h, s.w});
  // (h, w) per image in the inputs' dtype, on their device (CUDA: one small host-to-device copy).
  const Tensor image_hw = from_vector(hw, {B, 2}, TensorOptions(logits_in.dtype())).to(dev);
  dispatch_float(logits, op, [&](auto tag) {
    using T = decltype(tag);
    if (dev.is_cuda()) {
      ENGINE_IF_CUDA({
        Tensor ws = empty({static_cast<int64_t>(kern::cuda::rpn_proposals_workspace_bytes(d))},
                          TensorOptions(DType::u8).device(dev));
        kern::cuda::rpn_proposals(d, logits.data<float>(), deltas.data<float>(), anchors.data<float>(),
                                  image_hw.data<float>(), out.boxes.data<float>(), out.scores.data<float>(), out.levels.data<int64_t>(),
                                  out.counts.data<int64_t>(), ws.raw_data(), cuda::stream());
      });
    } else {
      kern::cpu::rpn_proposals<T>(d, logits.data<T>(), deltas.data<T>(), anchors.data<T>(), image_hw.data<T>(),
                                  out.boxes.data<T>(), out.scores.data<T>(), out.levels.data<int64_t>(), out.counts.data<int64_t>());
    }
  });
  return out;
}

}  // namespace eng::det
