// Data-parallel gradient reduction in buckets, like PyTorch's DDP (issue 13).
//
//   dist::GradReducer reducer(comm, model.named_parameters(), {25 << 20, 1.0 / comm.size()});
//   loss.backward();    // buckets are all-reduced while backward still runs
//   reducer.finish();   // waits; every param.grad now holds the reduced gradient
//   optimizer.step();
//
// Buckets: the parameters in REVERSE registration order (the order backward tends to
// produce their gradients), cut into buckets of at most bucket_bytes each (a parameter is
// never split: one larger than bucket_bytes gets a bucket of its own); parameters of
// another dtype or device go to their own buckets. Bucket k is all-reduced (all_reduce_async
// on one flat buffer: sum over ranks, then * scale) as soon as backward has finished
// accumulating the gradient of each of its parameters (post-accumulate-grad hooks,
// engine/autograd.h) AND buckets 0..k-1 have been launched, so every rank issues the same
// sequence of collectives whatever order its gradients become ready in.
//
// finish() launches the buckets backward did not complete (a parameter with no gradient
// gets a zero .grad and contributes zeros), waits for all of them in order and copies the
// reduced values back into each param.grad. Disabled (set_enabled(false), for the first
// K - 1 micro-steps of gradient accumulation) the hooks do nothing and finish() returns at
// once: gradients accumulate locally, and the step that is enabled again reduces the sum.
// A parameter whose gradient arrives twice in one enabled step (two backward passes before
// finish) is an error, as its first gradient may already be on the wire.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/dist/communicator.h"
#include "engine/nn/module.h"

namespace eng::dist {

struct GradReducerOptions {
  int64_t bucket_bytes = int64_t{25} << 20;  // 25 MiB, DDP's default
  double scale = 1.0;                        // 1 / world size: the mean of the ranks' gradients
};

class GradReducer {
 public:
  // `params`: (name, leaf that requires grad) in registration order, as
  // nn::Module::named_parameters() gives them; frozen ones (requires_grad off) are left out.
  // The communicator must outlive the reducer.
  GradReducer(Communicator& comm, const nn::NamedTensors& params, GradReducerOptions opts = {});
  ~GradReducer();  // removes the hooks
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // Between steps only (refused once a gradient of the step reached the reducer).
  void set_enabled(bool on);
  bool enabled() const { return enabled_; }
  // After backward: reduce what is left, wait, write the results into the params' .grad.
  void finish();

  // ---- statistics ----
  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  int64_t bytes_per_step() const;  // bytes all-reduced per step (every parameter once)
  // The parameter names of bucket k, in bucket order (reverse registration order).
  std::vector<std::vector<std::string>> bucket_names() const;
  std::vector<int64_t> bucket_bytes() const;
  // The buckets launched so far in this step, in launch order (tests: overlap and order).
  const std::vector<int>& launched() const { return launched_; }
  // How many buckets were launched from backward's hooks (not by finish()) in the last step.
  int launched_during_backward() const { return launched_in_backward_; }

 private:
  struct Param {
    std::string name;
    Tensor tensor;
    int bucket = 0;
    bool ready = false;
  };
  struct Bucket {
    std::vector<int> params;  // indices into params_
    int64_t bytes = 0;
    int64_t numel = 0;
    int ready = 0;
    bool launched = false;
    Tensor flat;
    std::unique_ptr<Work> work;
  };
  void on_grad_ready(int index);
  void launch_ready();
  void launch(int bucket);

  Communicator& comm_;
  GradReducerOptions opts_;
  std::vector<Param> params_;
  std::vector<Bucket> buckets_;
  std::vector<HookHandle> hooks_;
  std::vector<int> launched_;
  int next_launch_ = 0;
  int ready_params_ = 0;  // parameters whose gradient arrived since the last finish()
  int launched_in_backward_ = 0;
  bool enabled_ = true;
};

// Start of training: every rank gets root's parameters and buffers (after checking that all
// ranks hold the same names, shapes and dtypes: one line naming the first difference).
void broadcast_module(Communicator& comm, nn::Module& module, int root = 0);

}  // namespace eng::dist
