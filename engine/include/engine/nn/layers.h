// Standard layers with PyTorch's parameter names, shapes and default initialisation, so a
// torchvision state dict loads into them key for key.
//
//   layer               parameters                    buffers
//   Conv2d              weight [O, C/groups, k, k], bias [O]  -
//   Linear              weight [out, in], bias [out]   -
//   BatchNorm2d         weight [C], bias [C]           running_mean [C], running_var [C],
//                                                      num_batches_tracked (i64, 0-dim)
//   FrozenBatchNorm2d   -                              weight, bias, running_mean, running_var [C]
//   ReLU, MaxPool2d     -                              -
//
// Initialisation draws from eng::default_generator() (seed it with eng::manual_seed):
//   Conv2d, Linear: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C*k*k or
//   in (PyTorch's kaiming_uniform_(a=sqrt(5)) and its bias rule); weight drawn first.
//   BatchNorm2d / FrozenBatchNorm2d: weight 1, bias 0, running_mean 0, running_var 1.
//
// Sequential and ModuleList name their children "0", "1", ... in order, parameterless
// layers included, so Sequential(Conv2d, ReLU, Conv2d) has keys 0.weight, 0.bias,
// 2.weight, 2.bias like torchvision.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/module.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace eng::nn {

// ---- in-place initialisers (no grad is recorded; the tensor keeps dtype and device) ----
namespace init {
void uniform_(Tensor& t, double lo, double hi, Generator& gen = default_generator());
void normal_(Tensor& t, double mean, double std, Generator& gen = default_generator());
void constant_(Tensor& t, double value);
}  // namespace init

class Conv2d : public Module {
 public:
  // groups (torch's): must divide in_channels and out_channels (else one eng::Error);
  // groups == in_channels is depthwise. fan_in for the initialisation is (in / groups)*k*k.
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1, int64_t padding = 0,
         int64_t dilation = 1, bool bias = true, int64_t groups = 1);
  Tensor forward(const Tensor& x) override;

  Tensor weight;  // [out, in / groups, k, k]
  Tensor bias;    // [out], undefined when built with bias = false
  Conv2dParams params;
};

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;  // x [N, in] -> [N, out]

  Tensor weight;  // [out, in]
  Tensor bias;    // [out], undefined when built with bias = false
};

// Uses batch statistics and updates the running stats in train mode (is_training()),
// the running stats in eval mode. num_batches_tracked counts train-mode forwards.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;

  Tensor weight, bias;                                   // parameters [C]
  Tensor running_mean, running_var, num_batches_tracked;  // buffers
  double eps, momentum;
  // SyncBatchNorm: in training, batch statistics over every rank of dist::current()
  // (engine/dist/sync_batch_norm.h); no effect without a communicator of size > 1.
  bool sync = false;
};

// torchvision's FrozenBatchNorm2d: an affine transform whose four tensors are buffers.
// forward applies scale = w / sqrt(rv + eps) and shift = b - rm * scale computed once and
// cached: they are recomputed only when a buffer changed, i.e. when its memory was written
// through the Tensor API (copy_ / fill_, which load_state_dict uses: the Storage version
// counter), replaced (Module::to, or assigning a new tensor to the member), or eps changed.
// A write through a raw data pointer is not seen: call invalidate_cache() after one.
class FrozenBatchNorm2d : public Module {
 public:
  explicit FrozenBatchNorm2d(int64_t channels, double eps = 1e-5);
  Tensor forward(const Tensor& x) override;
  void invalidate_cache();
  // How many times forward computed scale and shift (for tests).
  int64_t scale_shift_computations() const { return computations_; }

  Tensor weight, bias, running_mean, running_var;  // buffers [C]
  double eps;

 private:
  // What scale_ / shift_ were computed from: each buffer's Storage (weakly held, so a freed
  // and reallocated block cannot pass for it) and its version, the offset, and eps.
  struct Source {
    std::weak_ptr<Storage> storage;
    uint64_t version = 0;
    int64_t offset = 0;
  };
  bool cache_valid() const;
  Source sources_[4];
  double cached_eps_ = 0;
  Tensor scale_, shift_;
  int64_t computations_ = 0;
};

// inplace = true: torch's nn.ReLU(inplace=True), eng::relu_ on the input (which must not be
// shared with another tensor: see relu_ in engine/ops.h), so no new activation is allocated.
class ReLU : public Module {
 public:
  explicit ReLU(bool inplace = false) : Module("ReLU"), inplace(inplace) {}
  Tensor forward(const Tensor& x) override {
    if (!inplace) return relu(x);
    Tensor y = x;  // the same tensor: relu_ changes the caller's x
    return relu_(y);
  }
  bool inplace;
};

// stride < 1 means "same as kernel_size" (PyTorch's default).
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = -1, int64_t padding = 0, bool ceil_mode = false);
  Tensor forward(const Tensor& x) override { return max_pool2d(x, params); }

  Pool2dParams params;
};

// Children "0", "1", ...; forward feeds each child's output to the next.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  Sequential(std::initializer_list<std::shared_ptr<Module>> layers);
  // Appends as child str(size()) and returns the module.
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    add_child(std::to_string(layers_.size()), m);
    layers_.push_back(m);
    return m;
  }
  size_t size() const { return layers_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;
  Tensor forward(const Tensor& x) override;

 private:
  std::vector<std::shared_ptr<Module>> layers_;
};

// Children "0", "1", ... without a forward (the owner decides how to call them).
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  ModuleList(std::initializer_list<std::shared_ptr<Module>> modules);
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    add_child(std::to_string(items_.size()), m);
    items_.push_back(m);
    return m;
  }
  size_t size() const { return items_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

}  // namespace eng::nn
