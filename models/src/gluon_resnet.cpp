// GluonCV ResNet v1 / v2 backbones for the SSD presets: see models/gluon_resnet.h for the
// layouts, the source naming rule and the truncation.
#include "models/gluon_resnet.h"

#include <map>

#include "engine/autograd.h"
#include "engine/error.h"

namespace models {
using namespace eng;

namespace {

// Gluon's `initialize()` defaults: weights U(-0.07, 0.07), biases 0.
std::shared_ptr<nn::Conv2d> conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, bool bias) {
  auto c = std::make_shared<nn::Conv2d>(in, out, k, stride, pad, 1, bias);
  nn::init::uniform_(c->weight, -0.07, 0.07);
  if (bias) nn::init::constant_(c->bias, 0.0);
  return c;
}

std::shared_ptr<nn::BatchNorm2d> bn(int64_t c) { return std::make_shared<nn::BatchNorm2d>(c, 1e-5, 0.1); }

std::string join_names() {
  std::string s;
  for (const auto& n : gluon_resnet_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// Halvings applied before the activation `a` of stage `stage` (the stem's conv and pool,
// then one per stage from 2 on; inside stage k >= 2, block 0's strided conv applies from
// the activation after it: v1 strides its first conv, so every counted activation (a block
// output) is after it; v2 strides conv2, so activations 0 and 1 of block 0 come before it).
int halvings(const GluonResNetSpec& s, const GluonResNetSource& src) {
  int h = 2 + (src.stage - 1);
  if (src.stage >= 2 && s.version == 2 && src.activation < 2) --h;
  return h;
}

// Channels of activation `a` of stage `k`.
int64_t activation_channels(const GluonResNetSpec& s, const GluonResNetSource& src) {
  const int64_t out = s.channels[src.stage], in = s.channels[src.stage - 1];
  if (s.version == 1) return out;
  const int j = src.activation % 3;
  if (j == 0) return src.activation / 3 == 0 ? in : out;  // input of the block, pre-activated
  return out / 4;
}

}  // namespace

std::string GluonResNetSource::name() const {
  return "stage" + std::to_string(stage) + "_activation" + std::to_string(activation);
}

const std::vector<std::string>& gluon_resnet_names() {
  static const std::vector<std::string> names = {"resnet18_v1", "resnet50_v1", "resnet101_v2", "resnet152_v2"};
  return names;
}

const GluonResNetSpec& gluon_resnet_spec(const std::string& name) {
  static const std::map<std::string, GluonResNetSpec> specs = [] {
    std::map<std::string, GluonResNetSpec> m;
    const std::vector<int64_t> basic_ch = {64, 64, 128, 256, 512}, bottle_ch = {64, 256, 512, 1024, 2048};
    m["resnet18_v1"] = {"resnet18_v1", 1, false, {2, 2, 2, 2}, basic_ch, {{3, 1}, {4, 1}}};
    m["resnet50_v1"] = {"resnet50_v1", 1, true, {3, 4, 6, 3}, bottle_ch, {{3, 5}, {4, 2}}};
    m["resnet101_v2"] = {"resnet101_v2", 2, true, {3, 4, 23, 3}, bottle_ch, {{3, 22}, {4, 2}}};
    m["resnet152_v2"] = {"resnet152_v2", 2, true, {3, 8, 36, 3}, bottle_ch, {{2, 7}, {3, 35}, {4, 2}}};
    return m;
  }();
  auto it = specs.find(name);
  ENGINE_CHECK(it != specs.end(), "gluon_resnet: unknown backbone '", name, "' (known: ", join_names(), ")");
  return it->second;
}

// ---- AffinelessBatchNorm2d ----
AffinelessBatchNorm2d::AffinelessBatchNorm2d(int64_t channels, double eps_, double momentum_)
    : Module("AffinelessBatchNorm2d"), eps(eps_), momentum(momentum_) {
  ENGINE_CHECK(channels > 0, "AffinelessBatchNorm2d: channels must be positive, got ", channels);
  running_mean = register_buffer("running_mean", zeros({channels}));
  running_var = register_buffer("running_var", ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::i64));
}

Tensor AffinelessBatchNorm2d::forward(const Tensor& x) {
  Tensor y = batch_norm2d(x, Tensor(), Tensor(), running_mean, running_var, is_training(), momentum, eps);
  if (is_training()) {
    NoGradGuard guard;
    num_batches_tracked.copy_(add_scalar(num_batches_tracked.to(DType::f64), 1.0));
  }
  return y;
}

// ---- blocks ----
Tensor GluonResNetBlock::forward(const Tensor& x) {
  std::vector<Tensor> acts;
  return run(x, acts);
}

GluonBasicBlockV1::GluonBasicBlockV1(int64_t in, int64_t ch, int64_t stride) : GluonResNetBlock("GluonBasicBlockV1") {
  conv1 = register_module("conv1", conv(in, ch, 3, stride, 1, false));
  bn1 = register_module("bn1", bn(ch));
  conv2 = register_module("conv2", conv(ch, ch, 3, 1, 1, false));
  bn2 = register_module("bn2", bn(ch));
  if (in != ch || stride != 1) {
    downsample = register_module("downsample", std::make_shared<nn::Sequential>());
    downsample->push_back(conv(in, ch, 1, stride, 0, false));
    downsample->push_back(bn(ch));
  }
}

Tensor GluonBasicBlockV1::run(const Tensor& x, std::vector<Tensor>& acts) {
  Tensor y = relu(bn1->forward(conv1->forward(x)));
  y = bn2->forward(conv2->forward(y));
  y = relu(y + (downsample ? downsample->forward(x) : x));
  acts.push_back(y);
  return y;
}

GluonBottleneckV1::GluonBottleneckV1(int64_t in, int64_t ch, int64_t stride) : GluonResNetBlock("GluonBottleneckV1") {
  const int64_t mid = ch / 4;
  conv1 = register_module("conv1", conv(in, mid, 1, stride, 0, true));  // nn.Conv2D default use_bias=True
  bn1 = register_module("bn1", bn(mid));
  conv2 = register_module("conv2", conv(mid, mid, 3, 1, 1, false));  // _conv3x3: use_bias=False
  bn2 = register_module("bn2", bn(mid));
  conv3 = register_module("conv3", conv(mid, ch, 1, 1, 0, true));
  bn3 = register_module("bn3", bn(ch));
  if (in != ch || stride != 1) {
    downsample = register_module("downsample", std::make_shared<nn::Sequential>());
    downsample->push_back(conv(in, ch, 1, stride, 0, false));
    downsample->push_back(bn(ch));
  }
}

Tensor GluonBottleneckV1::run(const Tensor& x, std::vector<Tensor>& acts) {
  Tensor y = relu(bn1->forward(conv1->forward(x)));
  y = relu(bn2->forward(conv2->forward(y)));
  y = bn3->forward(conv3->forward(y));
  y = relu(y + (downsample ? downsample->forward(x) : x));
  acts.push_back(y);
  return y;
}

GluonBottleneckV2::GluonBottleneckV2(int64_t in, int64_t ch, int64_t stride, int cut)
    : GluonResNetBlock("GluonBottleneckV2"), cut_after(cut) {
  ENGINE_CHECK(cut >= -1 && cut <= 2, "GluonBottleneckV2: cut_after must be -1, 0, 1 or 2, got ", cut);
  const int64_t mid = ch / 4;
  const bool whole = cut < 0;
  // Registration order = GluonCV's construction order (bn1, conv1, bn2, conv2, bn3, conv3,
  // downsample), which is also the state_dict order.
  bn1 = register_module("bn1", bn(in));
  if (whole || cut >= 1) {
    conv1 = register_module("conv1", conv(in, mid, 1, 1, 0, false));
    bn2 = register_module("bn2", bn(mid));
  }
  if (whole || cut >= 2) {
    conv2 = register_module("conv2", conv(mid, mid, 3, stride, 1, false));
    bn3 = register_module("bn3", bn(mid));
  }
  if (whole) {
    conv3 = register_module("conv3", conv(mid, ch, 1, 1, 0, false));
    if (in != ch || stride != 1) downsample = register_module("downsample", conv(in, ch, 1, stride, 0, false));
  }
}

Tensor GluonBottleneckV2::run(const Tensor& x, std::vector<Tensor>& acts) {
  Tensor p = relu(bn1->forward(x));  // activation 0, which also feeds the downsample
  acts.push_back(p);
  if (cut_after == 0) return p;
  Tensor y = relu(bn2->forward(conv1->forward(p)));
  acts.push_back(y);
  if (cut_after == 1) return y;
  y = relu(bn3->forward(conv2->forward(y)));
  acts.push_back(y);
  if (cut_after == 2) return y;
  return conv3->forward(y) + (downsample ? downsample->forward(p) : x);
}

// ---- the backbone ----
GluonResNet::GluonResNet(const std::string& name) : SSDSourceBackbone("GluonResNet"), spec_(gluon_resnet_spec(name)) {
  const auto& s = spec_;
  if (s.version == 2) bn_data = register_module("bn_data", std::make_shared<AffinelessBatchNorm2d>(3));
  conv1 = register_module("conv1", conv(3, s.channels[0], 7, 2, 3, false));
  bn1 = register_module("bn1", bn(s.channels[0]));
  const GluonResNetSource& last = s.sources.back();
  for (int k = 1; k <= last.stage; ++k) {
    // Blocks of stage k that exist: all, or up to the one holding the last source.
    const int per_block = s.version == 2 ? 3 : 1;
    int64_t nblocks = s.blocks[k - 1];
    int cut = -1;
    if (k == last.stage) {
      nblocks = last.activation / per_block + 1;
      // v1: a source is a block output (whole block). v2: a source is a pre-activation
      // inside the block (no activation follows the residual sum), so the block is cut.
      if (s.version == 2) cut = last.activation % 3;
    }
    ENGINE_CHECK(nblocks <= s.blocks[k - 1], "gluon_resnet ", s.name, ": source ", last.name(), " past the stage's ",
                 s.blocks[k - 1], " blocks");
    auto seq = register_module("layer" + std::to_string(k), std::make_shared<nn::Sequential>());
    std::vector<std::shared_ptr<GluonResNetBlock>> blocks;
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t in = b == 0 ? s.channels[k - 1] : s.channels[k], out = s.channels[k];
      const int64_t stride = (b == 0 && k > 1) ? 2 : 1;
      std::shared_ptr<GluonResNetBlock> blk;
      if (s.version == 2)
        blk = std::make_shared<GluonBottleneckV2>(in, out, stride, b == nblocks - 1 ? cut : -1);
      else if (s.bottleneck)
        blk = std::make_shared<GluonBottleneckV1>(in, out, stride);
      else
        blk = std::make_shared<GluonBasicBlockV1>(in, out, stride);
      seq->push_back(blk);
      blocks.push_back(blk);
    }
    stages.push_back(blocks);
  }
}

std::vector<Tensor> GluonResNet::forward_sources(const Tensor& x) {
  ENGINE_CHECK(x.dim() == 4 && x.size(1) == 3 && x.size(0) >= 1 && x.size(2) >= 1 && x.size(3) >= 1,
               "gluon_resnet ", spec_.name, ": expected an input [N, 3, H, W], got ", shape_str(x.sizes()));
  Tensor y = bn_data ? bn_data->forward(x) : x;
  y = relu(bn1->forward(conv1->forward(y)));
  Pool2dParams pool;
  pool.kernel_h = pool.kernel_w = 3;
  pool.stride_h = pool.stride_w = 2;
  pool.pad_h = pool.pad_w = 1;
  y = max_pool2d(y, pool);
  std::vector<Tensor> out(spec_.sources.size());
  for (size_t k = 0; k < stages.size(); ++k) {
    const int stage = static_cast<int>(k) + 1;
    int counter = 0;  // GluonCV's stage{k}_activation counter
    for (const auto& blk : stages[k]) {
      std::vector<Tensor> acts;
      y = blk->run(y, acts);
      for (const Tensor& a : acts) {
        for (size_t i = 0; i < spec_.sources.size(); ++i)
          if (spec_.sources[i].stage == stage && spec_.sources[i].activation == counter) out[i] = a;
        ++counter;
      }
    }
  }
  return out;
}

Tensor GluonResNet::forward(const Tensor& x) { return forward_sources(x).back(); }

std::vector<int64_t> GluonResNet::source_channels() const {
  std::vector<int64_t> c;
  for (const auto& src : spec_.sources) c.push_back(activation_channels(spec_, src));
  return c;
}

std::vector<int64_t> GluonResNet::source_sizes(int64_t input_size) const {
  ENGINE_CHECK(input_size >= 1, "gluon_resnet ", spec_.name, ": input size must be >= 1, got ", input_size);
  std::vector<int64_t> sizes;
  // Every spatial step (conv 7x7 s2 p3, maxpool 3x3 s2 p1, conv 3x3 s2 p1, conv 1x1 s2 p0)
  // maps S to ceil(S / 2).
  for (const auto& src : spec_.sources) {
    int64_t s = input_size;
    for (int h = halvings(spec_, src); h > 0; --h) s = (s + 1) / 2;
    sizes.push_back(s);
  }
  return sizes;
}

std::vector<std::string> GluonResNet::source_names() const {
  std::vector<std::string> n;
  for (const auto& src : spec_.sources) n.push_back(src.name());
  return n;
}

std::shared_ptr<SSDSourceBackbone> make_gluon_resnet(const std::string& name) {
  return std::make_shared<GluonResNet>(name);
}

// ---- torchvision weights into v1 ----
std::vector<std::string> load_torchvision_resnet(GluonResNet& net, const nn::NamedTensors& tensors) {
  const auto& s = net.spec();
  ENGINE_CHECK(s.version == 1, "load_torchvision_resnet: ", s.name,
               " is a pre-activation (v2) network; torchvision has no ResNet with its layout");
  nn::NamedTensors kept;
  for (const auto& kv : tensors)
    if (kv.first.rfind("fc.", 0) != 0) kept.push_back(kv);
  // Non-strict load: shape mismatches throw there, naming the key and both shapes.
  nn::LoadReport r = net.load_state_dict(kept, false);
  ENGINE_CHECK(r.unexpected.empty(), "load_torchvision_resnet: ", s.name, " has no key '", r.unexpected.front(),
               "' (a torchvision resnet", s.bottleneck ? "50" : "18", " state dict is expected)");
  for (const auto& m : r.missing) {
    // Only the BottleneckV1 1x1 conv biases (which torchvision's convs lack) may be absent.
    const bool gluon_only_bias = s.bottleneck && m.rfind("layer", 0) == 0 &&
                                 (m.size() > 11 && (m.compare(m.size() - 11, 11, ".conv1.bias") == 0 ||
                                                    m.compare(m.size() - 11, 11, ".conv3.bias") == 0));
    ENGINE_CHECK(gluon_only_bias, "load_torchvision_resnet: ", s.name, ": key '", m,
                 "' is missing from the given tensors");
  }
  return r.loaded;
}

}  // namespace models
