// Optimizers (SGD, Adam, AdamW) and learning-rate schedules.
//
// An optimizer holds its parameters as named pairs (what nn::Module::named_parameters()
// returns) or as a plain list (then named "0", "1", ...). step() updates, in place and
// under NoGradGuard, every parameter that has a gradient; parameters without one are
// skipped, like PyTorch. On CUDA one fused kernel launch updates all of them (the maths is
// in kernels/include/kernels/optim.h and equals torch.optim.SGD / Adam / AdamW).
//
// All parameters of one optimizer share one dtype (f32 or f64) and one device, and are
// contiguous leaves; each appears once.
//
// Checkpointing: state_tensors() lists the state as named tensors,
//   "momentum_buffer.<name>"             SGD with momentum != 0
//   "exp_avg.<name>", "exp_avg_sq.<name>" Adam / AdamW
//   "step.<name>"                        i64 [1]: the updates that parameter received
// for every parameter that has been updated at least once (the buffers are the live
// tensors, not copies). load_state(state, step_count) restores exactly that state (copying
// values onto the parameters' device), so training resumes bit for bit.
//
// The learning rate and the step count reach the update kernels through memory (a small
// device block on CUDA, written by an asynchronous copy from pinned memory in
// prepare_step()), never as launch arguments, so an update recorded in a CUDA graph uses
// the current values at each replay:
//   opt.set_lr(sched.lr_at(it));
//   opt.prepare_step();   // host half, OUTSIDE the capture: counts the step, uploads lr/step
//   graph.replay();       // whose capture called opt.launch_step() after the backward
// step() is prepare_step() + launch_step(). zero_grad(false) zeroes the gradients in
// place (same addresses), which a graph needs; backward then accumulates into them.
//
// Typical loop:
//   optim::SGDOptions o;
//   o.lr = 0.01; o.momentum = 0.9; o.weight_decay = 5e-4; o.no_decay_bias_and_norm = true;
//   optim::SGD opt(model.named_parameters(), o);
//   optim::LinearWarmup sched(optim::MultiStep(0.01, {16000, 22000}, 0.1), 500, 0.001);
//   for (int64_t it = 0; it < iters; ++it) {
//     opt.set_lr(sched.lr_at(it));
//     opt.zero_grad();
//     loss(model, batch).backward();
//     opt.step();
//   }
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/tensor.h"

#include "kernels/optim.h"  // OptimTensor, OptimScalars (plain structs)

namespace eng::optim {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Names a plain parameter list "0", "1", ... (what the vector<Tensor> constructors use).
NamedTensors name_by_index(const std::vector<Tensor>& params);

// Common part: parameters, per-parameter state, lr, step counting, zero_grad, checkpoint
// state, and the fused launch plumbing. SGD and Adam/AdamW derive from it.
class Optimizer {
 public:
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Updates every parameter that has a grad (under NoGradGuard), then counts one step.
  // Same as prepare_step(); launch_step().
  void step();
  // The host half of step(): checks the gradients, creates missing state, counts the step,
  // builds the per-parameter descriptors (uploaded when they changed) and writes lr and the
  // step number where the update reads them (on CUDA: an asynchronous copy from pinned
  // memory into a device block whose address never changes). Refused during a CUDA graph
  // capture (a copy from a temporary pinned block must not be recorded).
  void prepare_step();
  // The device half: the update itself (on CUDA one fused launch that reads lr and step from
  // device memory, so it may be captured into a CUDA graph and replayed after each
  // prepare_step()). Needs a prepare_step() before it.
  void launch_step();
  // set_to_none (PyTorch's default): drops every parameter's grad, the next backward writes
  // it afresh. false: zeroes the existing grads in place (same tensors, same addresses; a
  // grad that does not exist stays undefined), as a CUDA graph needs.
  void zero_grad(bool set_to_none = true);

  void set_lr(double lr);
  double lr() const { return lr_; }
  // Number of step() calls so far (or the value given to load_state).
  int64_t step_count() const { return step_count_; }

  NamedTensors state_tensors() const;
  // Replaces the whole state. Keys must be ones state_tensors() would write for these
  // parameter names; a parameter's entries come all together or not at all (it then
  // starts fresh). Shapes must match the parameters.
  void load_state(const NamedTensors& state, int64_t step_count);

  const NamedTensors& parameters() const { return params_; }
  // How many times the CUDA descriptors were copied to the device (they are cached while
  // pointers and per-tensor values stay the same).
  int64_t descriptor_uploads() const { return uploads_; }

 protected:
  // `buffer_names`: the per-parameter state buffers ({"momentum_buffer"} or
  // {"exp_avg", "exp_avg_sq"}, or none). `no_decay_bias_and_norm`: parameters whose name
  // ends with "bias" or that have at most one dimension get weight decay 0.
  Optimizer(const char* kind, NamedTensors params, double lr, double weight_decay, bool no_decay_bias_and_norm,
            std::vector<std::string> buffer_names);

  // Queues the update of `count` tensors, all of `dtype` on `device`. On CUDA `scalars` and
  // `tensors` are device pointers (the descriptors planned by kern::plan_chunks, which gave
  // `num_chunks`); on the CPU host pointers.
  virtual void update(const kern::OptimScalars* scalars, const kern::OptimTensor* tensors, int64_t count,
                      int64_t num_chunks, DType dtype, Device device) = 0;

  const char* kind_;
  double lr_;

 private:
  struct Slot {
    std::string name;
    Tensor param;
    double weight_decay = 0;
    std::vector<Tensor> buffers;  // empty until the first update, then one per buffer name
    int64_t steps = 0;            // updates this parameter received
  };
  std::vector<Slot> slots_;
  NamedTensors params_;
  std::vector<std::string> buffer_names_;
  int64_t step_count_ = 0;

  // The device copy of `tensors` (planned with kern::plan_chunks); uploads only when
  // the descriptors differ from the last upload. Sets `num_chunks`.
  const kern::OptimTensor* upload(std::vector<kern::OptimTensor>& tensors, int64_t& num_chunks);

  // Device copy of the descriptors and the host copy it was made from.
  Tensor device_descriptors_;
  std::vector<kern::OptimTensor> uploaded_;
  int64_t uploads_ = 0;

  // What prepare_step() leaves for launch_step().
  struct Prepared {
    bool ready = false;
    std::vector<kern::OptimTensor> tensors;  // host descriptors
    std::vector<Tensor> grads;                // kept alive until the update is queued
    const kern::OptimTensor* device_tensors = nullptr;
    int64_t num_chunks = 0;
    kern::OptimScalars scalars;               // host copy (the CPU update reads this one)
  };
  Prepared prepared_;
  Tensor device_scalars_;  // CUDA: one kern::OptimScalars, allocated once (fixed address)
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;                  // needs momentum > 0 and dampening 0
  bool no_decay_bias_and_norm = false;    // weight decay 0 for "*bias" and 1-D parameters
};

class SGD : public Optimizer {
 public:
  SGD(NamedTensors params, const SGDOptions& options);
  SGD(const std::vector<Tensor>& params, const SGDOptions& options);
  const SGDOptions& options() const { return options_; }

 protected:
  void update(const kern::OptimScalars* scalars, const kern::OptimTensor* tensors, int64_t count, int64_t num_chunks,
              DType dtype, Device device) override;

 private:
  SGDOptions options_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;                // Adam: added to the gradient; AdamW: decoupled
  bool no_decay_bias_and_norm = false;    // weight decay 0 for "*bias" and 1-D parameters
};

// Adam (L2 penalty added to the gradient), as torch.optim.Adam.
class Adam : public Optimizer {
 public:
  Adam(NamedTensors params, const AdamOptions& options);
  Adam(const std::vector<Tensor>& params, const AdamOptions& options);
  const AdamOptions& options() const { return options_; }

 protected:
  Adam(const char* kind, NamedTensors params, const AdamOptions& options, bool decoupled);
  void update(const kern::OptimScalars* scalars, const kern::OptimTensor* tensors, int64_t count, int64_t num_chunks,
              DType dtype, Device device) override;

 private:
  AdamOptions options_;
  bool decoupled_;
};

// AdamW's defaults, torch.optim.AdamW's: Adam's, but weight_decay 1e-2 (Adam's is 0).
struct AdamWOptions : AdamOptions {
  AdamWOptions() { weight_decay = 1e-2; }
};

// AdamW (decoupled weight decay p *= 1 - lr * wd), as torch.optim.AdamW, with its defaults
// (AdamWOptions: weight_decay 1e-2) when no options are given.
class AdamW : public Adam {
 public:
  explicit AdamW(NamedTensors params, const AdamOptions& options = AdamWOptions());
  explicit AdamW(const std::vector<Tensor>& params, const AdamOptions& options = AdamWOptions());
};

// ---- learning-rate schedules: lr_at(iter) for iter = 0, 1, 2, ... ----

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual double lr_at(int64_t iter) const = 0;
};

// lr = base_lr always.
class ConstantLr : public LrSchedule {
 public:
  explicit ConstantLr(double base_lr);
  double lr_at(int64_t iter) const override;

 private:
  double base_lr_;
};

// lr = base_lr * gamma^(number of milestones <= iter), as torch MultiStepLR stepped once per
// iteration (the decay takes effect at the milestone iteration itself).
class MultiStep : public LrSchedule {
 public:
  MultiStep(double base_lr, std::vector<int64_t> milestones, double gamma = 0.1);
  double lr_at(int64_t iter) const override;

 private:
  double base_lr_;
  std::vector<int64_t> milestones_;
  double gamma_;
};

// lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * iter / total_iters)) / 2 for
// iter <= total_iters (torch CosineAnnealingLR with T_max = total_iters, eta_min = min_lr),
// then min_lr.
class Cosine : public LrSchedule {
 public:
  Cosine(double base_lr, int64_t total_iters, double min_lr = 0);
  double lr_at(int64_t iter) const override;

 private:
  double base_lr_;
  int64_t total_iters_;
  double min_lr_;
};

// lr = inner.lr_at(iter) * f(iter), with f ramping linearly from warmup_factor at iter 0
// to 1 at warmup_iters and 1 after:
//   f = warmup_factor + (1 - warmup_factor) * iter / warmup_iters   for iter < warmup_iters
// (torchvision detection reference: LinearLR(start_factor=warmup_factor,
// total_iters=warmup_iters)). warmup_iters = 0 means no warmup.
class LinearWarmup : public LrSchedule {
 public:
  LinearWarmup(std::shared_ptr<const LrSchedule> inner, int64_t warmup_iters, double warmup_factor);
  template <typename S, typename = std::enable_if_t<std::is_base_of<LrSchedule, S>::value>>
  LinearWarmup(S inner, int64_t warmup_iters, double warmup_factor)
      : LinearWarmup(std::make_shared<S>(std::move(inner)), warmup_iters, warmup_factor) {}
  double lr_at(int64_t iter) const override;
  double factor_at(int64_t iter) const;

 private:
  std::shared_ptr<const LrSchedule> inner_;
  int64_t warmup_iters_;
  double warmup_factor_;
};


// ---- gradient norm and clipping (engine/src/optim/clip_grad.cpp) ----
//
// The global L2 norm of the gradients of `params` (those that have one):
//   ||g|| = sqrt(sum over parameters of sum(g_p^2)),
// as a 0-dim f32 tensor on the parameters' device. Built from device ops (square, sum,
// concat, sqrt): nothing waits for the device, so it may run every step of a loop that must
// not sync with the host, or inside a CUDA graph capture. With no gradient at all: 0.
// All gradients must share one device. (torch.nn.utils.get_total_norm with norm_type 2.)
Tensor grad_norm(const std::vector<Tensor>& params);
Tensor grad_norm(const NamedTensors& params);

// torch.nn.utils.clip_grad_norm_(params, max_norm) with its defaults (norm_type 2,
// error_if_nonfinite=False, foreach): total = grad_norm(params); every gradient is
// multiplied IN PLACE (same storage: a CUDA graph keeps its addresses) by
//   min(1, max_norm / (total + 1e-6)),
// so nothing changes when total <= max_norm (up to the 1e-6), and a non-finite total makes
// the coefficient NaN (or 0 when total is +inf), which the gradients then carry, as torch
// does. Returns total (0-dim f32, the norm BEFORE clipping). No host sync. max_norm must be
// finite and > 0 (eng::Error otherwise).
Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);
Tensor clip_grad_norm_(const NamedTensors& params, double max_norm);

}  // namespace eng::optim
