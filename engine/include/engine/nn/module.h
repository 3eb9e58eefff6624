// nn::Module: the base of every layer and model.
//
// A Module owns, in insertion order:
//   - parameters: leaf tensors with requires_grad (what the optimizer updates);
//   - buffers: state that is saved but not trained (BatchNorm running stats, the affine
//     tensors of FrozenBatchNorm2d, counters);
//   - children: sub-modules, held by shared_ptr.
//
// Names are dotted paths, exactly like PyTorch: a parameter "weight" of child "0" of child
// "features" is "features.0.weight". The order of named_parameters(), named_buffers() and
// state_dict() is PyTorch's: for each module in pre-order (the module itself, then its
// children in registration order), its own parameters (then, for state_dict, its own
// buffers).
//
// Tensor handles stay valid: to(Device) moves a parameter by swapping the storage inside
// its TensorImpl, so a Tensor fetched from parameters() before to() still refers to the
// moved parameter afterwards (views or detached copies taken earlier do not follow).
//
//   struct Block : nn::Module {
//     std::shared_ptr<nn::Conv2d> conv;
//     Block() : Module("Block") { conv = register_module("conv", std::make_shared<nn::Conv2d>(3, 8, 3)); }
//     Tensor forward(const Tensor& x) override { return relu(conv->forward(x)); }
//   };
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace eng::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// What a non-strict load_state_dict did. Shape mismatches always throw (in both modes), so
// `mismatched` is empty in any report that is returned; it is kept for symmetry with the
// error message, which lists them as "name (module [..], given [..])".
struct LoadReport {
  std::vector<std::string> loaded;      // keys copied into the module
  std::vector<std::string> missing;     // module keys absent from the given tensors
  std::vector<std::string> unexpected;  // given keys the module does not have
  std::vector<std::string> mismatched;  // see above
  bool complete() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
};

class Module {
 public:
  explicit Module(std::string type_name = "Module") : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;  // tensors are handles: a copy would silently share them
  Module& operator=(const Module&) = delete;

  // The layer's computation. The default throws "forward not implemented for <type>".
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  // "Conv2d", "Sequential", ... as given to the constructor.
  const std::string& type_name() const { return type_name_; }

  // ---- registration (names: non-empty, no '.', unique within this module) ----
  // The parameter becomes a leaf that requires grad (it must be a float tensor). The
  // returned handle is the registered tensor itself: keep it as a member if convenient.
  Tensor register_parameter(const std::string& name, Tensor t);
  // Buffers never require grad (a tensor that does is detached first).
  Tensor register_buffer(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

  // ---- lookup ----
  NamedTensors named_parameters() const;  // recursive, dotted names
  NamedTensors named_buffers() const;     // recursive, dotted names
  std::vector<Tensor> parameters() const;
  std::vector<Tensor> buffers() const;
  // Direct children in registration order, and every module in pre-order ("" is this one).
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  std::vector<std::pair<std::string, Module*>> named_modules();
  // A tensor (parameter or buffer) by dotted name; throws listing the name when absent.
  Tensor find(const std::string& dotted_name) const;
  // Number of elements over all parameters (buffers are not counted, like PyTorch; frozen
  // parameters are counted, as torchvision's num_params does).
  int64_t num_parameters() const;

  // ---- freezing (PyTorch's module.requires_grad_) ----
  // Sets requires_grad of every parameter of this module and its children. A frozen
  // parameter stays a parameter (in state_dict(), num_parameters(), checkpoints) but gets no
  // gradient: backward skips it (and whatever only it needs), the optimizers never update it
  // and hold no state for it, and data-parallel training does not reduce it.
  Module& requires_grad_(bool on = true);
  // The parameters that require grad, in named_parameters() order: what optimizers and
  // gradient reducers are given (torch's `[p for p in model.parameters() if p.requires_grad]`).
  NamedTensors named_trainable_parameters() const;

  // ---- state ----
  // Parameters and buffers (see the order above) as detached handles sharing storage.
  NamedTensors state_dict() const;
  // Copies the given tensors into the module's own (under NoGradGuard; values are cast to
  // the module tensor's dtype; the module tensor keeps its device). Nothing is copied
  // unless everything that will be loaded checks out.
  //   strict = true:  any missing, unexpected or shape-mismatched key -> one eng::Error
  //                   listing all of them ("missing keys: ...; unexpected keys: ...;
  //                   shape mismatches: a (module [2], given [3])").
  //   strict = false: loads the keys that match and reports the rest; shape mismatches
  //                   still throw.
  LoadReport load_state_dict(const NamedTensors& tensors, bool strict = true);
  LoadReport load_state_dict(const std::map<std::string, Tensor>& tensors, bool strict = true);

  // ---- modes and placement (all recursive) ----
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Moves every parameter, buffer and gradient to `device` in place (handles stay valid).
  void to(Device device);
  // Drops every parameter's .grad (the next backward writes it afresh).
  void zero_grad();

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> m);

 private:
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool bufs, NamedTensors& out) const;

  std::string type_name_;
  bool training_ = true;
  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace eng::nn
