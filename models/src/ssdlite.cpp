// ssdlite320_mobilenet_v3_large (see models/ssdlite.h).
#include "models/ssdlite.h"

#include <cmath>
#include <memory>

#include "engine/autograd.h"
#include "engine/detection.h"
#include "engine/error.h"
#include "engine/nn/mobile_layers.h"
#include "engine/ops.h"
#include "models/factories.h"
#include "models/mobilenet_v3.h"
#include "models/ssd_loss.h"

namespace models {
using namespace eng;

namespace {

constexpr double kEps = 1e-3, kMomentum = 0.03;  // ssdlite.py's norm_layer

// A Sequential whose children keep given names (torchvision's block[1:] slice keeps the
// keys "1", "2", "3").
class NamedSequential : public nn::Module {
 public:
  NamedSequential() : Module("Sequential") {}
  void add(const std::string& name, std::shared_ptr<nn::Module> m) { layers_.push_back(register_module(name, m)); }
  Tensor forward(const Tensor& x) override {
    Tensor h = x;
    for (auto& l : layers_) h = l->forward(h);
    return h;
  }

 private:
  std::vector<std::shared_ptr<nn::Module>> layers_;
};

std::shared_ptr<nn::Sequential> extra_block(int64_t in, int64_t out) {
  const int64_t mid = out / 2;
  auto s = std::make_shared<nn::Sequential>();
  s->push_back(conv_norm_act(in, mid, 1, 1, 1, "relu6", kEps, kMomentum));
  s->push_back(conv_norm_act(mid, mid, 3, 2, mid, "relu6", kEps, kMomentum));
  s->push_back(conv_norm_act(mid, out, 1, 1, 1, "relu6", kEps, kMomentum));
  return s;
}

std::shared_ptr<nn::Sequential> prediction_block(int64_t in, int64_t out) {
  auto s = std::make_shared<nn::Sequential>();
  s->push_back(conv_norm_act(in, in, 3, 1, in, "relu6", kEps, kMomentum));
  s->push_back(std::make_shared<nn::Conv2d>(in, out, 1));
  return s;
}

int64_t halve(int64_t n) { return (n - 1) / 2 + 1; }  // k = 2p + 1, stride 2

}  // namespace

SSDLiteFeatureExtractor::SSDLiteFeatureExtractor(bool full_tail) : Module("SSDLiteFeatureExtractorMobileNet") {
  MobileNetV3Options o;
  o.reduced_tail = !full_tail;
  o.bn_eps = kEps;
  o.bn_momentum = kMomentum;
  MobileNetV3Large net(o);
  const auto& f = *net.features;
  const size_t c4 = 13;  // the last stride-2 block (stage_indices[-2])
  auto c4_block = std::dynamic_pointer_cast<InvertedResidual>(f[c4]);
  ENGINE_CHECK(c4_block && !c4_block->use_res_connect, "SSDlite: features[13] is not the C4 block");
  features = register_module("features", std::make_shared<nn::Sequential>());
  auto head = features->push_back(std::make_shared<nn::Sequential>());
  for (size_t i = 0; i < c4; ++i) head->push_back(f[i]);
  head->push_back((*c4_block->block)[0]);  // expansion 1x1 (source 0)
  auto tail = features->push_back(std::make_shared<nn::Sequential>());
  auto rest = std::make_shared<NamedSequential>();
  for (size_t j = 1; j < c4_block->block->size(); ++j) rest->add(std::to_string(j), (*c4_block->block)[j]);
  tail->push_back(rest);
  for (size_t i = c4 + 1; i < f.size(); ++i) tail->push_back(f[i]);
  extra = register_module("extra", std::make_shared<nn::ModuleList>());
  const int64_t outs[4] = {512, 256, 256, 128};  // max(min_depth 16, d * width 1.0)
  out_channels = net.out_channels;  // 480 reduced, 960 full
  int64_t in = out_channels;
  for (int64_t o2 : outs) {
    extra->push_back(extra_block(in, o2));
    in = o2;
  }
  if (full_tail) {
    // With backbone weights torchvision keeps MobileNetV3's own init for the backbone (the
    // ImageNet tensors replace it) and _normal_init's the extras only.
    normal_init_convs(*extra);
  } else {
    // weights_backbone=None: torchvision _normal_init's the whole backbone and the extras.
    normal_init_convs(*this);
  }
}

std::vector<Tensor> SSDLiteFeatureExtractor::forward_features(const Tensor& x) {
  std::vector<Tensor> out;
  Tensor h = x;
  for (size_t i = 0; i < features->size(); ++i) out.push_back(h = (*features)[i]->forward(h));
  for (size_t i = 0; i < extra->size(); ++i) out.push_back(h = (*extra)[i]->forward(h));
  return out;
}

void SSDLiteMobileNetV3::set_input_size(int64_t size) {
  ENGINE_CHECK(size >= 32 && size <= 4096, "SSDlite: input_size must be in [32, 4096], got ", size);
  std::vector<int64_t> fm;
  int64_t s = size;
  for (int i = 0; i < 4; ++i) s = halve(s);  // stem + C1..C3: stride 16
  fm.push_back(s);
  for (int i = 0; i < 5; ++i) fm.push_back(s = halve(s));  // C4, then the 4 extras
  input_size_ = size;
  fmap_sizes_ = fm;

  // DefaultBoxGenerator([[2, 3]] * 6, min_ratio 0.2, max_ratio 0.95): scales 0.2 + 0.15 k
  // (k = 0..5) then 1.0; per location s_k, sqrt(s_k s_k+1), then 2, 1/2, 3, 1/3 at s_k.
  // steps None: centres (j + 0.5) / map, i.e. step = image / map. clip: w, h clamped to [0, 1].
  const size_t L = fm.size();
  std::vector<double> scales;
  for (size_t k = 0; k < L; ++k) scales.push_back(0.2 + (0.95 - 0.2) * static_cast<double>(k) / (L - 1));
  scales.push_back(1.0);
  levels_.clear();
  for (size_t k = 0; k < L; ++k) {
    det::PriorLevel lv;
    lv.fmap_h = lv.fmap_w = fm[k];
    lv.step_h = lv.step_w = static_cast<double>(size) / static_cast<double>(fm[k]);
    lv.sizes = {scales[k] * size, std::sqrt(scales[k] * scales[k + 1]) * size};
    lv.ratios = {1.0, 2.0, 0.5, 3.0, 1.0 / 3.0};
    lv.offset = 0.5;
    levels_.push_back(lv);
  }
  prior_options_.order = det::PriorOrder::MultiBox;
  prior_options_.clip = det::PriorClip::CenterSize;
  {
    NoGradGuard ng;
    anchors_cpu_ = det::multibox_prior(levels_, size, size, prior_options_);
  }
  record_input_size(size);
}

SSDLiteMobileNetV3::SSDLiteMobileNetV3(const ModelConfig& config) : DetectionModel("SSD", config) {
  const ModelConfig& c = this->config();
  ENGINE_CHECK(c.arch == "ssdlite320_mobilenet_v3_large", "make_ssdlite: unknown arch '", c.arch,
               "' (ssdlite320_mobilenet_v3_large)");
  ENGINE_CHECK(c.num_classes >= 2, "SSDlite: num_classes (background included) must be >= 2, got ", c.num_classes);
  set_input_size(c.input_size > 0 ? c.input_size : 320);
  backbone_ = register_module("backbone", std::make_shared<SSDLiteFeatureExtractor>(c.full_tail));
  const std::vector<int64_t> in_ch = {672, backbone_->out_channels, 512, 256, 256, 128};
  const int64_t boxes = 6;
  auto head = register_module("head", std::make_shared<nn::Module>("SSDLiteHead"));
  auto ch = head->register_module("classification_head", std::make_shared<nn::Module>("SSDLiteClassificationHead"));
  auto rh = head->register_module("regression_head", std::make_shared<nn::Module>("SSDLiteRegressionHead"));
  cls_heads_ = ch->register_module("module_list", std::make_shared<nn::ModuleList>());
  box_heads_ = rh->register_module("module_list", std::make_shared<nn::ModuleList>());
  for (int64_t k : in_ch) cls_heads_->push_back(prediction_block(k, c.num_classes * boxes));
  for (int64_t k : in_ch) box_heads_->push_back(prediction_block(k, 4 * boxes));
  normal_init_convs(*head);
}

HeadOutputs SSDLiteMobileNetV3::forward_heads(const Tensor& images) {
  ENGINE_CHECK(images.dim() == 4 && images.size(1) == 3, "SSDlite: images must be [B, 3, S, S], got ",
               shape_str(images.sizes()));
  ENGINE_CHECK(images.size(2) == input_size_ && images.size(3) == input_size_, "SSDlite: expected ", input_size_,
               "x", input_size_, " input, got ", shape_str(images.sizes()));
  std::vector<Tensor> feats = backbone_->forward_features(images);
  std::vector<Tensor> boxes, logits;
  for (size_t k = 0; k < feats.size(); ++k) {
    boxes.push_back((*box_heads_)[k]->forward(feats[k]));
    logits.push_back((*cls_heads_)[k]->forward(feats[k]));
  }
  return {flatten_concat_heads(boxes, 4), flatten_concat_heads(logits, config().num_classes), {}};
}

Tensor SSDLiteMobileNetV3::anchors(Device device) const { return anchors_cpu_.to(device); }

LossParts SSDLiteMobileNetV3::loss(const HeadOutputs& heads, const Targets& targets) {
  SSDLossOptions options;
  options.matcher = resolve_matcher(config(), det::MatchRule::ssd);  // torchvision's SSDMatcher by default
  return ssd_multibox_loss(cached_anchors(heads.box_regression.device()), heads, targets, options);
}

det::PostprocessOptions SSDLiteMobileNetV3::postprocess_options() const {
  det::PostprocessOptions o = det::PostprocessOptions::ssd();
  o.score_threshold = 0.001;  // ssdlite320_mobilenet_v3_large defaults
  o.nms_threshold = 0.55;
  o.max_per_image = 300;
  o.topk_candidates = 300;
  o.clip_width = o.clip_height = static_cast<double>(input_size_);
  return o;
}

std::vector<std::pair<std::string, Shape>> SSDLiteMobileNetV3::block_shapes() {
  NoGradGuard ng;
  const bool was_training = is_training();
  eval();  // BN in train mode cannot normalise the 1x1 map of a batch of one
  Tensor p = find("head.regression_head.module_list.0.1.bias");
  Tensor x = zeros({1, 3, input_size_, input_size_}, TensorOptions(p.dtype()).device(p.device()));
  std::vector<std::pair<std::string, Shape>> out;
  auto feats = backbone_->forward_features(x);
  const char* names[] = {"backbone.features.0 (C4 expansion, map 0)", "backbone.features.1 (map 1)",
                         "backbone.extra.0 (map 2)", "backbone.extra.1 (map 3)", "backbone.extra.2 (map 4)",
                         "backbone.extra.3 (map 5)"};
  for (size_t i = 0; i < feats.size(); ++i) out.emplace_back(names[i], feats[i].sizes());
  const int64_t A = det::num_priors(levels_, prior_options_.order);
  out.emplace_back("head.regression_head", Shape{1, A, 4});
  out.emplace_back("head.classification_head", Shape{1, A, config().num_classes});
  train(was_training);
  return out;
}

std::vector<double> SSDLiteMobileNetV3::pixel_mean() const { return {127.5, 127.5, 127.5}; }
std::vector<double> SSDLiteMobileNetV3::pixel_std() const { return {127.5, 127.5, 127.5}; }

std::shared_ptr<DetectionModel> make_ssdlite(const ModelConfig& config) {
  return std::make_shared<SSDLiteMobileNetV3>(config);
}

}  // namespace models
