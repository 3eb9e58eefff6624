// GluonCV ResNet backbones (models/gluon_resnet.h): sources (names, channels, sizes),
// parameter counts worked out here from the block layouts, names, torchvision weights into
// v1, bad input, and forward parity with a PyTorch twin on a fixture made by
//   python tools/make_gluon_resnet_fixture.py --out tests/fixtures/gluon_resnet_parity.safetensors
// The reference is computed in float64 (stored as float32) from parity_init weights.
// Tolerances: eval source maps 1e-4 relative + 1e-4 * max|ref|; the shallow train-mode
// output 3e-4 relative + 3e-4 * max|ref|; running stats 1e-5 + 1e-4 relative.
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "models/gluon_resnet.h"
#include "models/parity_init.h"
#include "test_helpers.h"

using namespace eng;

namespace {

const std::string kFixture = std::string(ENGINE_TEST_DATA_DIR) + "/fixtures/gluon_resnet_parity.safetensors";

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::fabs(v));
  return m;
}

std::shared_ptr<models::GluonResNet> make(const std::string& name) {
  auto b = std::dynamic_pointer_cast<models::GluonResNet>(models::make_gluon_resnet(name));
  REQUIRE(b);
  return b;
}

// ---- parameter counts from the layer list (independent of the module) ----
int64_t conv_p(int64_t in, int64_t out, int64_t k, bool bias) { return in * out * k * k + (bias ? out : 0); }
int64_t bn_p(int64_t c) { return 2 * c; }  // gamma, beta

int64_t basic_v1(int64_t in, int64_t c, bool ds) {
  return conv_p(in, c, 3, false) + bn_p(c) + conv_p(c, c, 3, false) + bn_p(c) + (ds ? conv_p(in, c, 1, false) + bn_p(c) : 0);
}
int64_t bottleneck_v1(int64_t in, int64_t c, bool ds) {
  const int64_t m = c / 4;  // GluonCV: the two 1x1 convs have a bias, the 3x3 has none
  return conv_p(in, m, 1, true) + bn_p(m) + conv_p(m, m, 3, false) + bn_p(m) + conv_p(m, c, 1, true) + bn_p(c) +
         (ds ? conv_p(in, c, 1, false) + bn_p(c) : 0);
}
int64_t bottleneck_v2(int64_t in, int64_t c, bool ds) {
  const int64_t m = c / 4;  // no conv bias anywhere; downsample is a bare 1x1 conv
  return bn_p(in) + conv_p(in, m, 1, false) + bn_p(m) + conv_p(m, m, 3, false) + bn_p(m) + conv_p(m, c, 1, false) +
         (ds ? conv_p(in, c, 1, false) : 0);
}
// Stages of blocks; block 0 of each stage downsamples when the width changes or it strides.
int64_t stages_p(int version, bool bottleneck, const std::vector<int64_t>& blocks, const std::vector<int64_t>& ch) {
  int64_t n = 0;
  for (size_t k = 0; k < blocks.size(); ++k)
    for (int64_t b = 0; b < blocks[k]; ++b) {
      const int64_t in = b == 0 ? ch[k] : ch[k + 1];
      const bool ds = b == 0 && (in != ch[k + 1] || k > 0);
      n += version == 2 ? bottleneck_v2(in, ch[k + 1], ds)
                        : (bottleneck ? bottleneck_v1(in, ch[k + 1], ds) : basic_v1(in, ch[k + 1], ds));
    }
  return n;
}
const int64_t kStem = conv_p(3, 64, 7, false) + bn_p(64);  // bn_data of v2 has no parameters
const std::vector<int64_t> kBottleCh = {64, 256, 512, 1024, 2048};
// v2 truncation at stage4_activation2: stage 4 block 0 up to bn3 + ReLU (1024 -> 512 wide).
const int64_t kStage4Block0Cut = bn_p(1024) + conv_p(1024, 512, 1, false) + bn_p(512) + conv_p(512, 512, 3, false) + bn_p(512);

int64_t expected_params(const std::string& name) {
  if (name == "resnet18_v1") return kStem + stages_p(1, false, {2, 2, 2, 2}, {64, 64, 128, 256, 512});
  if (name == "resnet50_v1") return kStem + stages_p(1, true, {3, 4, 6, 3}, kBottleCh);
  if (name == "resnet101_v2") return kStem + stages_p(2, true, {3, 4, 23}, kBottleCh) + kStage4Block0Cut;
  if (name == "resnet152_v2") return kStem + stages_p(2, true, {3, 8, 36}, kBottleCh) + kStage4Block0Cut;
  return -1;
}

}  // namespace

TEST_CASE("gluon_resnet: source names, channels and sizes (512 and odd inputs)") {
  struct Row {
    std::string name;
    std::vector<std::string> sources;
    std::vector<int64_t> channels, sizes512;
  };
  // seed-specs A2 / A3: strides 16, 32 (and 8 for resnet152_v2's first source).
  const std::vector<Row> rows = {
      {"resnet18_v1", {"stage3_activation1", "stage4_activation1"}, {256, 512}, {32, 16}},
      {"resnet50_v1", {"stage3_activation5", "stage4_activation2"}, {1024, 2048}, {32, 16}},
      {"resnet101_v2", {"stage3_activation22", "stage4_activation2"}, {256, 512}, {32, 16}},
      {"resnet152_v2", {"stage2_activation7", "stage3_activation35", "stage4_activation2"}, {128, 256, 512}, {64, 32, 16}},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto b = make(r.name);
    REQUIRE(b->source_names() == r.sources);
    REQUIRE(b->source_channels() == r.channels);
    REQUIRE(b->source_sizes(512) == r.sizes512);
    // Ceil halvings: 300 -> 150 -> 75 -> 38 -> 19 -> 10.
    std::vector<int64_t> s300 = b->source_sizes(300);
    REQUIRE(s300.back() == 10);
    REQUIRE(s300[s300.size() - 2] == 19);
  }
}

TEST_CASE("gluon_resnet: actual source shapes match source_sizes / source_channels at odd sizes") {
  NoGradGuard g;
  for (const std::string name : {"resnet18_v1", "resnet101_v2"}) {
    for (int64_t S : {37, 50}) {
      INFO(name << " at " << S);
      auto b = make(name);
      b->eval();
      auto outs = b->forward_sources(randn({1, 3, S, S}));
      auto ch = b->source_channels();
      auto sz = b->source_sizes(S);
      REQUIRE(outs.size() == ch.size());
      for (size_t i = 0; i < outs.size(); ++i) REQUIRE(outs[i].sizes() == Shape{1, ch[i], sz[i], sz[i]});
    }
  }
}

TEST_CASE("gluon_resnet: parameter counts equal the layer-list arithmetic") {
  // The measured totals (also in docs): torchvision resnet18 without fc is 11,176,512; resnet50
  // without fc is 23,508,032 and GluonCV's 16 bottlenecks add 18,880 conv biases.
  const std::vector<std::pair<std::string, int64_t>> totals = {
      {"resnet18_v1", 11176512}, {"resnet50_v1", 23526912}, {"resnet101_v2", 30417600}, {"resnet152_v2", 46061248}};
  for (const auto& [name, total] : totals) {
    INFO(name);
    auto b = make(name);
    REQUIRE(expected_params(name) == total);
    REQUIRE(b->num_parameters() == total);
  }
}

TEST_CASE("gluon_resnet: layout details (biases, strides, truncation, trainable BN)") {
  auto r50 = make("resnet50_v1");
  // BottleneckV1: stride in the first 1x1, which has a bias; the 3x3 has none.
  auto* blk = dynamic_cast<models::GluonBottleneckV1*>(r50->stages[1][0].get());
  REQUIRE(blk);
  REQUIRE(blk->conv1->params.stride_h == 2);
  REQUIRE(blk->conv2->params.stride_h == 1);
  REQUIRE(blk->conv1->bias.defined());
  REQUIRE(!blk->conv2->bias.defined());
  REQUIRE(blk->conv3->bias.defined());
  REQUIRE(r50->find("layer2.0.downsample.0.weight").sizes() == Shape{512, 256, 1, 1});
  REQUIRE(r50->find("layer1.0.downsample.1.weight").sizes() == Shape{256});  // 64 -> 256, stride 1
  REQUIRE(r50->find("layer2.0.conv1.bias").requires_grad());
  REQUIRE(r50->find("bn1.weight").requires_grad());  // trainable BatchNorm2d, not frozen

  auto r101 = make("resnet101_v2");
  REQUIRE(r101->stages.size() == 4);
  REQUIRE(r101->stages[2].size() == 23);  // stage 3 whole: stage 4 starts from its output
  REQUIRE(r101->stages[3].size() == 1);
  auto* cut = dynamic_cast<models::GluonBottleneckV2*>(r101->stages[3][0].get());
  REQUIRE(cut);
  REQUIRE(cut->cut_after == 2);
  REQUIRE((cut->bn3 && !cut->conv3 && !cut->downsample));
  REQUIRE(cut->conv2->params.stride_h == 2);  // v2 strides the 3x3
  auto* full = dynamic_cast<models::GluonBottleneckV2*>(r101->stages[2][0].get());
  REQUIRE((full->downsample && full->downsample->params.stride_h == 2 && !full->downsample->bias.defined()));
  // bn_data: running statistics only (no gamma/beta).
  REQUIRE(r101->find("bn_data.running_var").sizes() == Shape{3});
  for (const auto& kv : r101->named_parameters()) REQUIRE(kv.first.rfind("bn_data.", 0) != 0);
  for (const auto& kv : r101->named_parameters()) REQUIRE(kv.first.rfind("layer4.1", 0) != 0);

  auto r152 = make("resnet152_v2");
  REQUIRE(r152->stages[1].size() == 8);
  REQUIRE(r152->stages[2].size() == 36);
  REQUIRE(r152->stages[3].size() == 1);
}

TEST_CASE("gluon_resnet: every parameter of the truncated graph gets a gradient (train mode)") {
  manual_seed(3);
  for (const std::string name : {"resnet18_v1", "resnet101_v2"}) {
    INFO(name);
    auto b = make(name);
    b->train();
    auto outs = b->forward_sources(randn({2, 3, 40, 40}));
    Tensor loss = mean(square(outs[0]));
    for (size_t i = 1; i < outs.size(); ++i) loss = loss + mean(square(outs[i]));
    loss.backward();
    for (const auto& [n, p] : b->named_parameters()) {
      INFO(n);
      REQUIRE(p.grad().defined());
      REQUIRE(max_abs(p.grad()) > 0);
    }
    REQUIRE(b->find("bn1.num_batches_tracked").to_vector<int64_t>()[0] == 1);
    if (name == "resnet101_v2") REQUIRE(b->find("bn_data.num_batches_tracked").to_vector<int64_t>()[0] == 1);
  }
}

TEST_CASE("gluon_resnet: state_dict keys equal the PyTorch twin's (fixture key list)") {
  INFO("fixture " << kFixture << " (regenerate with tools/make_gluon_resnet_fixture.py)");
  REQUIRE(std::ifstream(kFixture).good());
  auto f = io::load_safetensors(kFixture);
  for (const auto& name : models::gluon_resnet_names()) {
    INFO(name);
    auto keys = nlohmann::json::parse(f.metadata.at(name + ".state_dict_keys")).get<std::vector<std::string>>();
    auto b = make(name);
    auto sd = b->state_dict();
    REQUIRE(sd.size() == keys.size());
    for (size_t i = 0; i < keys.size(); ++i) REQUIRE(sd[i].first == keys[i]);
    REQUIRE(std::stoll(f.metadata.at(name + ".num_params")) == b->num_parameters());
    auto names = nlohmann::json::parse(f.metadata.at(name + ".source_names")).get<std::vector<std::string>>();
    REQUIRE(names == b->source_names());
  }
}

TEST_CASE("gluon_resnet: eval-mode forward parity with the PyTorch twin (all four)") {
  INFO("fixture " << kFixture << " (regenerate with tools/make_gluon_resnet_fixture.py)");
  REQUIRE(std::ifstream(kFixture).good());  // fails, never skips, when the fixture is missing
  auto f = io::load_safetensors(kFixture);
  NoGradGuard g;
  for (const auto& name : models::gluon_resnet_names()) {
    INFO(name);
    auto b = make(name);
    models::parity_init(*b);
    b->eval();
    auto outs = b->forward_sources(f.get("input"));
    for (size_t i = 0; i < outs.size(); ++i) {
      INFO("source " << i);
      Tensor ref = f.get(name + ".source" + std::to_string(i));
      REQUIRE(outs[i].sizes() == ref.sizes());
      REQUIRE_CLOSE(outs[i], ref, 1e-4 * max_abs(ref), 1e-4);
    }
  }
}

TEST_CASE("gluon_resnet: train-mode parity of stem + layer1 + layer2.0 and running statistics (batch 2)") {
  // Only the shallow part: deeper, train-mode BN on these small maps is ill-conditioned
  // (float32 torch differs from float64 torch by ~10% at the sources; see the script).
  REQUIRE(std::ifstream(kFixture).good());
  auto f = io::load_safetensors(kFixture);
  NoGradGuard g;
  const std::vector<std::pair<std::string, std::vector<std::string>>> nets = {
      {"resnet50_v1", {"bn1.running_mean", "layer1.0.bn3.running_var", "layer2.0.bn1.running_var",
                       "layer2.0.downsample.1.running_mean"}},
      {"resnet101_v2", {"bn_data.running_mean", "bn_data.running_var", "bn1.running_var", "layer2.0.bn3.running_mean"}}};
  for (const auto& [name, bufs] : nets) {
    INFO(name);
    auto b = make(name);
    models::parity_init(*b);
    b->train();
    Tensor y = f.get(name + ".train.input");
    if (b->bn_data) y = b->bn_data->forward(y);
    Pool2dParams pool;
    pool.kernel_h = pool.kernel_w = 3;
    pool.stride_h = pool.stride_w = 2;
    pool.pad_h = pool.pad_w = 1;
    y = max_pool2d(relu(b->bn1->forward(b->conv1->forward(y))), pool);
    for (const auto& blk : b->stages[0]) y = blk->forward(y);
    y = b->stages[1][0]->forward(y);
    Tensor ref = f.get(name + ".train.layer2_0");
    REQUIRE(y.sizes() == ref.sizes());
    REQUIRE_CLOSE(y, ref, 3e-4 * max_abs(ref), 3e-4);
    for (const auto& buf : bufs) {
      INFO(buf);
      REQUIRE_CLOSE(b->find(buf), f.get(name + ".train." + buf), 1e-5, 1e-4);
    }
  }
}

TEST_CASE("gluon_resnet: torchvision resnet18 / resnet50 state dicts load into the v1 backbones by name") {
  REQUIRE(std::ifstream(kFixture).good());
  auto f = io::load_safetensors(kFixture);
  for (const auto& [name, tv] : std::vector<std::pair<std::string, std::string>>{{"resnet18_v1", "tv.resnet18"},
                                                                                 {"resnet50_v1", "tv.resnet50"}}) {
    INFO(name);
    // torchvision's keys and shapes (from the fixture), filled with distinct values.
    auto list = nlohmann::json::parse(f.metadata.at(tv));
    nn::NamedTensors given;
    for (size_t k = 0; k < list.size(); ++k) {
      const std::string key = list[k][0].get<std::string>();
      Shape shape = list[k][1].get<std::vector<int64_t>>();
      Tensor t = key.size() > 19 && key.compare(key.size() - 19, 19, "num_batches_tracked") == 0
                     ? full(shape, 7.0, DType::i64)
                     : add_scalar(mul_scalar(randn(shape), 0.01), double(k));
      given.emplace_back(key, t);
    }
    auto b = make(name);
    auto loaded = models::load_torchvision_resnet(*b, given);
    // Everything but fc.weight / fc.bias loads, with the same shapes.
    REQUIRE(loaded.size() == given.size() - 2);
    for (const auto& [key, t] : given) {
      if (key.rfind("fc.", 0) == 0) continue;
      INFO(key);
      REQUIRE(b->find(key).sizes() == t.sizes());
      REQUIRE_CLOSE(b->find(key).to(DType::f64), t.to(DType::f64), 0, 0);
    }
    // The GluonCV-only biases stay at their initial 0.
    size_t biases = 0;
    for (const auto& [key, p] : b->named_parameters())
      if (key.find(".conv1.bias") != std::string::npos || key.find(".conv3.bias") != std::string::npos) {
        REQUIRE(max_abs(p) == 0);
        ++biases;
      }
    REQUIRE(biases == (name == "resnet50_v1" ? 32u : 0u));

    // A wrong shape names the key; an unknown key and a missing key are one-line errors.
    nn::NamedTensors bad = given;
    for (auto& kv : bad)
      if (kv.first == "layer2.0.conv1.weight") kv.second = zeros({1, 1, 1, 1});
    REQUIRE_THROWS_WITH(models::load_torchvision_resnet(*b, bad), Catch::Contains("layer2.0.conv1.weight"));
    bad = given;
    bad.emplace_back("layer5.0.conv1.weight", zeros({1}));
    REQUIRE_THROWS_WITH(models::load_torchvision_resnet(*b, bad), Catch::Contains("layer5.0.conv1.weight"));
    bad = given;
    bad.erase(bad.begin() + 1);  // bn1.weight
    REQUIRE_THROWS_WITH(models::load_torchvision_resnet(*b, bad), Catch::Contains("bn1.weight"));
  }
  auto v2 = make("resnet101_v2");
  REQUIRE_THROWS_WITH(models::load_torchvision_resnet(*v2, {}), Catch::Contains("pre-activation"));
}

TEST_CASE("gluon_resnet: bad input (unknown name, input shape, input size)") {
  REQUIRE_THROWS_AS(models::make_gluon_resnet("resnet34_v1"), Error);
  REQUIRE_THROWS_WITH(models::make_gluon_resnet("resnet34_v1"),
                      Catch::Contains("unknown backbone 'resnet34_v1'") &&
                          Catch::Contains("resnet18_v1, resnet50_v1, resnet101_v2, resnet152_v2"));
  try {
    models::make_gluon_resnet("x\ny");
  } catch (const Error& e) {
    REQUIRE(std::string(e.what()).find('\n') == std::string::npos);
  }
  auto b = make("resnet18_v1");
  REQUIRE_THROWS_WITH(b->forward_sources(zeros({1, 4, 32, 32})), Catch::Contains("[1, 4, 32, 32]"));
  REQUIRE_THROWS_WITH(b->forward_sources(zeros({3, 32, 32})), Catch::Contains("[N, 3, H, W]"));
  REQUIRE_THROWS_WITH(b->source_sizes(0), Catch::Contains("input size"));
}

TEST_CASE("gluon_resnet: on cuda matches cpu (sources, gradients, train-mode running stats)", "[cuda][models]") {
  REQUIRE_CUDA_OR_SKIP();
  for (const std::string name : {"resnet18_v1", "resnet101_v2"}) {
    INFO(name);
    manual_seed(11);
    auto cpu = make(name);
    auto gpu = make(name);
    models::parity_init(*cpu);
    models::parity_init(*gpu);
    gpu->to(Device::cuda());
    Tensor x = randn({2, 3, 34, 34});
    // Eval mode (well conditioned: see the train-mode parity test) for sources and gradients.
    cpu->eval();
    gpu->eval();
    auto oc = cpu->forward_sources(x);
    auto og = gpu->forward_sources(x.to(Device::cuda()));
    Tensor lc = mean(square(oc[0])), lg = mean(square(og[0]));
    for (size_t i = 1; i < oc.size(); ++i) {
      lc = lc + mean(square(oc[i]));
      lg = lg + mean(square(og[i]));
    }
    lc.backward();
    lg.backward();
    for (size_t i = 0; i < oc.size(); ++i) {
      INFO("source " << i);
      REQUIRE_CLOSE(og[i].detach().to(Device::cpu()), oc[i].detach(), 1e-4 * max_abs(oc[i].detach()), 1e-4);
    }
    for (const std::string p : {"conv1.weight", "layer1.0.bn1.weight", "layer4.0.conv2.weight"}) {
      INFO("grad of " << p);
      Tensor gc = cpu->find(p).grad(), gg = gpu->find(p).grad();
      REQUIRE((gc.defined() && gg.defined()));
      REQUIRE_CLOSE(gg.to(Device::cpu()), gc, 1e-3 * max_abs(gc), 1e-3);
    }
    // One train-mode forward: batch statistics and the running-stat update of the shallow BNs.
    cpu->train();
    gpu->train();
    NoGradGuard g;
    cpu->forward_sources(x);
    gpu->forward_sources(x.to(Device::cuda()));
    std::vector<std::string> bufs = {"bn1.running_mean", "bn1.running_var", "layer1.0.bn1.running_var"};
    if (name == "resnet101_v2") bufs.push_back("bn_data.running_var");
    for (const auto& buf : bufs) {
      INFO(buf);
      REQUIRE_CLOSE(gpu->find(buf).to(Device::cpu()), cpu->find(buf), 1e-5, 1e-4);
    }
  }
}
