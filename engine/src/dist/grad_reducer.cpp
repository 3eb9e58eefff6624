// GradReducer (bucketed gradient all-reduce during backward) and broadcast_module.
// The bucket layout and launch rules are described in engine/dist/grad_reducer.h.
#include "engine/dist/grad_reducer.h"

#include <cmath>
#include <map>
#include <sstream>
#include <unordered_set>

#include "engine/error.h"
#include "engine/ops.h"

namespace eng::dist {

GradReducer::GradReducer(Communicator& comm, const nn::NamedTensors& params, GradReducerOptions opts)
    : comm_(comm), opts_(opts) {
  ENGINE_CHECK(opts.bucket_bytes > 0, "GradReducer: bucket_bytes ", opts.bucket_bytes, " must be positive");
  ENGINE_CHECK(std::isfinite(opts.scale), "GradReducer: scale ", opts.scale, " is not finite");
  std::unordered_set<TensorImpl*> seen;
  for (const auto& [name, t] : params) {
    ENGINE_CHECK(t.defined(), "GradReducer: parameter ", name, " is undefined");
    ENGINE_CHECK(t.is_leaf(), "GradReducer: parameter ", name, " must be a leaf (it is the output of an op)");
    if (!t.requires_grad()) continue;  // frozen: not trained, not reduced (like DDP)
    ENGINE_CHECK(seen.insert(t.impl().get()).second, "GradReducer: parameter ", name, " is listed twice");
    params_.push_back({name, t, 0, false});
  }
  // Reverse registration order; one open bucket per (dtype, device), closed before it would
  // exceed bucket_bytes. Buckets are numbered in the order they were opened.
  std::map<std::string, int> open;
  for (int i = static_cast<int>(params_.size()) - 1; i >= 0; --i) {
    const Tensor& t = params_[i].tensor;
    const int64_t bytes = t.numel() * static_cast<int64_t>(dtype_size(t.dtype()));
    const std::string key = std::string(dtype_name(t.dtype())) + "@" + t.device().str();
    auto it = open.find(key);
    if (it != open.end() && buckets_[it->second].bytes + bytes > opts.bucket_bytes) {
      open.erase(it);
      it = open.end();
    }
    if (it == open.end()) {
      buckets_.emplace_back();
      it = open.emplace(key, static_cast<int>(buckets_.size()) - 1).first;
    }
    Bucket& b = buckets_[it->second];
    b.params.push_back(i);
    b.bytes += bytes;
    b.numel += t.numel();
    params_[i].bucket = it->second;
  }
  for (int i = 0; i < static_cast<int>(params_.size()); ++i)
    hooks_.push_back(register_post_accumulate_grad_hook(params_[i].tensor, [this, i](const Tensor&) { on_grad_ready(i); }));
}

GradReducer::~GradReducer() {
  for (HookHandle& h : hooks_) h.remove();
}

void GradReducer::set_enabled(bool on) {
  ENGINE_CHECK(ready_params_ == 0, "GradReducer: set_enabled(", on ? "true" : "false",
               ") after gradients of this step were handed to the reducer: call finish() first");
  enabled_ = on;
}

int64_t GradReducer::bytes_per_step() const {
  int64_t total = 0;
  for (const Bucket& b : buckets_) total += b.bytes;
  return total;
}

std::vector<std::vector<std::string>> GradReducer::bucket_names() const {
  std::vector<std::vector<std::string>> out;
  for (const Bucket& b : buckets_) {
    out.emplace_back();
    for (int i : b.params) out.back().push_back(params_[i].name);
  }
  return out;
}

std::vector<int64_t> GradReducer::bucket_bytes() const {
  std::vector<int64_t> out;
  for (const Bucket& b : buckets_) out.push_back(b.bytes);
  return out;
}

void GradReducer::on_grad_ready(int index) {
  if (!enabled_) return;
  Param& p = params_[index];
  ENGINE_CHECK(!p.ready, "GradReducer: parameter ", p.name,
               " got a gradient twice in one step (two backward passes before finish(): use set_enabled(false) "
               "for all but the last micro-step)");
  p.ready = true;
  ++ready_params_;
  Bucket& b = buckets_[p.bucket];
  if (++b.ready == static_cast<int>(b.params.size())) {
    const int before = next_launch_;
    launch_ready();
    launched_in_backward_ += next_launch_ - before;
  }
}

// Launches buckets in bucket order while the next one is complete.
void GradReducer::launch_ready() {
  while (next_launch_ < static_cast<int>(buckets_.size()) &&
         buckets_[next_launch_].ready == static_cast<int>(buckets_[next_launch_].params.size()))
    launch(next_launch_++);
}

void GradReducer::launch(int k) {
  NoGradGuard guard;
  Bucket& b = buckets_[k];
  std::vector<Tensor> flat_parts;
  for (int i : b.params) {
    Tensor& t = params_[i].tensor;
    if (!t.grad().defined()) t.set_grad(zeros(t.sizes(), TensorOptions(t.dtype()).device(t.device())));
    flat_parts.push_back(t.grad().reshape({-1}));
  }
  b.flat = flat_parts.size() == 1 ? flat_parts[0].contiguous().clone() : concat(flat_parts, 0);
  b.work = comm_.all_reduce_async(b.flat, opts_.scale);
  b.launched = true;
  launched_.push_back(k);
}

void GradReducer::finish() {
  if (!enabled_) return;
  // Buckets backward did not complete: mark every parameter ready (no gradient -> zeros).
  for (Bucket& b : buckets_) b.ready = static_cast<int>(b.params.size());
  launch_ready();
  NoGradGuard guard;
  for (Bucket& b : buckets_) {
    b.work->wait();
    int64_t offset = 0;
    for (int i : b.params) {
      Tensor g = params_[i].tensor.grad();
      const int64_t n = g.numel();
      g.copy_(b.flat.narrow(0, offset, n).view(g.sizes()));
      offset += n;
    }
  }
  // Reset for the next step.
  for (Bucket& b : buckets_) {
    b.work.reset();
    b.flat = Tensor();
    b.ready = 0;
    b.launched = false;
  }
  for (Param& p : params_) p.ready = false;
  next_launch_ = 0;
  ready_params_ = 0;
  launched_.clear();
  launched_in_backward_ = 0;
}

void broadcast_module(Communicator& comm, nn::Module& module, int root) {
  nn::NamedTensors all = module.named_parameters();
  for (auto& nb : module.named_buffers()) all.push_back(nb);
  // Same names, shapes and dtypes everywhere, or a broadcast would mix up tensors.
  std::ostringstream sig;
  for (const auto& [name, t] : all) sig << name << ' ' << shape_str(t.sizes()) << ' ' << dtype_name(t.dtype()) << '\n';
  const std::string mine = sig.str();
  const auto sigs = comm.all_gather_bytes(std::vector<uint8_t>(mine.begin(), mine.end()));
  for (size_t r = 0; r < sigs.size(); ++r) {
    const std::string other(sigs[r].begin(), sigs[r].end());
    if (other == mine) continue;
    // The first differing line, for the message.
    std::istringstream a(mine), b(other);
    std::string la, lb;
    for (;;) {
      const bool ha = static_cast<bool>(std::getline(a, la)), hb = static_cast<bool>(std::getline(b, lb));
      if (!ha) la = "(nothing more)";
      if (!hb) lb = "(nothing more)";
      if (!ha || !hb || la != lb) break;
    }
    ENGINE_FAIL("broadcast_module: rank ", comm.rank(), " has '", la, "' where rank ", r, " has '", lb,
                "' (the ranks built different models)");
  }
  NoGradGuard guard;
  for (auto& [name, t] : all) {
    try {
      if (t.is_contiguous()) {
        comm.broadcast(t, root);
      } else {
        Tensor c = t.contiguous().clone();
        comm.broadcast(c, root);
        t.copy_(c);
      }
    } catch (const Error& e) {
      ENGINE_FAIL("broadcast_module: ", name, ": ", e.what());
    }
  }
}

}  // namespace eng::dist
