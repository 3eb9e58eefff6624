// Faster R-CNN ResNet50-FPN: the modules, the first stage (forward_heads), anchors and sizes.
// The losses and the second stage are in fasterrcnn_heads.cpp.
#include "models/fasterrcnn.h"

#include <cmath>

#include "engine/autograd.h"
#include "models/factories.h"

namespace models {
using namespace eng;

// ------------------------------------------------------------------------------ modules
FasterRCNNBackbone::FasterRCNNBackbone(ResNetNorm norm) : Module("BackboneWithFPN") {
  body = register_module("body", std::make_shared<ResNet50Body>(norm));
  fpn = register_module("fpn", std::make_shared<FeaturePyramidNetwork>(std::vector<int64_t>{256, 512, 1024, 2048},
                                                                       256, FpnTop::MaxPool));
}

std::vector<Tensor> FasterRCNNBackbone::forward_features(const Tensor& x) {
  return fpn->forward_features(body->forward_c2_c5(x));
}

RPNHead::RPNHead(int64_t channels, int64_t num_anchors) : Module("RPNHead") {
  // torchvision RPNHead: every conv weight ~ N(0, 0.01), biases 0.
  conv = register_module("conv", std::make_shared<nn::Sequential>());
  auto block = std::make_shared<nn::Sequential>();
  auto c = block->push_back(std::make_shared<nn::Conv2d>(channels, channels, 3, 1, 1));
  conv->push_back(block);
  cls_logits = register_module("cls_logits", std::make_shared<nn::Conv2d>(channels, num_anchors, 1, 1, 0));
  bbox_pred = register_module("bbox_pred", std::make_shared<nn::Conv2d>(channels, num_anchors * 4, 1, 1, 0));
  for (nn::Conv2d* k : {c.get(), cls_logits.get(), bbox_pred.get()}) {
    nn::init::normal_(k->weight, 0.0, 0.01);
    nn::init::constant_(k->bias, 0.0);
  }
}

std::pair<Tensor, Tensor> RPNHead::forward_levels(const std::vector<Tensor>& features) {
  std::vector<Tensor> logits, deltas;
  for (const Tensor& f : features) {
    Tensor t = relu(conv->forward(f));
    logits.push_back(cls_logits->forward(t));  // [B, A, H, W]
    deltas.push_back(bbox_pred->forward(t));   // [B, 4 A, H, W]
  }
  // torchvision's concat_box_prediction_layers: (level, y, x, anchor) order.
  return {flatten_concat_heads(logits, 1), flatten_concat_heads(deltas, 4)};
}

TwoMLPHead::TwoMLPHead(int64_t in_features, int64_t representation) : Module("TwoMLPHead") {
  fc6 = register_module("fc6", std::make_shared<nn::Linear>(in_features, representation));
  fc7 = register_module("fc7", std::make_shared<nn::Linear>(representation, representation));
}

Tensor TwoMLPHead::forward(const Tensor& x) {
  return relu(fc7->forward(relu(fc6->forward(x.reshape({x.size(0), -1})))));
}

FastRCNNPredictor::FastRCNNPredictor(int64_t in_features, int64_t num_classes) : Module("FastRCNNPredictor") {
  cls_score = register_module("cls_score", std::make_shared<nn::Linear>(in_features, num_classes));
  bbox_pred = register_module("bbox_pred", std::make_shared<nn::Linear>(in_features, num_classes * 4));
}

RegionProposalNetwork::RegionProposalNetwork(int64_t num_anchors) : Module("RegionProposalNetwork") {
  head = register_module("head", std::make_shared<RPNHead>(256, num_anchors));
}

RoIHeads::RoIHeads(int64_t num_classes) : Module("RoIHeads") {
  box_head = register_module("box_head", std::make_shared<TwoMLPHead>(256 * 7 * 7, 1024));
  box_predictor = register_module("box_predictor", std::make_shared<FastRCNNPredictor>(1024, num_classes));
}

// ------------------------------------------------------------------------------ model
FasterRCNN::FasterRCNN(const ModelConfig& config) : DetectionModel("FasterRCNN", config), sampler_(0) {
  set_input_size(config.input_size > 0 ? config.input_size : 800);
  ENGINE_CHECK(config.num_classes >= 2, "fasterrcnn: num_classes must be >= 2, got ", config.num_classes);
  ENGINE_CHECK(config.min_size >= 0 && config.max_size >= 0 && config.min_size <= input_size_ &&
                   config.max_size <= input_size_,
               "fasterrcnn: min / max size (--min-size / --max-size) ", config.min_size, " / ", config.max_size,
               " must be in 0..", input_size_, " (the input size; 0: the input size)");
  limits_ = {static_cast<double>(config.min_size), static_cast<double>(config.max_size), static_cast<int>(input_size_)};
  ENGINE_CHECK(config.rpn_top_n_train >= 0 && config.rpn_top_n_test >= 0, "fasterrcnn: RPN top-n must be >= 0, got ",
               config.rpn_top_n_train, ",", config.rpn_top_n_test);
  const ResNetNorm norm = resnet_norm_of(config.backbone_norm);
  backbone = register_module("backbone", std::make_shared<FasterRCNNBackbone>(norm));
  rpn = register_module("rpn", std::make_shared<RegionProposalNetwork>(kAnchorsPerLocation));
  roi_heads = register_module("roi_heads", std::make_shared<RoIHeads>(config.num_classes));
  backbone->body->set_trainable_layers(trainable_layers_of(config.trainable_backbone_layers, norm));
}

HeadOutputs FasterRCNN::forward_heads(const Tensor& images) {
  ENGINE_CHECK(images.dim() == 4 && images.size(2) == input_size_ && images.size(3) == input_size_,
               "fasterrcnn: expected images [B, 3, ", input_size_, ", ", input_size_, "], got ", shape_str(images.sizes()));
  std::vector<Tensor> feats = backbone->forward_features(images);
  HeadOutputs out;
  std::tie(out.class_logits, out.box_regression) = rpn->head->forward_levels(feats);
  feats.pop_back();  // P6 feeds the RPN only
  out.features = std::move(feats);
  return out;
}

std::vector<int64_t> FasterRCNN::level_fmap_sizes() const {
  // conv1 and the max-pool halve twice (C2 = S / 4), layer2..4 halve (ceil), P6 = every
  // other pixel of P5 (kernel 1, stride 2: ceil too).
  auto half = [](int64_t v) { return (v - 1) / 2 + 1; };
  int64_t n = half(half(input_size_));
  std::vector<int64_t> sizes{n};
  for (int i = 0; i < 4; ++i) sizes.push_back(n = half(n));
  return sizes;
}

std::vector<int64_t> FasterRCNN::level_sizes() const {
  std::vector<int64_t> out;
  for (int64_t f : level_fmap_sizes()) out.push_back(f * f * kAnchorsPerLocation);
  return out;
}

Tensor FasterRCNN::anchors(Device device) const {
  // torchvision's rpn AnchorGenerator: one size per level (32, 64, 128, 256, 512 on P2..P6),
  // ratios (0.5, 1, 2) (height / width), base boxes rounded, centres at j * stride with
  // stride = image // fmap; order (y, x, ratio).
  std::vector<det::PriorLevel> levels;
  const std::vector<int64_t> fm = level_fmap_sizes();
  for (size_t i = 0; i < fm.size(); ++i) {
    det::PriorLevel l;
    l.fmap_h = l.fmap_w = fm[i];
    l.step_h = l.step_w = static_cast<double>(input_size_ / fm[i]);
    l.sizes = {32.0 * std::pow(2.0, static_cast<double>(i))};
    l.ratios = {0.5, 1.0, 2.0};
    l.offset = 0.0;
    levels.push_back(l);
  }
  det::PriorOptions opt;
  opt.order = det::PriorOrder::CrossProduct;
  return det::multibox_prior(levels, input_size_, input_size_, opt, device);
}

void FasterRCNN::set_input_size(int64_t size) {
  ENGINE_CHECK(size >= 64 && size % 32 == 0, "fasterrcnn: input_size must be a multiple of 32 and at least 64, got ",
               size, " (torchvision pads images to a multiple of 32)");
  input_size_ = size;
  record_input_size(size);
}

std::vector<std::pair<std::string, Shape>> FasterRCNN::block_shapes() {
  NoGradGuard ng;
  Device dev = Device::cpu();
  auto params = parameters();
  if (!params.empty()) dev = params[0].device();
  Tensor x = zeros({1, 3, input_size_, input_size_}, TensorOptions(dev));
  std::vector<std::pair<std::string, Shape>> out;
  std::vector<Tensor> c = backbone->body->forward_c2_c5(x);
  for (int i = 0; i < 4; ++i) out.emplace_back("backbone.body.C" + std::to_string(i + 2), c[i].sizes());
  std::vector<Tensor> p = backbone->fpn->forward_features(c);
  for (size_t i = 0; i < p.size(); ++i) out.emplace_back("backbone.fpn.P" + std::to_string(i + 2), p[i].sizes());
  auto [logits, deltas] = rpn->head->forward_levels(p);
  out.emplace_back("rpn.head.cls_logits", logits.sizes());
  out.emplace_back("rpn.head.bbox_pred", deltas.sizes());
  const int64_t rois = kRoiBatch;  // the training batch of RoIs per image
  out.emplace_back("roi_heads.box_roi_pool (per image, training)", Shape{rois, 256, 7, 7});
  out.emplace_back("roi_heads.box_head", Shape{rois, 1024});
  out.emplace_back("roi_heads.box_predictor.cls_score", Shape{rois, config().num_classes});
  out.emplace_back("roi_heads.box_predictor.bbox_pred", Shape{rois, 4 * config().num_classes});
  return out;
}

std::shared_ptr<DetectionModel> make_fasterrcnn(const ModelConfig& config) {
  ENGINE_CHECK(config.arch.empty() || config.arch == "fasterrcnn_resnet50_fpn", "make_fasterrcnn: unknown arch '",
               config.arch, "' (known: fasterrcnn_resnet50_fpn)");
  return std::make_shared<FasterRCNN>(config);
}

}  // namespace models
