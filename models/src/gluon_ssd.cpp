// GluonCV SSD presets on ResNet / MobileNet backbones (see models/gluon_ssd.h).
#include "models/gluon_ssd.h"

#include <cmath>
#include <sstream>

#include "engine/autograd.h"
#include "engine/detection.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "models/anchor_scales.h"
#include "models/factories.h"
#include "models/ssd_loss.h"

namespace models {
using namespace eng;

namespace {

const std::vector<double> kSizes512 = {51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492};
const std::vector<int> kRatios6 = {3, 5, 5, 5, 3, 3};
const std::vector<double> kSteps512 = {16, 32, 64, 128, 256, 512};

const std::vector<GluonSSDPreset>& presets() {
  static const std::vector<GluonSSDPreset> p = {
      {"ssd512_resnet18_v1", "resnet18_v1", 512, {512, 512, 256, 256}, kSizes512, kSizes512, kRatios6, kSteps512},
      {"ssd512_resnet50_v1", "resnet50_v1", 512, {512, 512, 256, 256}, kSizes512,
       {51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72}, kRatios6, kSteps512},
      {"ssd512_resnet101_v2", "resnet101_v2", 512, {512, 512, 256, 256}, kSizes512, kSizes512, kRatios6, kSteps512},
      {"ssd512_resnet152_v2", "resnet152_v2", 512, {512, 512, 256, 256},
       {51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6}, {51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6},
       {3, 5, 5, 5, 5, 3, 3}, {8, 16, 32, 64, 128, 256, 512}},
      {"ssd512_mobilenet1_0", "mobilenet1.0", 512, {512, 512, 256, 256}, kSizes512, kSizes512, kRatios6, kSteps512},
      {"ssd300_mobilenet0_25", "mobilenet0.25", 300, {256, 256, 128, 128}, {21, 45, 99, 153, 207, 261, 315},
       {21, 45, 99, 153, 207, 261, 315}, kRatios6, {8, 16, 32, 64, 100, 300}},
  };
  return p;
}

std::shared_ptr<SSDSourceBackbone> make_backbone(const std::string& name) {
  if (name == "mobilenet1.0") return make_mobilenet_v1(1.0);
  if (name == "mobilenet0.25") return make_mobilenet_v1(0.25);
  return make_gluon_resnet(name);
}

// MXNet Xavier(rnd_type, factor_type, magnitude) on a conv weight [out, in/g, k, k]:
// scale = sqrt(magnitude / factor), factor = fan_in, fan_out or their mean.
void xavier_(nn::Conv2d& c, bool gaussian_fan_out) {
  const auto& s = c.weight.sizes();
  const double rf = static_cast<double>(s[2] * s[3]);
  const double fan_in = static_cast<double>(s[1]) * rf, fan_out = static_cast<double>(s[0]) * rf;
  if (gaussian_fan_out) {
    nn::init::normal_(c.weight, 0.0, std::sqrt(2.0 / fan_out));  // gaussian, 'out', magnitude 2
  } else {
    const double a = std::sqrt(2.0 / ((fan_in + fan_out) / 2.0));  // uniform, 'avg', magnitude 2
    nn::init::uniform_(c.weight, -a, a);
  }
  if (c.bias.defined()) nn::init::constant_(c.bias, 0.0);
}

int64_t halve(int64_t n) { return (n - 1) / 2 + 1; }  // 3x3, stride 2, pad 1

}  // namespace

std::vector<std::string> gluon_ssd_arch_names() {
  std::vector<std::string> out;
  for (const auto& p : presets()) out.push_back(p.arch);
  return out;
}

bool is_gluon_ssd_arch(const std::string& arch) {
  for (const auto& p : presets())
    if (p.arch == arch) return true;
  return false;
}

const GluonSSDPreset& gluon_ssd_preset(const std::string& arch) {
  for (const auto& p : presets())
    if (p.arch == arch) return p;
  std::ostringstream os;
  os << "unknown GluonCV SSD preset '" << arch << "' (known:";
  for (const auto& p : presets()) os << " " << p.arch;
  os << ")";
  throw Error(os.str());
}

// ---------------------------------------------------------------- FeatureExpander pieces

FixedGammaBatchNorm2d::FixedGammaBatchNorm2d(int64_t channels, double eps_, double momentum_)
    : Module("BatchNorm2d"), eps(eps_), momentum(momentum_) {
  weight = register_buffer("weight", ones({channels}));  // fix_gamma: constant 1
  bias = register_parameter("bias", zeros({channels}));
  running_mean = register_buffer("running_mean", zeros({channels}));
  running_var = register_buffer("running_var", ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::i64));
}

Tensor FixedGammaBatchNorm2d::forward(const Tensor& x) {
  // MXNet's fix_gamma ignores the stored gamma: normalise with gamma = 1 whatever the buffer
  // holds (a weight file may carry another value there).
  Tensor y = batch_norm2d(x, Tensor(), bias, running_mean, running_var, is_training(), momentum, eps);
  if (is_training()) {
    NoGradGuard guard;
    num_batches_tracked.copy_(add_scalar(num_batches_tracked.to(DType::f64), 1.0));
  }
  return y;
}

ExpanderBlock::ExpanderBlock(int64_t in, int64_t transition, int64_t out) : Module("ExpanderBlock") {
  // MXNet symbol BatchNorm defaults: eps 1e-3, momentum 0.9 (torch's 0.1).
  trans_conv = register_module("trans_conv", std::make_shared<nn::Conv2d>(in, transition, 1, 1, 0, 1, false));
  trans_bn = register_module("trans_bn", std::make_shared<FixedGammaBatchNorm2d>(transition, 1e-3, 0.1));
  conv = register_module("conv", std::make_shared<nn::Conv2d>(transition, out, 3, 2, 1, 1, false));
  bn = register_module("bn", std::make_shared<FixedGammaBatchNorm2d>(out, 1e-3, 0.1));
}

Tensor ExpanderBlock::forward(const Tensor& x) {
  Tensor h = relu(trans_bn->forward(trans_conv->forward(x)));
  return relu(bn->forward(conv->forward(h)));
}

// ---------------------------------------------------------------- the model

GluonSSD::GluonSSD(const ModelConfig& config) : DetectionModel("SSD", config), preset_(gluon_ssd_preset(config.arch)) {
  const ModelConfig& c = this->config();
  ENGINE_CHECK(c.num_classes >= 2, c.arch, ": num_classes (background included) must be >= 2, got ", c.num_classes);
  backbone_ = register_module("backbone", make_backbone(preset_.backbone));
  expand_ = register_module("expand", std::make_shared<nn::ModuleList>());
  std::vector<int64_t> in_ch = backbone_->source_channels();
  for (int64_t f : preset_.filters) {
    const int64_t trans = std::max<int64_t>(128, f);  // max(min_depth, round(f * reduce_ratio 1))
    expand_->push_back(std::make_shared<ExpanderBlock>(in_ch.back(), trans, f));
    in_ch.push_back(f);
  }
  ENGINE_CHECK(in_ch.size() == preset_.ratio_counts.size() && in_ch.size() + 1 == preset_.sizes_voc.size(),
               c.arch, ": preset has ", preset_.ratio_counts.size(), " ratio lists for ", in_ch.size(), " levels");
  cls_heads_ = register_module("class_predictors", std::make_shared<nn::ModuleList>());
  box_heads_ = register_module("box_predictors", std::make_shared<nn::ModuleList>());
  for (size_t k = 0; k < in_ch.size(); ++k) {
    const int64_t A = preset_.ratio_counts[k] + 1;  // 2 sizes + (ratios - 1)
    cls_heads_->push_back(std::make_shared<nn::Conv2d>(in_ch[k], A * c.num_classes, 3, 1, 1));
    box_heads_->push_back(std::make_shared<nn::Conv2d>(in_ch[k], A * 4, 3, 1, 1));
  }
  {
    NoGradGuard ng;
    for (size_t i = 0; i < expand_->size(); ++i) {
      auto& b = dynamic_cast<ExpanderBlock&>(*(*expand_)[i]);
      xavier_(*b.trans_conv, true);
      xavier_(*b.conv, true);
    }
    for (auto* list : {cls_heads_.get(), box_heads_.get()})
      for (size_t k = 0; k < list->size(); ++k) xavier_(dynamic_cast<nn::Conv2d&>(*(*list)[k]), false);
  }
  set_input_size(c.input_size > 0 ? c.input_size : preset_.base_size);
}

void GluonSSD::set_input_size(int64_t size) {
  ENGINE_CHECK(size >= 64 && size <= 4096, config().arch, ": input_size must be in [64, 4096], got ", size);
  std::vector<int64_t> fm = backbone_->source_sizes(size);
  for (size_t i = 0; i < preset_.filters.size(); ++i) fm.push_back(halve(fm.back()));
  const ModelConfig& c = config();
  const double r = static_cast<double>(size) / static_cast<double>(preset_.base_size);
  std::vector<double> sizes;  // L + 1 pixel sizes at this input size
  if (c.anchor_preset == "custom") {
    for (double s : c.anchor_scales) sizes.push_back(s * static_cast<double>(size));
  } else {
    for (double s : c.anchor_preset == "voc" ? preset_.sizes_voc : preset_.sizes_coco) sizes.push_back(s * r);
  }
  ENGINE_CHECK(sizes.size() == fm.size() + 1, c.arch, ": ", sizes.size(), " anchor sizes for ", fm.size(), " levels");
  levels_.clear();
  for (size_t k = 0; k < fm.size(); ++k) {
    det::PriorLevel lv;
    lv.fmap_h = lv.fmap_w = fm[k];
    // custom sizes come with steps that tile the image (S / map); the presets keep GluonCV's.
    lv.step_h = lv.step_w = c.anchor_preset == "custom" ? static_cast<double>(size) / static_cast<double>(fm[k])
                                                         : preset_.steps[k] * r;
    lv.sizes = {sizes[k], std::sqrt(sizes[k] * sizes[k + 1])};
    lv.ratios = preset_.ratio_counts[k] == 5 ? std::vector<double>{1.0, 2.0, 0.5, 3.0, 1.0 / 3.0}
                                             : std::vector<double>{1.0, 2.0, 0.5};
    lv.offset = 0.5;
    levels_.push_back(lv);
  }
  prior_options_.order = det::PriorOrder::MultiBox;
  prior_options_.clip = det::PriorClip::None;
  {
    NoGradGuard ng;
    anchors_cpu_ = det::multibox_prior(levels_, size, size, prior_options_);
  }
  input_size_ = size;
  fmap_sizes_ = fm;
  record_input_size(size);
}

std::vector<Tensor> GluonSSD::features(const Tensor& images) {
  std::vector<Tensor> feats = backbone_->forward_sources(images);
  for (size_t i = 0; i < expand_->size(); ++i) feats.push_back((*expand_)[i]->forward(feats.back()));
  return feats;
}

HeadOutputs GluonSSD::forward_heads(const Tensor& images) {
  ENGINE_CHECK(images.dim() == 4 && images.size(1) == 3, config().arch, ": images must be [B, 3, S, S], got ",
               shape_str(images.sizes()));
  ENGINE_CHECK(images.size(2) == input_size_ && images.size(3) == input_size_, config().arch, ": expected ",
               input_size_, "x", input_size_, " input, got ", shape_str(images.sizes()));
  std::vector<Tensor> feats = features(images);
  std::vector<Tensor> boxes, logits;
  for (size_t k = 0; k < feats.size(); ++k) {
    boxes.push_back((*box_heads_)[k]->forward(feats[k]));
    logits.push_back((*cls_heads_)[k]->forward(feats[k]));
  }
  return {flatten_concat_heads(boxes, 4), flatten_concat_heads(logits, config().num_classes), {}};
}

Tensor GluonSSD::anchors(Device device) const { return anchors_cpu_.to(device); }

LossParts GluonSSD::loss(const HeadOutputs& heads, const Targets& targets) {
  // GluonCV's matcher by default (bipartite one-to-one, then IoU >= 0.5); --matcher ssd for
  // torchvision's.
  SSDLossOptions o;
  o.matcher = resolve_matcher(config(), det::MatchRule::bipartite);
  return ssd_multibox_loss(cached_anchors(heads.box_regression.device()), heads, targets, o);
}

det::PostprocessOptions GluonSSD::postprocess_options() const {
  det::PostprocessOptions o = det::PostprocessOptions::ssd();  // softmax, 0.01, 0.45, (10,10,5,5)
  o.max_per_image = 100;                                       // GluonCV post_nms
  return o;
}

std::vector<std::pair<std::string, Shape>> GluonSSD::block_shapes() {
  NoGradGuard ng;
  const bool was_training = is_training();
  eval();  // BN in train mode cannot normalise the 1x1 map of a batch of one
  Tensor p = find("box_predictors.0.bias");
  Tensor x = zeros({1, 3, input_size_, input_size_}, TensorOptions(p.dtype()).device(p.device()));
  std::vector<std::pair<std::string, Shape>> out;
  auto feats = features(x);
  const size_t n_src = backbone_->source_channels().size();
  for (size_t i = 0; i < feats.size(); ++i) {
    const std::string name = i < n_src ? "backbone (" + preset_.backbone + ") source " + std::to_string(i)
                                       : "expand." + std::to_string(i - n_src);
    out.emplace_back(name + " (map " + std::to_string(i) + ")", feats[i].sizes());
  }
  const int64_t A = det::num_priors(levels_, prior_options_.order);
  out.emplace_back("box_predictors", Shape{1, A, 4});
  out.emplace_back("class_predictors", Shape{1, A, config().num_classes});
  train(was_training);
  return out;
}

// GluonCV: RGB / 255, then ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
std::vector<double> GluonSSD::pixel_mean() const { return {0.485 * 255, 0.456 * 255, 0.406 * 255}; }
std::vector<double> GluonSSD::pixel_std() const { return {0.229 * 255, 0.224 * 255, 0.225 * 255}; }

std::shared_ptr<DetectionModel> make_gluon_ssd(const ModelConfig& config) { return std::make_shared<GluonSSD>(config); }

}  // namespace models
