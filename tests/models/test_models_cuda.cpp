// Whole detectors on the CUDA device against the same detectors on the CPU: forward heads,
// loss, every parameter's gradient and the post-processed detections. The op tests check
// each kernel alone; these check the CUDA dispatch of a whole model (layouts, views, the
// autograd graph on the device, the fused post-processing) end to end.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "models/detection_model.h"
#include "engine/autocast.h"
#include "engine/detection.h"
#include "engine/detection_two_stage.h"
#include "models/fasterrcnn.h"
#include "models/factories.h"
#include "test_helpers.h"

using namespace eng;

namespace {

std::shared_ptr<models::DetectionModel> build(const std::string& arch, int64_t classes, int64_t size) {
  manual_seed(7);
  models::ModelConfig c;
  c.arch = arch;
  c.num_classes = classes;
  c.input_size = size;
  if (arch == "tiny_ssd") return models::make_tiny_ssd(c);
  if (arch == "retinanet_resnet50_fpn") return models::make_retinanet(c);
  return models::create_model(c);
}

// Images in [-1, 1] and two GT boxes in the first image, one in the second.
models::Targets targets_for(int64_t size, Device device) {
  const float k = static_cast<float>(size) / 128.f;
  std::vector<float> boxes = {10 * k, 12 * k, 70 * k, 80 * k, 60 * k, 50 * k, 120 * k, 110 * k,
                              30 * k, 30 * k, 90 * k, 100 * k, 0, 0, 0, 0};
  models::Targets t;
  t.boxes = from_vector<float>(boxes, {2, 2, 4}).to(device);
  t.labels = from_vector<int64_t>({1, 2, 3, 0}, {2, 2}).to(device);
  t.counts = from_vector<int64_t>({2, 1}, {2}).to(device);
  return t;
}

// |a - b| <= tol * max|b| + floor elementwise: the scale of a head or a gradient sets what a
// float rounding difference (another GEMM summation order) can be. The floor covers tensors
// whose exact gradient is 0 and whose computed one is rounding noise (a conv bias followed
// by batch norm in training mode: the norm removes it).
std::string compare_scaled(const Tensor& actual, const Tensor& reference, double tol, double floor = 0) {
  double scale = 0;
  for (double v : reference.to_vector<double>()) scale = std::max(scale, std::fabs(v));
  return test::compare(actual.to(Device::cpu()), reference, tol * scale + floor + 1e-12, 0.0);
}

// Relative gradient tolerance (of the tensor's largest gradient). The gradients of a freshly
// initialised ResNet's stem, layer1 and layer2 are ill-conditioned: on the CPU alone, a 1e-7
// relative change of the input images moves them by up to 4e-3 of their scale (a ReLU or
// max-pool choice flips), while every later gradient moves by 1e-6. Float rounding of another
// summation order is such a change, so those layers get 2e-2; the rest 2e-3.
double gradient_tolerance(const std::string& name) {
  for (const char* prefix : {"backbone.body.conv1.", "backbone.body.layer1.", "backbone.body.layer2."})
    if (name.rfind(prefix, 0) == 0) return 2e-2;
  return 2e-3;
}

void check_model(const std::string& arch, int64_t classes, int64_t size, bool train_mode = true) {
  auto cpu = build(arch, classes, size);
  auto gpu = build(arch, classes, size);  // same seed: same parameters
  gpu->to(Device::cuda());
  if (!train_mode) {
    cpu->eval();
    gpu->eval();
  }

  Generator gen(11);
  Tensor images = rand({2, 3, size, size}, gen) * 2.0 - 1.0;

  auto h_cpu = cpu->forward_heads(images);
  auto h_gpu = gpu->forward_heads(images.to(Device::cuda()));
  REQUIRE(h_gpu.class_logits.is_cuda());
  {
    INFO(arch << " class logits");
    const std::string msg = compare_scaled(h_gpu.class_logits, h_cpu.class_logits, 1e-4);
    INFO(msg);
    REQUIRE(msg.empty());
  }
  {
    INFO(arch << " box regression");
    const std::string msg = compare_scaled(h_gpu.box_regression, h_cpu.box_regression, 1e-4);
    INFO(msg);
    REQUIRE(msg.empty());
  }

  auto l_cpu = cpu->loss(h_cpu, targets_for(size, Device::cpu()));
  auto l_gpu = gpu->loss(h_gpu, targets_for(size, Device::cuda()));
  CHECK(l_gpu.classification.item() == Approx(l_cpu.classification.item()).epsilon(1e-4));
  CHECK(l_gpu.box_regression.item() == Approx(l_cpu.box_regression.item()).epsilon(1e-4));

  l_cpu.total.backward();
  l_gpu.total.backward();
  const auto p_cpu = cpu->named_parameters(), p_gpu = gpu->named_parameters();
  REQUIRE(p_cpu.size() == p_gpu.size());
  int compared = 0;
  for (size_t i = 0; i < p_cpu.size(); ++i) {
    const Tensor& a = p_cpu[i].second;
    const Tensor& b = p_gpu[i].second;
    REQUIRE(a.grad().defined() == b.grad().defined());
    if (!a.grad().defined()) continue;  // a frozen parameter
    INFO(arch << " gradient of " << p_cpu[i].first);
    const std::string msg = compare_scaled(b.grad(), a.grad(), gradient_tolerance(p_cpu[i].first), 2e-5);
    INFO(msg);
    REQUIRE(msg.empty());
    ++compared;
  }
  CHECK(compared > 0);

  // Post-processing with a low threshold so that NMS has work: the same detections.
  auto opts = cpu->postprocess_options();
  opts.score_threshold = 0.01;
  auto d_cpu = cpu->postprocess(h_cpu, opts);
  auto d_gpu = gpu->postprocess(h_gpu, opts);
  const auto c_cpu = d_cpu.counts.to_vector<int64_t>(), c_gpu = d_gpu.counts.to_vector<int64_t>();
  REQUIRE(c_cpu == c_gpu);
  CHECK(c_cpu[0] > 0);
  const auto s_cpu = d_cpu.scores.to_vector<float>(), s_gpu = d_gpu.scores.to(Device::cpu()).to_vector<float>();
  const auto b_cpu = d_cpu.boxes.to_vector<float>(), b_gpu = d_gpu.boxes.to(Device::cpu()).to_vector<float>();
  const auto k_cpu = d_cpu.labels.to_vector<int64_t>(), k_gpu = d_gpu.labels.to(Device::cpu()).to_vector<int64_t>();
  const int64_t K = d_cpu.scores.size(1);
  for (int64_t img = 0; img < 2; ++img)
    for (int64_t j = 0; j < c_cpu[img]; ++j) {
      const size_t i = static_cast<size_t>(img * K + j);
      INFO(arch << " image " << img << " detection " << j);
      REQUIRE(s_gpu[i] == Approx(s_cpu[i]).epsilon(1e-3).margin(1e-5));
      REQUIRE(k_gpu[i] == k_cpu[i]);
      for (int q = 0; q < 4; ++q) REQUIRE(b_gpu[4 * i + q] == Approx(b_cpu[4 * i + q]).margin(1e-2 * size / 128.0));
    }
}

}  // namespace

TEST_CASE("models: tiny_ssd on cuda matches cpu (heads, loss, gradients, detections)", "[cuda][models]") {
  REQUIRE_CUDA_OR_SKIP();
  check_model("tiny_ssd", 4, 128);
}

TEST_CASE("models: retinanet on cuda matches cpu (heads, loss, gradients, detections)", "[cuda][models]") {
  REQUIRE_CUDA_OR_SKIP();
  check_model("retinanet_resnet50_fpn", 4, 128);
}

// SSDlite: depthwise convolutions (the CUDA depthwise kernel), SE, Hardswish, ReLU6 and
// train-mode BatchNorm (momentum 0.03) on the device. At 128 the maps are 8, 4, 2, 1, 1, 1.
// [slow]: about 2.7 minutes on the emulator, at 64 as at 128 (the size is not what costs).
TEST_CASE("models: ssdlite320_mobilenet_v3_large on cuda matches cpu (heads, loss, gradients, detections)",
          "[cuda][models][slow]") {
  REQUIRE_CUDA_OR_SKIP();
  check_model("ssdlite320_mobilenet_v3_large", 4, 128);
}

TEST_CASE("models: ssd300_mobilenet0_25 on cuda matches cpu (heads, loss, gradients, detections)",
          "[cuda][models]") {
  REQUIRE_CUDA_OR_SKIP();
  // GluonCV FeatureExpander (fixed-gamma BN), depthwise convs. In eval mode: in train mode
  // its gradients are chaotic at this size (BN normalises 2 values on the 1x1 maps of a batch
  // of 2): on the CPU alone a 1e-7 relative change of the images moved the backbone's
  // gradients by 15-29% of their scale, and the CUDA run (another summation order) differed
  // by 0.26% of the scale in one element. In eval mode the same change moves no gradient by 1e-4.
  check_model("ssd300_mobilenet0_25", 4, 96, /*train_mode=*/false);
}

// BF16 autocast (--precision bf16, the default on CUDA) through every detector: each op of
// each forward takes bf16 activations (none falls back or refuses), the heads come out bf16
// and forward_heads_f32 hands f32 to the loss. Against the FP32 CPU heads: 8 significant bits
// per rounding, through tens of layers, stays within a few percent of the heads' scale.
TEST_CASE("models: every detector's forward runs in bf16 under autocast, close to fp32", "[cuda][models][slow]") {
  REQUIRE_CUDA_OR_SKIP();
  for (const auto& [arch, size] : std::vector<std::pair<std::string, int64_t>>{
           {"tiny_ssd", 128}, {"retinanet_resnet50_fpn", 128}, {"ssd300_vgg16", 300}}) {
    INFO(arch);
    manual_seed(7);
    models::ModelConfig c;
    c.arch = arch;
    c.num_classes = 4;
    c.input_size = size;
    auto cpu = models::create_model(c);
    manual_seed(7);
    auto gpu = models::create_model(c);
    gpu->to(Device::cuda());
    Generator gen(11);
    Tensor images = rand({1, 3, size, size}, gen) * 2.0 - 1.0;
    models::HeadOutputs raw, h_gpu;
    {
      autocast::Guard on;
      raw = gpu->forward_heads(images.to(Device::cuda()));
      h_gpu = models::forward_heads_f32(*gpu, images.to(Device::cuda()));
    }
    CHECK(raw.class_logits.dtype() == DType::bf16);
    CHECK(raw.box_regression.dtype() == DType::bf16);
    REQUIRE(h_gpu.class_logits.dtype() == DType::f32);
    const auto h_cpu = cpu->forward_heads(images);
    std::string msg = compare_scaled(h_gpu.class_logits, h_cpu.class_logits, 5e-2);
    INFO("class logits: " << msg);
    CHECK(msg.empty());
    msg = compare_scaled(h_gpu.box_regression, h_cpu.box_regression, 5e-2);
    INFO("box regression: " << msg);
    CHECK(msg.empty());
    // The loss on the f32 heads runs as in FP32 (the first image's targets).
    models::Targets t = targets_for(size, Device::cuda());
    t.boxes = t.boxes.narrow(0, 0, 1);
    t.labels = t.labels.narrow(0, 0, 1);
    t.counts = t.counts.narrow(0, 0, 1);
    const auto l = gpu->loss(h_gpu, t);
    CHECK(std::isfinite(l.total.item()));
  }
}

// ---------------------------------------------------------------------------- Faster R-CNN
// At 128 with 100 proposals per image (4092 anchors): the whole model on the device against
// the CPU, stage by stage. The samplers run on the host either way; the loss is compared with
// the samples fixed (loss_with_samples), then drawn (loss() after begin_step).
namespace {

std::shared_ptr<models::FasterRCNN> build_frcnn() {
  manual_seed(7);
  models::ModelConfig c;
  c.arch = "fasterrcnn_resnet50_fpn";
  c.num_classes = 4;
  c.input_size = 128;
  c.rpn_top_n_train = c.rpn_top_n_test = 100;
  auto m = std::dynamic_pointer_cast<models::FasterRCNN>(models::create_model(c));
  REQUIRE(m);
  return m;
}

// The RPN sampler's choice on the CPU, drawn as the model draws it (Matcher 0.7 / 0.3 with
// low-quality matches, 256 anchors at 0.5 positive): u8 [B, A].
Tensor cpu_rpn_samples(models::FasterRCNN& m, const models::Targets& t, uint64_t seed) {
  NoGradGuard ng;
  Tensor anc = m.anchors(Device::cpu());
  Tensor matched = det::match_retinanet(det::box_iou_batched(t.boxes, t.counts, anc), t.counts, 0.7, 0.3, true);
  Tensor object = ones({t.boxes.size(0), t.boxes.size(1)}, TensorOptions(DType::i64));
  det::AssignedTargets a = det::assign_targets(matched, t.boxes, object, anc, 2, 0, -1);
  Generator gen(seed);
  return det::sample_balanced(a.labels, models::FasterRCNN::kRpnBatch, models::FasterRCNN::kRpnPositive, gen);
}

void require_close(const Tensor& gpu, const Tensor& cpu, double tol, const std::string& what) {
  INFO(what);
  REQUIRE(gpu.is_cuda());
  const std::string msg = compare_scaled(gpu, cpu, tol);
  INFO(msg);
  REQUIRE(msg.empty());
}

}  // namespace

TEST_CASE("models: fasterrcnn_resnet50_fpn on cuda matches cpu (features, heads, proposals, fixed-sample loss, "
          "gradients, detections)",
          "[cuda][models]") {
  REQUIRE_CUDA_OR_SKIP();
  auto cpu = build_frcnn();
  auto gpu = build_frcnn();
  gpu->to(Device::cuda());
  Generator gen(11);
  Tensor images = rand({2, 3, 128, 128}, gen) * 2.0 - 1.0;

  auto h_cpu = cpu->forward_heads(images);
  auto h_gpu = gpu->forward_heads(images.to(Device::cuda()));
  require_close(h_gpu.class_logits, h_cpu.class_logits, 1e-4, "rpn objectness");
  require_close(h_gpu.box_regression, h_cpu.box_regression, 1e-4, "rpn deltas");
  REQUIRE(h_gpu.features.size() == 4);
  for (size_t i = 0; i < 4; ++i) require_close(h_gpu.features[i], h_cpu.features[i], 1e-4, "P" + std::to_string(i + 2));

  // Proposals (training top-n): the same count per image and the same boxes in the same order.
  auto [pb_cpu, pc_cpu] = cpu->proposals(h_cpu, 100);
  auto [pb_gpu, pc_gpu] = gpu->proposals(h_gpu, 100);
  const std::vector<int64_t> counts = pc_cpu.to_vector<int64_t>();
  REQUIRE(pc_gpu.to(Device::cpu()).to_vector<int64_t>() == counts);
  CHECK(counts[0] > 10);
  require_close(pb_gpu, pb_cpu, 1e-4, "proposal boxes");

  // The samples: the RPN's as the CPU sampler draws them; the RoIs every other proposal
  // and the GT (appended after the proposals), so that the mask is not "take all".
  const models::Targets t_cpu = targets_for(128, Device::cpu());
  models::FixedSamples fixed;
  fixed.rpn = cpu_rpn_samples(*cpu, t_cpu, 3);
  const std::vector<int64_t> gt_counts = t_cpu.counts.to_vector<int64_t>();
  for (int64_t b = 0; b < 2; ++b) {
    std::vector<uint8_t> m(static_cast<size_t>(counts[b] + gt_counts[b]));
    for (size_t i = 0; i < m.size(); ++i) m[i] = (i % 2 == 0 || static_cast<int64_t>(i) >= counts[b]) ? 1 : 0;
    fixed.roi.push_back(from_vector<uint8_t>(m, {static_cast<int64_t>(m.size())}));
  }
  auto l_cpu = cpu->loss_with_samples(h_cpu, t_cpu, fixed);
  auto l_gpu = gpu->loss_with_samples(h_gpu, targets_for(128, Device::cuda()), fixed);
  REQUIRE(l_cpu.components.size() == 4);
  REQUIRE(l_gpu.components.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    INFO(l_cpu.components[i].first);
    CHECK(l_gpu.components[i].first == l_cpu.components[i].first);
    CHECK(l_gpu.components[i].second.is_cuda());
    CHECK(l_cpu.components[i].second.item() > 0);
    CHECK(l_gpu.components[i].second.item() == Approx(l_cpu.components[i].second.item()).epsilon(1e-4));
  }

  // Gradients of the trainable stages (layer2..4, FPN, RPN head, box head, predictor).
  l_cpu.total.backward();
  l_gpu.total.backward();
  for (const char* name : {"backbone.body.layer3.0.conv2.weight", "backbone.body.layer4.2.conv3.weight",
                           "backbone.fpn.inner_blocks.0.0.weight", "backbone.fpn.layer_blocks.3.0.bias",
                           "rpn.head.conv.0.0.weight", "rpn.head.cls_logits.weight", "rpn.head.bbox_pred.bias",
                           "roi_heads.box_head.fc6.weight", "roi_heads.box_head.fc7.bias",
                           "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.bbox_pred.weight"}) {
    const Tensor& a = cpu->find(name);
    const Tensor& b = gpu->find(name);
    REQUIRE(a.grad().defined());
    REQUIRE(b.grad().defined());
    require_close(b.grad(), a.grad(), gradient_tolerance(name), std::string("gradient of ") + name);
  }
  CHECK_FALSE(gpu->find("backbone.body.layer1.0.conv1.weight").grad().defined());  // frozen on the device too

  // Detections (test top-n, softmax, per-class NMS) with a low threshold: the same ones.
  cpu->eval();
  gpu->eval();
  auto opts = cpu->postprocess_options();
  opts.score_threshold = 0.01;
  auto d_cpu = cpu->postprocess(h_cpu, opts);
  auto d_gpu = gpu->postprocess(h_gpu, opts);
  const auto c_cpu = d_cpu.counts.to_vector<int64_t>(), c_gpu = d_gpu.counts.to(Device::cpu()).to_vector<int64_t>();
  REQUIRE(c_cpu == c_gpu);
  CHECK(c_cpu[0] > 0);
  const auto s_cpu = d_cpu.scores.to_vector<float>(), s_gpu = d_gpu.scores.to(Device::cpu()).to_vector<float>();
  const auto b_cpu = d_cpu.boxes.to_vector<float>(), b_gpu = d_gpu.boxes.to(Device::cpu()).to_vector<float>();
  const auto k_cpu = d_cpu.labels.to_vector<int64_t>(), k_gpu = d_gpu.labels.to(Device::cpu()).to_vector<int64_t>();
  const int64_t K = d_cpu.scores.size(1);
  for (int64_t img = 0; img < 2; ++img)
    for (int64_t j = 0; j < c_cpu[img]; ++j) {
      const size_t i = static_cast<size_t>(img * K + j);
      INFO("image " << img << " detection " << j);
      REQUIRE(s_gpu[i] == Approx(s_cpu[i]).epsilon(1e-3).margin(1e-5));
      REQUIRE(k_gpu[i] == k_cpu[i]);
      for (int q = 0; q < 4; ++q) REQUIRE(b_gpu[4 * i + q] == Approx(b_cpu[4 * i + q]).margin(1e-2));
    }
}

// loss() draws both samplers on the host in a fixed order from begin_step's seed: the CUDA
// model takes the CPU's samples, so its four losses match, and another seed moves both alike.
TEST_CASE("models: fasterrcnn_resnet50_fpn training loss on cuda draws the cpu's samples from begin_step",
          "[cuda][models]") {
  REQUIRE_CUDA_OR_SKIP();
  auto cpu = build_frcnn();
  auto gpu = build_frcnn();
  gpu->to(Device::cuda());
  Generator gen(13);
  Tensor images = rand({2, 3, 128, 128}, gen) * 2.0 - 1.0;
  NoGradGuard ng;
  auto h_cpu = cpu->forward_heads(images);
  auto h_gpu = gpu->forward_heads(images.to(Device::cuda()));
  std::vector<double> first;
  for (uint64_t seed : {21u, 22u}) {
    INFO("seed " << seed);
    cpu->begin_step(seed);
    gpu->begin_step(seed);
    auto l_cpu = cpu->loss(h_cpu, targets_for(128, Device::cpu()));
    auto l_gpu = gpu->loss(h_gpu, targets_for(128, Device::cuda()));
    REQUIRE(l_gpu.total.is_cuda());
    REQUIRE(l_gpu.components.size() == 4);
    for (size_t i = 0; i < 4; ++i) {
      INFO(l_cpu.components[i].first);
      CHECK(l_gpu.components[i].second.item() == Approx(l_cpu.components[i].second.item()).epsilon(1e-4));
    }
    CHECK(l_gpu.total.item() == Approx(l_cpu.total.item()).epsilon(1e-4));
    if (first.empty()) {
      for (auto& kv : l_cpu.components) first.push_back(kv.second.item());
    } else {
      // Another seed, another sample: the sampled objectness loss differs.
      CHECK(l_cpu.components[0].second.item() != first[0]);
    }
  }
}
