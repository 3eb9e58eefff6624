// Debugging aid: the exact inputs of the first training steps, for a replay outside the
// engine (tools/twin_tiny_ssd.py trains a PyTorch twin on them).
//
// ENGINE_DUMP_BATCHES=DIR makes app::train write, for steps 1..N (ENGINE_DUMP_STEPS=N,
// default 20, 0..100000; ENGINE_DUMP_WEIGHTS_EVERY=K, default 0, 0..100000):
//   DIR/weights_00000.safetensors   the model before the first step (a weights-only
//                                   checkpoint: state dict with BatchNorm running
//                                   statistics, class list and config in the metadata)
//   DIR/step_SSSSS.safetensors      one per step: "images" f32 [B, 3, S, S] (the network
//                                   input after augmentation and normalisation), the
//                                   targets as the loss gets them ("boxes" f32 [B, G, 4] in
//                                   input pixels, "labels" i64 [B, G] with 0 = background,
//                                   "counts" i64 [B], "ignore" u8 [B, G]), the head outputs
//                                   "class_logits" [B, A, C] and "box_regression" [B, A, 4];
//                                   "anchors" f32 [A, 4] (corners, input pixels);
//                                   metadata: step, lr, loss, loss_cls, loss_box, grad_norm
//                                   (global L2 norm before clipping), max_abs_logit
//                                   (numbers as %.9g text)
//   DIR/weights_00001.safetensors,  the model after step 1 and after step N (the
//   DIR/weights_NNNNN.safetensors   optimizer's update, compared by the twin), and after
//                                   every K-th step with ENGINE_DUMP_WEIGHTS_EVERY=K
//                                   (default 0: none; the twin then re-runs each step on
//                                   the engine's own weights: parity along its trajectory)
// Eager single-process steps only (no --cuda-graph, several ranks or --accum > 1: refused).
// It synchronises the device at every dumped step; never on in a measured run.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/checkpoint.h"
#include "engine/tensor.h"
#include "models/detection_model.h"

namespace app {

class BatchDump {
 public:
  BatchDump(std::string dir, int64_t steps, int64_t weights_every = 0);
  // From the environment (above); null when ENGINE_DUMP_BATCHES is unset or empty. A bad
  // ENGINE_DUMP_STEPS is a one-line error naming the variable and the value.
  static std::unique_ptr<BatchDump> from_env();

  const std::string& dir() const { return dir_; }
  int64_t steps() const { return steps_; }
  bool wants(int64_t step) const { return step >= 1 && step <= steps_; }
  // Whether the weights after `step` are written (0: before training).
  bool wants_weights(int64_t step) const {
    return step == 0 || (wants(step) && (step == 1 || step == steps_ || (every_ > 0 && step % every_ == 0)));
  }

  // DIR/weights_SSSSS.safetensors (step 0: before training).
  void write_weights(int64_t step, const models::DetectionModel& model, const TrainState& state,
                     const ClassList& classes) const;
  // DIR/step_SSSSS.safetensors (see above).
  void write_step(int64_t step, double lr, const eng::Tensor& images, const models::Targets& targets,
                  const models::HeadOutputs& heads, const models::LossParts& parts, const eng::Tensor& grad_norm,
                  const eng::Tensor& anchors) const;

 private:
  std::string dir_;
  int64_t steps_;
  int64_t every_;
};

// DIR/<prefix>_SSSSS.safetensors
std::string dump_path(const std::string& dir, const std::string& prefix, int64_t step);

}  // namespace app
