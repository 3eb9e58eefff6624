// torchvision SSD's loss (see models/ssd_loss.h).
#include "models/ssd_loss.h"

#include "engine/autograd.h"
#include "engine/detection.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "loss_normaliser.h"

namespace models {
using namespace eng;

det::MatchRule resolve_matcher(const ModelConfig& config, det::MatchRule architecture_default) {
  if (config.matcher.empty()) return architecture_default;
  if (config.matcher == "ssd") return det::MatchRule::ssd;
  if (config.matcher == "bipartite") return det::MatchRule::bipartite;
  ENGINE_FAIL("matcher '", config.matcher.size() > 40 ? config.matcher.substr(0, 37) + "..." : config.matcher,
              "' is not one of ssd, bipartite");
}

LossParts ssd_multibox_loss(const Tensor& anc, const HeadOutputs& heads, const Targets& targets) {
  return ssd_multibox_loss(anc, heads, targets, SSDLossOptions());
}

LossParts ssd_multibox_loss(const Tensor& anc, const HeadOutputs& heads, const Targets& targets,
                            const SSDLossOptions& options) {
  const Tensor& reg = heads.box_regression;
  const Tensor& logits = heads.class_logits;
  ENGINE_CHECK(reg.dim() == 3 && logits.dim() == 3, "SSD loss: heads must be [B, A, 4] and [B, A, C]");
  const int64_t B = reg.size(0), A = reg.size(1), C = logits.size(2);
  const Device dev = reg.device();
  ENGINE_CHECK(anc.size(0) == A, "SSD loss: ", A, " predictions but ", anc.size(0), " anchors");
  ENGINE_CHECK(targets.boxes.dim() == 3 && targets.boxes.size(0) == B, "SSD loss: targets.boxes must be [B, G, 4]");

  // Per-anchor class targets (0 = background, -1 = anchor matched to an ignored GT: neither
  // positive nor negative), matched boxes, positive mask, 1 / N.
  const DType ft = reg.dtype();
  Tensor labels, enc, pos_mask, inv_n;
  {
    NoGradGuard ng;
    Tensor gt = targets.boxes.to(dev).to(DType::f32);
    Tensor counts = targets.counts.to(dev);
    Tensor matched = gt.size(1) > 0
                         ? det::match_anchors(det::box_iou_batched(gt, counts, anc), counts, options.matcher,
                                              options.iou_threshold)
                         : full({B, A}, static_cast<double>(det::kBackground), TensorOptions(DType::i64).device(dev));
    det::AssignedTargets t = det::assign_targets(matched, gt, targets.labels.to(dev), anc, C, 0, -1,
                                                 targets.ignore.defined() ? targets.ignore.to(dev) : Tensor());
    labels = t.labels;
    enc = det::box_encode(t.boxes, anc).to(ft);
    pos_mask = t.positive.to(ft);  // [B, A]
    inv_n = detail::inverse_positive_count(t.num_positive, ft);
  }
  auto per_positive = [&](const Tensor& x) { return mul(x, inv_n.to(x.dtype())); };
  Tensor box_loss = per_positive(sum(mul(smooth_l1_loss(reg, enc, Reduction::None, 1.0), pos_mask.unsqueeze(2))));
  // Label -1: no loss (ignore_index) and never mined.
  Tensor ce =
      cross_entropy(logits.reshape({B * A, C}), labels.reshape({B * A}), Reduction::None, -1).reshape({B, A});
  Tensor sel_mask;
  {
    NoGradGuard ng;  // positives OR hard negatives (3:1)
    Tensor neg = det::hard_negative_mining(ce.detach(), labels, 3.0).to(ft);
    sel_mask = clamp(add(pos_mask, neg), 0.0, 1.0);
  }
  Tensor cls_loss = per_positive(sum(mul(ce, sel_mask)));
  return {add(cls_loss, box_loss), cls_loss, box_loss, {}};
}

}  // namespace models
