#include "models/tiny_ssd.h"

#include <algorithm>

#include "engine/autograd.h"
#include "engine/detection.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "models/anchor_scales.h"
#include "models/factories.h"
#include "loss_normaliser.h"
#include "models/ssd_loss.h"

namespace models {
using namespace eng;

namespace {

class GlobalMaxPool : public nn::Module {
 public:
  GlobalMaxPool() : Module("GlobalMaxPool") {}
  Tensor forward(const Tensor& x) override { return global_max_pool2d(x); }
};

// d2l down_sample_blk: 2 x (conv3x3 p1, BN, ReLU), maxpool 2.
std::shared_ptr<nn::Sequential> down_sample_block(int64_t in, int64_t out) {
  auto s = std::make_shared<nn::Sequential>();
  s->push_back(std::make_shared<nn::Conv2d>(in, out, 3, 1, 1));
  s->push_back(std::make_shared<nn::BatchNorm2d>(out));
  s->push_back(std::make_shared<nn::ReLU>());
  s->push_back(std::make_shared<nn::Conv2d>(out, out, 3, 1, 1));
  s->push_back(std::make_shared<nn::BatchNorm2d>(out));
  s->push_back(std::make_shared<nn::ReLU>());
  s->push_back(std::make_shared<nn::MaxPool2d>(2));
  return s;
}

ModelConfig resolve(ModelConfig c) {
  if (c.input_size == 0) c.input_size = 256;
  if (c.arch.empty()) c.arch = "tiny_ssd";
  ENGINE_CHECK(c.input_size >= 64, "tiny_ssd: input_size must be at least 64, got ", c.input_size);
  check_anchor_config(c);
  ENGINE_CHECK(c.num_classes >= 2, "tiny_ssd: num_classes (background included) must be >= 2, got ",
               c.num_classes);
  return c;
}

const double kSizes[5][2] = {{0.2, 0.272}, {0.37, 0.447}, {0.54, 0.619}, {0.71, 0.79}, {0.88, 0.961}};

}  // namespace

std::vector<int64_t> TinySSD::feature_sizes(int64_t s) {
  std::vector<int64_t> out;
  for (int i = 0; i < 3; ++i) s /= 2;  // base net
  out.push_back(s);
  for (int i = 0; i < 3; ++i) {
    s /= 2;
    out.push_back(s);
  }
  out.push_back(1);
  return out;
}

TinySSD::TinySSD(const ModelConfig& config) : DetectionModel("TinySSD", resolve(config)) {
  input_size_ = this->config().input_size;
  const int64_t c = this->config().num_classes;
  auto backbone = register_module("backbone", std::make_shared<nn::Module>("TinySSDBackbone"));
  auto blocks = std::make_shared<nn::ModuleList>();
  backbone->register_module("blocks", blocks);
  auto base = std::make_shared<nn::Sequential>();
  base->push_back(down_sample_block(3, 16));
  base->push_back(down_sample_block(16, 32));
  base->push_back(down_sample_block(32, 64));
  blocks_.push_back(blocks->push_back(base));
  blocks_.push_back(blocks->push_back(down_sample_block(64, 128)));
  blocks_.push_back(blocks->push_back(down_sample_block(128, 128)));
  blocks_.push_back(blocks->push_back(down_sample_block(128, 128)));
  blocks_.push_back(blocks->push_back(std::make_shared<GlobalMaxPool>()));

  auto head = register_module("head", std::make_shared<nn::Module>("TinySSDHead"));
  auto cls_head = head->register_module("classification_head", std::make_shared<nn::Module>("SSDClassificationHead"));
  auto box_head = head->register_module("regression_head", std::make_shared<nn::Module>("SSDRegressionHead"));
  auto cls_list = cls_head->register_module("module_list", std::make_shared<nn::ModuleList>());
  auto box_list = box_head->register_module("module_list", std::make_shared<nn::ModuleList>());
  const int64_t in_ch[5] = {64, 128, 128, 128, 128};
  for (int i = 0; i < kNumScales; ++i) {
    cls_.push_back(cls_list->push_back(std::make_shared<nn::Conv2d>(in_ch[i], kAnchorsPerLocation * c, 3, 1, 1)));
    box_.push_back(box_list->push_back(std::make_shared<nn::Conv2d>(in_ch[i], kAnchorsPerLocation * 4, 3, 1, 1)));
  }
}

HeadOutputs TinySSD::forward_heads(const Tensor& images) {
  ENGINE_CHECK(images.dim() == 4 && images.size(1) == 3, "tiny_ssd: expected images [B, 3, S, S], got ",
               shape_str(images.sizes()));
  const int64_t c = config().num_classes;
  std::vector<Tensor> cls, box;
  Tensor x = images;
  for (int i = 0; i < kNumScales; ++i) {
    x = blocks_[i]->forward(x);
    cls.push_back(cls_[i]->forward(x));
    box.push_back(box_[i]->forward(x));
  }
  // [B, A*K, H, W] per scale -> [B, sum H*W*A, K] (permute + concat in one kernel).
  return {flatten_concat_heads(box, 4), flatten_concat_heads(cls, c), {}};
}

Tensor TinySSD::anchors(Device device) const {
  std::vector<det::PriorLevel> levels;
  const auto fs = feature_sizes(input_size_);
  for (int i = 0; i < kNumScales; ++i) {
    det::PriorLevel l;
    l.fmap_h = l.fmap_w = fs[i];
    // Custom scales (models/anchor_scales.h) or d2l's table, unchanged.
    if (config().anchor_preset == "custom")
      l.sizes = level_sizes(config().anchor_scales, static_cast<size_t>(i));
    else
      l.sizes = {kSizes[i][0], kSizes[i][1]};
    l.ratios = {1.0, 2.0, 0.5};
    levels.push_back(l);
  }
  det::PriorOptions o;
  o.order = det::PriorOrder::MultiBox;
  o.sizes_normalized = true;
  return det::multibox_prior(levels, input_size_, input_size_, o, device);
}

LossParts TinySSD::loss(const HeadOutputs& heads, const Targets& targets) {
  const Tensor& logits = heads.class_logits;
  const Tensor& deltas = heads.box_regression;
  const Device dev = logits.device();
  const int64_t b = logits.size(0), a = logits.size(1), c = logits.size(2);
  Tensor anc = cached_anchors(dev);
  ENGINE_CHECK(anc.size(0) == a, "tiny_ssd loss: heads have ", a, " anchors, the model ", anc.size(0));

  // Matching and targets on the loss's device (no grad, no host copy): labels [B, A] (0
  // background, -1 ignored), encoded boxes [B, A, 4], the positive mask and 1 / max(1, P).
  Tensor labels, box_targets, pos_mask, cls_mask, inv_n;
  {
    NoGradGuard ng;
    Tensor gt = targets.boxes.to(dev).to(DType::f32);
    Tensor counts = targets.counts.to(dev);
    Tensor matched = det::match_anchors(det::box_iou_batched(gt, counts, anc), counts,
                                        resolve_matcher(config(), det::MatchRule::ssd), 0.5);
    det::AssignedTargets t = det::assign_targets(matched, gt, targets.labels.to(dev), anc, c, 0, -1,
                                                 targets.ignore.defined() ? targets.ignore.to(dev) : Tensor());
    labels = t.labels;
    box_targets = det::box_encode(t.boxes, anc);
    pos_mask = t.positive.to(logits.dtype());
    inv_n = detail::inverse_positive_count(t.num_positive, logits.dtype());
  }

  Tensor ce = cross_entropy(logits.reshape({b * a, c}), labels.reshape({b * a}), Reduction::None, -1)
                  .reshape({b, a});
  {
    NoGradGuard ng;
    Tensor neg = det::hard_negative_mining(ce.detach(), labels, 3.0);
    cls_mask = add(pos_mask, neg.to(logits.dtype()));
  }
  LossParts out;
  auto per_positive = [&](const Tensor& x) { return mul(x, inv_n.to(x.dtype())); };  // x / max(1, P)
  out.classification = per_positive(sum(mul(ce, cls_mask)));
  Tensor sl1 = smooth_l1_loss(deltas, box_targets.to(deltas.dtype()), Reduction::None, 1.0);
  out.box_regression = per_positive(sum(mul(sl1, pos_mask.unsqueeze(2))));
  out.total = add(out.classification, out.box_regression);
  return out;
}

void TinySSD::set_input_size(int64_t size) {
  ENGINE_CHECK(size >= 64, "tiny_ssd: input_size must be at least 64, got ", size);
  input_size_ = size;
  record_input_size(size);
}

det::PostprocessOptions TinySSD::postprocess_options() const {
  // SSD's settings; boxes are clipped to the input before NMS as torchvision's SSD does
  // (d2l's TinySSD does not clip; an output box outside the image helps nobody).
  det::PostprocessOptions o = det::PostprocessOptions::ssd();
  o.clip_width = o.clip_height = static_cast<double>(input_size_);
  return o;
}

std::vector<std::pair<std::string, Shape>> TinySSD::block_shapes() {
  NoGradGuard ng;
  const bool was_training = is_training();
  eval();
  Device dev = Device::cpu();
  auto params = parameters();
  if (!params.empty()) dev = params.front().device();
  std::vector<std::pair<std::string, Shape>> out;
  Tensor x = zeros({1, 3, input_size_, input_size_}, TensorOptions(DType::f32).device(dev));
  for (int i = 0; i < kNumScales; ++i) {
    x = blocks_[i]->forward(x);
    out.emplace_back("backbone.blocks." + std::to_string(i), x.sizes());
  }
  train(was_training);
  HeadOutputs h;
  {
    eval();
    h = forward_heads(zeros({1, 3, input_size_, input_size_}, TensorOptions(DType::f32).device(dev)));
    train(was_training);
  }
  out.emplace_back("head.classification_head", h.class_logits.sizes());
  out.emplace_back("head.regression_head", h.box_regression.sizes());
  return out;
}

std::shared_ptr<DetectionModel> make_tiny_ssd(const ModelConfig& config) {
  return std::make_shared<TinySSD>(config);
}

}  // namespace models
