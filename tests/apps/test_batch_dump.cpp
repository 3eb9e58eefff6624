// ENGINE_DUMP_BATCHES (apps/common/batch_dump.h): the dumped weights and batches reproduce
// the engine's own step outside the training loop, so a twin fed with them starts from
// exactly what the engine computed.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/batch_dump.h"
#include "common/trainer.h"
#include "data/synth_awkward.h"
#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "engine/ops.h"
#include "models/detection_model.h"
#include "models/weights.h"
#include "temp_dir.h"
#include "test_helpers.h"

using test::TempDir;

namespace {

// Sets an environment variable for one scope.
struct EnvVar {
  std::string name;
  EnvVar(const std::string& n, const std::string& v) : name(n) { ::setenv(n.c_str(), v.c_str(), 1); }
  ~EnvVar() { ::unsetenv(name.c_str()); }
};

double max_abs_diff(const eng::Tensor& a, const eng::Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  const eng::Tensor x = a.to(eng::DType::f32).contiguous(), y = b.to(eng::DType::f32).contiguous();
  double m = 0;
  for (int64_t i = 0; i < x.numel(); ++i)
    m = std::fmax(m, std::fabs(static_cast<double>(x.data<float>()[i]) - y.data<float>()[i]));
  return m;
}

}  // namespace

TEST_CASE("ENGINE_DUMP_BATCHES: the dumped weights and batch give the engine's step again", "[apps][train]") {
  TempDir data("dump_data"), out("dump_run"), dump("dump_files");
  data::write_awkward_voc_dataset(data.path.string(), 12, 0, 5, 160, 120, 3);
  app::TrainConfig c;
  c.arch = "tiny_ssd";
  c.data = data.path.string();
  c.input_size = 64;
  c.batch = 4;
  c.lr = 0.05;
  c.workers = 1;
  c.iters = 3;
  c.save_every = 0;
  c.seed = 11;
  c.out = out.path.string();
  {
    EnvVar d("ENGINE_DUMP_BATCHES", dump.path.string()), s("ENGINE_DUMP_STEPS", "2");
    REQUIRE(app::train(c) == 0);
  }
  namespace fs = std::filesystem;
  for (const char* f : {"weights_00000", "weights_00001", "weights_00002", "step_00001", "step_00002"})
    CHECK(fs::exists(dump.path / (std::string(f) + ".safetensors")));
  CHECK_FALSE(fs::exists(dump.path / "step_00003.safetensors"));  // N = 2 of 3 steps

  // A fresh model with the dumped initial weights, in training mode, on the dumped batch 1.
  const std::string w0 = (dump.path / "weights_00000.safetensors").string();
  auto model = models::create_model(models::read_model_config(w0));
  models::load_model_weights(*model, w0);
  model->train();
  const eng::io::SafetensorsFile step = eng::io::load_safetensors((dump.path / "step_00001.safetensors").string());
  const eng::Tensor images = step.get("images");
  REQUIRE(images.dtype() == eng::DType::f32);
  REQUIRE(images.sizes() == eng::Shape{4, 3, 64, 64});
  CHECK(step.metadata.at("step") == "1");
  CHECK(std::stod(step.metadata.at("lr")) == Approx(0.05 * 0.001));  // warm-up's first factor
  CHECK(std::stod(step.metadata.at("grad_norm")) > 0);

  const models::HeadOutputs heads = model->forward_heads(images);
  CHECK(max_abs_diff(heads.class_logits, step.get("class_logits")) < 1e-5);
  CHECK(max_abs_diff(heads.box_regression, step.get("box_regression")) < 1e-5);
  CHECK(max_abs_diff(model->anchors(eng::Device::cpu()), step.get("anchors")) == 0);
  double largest = 0;
  for (int64_t i = 0; i < heads.class_logits.numel(); ++i)
    largest = std::fmax(largest, std::fabs(static_cast<double>(heads.class_logits.contiguous().data<float>()[i])));
  CHECK(std::stod(step.metadata.at("max_abs_logit")) == Approx(largest).epsilon(1e-6));

  const models::Targets targets{step.get("boxes"), step.get("labels"), step.get("counts"), step.get("ignore")};
  REQUIRE(targets.boxes.sizes()[0] == 4);
  const models::LossParts parts = model->loss(heads, targets);
  CHECK(parts.classification.item() == Approx(std::stod(step.metadata.at("loss_cls"))).epsilon(1e-5));
  CHECK(parts.box_regression.item() == Approx(std::stod(step.metadata.at("loss_box"))).epsilon(1e-5));
  CHECK(parts.total.item() == Approx(std::stod(step.metadata.at("loss"))).epsilon(1e-5));
  CHECK(parts.total.item() > 0);

  // The dumped weights after step 1 differ from the initial ones (the update is in them).
  const eng::io::SafetensorsFile a = eng::io::load_safetensors(w0);
  const eng::io::SafetensorsFile b = eng::io::load_safetensors((dump.path / "weights_00001.safetensors").string());
  const std::string head_w = "head.classification_head.module_list.0.weight";
  CHECK(max_abs_diff(a.get(head_w), b.get(head_w)) > 0);
}

TEST_CASE("ENGINE_DUMP_STEPS: a bad value is a one-line error naming the variable", "[apps][train]") {
  TempDir dump("dump_bad");
  EnvVar d("ENGINE_DUMP_BATCHES", dump.path.string());
  for (const char* bad : {"x", "-1", "1e3", "100001", "+5"}) {
    EnvVar s("ENGINE_DUMP_STEPS", bad);
    CHECK_THROWS_WITH(app::BatchDump::from_env(), Catch::Contains("ENGINE_DUMP_STEPS") && Catch::Contains(bad));
  }
  for (const char* bad : {"y", "-2", "2.5"}) {
    EnvVar s("ENGINE_DUMP_WEIGHTS_EVERY", bad);
    CHECK_THROWS_WITH(app::BatchDump::from_env(),
                      Catch::Contains("ENGINE_DUMP_WEIGHTS_EVERY") && Catch::Contains(bad));
  }
  {
    EnvVar s("ENGINE_DUMP_STEPS", "7"), w("ENGINE_DUMP_WEIGHTS_EVERY", "3");
    const auto dumper = app::BatchDump::from_env();
    REQUIRE(dumper);
    CHECK(dumper->steps() == 7);
    CHECK(dumper->wants(7));
    CHECK_FALSE(dumper->wants(8));
    CHECK_FALSE(dumper->wants(0));
    // Weights before training, after step 1, every 3rd step and after the last dumped step.
    std::vector<int64_t> written;
    for (int64_t i = 0; i <= 10; ++i)
      if (dumper->wants_weights(i)) written.push_back(i);
    CHECK(written == std::vector<int64_t>{0, 1, 3, 6, 7});
  }
  ::unsetenv("ENGINE_DUMP_BATCHES");
  CHECK(app::BatchDump::from_env() == nullptr);
}
