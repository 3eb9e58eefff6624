// `ssd_train --cuda-graph`: a whole training step (zero_grad in place, forward heads, loss,
// backward, optimizer update, the device-side loss sums) recorded once per input size into a
// CUDA graph and replayed every step (engine/cuda_graph.h).
//
// Per input size S the step owns static device inputs (images [B, 3, S, S], targets padded to
// a fixed G: boxes [B, G, 4], labels [B, G], counts [B] with the real numbers). Each step:
//   1. the batch (host, pinned) is copied into the static inputs: asynchronous copies on the
//      compute stream, outside any capture;
//   2. optimizer.prepare_step() writes lr and the step count to the device (the caller sets
//      the lr before), outside the capture;
//   3. the graph of S is replayed (one launch).
// The first steps of a size run the same step eagerly on the static inputs (warm-ups: cuDNN
// algorithm choice, the caching allocator's blocks, the gradients and the optimizer state);
// once an eager step at S ran with every gradient already allocated (so it took the same
// path as the captured one: gradients zeroed in place and accumulated into), the next step
// at S is captured, then replayed (2 eager steps for the first size, 1 for later sizes),
// provided no eager step of another size or capture came between (else S warms up again).
// A batch whose shape differs from the static inputs of its size (a batch made smaller by
// unreadable images; the loader drops an epoch's last incomplete batch, so only those) runs
// eagerly on its own device copies, with the same gradients.
//
// Tensors made before a capture that its graph reads stay alive with it: the static inputs,
// the loss sums, the optimizer's state and device blocks, and the model's anchors of that size
// (DetectionModel::cached_anchors keeps one set per device and drops it when the size
// changes; without the reference a multiscale run would replay from a freed, reused block).
//
// Requirements: the model and the optimizer live on CUDA; nothing in the step may wait on
// the host or upload from host memory (the losses build their targets on the device); the
// optimizer's parameter set with gradients must be the same at every step.
#pragma once
#include <cstdint>
#include <map>
#include <memory>

#include "common/loss_meter.h"
#include "engine/optim.h"
#include "models/detection_model.h"

namespace app {

class GraphedTrainStep {
 public:
  // clip_grad_norm > 0: the step clips the gradients' global norm to it (inside the graph,
  // eng::optim::clip_grad_norm_); the norm of every step is kept in a device max either way.
  GraphedTrainStep(models::DetectionModel& model, eng::optim::Optimizer& optimizer, double clip_grad_norm = 0);
  ~GraphedTrainStep();
  GraphedTrainStep(const GraphedTrainStep&) = delete;
  GraphedTrainStep& operator=(const GraphedTrainStep&) = delete;

  enum class Mode { eager, captured, replayed };
  // One training step on `images` (f32 [B, 3, S, S], S = the model's input size) and
  // `targets` (padded to a fixed G). Host tensors should be pinned (asynchronous copies);
  // device tensors (e.g. images normalised on the device by another upload path) are copied
  // on the compute stream: work on another stream that wrote them must be waited for by the
  // compute stream (an event) before this call, since a capture cannot wait on it.
  // `iteration`: the 1-based number of this step (the loss sums name it). Returns how it ran
  // (captured: recorded, then replayed once).
  Mode step(const eng::Tensor& images, const models::Targets& targets, int64_t iteration);

  // Moves the loss sums and the largest gradient norm of the steps since the last flush into
  // `meter` (device copies and zeroings, no host sync). Call before meter.check().
  void flush(LossMeter& meter);

  size_t graphs() const;             // captured graphs (one per input size)
  int64_t replays() const { return replays_; }

 private:
  struct Entry;
  void body(const eng::Tensor& images, const models::Targets& targets, bool captured);
  int64_t grads_defined() const;

  models::DetectionModel& model_;
  eng::optim::Optimizer& optimizer_;
  std::map<int64_t, std::unique_ptr<Entry>> entries_;  // by input size
  double clip_grad_norm_ = 0;
  eng::Tensor sums_;                                   // f32 [3] on the device: total, cls, box
  eng::Tensor norm_max_;                               // f32 0-dim: the steps' largest gradient norm
  int64_t first_pending_ = 0, last_pending_ = 0;       // iterations in sums_ (0: none)
  int64_t replays_ = 0;
  // Counts the steps that change what the caching allocator holds (eager steps and
  // captures; replays allocate nothing). A size is captured only right after its own eager
  // warm-up: another size's capture in between moves cached blocks into that graph's pool,
  // and an eager step of another size may keep some, so the cache may no longer hold every
  // block this size's capture asks for.
  int64_t events_ = 0;
};

}  // namespace app
