// SSD300 / SSD512 VGG16-atrous (see models/ssd.h and DESIGN.md section 4).
#include <algorithm>
#include <array>
#include <cmath>
#include <memory>

#include "engine/autograd.h"
#include "engine/detection.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "models/anchor_scales.h"
#include "models/factories.h"
#include "models/ssd.h"
#include "models/ssd_loss.h"

namespace models {
using namespace eng;

namespace {

std::shared_ptr<nn::Conv2d> conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = 0,
                                 int64_t dil = 1) {
  return std::make_shared<nn::Conv2d>(in, out, k, stride, pad, dil);
}
std::shared_ptr<nn::ReLU> relu_layer() { return std::make_shared<nn::ReLU>(); }

// torchvision's _xavier_init: xavier_uniform_ weights, zero bias.
void xavier(nn::Conv2d& c) {
  const auto& s = c.weight.sizes();
  const double rf = static_cast<double>(s[2] * s[3]);
  const double bound = std::sqrt(6.0 / (s[1] * rf + s[0] * rf));
  nn::init::uniform_(c.weight, -bound, bound);
  nn::init::constant_(c.bias, 0.0);
}
void xavier_all(nn::Module& m) {
  for (auto& [name, mod] : m.named_modules())
    if (auto* c = dynamic_cast<nn::Conv2d*>(mod)) xavier(*c);
}

// An extra block: 1x1 (in -> mid) ReLU, k x k (mid -> out, stride, pad) ReLU.
std::shared_ptr<nn::Sequential> extra_block(int64_t in, int64_t mid, int64_t out, int64_t k, int64_t stride,
                                            int64_t pad) {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      conv(in, mid, 1), relu_layer(), conv(mid, out, k, stride, pad), relu_layer()});
}

}  // namespace

SSDVGGBackbone::SSDVGGBackbone(bool ssd512) : Module("SSDFeatureExtractorVGG") {
  scale_weight = register_parameter("scale_weight", full({512}, 20.0));
  // VGG16 conv1_1 .. conv4_3 (+ReLU): indices 0..22, pools at 4, 9, 16 (ceil mode).
  features = register_module("features", std::make_shared<nn::Sequential>());
  int64_t in = 3;
  const std::vector<std::vector<int64_t>> stages = {{64, 64}, {128, 128}, {256, 256, 256}, {512, 512, 512}};
  for (size_t s = 0; s < stages.size(); ++s) {
    for (int64_t ch : stages[s]) {
      auto c = features->push_back(conv(in, ch, 3, 1, 1));
      // VGG's own init: kaiming_normal_(fan_out, relu), zero bias.
      nn::init::normal_(c->weight, 0.0, std::sqrt(2.0 / (ch * 9.0)));
      nn::init::constant_(c->bias, 0.0);
      features->push_back(relu_layer());
      in = ch;
    }
    if (s < 3) features->push_back(std::make_shared<nn::MaxPool2d>(2, 2, 0, /*ceil_mode=*/s == 2));
  }
  extra = register_module("extra", std::make_shared<nn::ModuleList>());
  // extra.0: pool4, conv5_1..5_3 (+ReLU), then fc = pool5 3x3 s1 p1, fc6 dil 6, fc7 1x1.
  auto e0 = extra->push_back(std::make_shared<nn::Sequential>());
  e0->push_back(std::make_shared<nn::MaxPool2d>(2, 2, 0, false));
  for (int i = 0; i < 3; ++i) {
    auto c = e0->push_back(conv(512, 512, 3, 1, 1));
    nn::init::normal_(c->weight, 0.0, std::sqrt(2.0 / (512 * 9.0)));
    nn::init::constant_(c->bias, 0.0);
    e0->push_back(relu_layer());
  }
  auto fc = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::MaxPool2d>(3, 1, 1, false), conv(512, 1024, 3, 1, 6, 6), relu_layer(),
      conv(1024, 1024, 1), relu_layer()});
  xavier_all(*fc);
  e0->push_back(fc);
  std::vector<std::shared_ptr<nn::Sequential>> blocks;
  if (!ssd512) {
    blocks = {extra_block(1024, 256, 512, 3, 2, 1), extra_block(512, 128, 256, 3, 2, 1),
              extra_block(256, 128, 256, 3, 1, 0), extra_block(256, 128, 256, 3, 1, 0)};
  } else {
    blocks = {extra_block(1024, 256, 512, 3, 2, 1), extra_block(512, 128, 256, 3, 2, 1),
              extra_block(256, 128, 256, 3, 2, 1), extra_block(256, 128, 256, 3, 2, 1),
              extra_block(256, 128, 256, 4, 1, 1)};
  }
  for (auto& b : blocks) {
    xavier_all(*b);
    extra->push_back(b);
  }
}

std::vector<Tensor> SSDVGGBackbone::forward_features(const Tensor& x) {
  Tensor h = features->forward(x);
  std::vector<Tensor> out{l2norm(h, scale_weight, 1e-12)};
  for (size_t i = 0; i < extra->size(); ++i) {
    h = (*extra)[i]->forward(h);
    out.push_back(h);
  }
  return out;
}

void SSDVGG16::set_input_size(int64_t size) {
  const ModelConfig& c = config();
  ENGINE_CHECK(size >= (ssd512_ ? 256 : 128), "SSD: input_size too small: ", size);

  // Feature-map sizes from the layer arithmetic.
  // Computed into `fm` and validated before anything changes, so a bad size leaves the
  // model as it was.
  std::vector<int64_t> fm;
  int64_t s = size;
  s = pool_output_size(s, 2, 2, 0, false);
  s = pool_output_size(s, 2, 2, 0, false);
  s = pool_output_size(s, 2, 2, 0, true);  // pool3 ceil mode: 75 -> 38
  fm.push_back(s);                // conv4_3
  s = pool_output_size(s, 2, 2, 0, false);
  fm.push_back(s);  // fc7 (pool5 3x3 s1 p1 and the dilated fc6 keep the size)
  auto conv_out = [](int64_t n, int64_t k, int64_t st, int64_t p) { return (n + 2 * p - k) / st + 1; };
  if (!ssd512_) {
    for (auto [k, st, p] : std::vector<std::array<int64_t, 3>>{{3, 2, 1}, {3, 2, 1}, {3, 1, 0}, {3, 1, 0}})
      fm.push_back(s = conv_out(s, k, st, p));
  } else {
    for (auto [k, st, p] :
         std::vector<std::array<int64_t, 3>>{{3, 2, 1}, {3, 2, 1}, {3, 2, 1}, {3, 2, 1}, {4, 1, 1}})
      fm.push_back(s = conv_out(s, k, st, p));
  }
  for (int64_t f : fm) ENGINE_CHECK(f >= 1, "SSD: input_size ", size, " leaves an empty feature map");

  input_size_ = size;
  fmap_sizes_ = fm;

  // Anchors (torchvision DefaultBoxGenerator semantics, clip = wh clamped to [0, 1]).
  const size_t L = fmap_sizes_.size();
  levels_.clear();
  boxes_per_loc_.clear();
  std::vector<std::vector<double>> ratios;
  std::vector<double> steps, min_sizes, max_sizes;  // pixels
  if (!ssd512_) {
    ratios = {{2}, {2, 3}, {2, 3}, {2, 3}, {2}, {2}};
    steps = {8, 16, 32, 64, 100, 300};
    if (c.anchor_preset == "coco") {
      const std::vector<double> scales = {0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05};
      for (size_t k = 0; k < L; ++k) {
        min_sizes.push_back(scales[k] * input_size_);
        max_sizes.push_back(scales[k + 1] * input_size_);
      }
    } else {
      min_sizes = {30, 60, 111, 162, 213, 264};
      max_sizes = {60, 111, 162, 213, 264, 315};
      for (auto* v : {&min_sizes, &max_sizes})
        for (double& x : *v) x *= input_size_ / 300.0;
    }
    for (double& st : steps) st *= input_size_ / 300.0;
  } else {
    // DESIGN gives the SSD512 (VOC) sizes; the coco preset uses them too.
    ratios = {{2}, {2, 3}, {2, 3}, {2, 3}, {2, 3}, {2}, {2}};
    steps = {8, 16, 32, 64, 128, 256, 512};
    min_sizes = {35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8};
    max_sizes = {76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6};
    for (auto* v : {&min_sizes, &max_sizes, &steps})
      for (double& x : *v) x *= input_size_ / 512.0;
  }
  if (c.anchor_preset == "custom") {  // models/anchor_scales.h: L + 1 scales of the input side
    min_sizes.clear();
    max_sizes.clear();
    for (size_t k = 0; k < L; ++k) {
      min_sizes.push_back(c.anchor_scales[k] * input_size_);
      max_sizes.push_back(c.anchor_scales[k + 1] * input_size_);
    }
  }
  for (size_t k = 0; k < L; ++k) {
    det::PriorLevel lv;
    lv.fmap_h = lv.fmap_w = fmap_sizes_[k];
    lv.step_h = lv.step_w = steps[k];
    lv.sizes = {min_sizes[k], std::sqrt(min_sizes[k] * max_sizes[k])};
    lv.ratios = {1.0};
    for (double r : ratios[k]) {
      lv.ratios.push_back(r);
      lv.ratios.push_back(1.0 / r);
    }
    lv.offset = 0.5;
    levels_.push_back(lv);
    boxes_per_loc_.push_back(static_cast<int64_t>(lv.sizes.size() + lv.ratios.size() - 1));
  }
  prior_options_.order = det::PriorOrder::MultiBox;
  // torchvision's DefaultBoxGenerator clip: w and h clamped to [0, 1] (normalised), centres kept.
  prior_options_.clip = det::PriorClip::CenterSize;
  {
    NoGradGuard ng;
    anchors_cpu_ = det::multibox_prior(levels_, input_size_, input_size_, prior_options_);
  }

  record_input_size(size);
}

SSDVGG16::SSDVGG16(const ModelConfig& config) : DetectionModel("SSD", config) {
  const ModelConfig& c = this->config();
  ENGINE_CHECK(c.arch == "ssd300_vgg16" || c.arch == "ssd512_vgg16",
               "make_ssd_vgg16: unknown arch '", c.arch, "' (ssd300_vgg16 or ssd512_vgg16)");
  ENGINE_CHECK(c.num_classes >= 2, "SSD: num_classes (background included) must be >= 2, got ", c.num_classes);
  check_anchor_config(c);
  ssd512_ = c.arch == "ssd512_vgg16";
  set_input_size(c.input_size > 0 ? c.input_size : (ssd512_ ? 512 : 300));

  backbone_ = register_module("backbone", std::make_shared<SSDVGGBackbone>(ssd512_));

  // Heads.
  std::vector<int64_t> in_ch = {512, 1024, 512, 256, 256, 256};
  if (ssd512_) in_ch.push_back(256);
  const size_t L = fmap_sizes_.size();
  auto head = register_module("head", std::make_shared<nn::Module>("SSDHead"));
  auto ch = head->register_module("classification_head", std::make_shared<nn::Module>("SSDClassificationHead"));
  auto rh = head->register_module("regression_head", std::make_shared<nn::Module>("SSDRegressionHead"));
  cls_heads_ = ch->register_module("module_list", std::make_shared<nn::ModuleList>());
  box_heads_ = rh->register_module("module_list", std::make_shared<nn::ModuleList>());
  for (size_t k = 0; k < L; ++k) xavier(*cls_heads_->push_back(conv(in_ch[k], c.num_classes * boxes_per_loc_[k], 3, 1, 1)));
  for (size_t k = 0; k < L; ++k) xavier(*box_heads_->push_back(conv(in_ch[k], 4 * boxes_per_loc_[k], 3, 1, 1)));
}

HeadOutputs SSDVGG16::forward_heads(const Tensor& images) {
  ENGINE_CHECK(images.dim() == 4 && images.size(1) == 3, "SSD: images must be [B, 3, S, S], got ",
               shape_str(images.sizes()));
  ENGINE_CHECK(images.size(2) == input_size_ && images.size(3) == input_size_, "SSD: expected ", input_size_, "x",
               input_size_, " input, got ", shape_str(images.sizes()));
  std::vector<Tensor> feats = backbone_->forward_features(images);
  const int64_t C = config().num_classes;
  // Each level [B, A*K, H, W] lands in [B, sum H*W*A, K] in torchvision's order
  // ([B, A, K, H, W] -> [B, H, W, A, K]), all levels in one kernel (eng::flatten_concat_heads).
  std::vector<Tensor> boxes, logits;
  for (size_t k = 0; k < feats.size(); ++k) {
    boxes.push_back((*box_heads_)[k]->forward(feats[k]));
    logits.push_back((*cls_heads_)[k]->forward(feats[k]));
  }
  return {flatten_concat_heads(boxes, 4), flatten_concat_heads(logits, C), {}};
}

Tensor SSDVGG16::anchors(Device device) const {
  return anchors_cpu_.to(device);
}

// torchvision SSD's loss (models/ssd_loss.h), shared with ssdlite320_mobilenet_v3_large.
LossParts SSDVGG16::loss(const HeadOutputs& heads, const Targets& targets) {
  SSDLossOptions options;
  options.matcher = resolve_matcher(config(), det::MatchRule::ssd);  // torchvision's SSDMatcher by default
  return ssd_multibox_loss(cached_anchors(heads.box_regression.device()), heads, targets, options);
}

det::PostprocessOptions SSDVGG16::postprocess_options() const {
  det::PostprocessOptions o = det::PostprocessOptions::ssd();
  o.clip_width = o.clip_height = static_cast<double>(input_size_);  // torchvision clips before NMS
  return o;
}

std::vector<std::pair<std::string, Shape>> SSDVGG16::block_shapes() {
  NoGradGuard ng;
  const Device dev = backbone_->scale_weight.device();
  Tensor x = zeros({1, 3, input_size_, input_size_}, TensorOptions(backbone_->scale_weight.dtype()).device(dev));
  std::vector<std::pair<std::string, Shape>> out;
  Tensor h = backbone_->features->forward(x);
  out.emplace_back("backbone.features (conv4_3)", h.sizes());
  out.emplace_back("backbone.l2norm (map 0)", h.sizes());
  for (size_t i = 0; i < backbone_->extra->size(); ++i) {
    h = (*backbone_->extra)[i]->forward(h);
    out.emplace_back("backbone.extra." + std::to_string(i) + " (map " + std::to_string(i + 1) + ")", h.sizes());
  }
  const int64_t A = det::num_priors(levels_, prior_options_.order);
  out.emplace_back("head.regression_head", Shape{1, A, 4});
  out.emplace_back("head.classification_head", Shape{1, A, config().num_classes});
  return out;
}

std::vector<double> SSDVGG16::pixel_mean() const { return {0.48235 * 255.0, 0.45882 * 255.0, 0.40784 * 255.0}; }
std::vector<double> SSDVGG16::pixel_std() const { return {1.0, 1.0, 1.0}; }

std::shared_ptr<DetectionModel> make_ssd_vgg16(const ModelConfig& config) {
  return std::make_shared<SSDVGG16>(config);
}

}  // namespace models
