#include "models/retinanet.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/autograd.h"
#include "models/factories.h"
#include "loss_normaliser.h"

namespace models {
using namespace eng;

// ------------------------------------------------------------------------------ modules
RetinaNetBackbone::RetinaNetBackbone(ResNetNorm norm) : Module("BackboneWithFPN") {
  body = register_module("body", std::make_shared<ResNet50Body>(norm));
  fpn = register_module("fpn", std::make_shared<FeaturePyramidNetwork>(std::vector<int64_t>{512, 1024, 2048}, 256));
}

std::vector<Tensor> RetinaNetBackbone::forward_features(const Tensor& x) {
  return fpn->forward_features(body->forward_features(x));
}

RetinaNetSubHead::RetinaNetSubHead(const std::string& type, const std::string& predictor_name, int64_t in_channels,
                                   int64_t num_anchors_, int64_t outputs_per_anchor_, double predictor_bias)
    : Module(type), num_anchors(num_anchors_), outputs_per_anchor(outputs_per_anchor_) {
  // torchvision: every conv weight ~ N(0, 0.01); conv biases 0; predictor bias as given.
  conv = register_module("conv", std::make_shared<nn::Sequential>());
  for (int i = 0; i < 4; ++i) {
    auto block = std::make_shared<nn::Sequential>();
    auto c = block->push_back(std::make_shared<nn::Conv2d>(in_channels, in_channels, 3, 1, 1));
    nn::init::normal_(c->weight, 0.0, 0.01);
    nn::init::constant_(c->bias, 0.0);
    block->push_back(std::make_shared<nn::ReLU>());
    conv->push_back(block);
  }
  predictor = register_module(predictor_name,
                              std::make_shared<nn::Conv2d>(in_channels, num_anchors * outputs_per_anchor, 3, 1, 1));
  nn::init::normal_(predictor->weight, 0.0, 0.01);
  nn::init::constant_(predictor->bias, predictor_bias);
}

Tensor RetinaNetSubHead::forward_levels(const std::vector<Tensor>& features) {
  std::vector<Tensor> outs;
  for (const Tensor& f : features) {
    Tensor y = predictor->forward(conv->forward(f));  // [N, A K, H, W]
    const int64_t n = y.size(0), h = y.size(2), w = y.size(3);
    y = y.view({n, num_anchors, outputs_per_anchor, h, w}).permute({0, 3, 4, 1, 2});
    outs.push_back(y.reshape({n, h * w * num_anchors, outputs_per_anchor}));
  }
  return outs.size() == 1 ? outs[0] : concat(outs, 1);
}

RetinaNetHead::RetinaNetHead(int64_t in_channels, int64_t num_anchors, int64_t num_classes) : Module("RetinaNetHead") {
  const double prior = 0.01;
  classification_head = register_module(
      "classification_head", std::make_shared<RetinaNetSubHead>("RetinaNetClassificationHead", "cls_logits",
                                                                in_channels, num_anchors, num_classes,
                                                                -std::log((1.0 - prior) / prior)));
  regression_head = register_module(
      "regression_head",
      std::make_shared<RetinaNetSubHead>("RetinaNetRegressionHead", "bbox_reg", in_channels, num_anchors, 4, 0.0));
}

// ------------------------------------------------------------------------------ model
RetinaNet::RetinaNet(const ModelConfig& config) : DetectionModel("RetinaNet", config) {
  set_input_size(config.input_size > 0 ? config.input_size : 512);
  ENGINE_CHECK(config.num_classes >= 2, "retinanet: num_classes must be >= 2, got ", config.num_classes);
  const ResNetNorm norm = resnet_norm_of(config.backbone_norm);
  backbone = register_module("backbone", std::make_shared<RetinaNetBackbone>(norm));
  head = register_module("head", std::make_shared<RetinaNetHead>(256, kAnchorsPerLocation, config.num_classes));
  // torchvision's trainable_backbone_layers (default 3 with pretrained weights: conv1 and
  // layer1 frozen).
  backbone->body->set_trainable_layers(trainable_layers_of(config.trainable_backbone_layers, norm));
}

HeadOutputs RetinaNet::forward_heads(const Tensor& images) {
  std::vector<Tensor> feats = backbone->forward_features(images);
  HeadOutputs out;
  out.class_logits = head->classification_head->forward_levels(feats);
  out.box_regression = head->regression_head->forward_levels(feats);
  return out;
}

std::vector<int64_t> RetinaNet::level_fmap_sizes() const {
  // conv1 (7x7 s2 p3), maxpool (3x3 s2 p1), layer2..4 (3x3 s2 p1), p6, p7: all ceil(n / 2).
  int64_t n = input_size_;
  auto half = [](int64_t v) { return (v - 1) / 2 + 1; };
  n = half(half(n));  // C2
  std::vector<int64_t> sizes;
  for (int i = 0; i < 5; ++i) {
    n = half(n);
    sizes.push_back(n);
  }
  return sizes;
}

std::vector<int64_t> RetinaNet::level_sizes() const {
  std::vector<int64_t> out;
  for (int64_t f : level_fmap_sizes()) out.push_back(f * f * kAnchorsPerLocation);
  return out;
}

Tensor RetinaNet::anchors(Device device) const {
  // torchvision _default_anchorgen: sizes (x, int(x 2^(1/3)), int(x 2^(2/3))), ratios (0.5, 1, 2)
  // (height / width), strides image // fmap, centres at j * stride (offset 0).
  std::vector<det::PriorLevel> levels;
  const std::vector<int64_t> fm = level_fmap_sizes();
  for (int i = 0; i < 5; ++i) {
    const double x = 32.0 * std::pow(2.0, i);
    det::PriorLevel l;
    l.fmap_h = l.fmap_w = fm[i];
    l.step_h = l.step_w = static_cast<double>(input_size_ / fm[i]);
    l.sizes = {x, std::floor(x * std::pow(2.0, 1.0 / 3.0)), std::floor(x * std::pow(2.0, 2.0 / 3.0))};
    l.ratios = {0.5, 1.0, 2.0};
    l.offset = 0.0;
    levels.push_back(l);
  }
  det::PriorOptions opt;
  opt.order = det::PriorOrder::CrossProduct;
  return det::multibox_prior(levels, input_size_, input_size_, opt, device);
}

LossParts RetinaNet::loss(const HeadOutputs& heads, const Targets& targets) {
  const Device dev = heads.class_logits.device();
  const int64_t B = heads.class_logits.size(0), A = heads.class_logits.size(1), C = heads.class_logits.size(2);
  Tensor anc = cached_anchors(dev);
  ENGINE_CHECK(anc.size(0) == A, "retinanet loss: heads have ", A, " anchors, the model ", anc.size(0));

  // Matching and targets on the loss's device (no host copy): per-anchor labels (-1
  // background, -2 ignore), matched boxes (the anchor itself when not foreground, so its
  // encoding is finite), and per-image weights 1 / (B max(1, fg)).
  Tensor labels_t, cls_w_t, mask_t, target_deltas;
  {
    NoGradGuard ng;
    Tensor gt = targets.boxes.to(dev).to(DType::f32).contiguous();
    Tensor counts = targets.counts.to(dev).contiguous();
    Tensor matched = det::match_retinanet(det::box_iou_batched(gt, counts, anc), counts, 0.5, 0.4, true);
    det::AssignedTargets t = det::assign_targets(matched, gt, targets.labels.to(dev), anc, C, -1, -2,
                                                 targets.ignore.defined() ? targets.ignore.to(dev) : Tensor());
    Tensor w = detail::retinanet_image_weights(t.num_positive);  // f32 [B]
    labels_t = t.labels;
    cls_w_t = w;
    mask_t = mul(t.positive, w.reshape({B, 1})).unsqueeze(2);  // w on foreground anchors, else 0
    target_deltas = det::box_encode(t.boxes, anc, det::BoxCoderWeights{1, 1, 1, 1});
  }

  LossParts out;
  // sum_{b,a,c} focal(b, a, c) * w[b] in one pass: the [B, A, C] loss is never stored.
  out.classification = sigmoid_focal_loss_weighted_sum(heads.class_logits, labels_t, cls_w_t, 0.25, 2.0)
                           .to(heads.class_logits.dtype());
  Tensor l1 = l1_loss(heads.box_regression, target_deltas.to(heads.box_regression.dtype()), Reduction::None);
  out.box_regression = sum(l1 * mask_t);
  out.total = out.classification + out.box_regression;
  return out;
}

void RetinaNet::set_input_size(int64_t size) {
  ENGINE_CHECK(size >= 128, "retinanet: input_size must be at least 128, got ", size);
  input_size_ = size;
  record_input_size(size);
}

det::PostprocessOptions RetinaNet::postprocess_options() const {
  // torchvision RetinaNet.postprocess_detections: per level, sigmoid scores > 0.05, top 1000
  // over (anchor, class), decode (weights 1, clamp ln(1000/16)), clip to the image; then
  // class-wise NMS 0.5 over all levels and keep 300 -- all inside det::detect_postprocess.
  det::PostprocessOptions opt = det::PostprocessOptions::retinanet();
  opt.level_sizes = level_sizes();
  opt.clip_width = opt.clip_height = static_cast<double>(input_size_);
  return opt;
}

std::vector<std::pair<std::string, Shape>> RetinaNet::block_shapes() {
  NoGradGuard ng;
  Device dev = Device::cpu();
  auto params = parameters();
  if (!params.empty()) dev = params[0].device();
  Tensor x = zeros({1, 3, input_size_, input_size_}, TensorOptions(dev));
  std::vector<std::pair<std::string, Shape>> out;
  std::vector<Tensor> c = backbone->body->forward_features(x);
  for (int i = 0; i < 3; ++i) out.emplace_back("backbone.body.C" + std::to_string(i + 3), c[i].sizes());
  std::vector<Tensor> p = backbone->fpn->forward_features(c);
  for (int i = 0; i < 5; ++i) out.emplace_back("backbone.fpn.P" + std::to_string(i + 3), p[i].sizes());
  out.emplace_back("head.classification_head", head->classification_head->forward_levels(p).sizes());
  out.emplace_back("head.regression_head", head->regression_head->forward_levels(p).sizes());
  return out;
}

std::shared_ptr<DetectionModel> make_retinanet(const ModelConfig& config) {
  ENGINE_CHECK(config.arch.empty() || config.arch == "retinanet_resnet50_fpn", "make_retinanet: unknown arch '",
               config.arch, "' (known: retinanet_resnet50_fpn)");
  return std::make_shared<RetinaNet>(config);
}

}  // namespace models
