// nn::Module: registration, recursive lookup, state_dict loading, modes and placement.
#include "engine/nn/module.h"

#include <set>
#include <sstream>

#include "engine/autograd.h"
#include "engine/error.h"

namespace eng::nn {

Tensor Module::forward(const Tensor&) { ENGINE_FAIL("forward not implemented for ", type_name_); }

// ---- registration ----
void Module::check_new_name(const std::string& name) const {
  ENGINE_CHECK(!name.empty(), type_name_, ": cannot register an empty name");
  ENGINE_CHECK(name.find('.') == std::string::npos, type_name_, ": name '", name, "' must not contain '.'");
  auto taken = [&](const auto& list) {
    for (const auto& kv : list)
      if (kv.first == name) return true;
    return false;
  };
  ENGINE_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), type_name_, ": name '", name,
               "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_new_name(name);
  ENGINE_CHECK(t.defined(), type_name_, ": parameter '", name, "' is undefined");
  ENGINE_CHECK(is_floating(t.dtype()), type_name_, ": parameter '", name, "' must be a float tensor, got ",
               dtype_name(t.dtype()));
  if (!t.is_leaf()) t = t.detach();
  t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name);
  ENGINE_CHECK(t.defined(), type_name_, ": buffer '", name, "' is undefined");
  if (t.requires_grad()) t = t.detach();
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name);
  ENGINE_CHECK(m != nullptr, type_name_, ": child module '", name, "' is null");
  children_.emplace_back(name, std::move(m));
}

// ---- lookup ----
void Module::collect(const std::string& prefix, bool params, bool bufs, NamedTensors& out) const {
  if (params)
    for (const auto& kv : params_) out.emplace_back(prefix + kv.first, kv.second);
  if (bufs)
    for (const auto& kv : buffers_) out.emplace_back(prefix + kv.first, kv.second);
  for (const auto& kv : children_) kv.second->collect(prefix + kv.first + ".", params, bufs, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& kv : named_parameters()) out.push_back(kv.second);
  return out;
}

std::vector<Tensor> Module::buffers() const {
  std::vector<Tensor> out;
  for (auto& kv : named_buffers()) out.push_back(kv.second);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const { return children_; }

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& kv : children_)
    for (auto& sub : kv.second->named_modules())
      out.emplace_back(sub.first.empty() ? kv.first : kv.first + "." + sub.first, sub.second);
  return out;
}

Tensor Module::find(const std::string& dotted_name) const {
  NamedTensors all;
  collect("", true, true, all);
  for (auto& kv : all)
    if (kv.first == dotted_name) return kv.second;
  ENGINE_FAIL(type_name_, ": no parameter or buffer named '", dotted_name, "'");
}

Module& Module::requires_grad_(bool on) {
  for (auto& kv : params_) kv.second.set_requires_grad(on);
  for (auto& kv : children_) kv.second->requires_grad_(on);
  return *this;
}

NamedTensors Module::named_trainable_parameters() const {
  NamedTensors out;
  for (auto& kv : named_parameters())
    if (kv.second.requires_grad()) out.push_back(kv);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& kv : named_parameters()) n += kv.second.numel();
  return n;
}

// ---- state ----
NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", true, true, out);
  for (auto& kv : out) kv.second = kv.second.detach();
  return out;
}

namespace {
std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + items[i];
  return s;
}
}  // namespace

LoadReport Module::load_state_dict(const NamedTensors& tensors, bool strict) {
  // Index the given tensors by name (a name given twice is a caller bug).
  std::map<std::string, Tensor> given;
  for (const auto& kv : tensors) {
    ENGINE_CHECK(given.emplace(kv.first, kv.second).second, "load_state_dict: key '", kv.first,
                 "' is given twice");
  }

  NamedTensors own;  // the module's real tensors, not detached copies
  collect("", true, true, own);

  LoadReport report;
  std::vector<std::pair<Tensor, Tensor>> to_copy;  // (destination, source)
  std::set<std::string> own_names;
  for (const auto& kv : own) {
    own_names.insert(kv.first);
    auto it = given.find(kv.first);
    if (it == given.end()) {
      report.missing.push_back(kv.first);
      continue;
    }
    const Tensor& src = it->second;
    ENGINE_CHECK(src.defined(), "load_state_dict: the tensor given for '", kv.first, "' is undefined");
    if (src.sizes() != kv.second.sizes()) {
      report.mismatched.push_back(kv.first + " (module " + shape_str(kv.second.sizes()) + ", given " +
                                  shape_str(src.sizes()) + ")");
      continue;
    }
    to_copy.emplace_back(kv.second, src);
    report.loaded.push_back(kv.first);
  }
  for (const auto& kv : tensors)
    if (!own_names.count(kv.first)) report.unexpected.push_back(kv.first);

  // One error naming every problem (in strict mode), or every shape mismatch (in both).
  std::vector<std::string> problems;
  if (strict && !report.missing.empty()) problems.push_back("missing keys: " + join(report.missing));
  if (strict && !report.unexpected.empty()) problems.push_back("unexpected keys: " + join(report.unexpected));
  if (!report.mismatched.empty()) problems.push_back("shape mismatches: " + join(report.mismatched));
  if (!problems.empty()) {
    std::string msg = "load_state_dict into " + type_name_ + ": ";
    for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    ENGINE_FAIL(msg);
  }

  NoGradGuard guard;
  for (auto& dst_src : to_copy) dst_src.first.copy_(dst_src.second);  // casts dtype, crosses devices
  return report;
}

LoadReport Module::load_state_dict(const std::map<std::string, Tensor>& tensors, bool strict) {
  return load_state_dict(NamedTensors(tensors.begin(), tensors.end()), strict);
}

// ---- modes and placement ----
void Module::train(bool on) {
  training_ = on;
  for (auto& kv : children_) kv.second->train(on);
}

namespace {
// Moves the tensor behind `t` to `device` by replacing the storage inside its TensorImpl,
// so every handle sharing this impl sees the move. The data lands contiguous.
void move_in_place(Tensor& t, Device device) {
  if (t.device() == device) return;
  Tensor moved = t.detach().to(device).contiguous();
  TensorImpl& impl = *t.impl();
  impl.storage = moved.storage();
  impl.offset = moved.storage_offset();
  impl.strides = moved.strides();
  if (impl.grad.defined()) impl.grad = impl.grad.detach().to(device);
}
}  // namespace

void Module::to(Device device) {
  NoGradGuard guard;
  for (auto& kv : params_) move_in_place(kv.second, device);
  for (auto& kv : buffers_) move_in_place(kv.second, device);
  for (auto& kv : children_) kv.second->to(device);
}

void Module::zero_grad() {
  for (auto& kv : named_parameters()) kv.second.zero_grad();
}

}  // namespace eng::nn
