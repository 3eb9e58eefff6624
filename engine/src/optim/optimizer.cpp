// The common part of every optimizer: parameter checks, per-parameter state, the step
// loop that builds the kernel descriptors, the cached device copy of those descriptors,
// and checkpoint state (see engine/include/engine/optim.h).
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/optim.h"
#include "kernels/copy.h"
#include "kernels/optim.h"

namespace eng::optim {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

NamedTensors name_by_index(const std::vector<Tensor>& params) {
  NamedTensors named;
  for (size_t i = 0; i < params.size(); ++i) named.emplace_back(std::to_string(i), params[i]);
  return named;
}

Optimizer::Optimizer(const char* kind, NamedTensors params, double lr, double weight_decay,
                     bool no_decay_bias_and_norm, std::vector<std::string> buffer_names)
    : kind_(kind), lr_(lr), params_(std::move(params)), buffer_names_(std::move(buffer_names)) {
  ENGINE_CHECK(std::isfinite(lr) && lr >= 0, kind_, ": invalid learning rate ", lr, " (must be >= 0)");
  ENGINE_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, kind_, ": invalid weight_decay ", weight_decay,
               " (must be >= 0)");
  ENGINE_CHECK(!params_.empty(), kind_, ": got an empty parameter list");
  std::set<std::string> names;
  std::set<const TensorImpl*> seen;
  const Tensor& first = params_.front().second;
  for (const auto& [name, p] : params_) {
    ENGINE_CHECK(p.defined(), kind_, ": parameter '", name, "' is undefined");
    ENGINE_CHECK(names.insert(name).second, kind_, ": parameter name '", name, "' appears twice");
    ENGINE_CHECK(seen.insert(p.impl().get()).second, kind_, ": parameter '", name,
                 "' is the same tensor as an earlier parameter");
    ENGINE_CHECK(p.is_leaf(), kind_, ": parameter '", name, "' is not a leaf tensor");
    ENGINE_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, kind_, ": parameter '", name,
                 "' has dtype ", dtype_name(p.dtype()), "; expected f32 or f64");
    ENGINE_CHECK(p.dtype() == first.dtype() && p.device() == first.device(), kind_, ": parameter '", name, "' is ",
                 dtype_name(p.dtype()), " on ", p.device().str(), " but '", params_.front().first, "' is ",
                 dtype_name(first.dtype()), " on ", first.device().str(),
                 "; one optimizer needs one dtype and device");
    ENGINE_CHECK(p.is_contiguous(), kind_, ": parameter '", name, "' is not contiguous");
    Slot slot;
    slot.name = name;
    slot.param = p;
    const bool no_decay = no_decay_bias_and_norm && (ends_with(name, "bias") || p.dim() <= 1);
    slot.weight_decay = no_decay ? 0.0 : weight_decay;
    slots_.push_back(std::move(slot));
  }
}

Optimizer::~Optimizer() = default;

void Optimizer::set_lr(double lr) {
  ENGINE_CHECK(std::isfinite(lr) && lr >= 0, kind_, ": invalid learning rate ", lr, " (must be >= 0)");
  lr_ = lr;
}

void Optimizer::zero_grad(bool set_to_none) {
  if (set_to_none) {
    for (Slot& s : slots_) s.param.zero_grad();
    return;
  }
  NoGradGuard no_grad;
  for (Slot& s : slots_) {
    Tensor g = s.param.grad();
    if (g.defined()) g.zero_();  // in place: the address a graph captured stays valid
  }
}

void Optimizer::step() {
  prepare_step();
  launch_step();
}

void Optimizer::prepare_step() {
  NoGradGuard no_grad;
  const Tensor& first = slots_.front().param;
  ENGINE_CHECK(!(first.device().is_cuda() && cuda::alloc::capturing()), kind_,
               ": prepare_step() (or step()) during a CUDA graph capture; call prepare_step() before the "
               "capture and before each replay, and launch_step() inside the capture");
  const int64_t step = step_count_ + 1;

  // Check every gradient before changing any state, so that an error leaves none behind.
  std::vector<Slot*> active;
  std::vector<Tensor> grads;  // contiguous; kept alive until the update has been queued
  for (Slot& s : slots_) {
    Tensor g = s.param.grad();
    if (!g.defined()) continue;  // no gradient: skipped, like PyTorch
    if (!s.param.requires_grad()) continue;  // frozen (Module::requires_grad_(false)): never updated
    ENGINE_CHECK(g.sizes() == s.param.sizes(), kind_, ": the grad of '", s.name, "' has shape ",
                 shape_str(g.sizes()), " but the parameter has shape ", shape_str(s.param.sizes()));
    ENGINE_CHECK(g.dtype() == s.param.dtype() && g.device() == s.param.device(), kind_, ": the grad of '",
                 s.name, "' is ", dtype_name(g.dtype()), " on ", g.device().str(), " but the parameter is ",
                 dtype_name(s.param.dtype()), " on ", s.param.device().str());
    active.push_back(&s);
    grads.push_back(g.contiguous());
  }

  std::vector<kern::OptimTensor> tensors;
  for (size_t k = 0; k < active.size(); ++k) {
    Slot& s = *active[k];
    if (s.buffers.empty()) {
      for (size_t b = 0; b < buffer_names_.size(); ++b)
        s.buffers.push_back(zeros(s.param.sizes(), TensorOptions(s.param.dtype()).device(s.param.device())));
    }
    s.steps += 1;
    if (s.param.numel() == 0) continue;
    kern::OptimTensor d;
    d.param = s.param.raw_data();
    d.grad = grads[k].raw_data();
    d.buf1 = s.buffers.size() > 0 ? s.buffers[0].raw_data() : nullptr;
    d.buf2 = s.buffers.size() > 1 ? s.buffers[1].raw_data() : nullptr;
    d.numel = s.param.numel();
    d.weight_decay = s.weight_decay;
    d.step_lag = step - s.steps;
    tensors.push_back(d);
  }

  Prepared p;
  p.scalars.lr = lr_;
  p.scalars.step = step;
  if (first.device().is_cuda()) {
    p.device_tensors = upload(tensors, p.num_chunks);
    // lr and step: a block allocated once (its address is what a captured update reads),
    // written by an asynchronous copy from a fresh pinned block on the kernels' stream (so
    // an update queued earlier still reads the old values; the pinned allocator keeps the
    // host block from reuse until the copy has passed).
    constexpr int64_t kBytes = static_cast<int64_t>(sizeof(kern::OptimScalars));
    if (!device_scalars_.defined())
      device_scalars_ = empty({kBytes}, TensorOptions(DType::u8).device(first.device()));
    Tensor staging = empty_pinned({kBytes}, DType::u8);
    std::memcpy(staging.raw_data(), &p.scalars, sizeof(kern::OptimScalars));
    ENGINE_IF_CUDA(kern::cuda::memcpy_h2d_async(device_scalars_.raw_data(), staging.raw_data(),
                                                sizeof(kern::OptimScalars), cuda::stream()));
  } else {
    p.num_chunks = kern::plan_chunks(tensors.data(), static_cast<int64_t>(tensors.size()));
  }
  p.tensors = std::move(tensors);
  p.grads = std::move(grads);
  p.ready = true;
  prepared_ = std::move(p);
  step_count_ = step;
}

void Optimizer::launch_step() {
  ENGINE_CHECK(prepared_.ready, kind_, ": launch_step() without a prepare_step() before it");
  NoGradGuard no_grad;
  const Tensor& first = slots_.front().param;
  const int64_t count = static_cast<int64_t>(prepared_.tensors.size());
  if (first.device().is_cuda()) {
    update(static_cast<const kern::OptimScalars*>(device_scalars_.raw_data()), prepared_.device_tensors, count,
           prepared_.num_chunks, first.dtype(), first.device());
  } else {
    update(&prepared_.scalars, prepared_.tensors.data(), count, prepared_.num_chunks, first.dtype(),
           first.device());
  }
  // The grads stay referenced by their parameters; only the contiguous copies are dropped.
  prepared_ = Prepared();
}

const kern::OptimTensor* Optimizer::upload(std::vector<kern::OptimTensor>& tensors, int64_t& num_chunks) {
  num_chunks = kern::plan_chunks(tensors.data(), static_cast<int64_t>(tensors.size()));
  if (tensors.empty()) return nullptr;
  if (!device_descriptors_.defined() || tensors != uploaded_) {
    const int64_t nbytes = static_cast<int64_t>(tensors.size() * sizeof(kern::OptimTensor));
    if (!device_descriptors_.defined() || device_descriptors_.numel() < nbytes)
      device_descriptors_ = empty({nbytes}, TensorOptions(DType::u8).device(slots_.front().param.device()));
    // Asynchronous, from a fresh pinned block (no host sync in a step): the copy is queued on
    // the kernels' stream, so a launch still reading the old device copy finishes first, and
    // the pinned allocator keeps the host block from reuse until the copy has passed.
    Tensor staging = empty_pinned({nbytes}, DType::u8);
    std::memcpy(staging.raw_data(), tensors.data(), static_cast<size_t>(nbytes));
    ENGINE_IF_CUDA(kern::cuda::memcpy_h2d_async(device_descriptors_.raw_data(), staging.raw_data(),
                                                static_cast<size_t>(nbytes), cuda::stream()));
    uploaded_ = tensors;
    ++uploads_;
  }
  return static_cast<const kern::OptimTensor*>(device_descriptors_.raw_data());
}

NamedTensors Optimizer::state_tensors() const {
  NamedTensors state;
  for (const Slot& s : slots_) {
    if (s.steps == 0) continue;
    for (size_t b = 0; b < buffer_names_.size(); ++b) state.emplace_back(buffer_names_[b] + "." + s.name, s.buffers[b]);
    state.emplace_back("step." + s.name, from_vector<int64_t>({s.steps}, {1}));
  }
  return state;
}

void Optimizer::load_state(const NamedTensors& state, int64_t step_count) {
  ENGINE_CHECK(step_count >= 0, kind_, ": load_state: step_count ", step_count, " is negative");
  std::map<std::string, size_t> slot_of;
  for (size_t i = 0; i < slots_.size(); ++i) slot_of[slots_[i].name] = i;

  // Sort the entries by parameter; "step" is kept apart from the buffers.
  std::vector<std::vector<Tensor>> buffers(slots_.size(), std::vector<Tensor>(buffer_names_.size()));
  std::vector<Tensor> steps(slots_.size());
  std::set<std::string> keys;
  for (const auto& [key, t] : state) {
    ENGINE_CHECK(keys.insert(key).second, kind_, ": load_state: key '", key, "' appears twice");
    const size_t dot = key.find('.');
    ENGINE_CHECK(dot != std::string::npos, kind_, ": load_state: unexpected key '", key, "'");
    const std::string prefix = key.substr(0, dot), name = key.substr(dot + 1);
    auto it = slot_of.find(name);
    ENGINE_CHECK(it != slot_of.end(), kind_, ": load_state: key '", key, "' names no parameter of this optimizer");
    ENGINE_CHECK(t.defined(), kind_, ": load_state: '", key, "' is undefined");
    if (prefix == "step") {
      steps[it->second] = t;
      continue;
    }
    size_t b = 0;
    while (b < buffer_names_.size() && buffer_names_[b] != prefix) ++b;
    ENGINE_CHECK(b < buffer_names_.size(), kind_, ": load_state: unexpected key '", key, "'");
    const Tensor& p = slots_[it->second].param;
    ENGINE_CHECK(t.sizes() == p.sizes(), kind_, ": load_state: '", key, "' has shape ", shape_str(t.sizes()),
                 " but the parameter has shape ", shape_str(p.sizes()));
    ENGINE_CHECK(is_floating(t.dtype()), kind_, ": load_state: '", key, "' is not a float tensor");
    buffers[it->second][b] = t;
  }

  // Check every parameter's entries are complete, then commit.
  std::vector<int64_t> new_steps(slots_.size(), 0);
  for (size_t i = 0; i < slots_.size(); ++i) {
    size_t present = steps[i].defined() ? 1 : 0;
    for (const Tensor& b : buffers[i]) present += b.defined() ? 1 : 0;
    if (present == 0) continue;
    ENGINE_CHECK(present == buffer_names_.size() + 1, kind_, ": load_state: the state of '", slots_[i].name,
                 "' is incomplete (needs step and ", buffer_names_.size(), " buffer(s))");
    ENGINE_CHECK(steps[i].numel() == 1, kind_, ": load_state: 'step.", slots_[i].name, "' must hold one value");
    const double v = steps[i].item();
    ENGINE_CHECK(v >= 1 && v <= static_cast<double>(step_count) && v == std::floor(v), kind_,
                 ": load_state: 'step.", slots_[i].name, "' = ", v, " must be an integer in [1, step_count = ",
                 step_count, "]");
    new_steps[i] = static_cast<int64_t>(v);
  }
  NoGradGuard no_grad;
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    s.buffers.clear();
    s.steps = new_steps[i];
    if (s.steps == 0) continue;
    for (const Tensor& src : buffers[i]) {
      Tensor dst = empty(s.param.sizes(), TensorOptions(s.param.dtype()).device(s.param.device()));
      dst.copy_(src);
      s.buffers.push_back(dst);
    }
  }
  step_count_ = step_count;
}

}  // namespace eng::optim
