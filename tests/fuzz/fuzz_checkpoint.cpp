// libFuzzer harness: a training checkpoint (safetensors with the training metadata, see
// apps/common/checkpoint.h) read the ways ssd_train and ssd_detect read one: the model config
// (models::read_model_config), the class list (app::read_class_list) and a resume
// (app::load_checkpoint) into a small fixed tiny_ssd model and its SGD optimizer.
// apps/common/checkpoint.cpp is compiled into this harness (tests/fuzz/CMakeLists.txt).
#include <cstdint>
#include <memory>

#include "common/checkpoint.h"
#include "engine/error.h"
#include "engine/optim.h"
#include "fuzz_common.h"
#include "models/detection_model.h"
#include "models/weights.h"

namespace {

// The model the seeds were written from (tests/fuzz/make_corpus.cpp uses the same config).
struct Fixture {
  std::shared_ptr<models::DetectionModel> model;
  std::unique_ptr<eng::optim::SGD> optimizer;
  Fixture() {
    models::ModelConfig c;
    c.arch = "tiny_ssd";
    c.num_classes = 3;
    c.input_size = 128;
    model = models::create_model(c);
    eng::optim::SGDOptions o;
    o.momentum = 0.9;
    optimizer = std::make_unique<eng::optim::SGD>(model->named_parameters(), o);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture fx;
  const std::string name = "checkpoint.safetensors";
  const std::string path = (fuzz::scratch_dir() / name).string();
  fuzz::write_bytes(path, data, size);
  try {
    const models::ModelConfig c = models::read_model_config(path);
    fuzz::require(c.num_classes >= 1 && c.input_size >= 0, "model config with impossible numbers accepted");
  } catch (const eng::Error& e) {
    fuzz::check_error_message(e, name);
  }
  try {
    const app::ClassList classes = app::read_class_list(path);
    fuzz::require(classes.names.size() == classes.category_ids.size(), "class names and ids differ in length");
  } catch (const eng::Error& e) {
    fuzz::check_error_message(e, name);
  }
  try {
    const app::TrainState s = app::load_checkpoint(path, *fx.model, *fx.optimizer);
    fuzz::require(s.iteration >= 0 && s.next_batch >= 0, "negative iteration or batch accepted");
  } catch (const eng::Error& e) {
    fuzz::check_error_message(e, name);
  }
  return 0;
}
