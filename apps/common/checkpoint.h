// Training checkpoints: one safetensors file holding the model's state dict, the optimizer
// state under "optimizer." (models::kOptimizerPrefix) and, in __metadata__, the model
// config (read_model_config reads it), the class list and the training state.
//
//   metadata key      value
//   classes           JSON array of class names (label order)
//   category_ids      JSON array of category ids (label order)
//   iteration         optimizer steps taken
//   next_batch        the loader's next training batch number (resume point)
//   seed              the run seed (shuffle, augmentation, multiscale draws)
//   optimizer_steps   the optimizer's step count
//   best_metric       best validation metric so far (-1: none), best_iteration
//   precision         fp32 | tf32 | bf16: what the run computed in (weights are always FP32)
//
// Files are written atomically (save_safetensors: temporary file, then rename), so a crash
// or a signal never leaves a torn checkpoint. A file without optimizer tensors (best.safetensors,
// a converted torchvision file) loads as weights with models::load_model_weights.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/optim.h"
#include "models/detection_model.h"

namespace app {

struct TrainState {
  int64_t iteration = 0;
  int64_t next_batch = 0;
  uint64_t seed = 0;
  double best_metric = -1;
  int64_t best_iteration = -1;
  std::string precision = "fp32";
  // Images per global batch of the run that saved it (batch x world size; 0: not recorded,
  // checkpoints from before issue 13). A resume with another global batch maps next_batch
  // onto the new size (data::resume_batch). The checkpoint holds no other rank state.
  int64_t global_batch = 0;
};

struct ClassList {
  std::vector<std::string> names;
  std::vector<int> category_ids;
};

// Model + optimizer (may be null: weights only) + state + classes -> `path`, atomically.
void save_checkpoint(const std::string& path, const models::DetectionModel& model, const eng::optim::Optimizer* optimizer,
                     const TrainState& state, const ClassList& classes);

// Restores model weights (strict), the optimizer state and returns the training state.
// Throws naming the file when it is not a training checkpoint of this model.
TrainState load_checkpoint(const std::string& path, models::DetectionModel& model, eng::optim::Optimizer& optimizer);

// The class list recorded in a checkpoint or weights file; empty names when absent.
ClassList read_class_list(const std::string& path);

}  // namespace app
