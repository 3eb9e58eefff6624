// The training loss, summed on the device and read back only when the loop asks, so that a
// training step never waits for the device (docs/training.md#what-a-step-costs).
//
// add() queues three device adds of the detached loss parts (no host sync); check() reads
// the pending sums back (one host sync for the three), adds them to the current log
// interval's host sums and says whether every step's loss since the last check was finite:
// a NaN or infinity in any step makes the sum non-finite, so one read covers them all.
//
// A model's named loss components (LossParts::components, e.g. Faster R-CNN's four losses)
// are summed beside them and read in the same copy: no extra host sync. Every step of a run
// must name the same components in the same order (the first add() fixes them).
//
// It also keeps the largest global gradient norm of the steps (add_grad_norm: a device max,
// no host sync), read back with the losses in the same copy.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/dist/communicator.h"
#include "models/detection_model.h"

namespace app {

class LossMeter {
 public:
  // The loss parts of the step that ends at `iteration` (1-based).
  void add(const models::LossParts& parts, int64_t iteration);
  // Sums already made on the device over the steps first_iteration..last_iteration (a
  // replayed CUDA graph accumulates its losses itself): `sums` is f32 [3] (total,
  // classification, box) and must not be written afterwards (pass a copy).
  void add_sums(const eng::Tensor& sums, int64_t first_iteration, int64_t last_iteration);
  // The global gradient norm of a step (0-dim, on the losses' device), or the device max of
  // several steps' norms (a replayed CUDA graph keeps its own). Folded into a device max
  // with running_max(); read by check() with the losses.
  void add_grad_norm(const eng::Tensor& norm);

  struct Check {
    bool finite = true;
    double loss = 0;               // the non-finite pending sum when !finite (NaN or inf)
    int64_t first_iteration = 0;   // the steps the read covered: [first, last]
    int64_t last_iteration = 0;
    int rank = -1;                 // several ranks: the first rank whose sum was not finite
  };
  // Several ranks: check() gathers every rank's sums (one all-gather, in the same read) and
  // reports the global loss (the sum over ranks, each already divided by the global
  // normaliser) and which rank's loss was not finite. Null: this process alone.
  void set_communicator(eng::dist::Communicator* comm) { comm_ = comm; }
  // Reads the pending sums back (nothing to do when none is pending).
  Check check();
  int64_t pending() const { return pending_; }

  // The log interval's means since the last take_interval (after check()): loss,
  // classification, box regression, and how many steps they cover.
  // grad_norm_max: the largest gradient norm of the interval's steps; NaN when some step's
  // norm was not finite, or when no norm was added (-1 then: has_grad_norm false).
  struct Interval {
    double loss = 0, cls = 0, box = 0;
    int64_t steps = 0;
    bool has_grad_norm = false;
    double grad_norm_max = -1;
    // The means of the model's named loss components (empty when it has none).
    std::vector<std::pair<std::string, double>> components;
  };
  Interval take_interval();

 private:
  eng::dist::Communicator* comm_ = nullptr;
  eng::Tensor total_, cls_, box_;  // device sums of the pending steps (undefined when none)
  std::vector<std::string> component_names_;  // fixed by the first add() that has components
  std::vector<eng::Tensor> components_;       // device sums of the pending steps' components
  std::vector<double> sum_components_;        // checked sums of the log interval
  bool seen_step_ = false;                    // add() or add_sums() ran once
  eng::Tensor grad_norm_max_;      // device max of the pending steps' gradient norms (undefined: none)
  int64_t pending_ = 0;
  int64_t first_pending_ = 0, last_pending_ = 0;
  double sum_loss_ = 0, sum_cls_ = 0, sum_box_ = 0;  // checked sums of the log interval
  int64_t interval_steps_ = 0;
  bool interval_has_norm_ = false;
  double interval_norm_max_ = 0;  // of the checked steps of the interval
};

// max(acc, x) for 0-dim non-negative tensors on one device, NaN-sticky: once a NaN or an
// infinity is seen the result is NaN (so one read tells that some step's norm was not
// finite). No host sync.
eng::Tensor running_max(const eng::Tensor& acc, const eng::Tensor& x);

}  // namespace app
