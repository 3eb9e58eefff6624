#include "common/loss_meter.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace app {

void LossMeter::add(const models::LossParts& parts, int64_t iteration) {
  eng::NoGradGuard no_grad;
  const eng::Tensor t = parts.total.detach(), c = parts.classification.detach(), b = parts.box_regression.detach();
  if (!seen_step_ && component_names_.empty()) {
    for (const auto& [name, value] : parts.components) component_names_.push_back(name);
    sum_components_.assign(component_names_.size(), 0.0);
  }
  seen_step_ = true;
  ENGINE_CHECK(parts.components.size() == component_names_.size(), "LossMeter::add: iteration ", iteration, " has ",
               parts.components.size(), " loss components, the run's first step had ", component_names_.size());
  for (size_t i = 0; i < component_names_.size(); ++i)
    ENGINE_CHECK(parts.components[i].first == component_names_[i], "LossMeter::add: loss component ", i, " of iteration ",
                 iteration, " is '", parts.components[i].first, "', the run's first step named '", component_names_[i],
                 "'");
  if (pending_ == 0) {
    // The first step of a read: keep the (detached) values themselves, no launch.
    total_ = t;
    cls_ = c;
    box_ = b;
    components_.clear();
    for (const auto& kv : parts.components) components_.push_back(kv.second.detach().to(t.dtype()).reshape({}));
    first_pending_ = iteration;
  } else {
    total_ = eng::add(total_, t);
    cls_ = eng::add(cls_, c);
    box_ = eng::add(box_, b);
    for (size_t i = 0; i < components_.size(); ++i)
      components_[i] = eng::add(components_[i], parts.components[i].second.detach().to(t.dtype()).reshape({}));
  }
  last_pending_ = iteration;
  ++pending_;
}

void LossMeter::add_sums(const eng::Tensor& sums, int64_t first_iteration, int64_t last_iteration) {
  ENGINE_CHECK(sums.numel() == 3 && last_iteration >= first_iteration, "LossMeter::add_sums: expected 3 sums over ",
               "iterations first <= last, got ", sums.numel(), " over ", first_iteration, "-", last_iteration);
  ENGINE_CHECK(component_names_.empty(), "LossMeter::add_sums: the run's steps have ", component_names_.size(),
               " named loss components, device-summed steps (a CUDA graph) carry none");
  seen_step_ = true;
  eng::NoGradGuard no_grad;
  const eng::Tensor flat = sums.detach().reshape({3});
  const eng::Tensor t = flat.select(0, 0), c = flat.select(0, 1), b = flat.select(0, 2);
  if (pending_ == 0) {
    total_ = t;
    cls_ = c;
    box_ = b;
    first_pending_ = first_iteration;
    last_pending_ = last_iteration;
  } else {
    total_ = eng::add(total_, t);
    cls_ = eng::add(cls_, c);
    box_ = eng::add(box_, b);
    first_pending_ = std::min(first_pending_, first_iteration);
    last_pending_ = std::max(last_pending_, last_iteration);
  }
  pending_ += last_iteration - first_iteration + 1;
}

eng::Tensor running_max(const eng::Tensor& acc, const eng::Tensor& x) {
  eng::NoGradGuard no_grad;
  const eng::Tensor a = acc.detach().to(eng::DType::f32).reshape({1}), b = x.detach().to(eng::DType::f32).reshape({1});
  // max over the pair keeps the first of equal or unordered values, so a NaN acc stays; a
  // non-finite x adds (x - x) = NaN.
  const eng::Tensor m = eng::max(eng::concat({a, b}, 0), 0).first;
  return eng::add(m, eng::sub(b.reshape({}), b.reshape({})));
}

void LossMeter::add_grad_norm(const eng::Tensor& norm) {
  eng::NoGradGuard no_grad;
  grad_norm_max_ = grad_norm_max_.defined() ? running_max(grad_norm_max_, norm)
                                            : norm.detach().to(eng::DType::f32).reshape({});
}

LossMeter::Check LossMeter::check() {
  Check r;
  if (pending_ == 0) return r;
  eng::NoGradGuard no_grad;
  // One read for the three sums (and the norm max): concatenated on their device, copied back once.
  // Layout: total, classification, box, the named components, then the norm max.
  std::vector<eng::Tensor> parts = {total_.reshape({1}), cls_.reshape({1}), box_.reshape({1})};
  for (const eng::Tensor& comp : components_) parts.push_back(comp.reshape({1}));
  const size_t n_sums = parts.size();
  if (grad_norm_max_.defined()) parts.push_back(grad_norm_max_.to(total_.dtype()).reshape({1}));
  const eng::Tensor all = eng::concat(parts, 0);
  std::vector<double> v = all.to_vector<double>();
  if (comm_ != nullptr && comm_->size() > 1) {
    // [world, k]: every rank's sums; the global ones are added in rank order (the same bits
    // on every rank), the gradient norm is the same on every rank after the all-reduce.
    const std::vector<double> g = comm_->all_gather(all.to(eng::DType::f64).to(eng::Device::cpu())).to_vector<double>();
    const size_t k = v.size();
    for (size_t j = 0; j < n_sums; ++j) v[j] = 0;
    for (int rk = 0; rk < comm_->size(); ++rk) {
      bool finite = true;
      for (size_t j = 0; j < n_sums; ++j) {
        const double x = g[static_cast<size_t>(rk) * k + j];
        v[j] += x;
        finite = finite && std::isfinite(x);
      }
      if (!finite && r.rank < 0) r.rank = rk;
    }
  }
  if (grad_norm_max_.defined()) {
    // NaN-sticky, as running_max: a non-finite norm in any checked step keeps the interval's NaN.
    const double n = std::isfinite(v[n_sums]) ? v[n_sums] : NAN;
    if (!interval_has_norm_) {
      interval_norm_max_ = n;
    } else if (!std::isnan(interval_norm_max_)) {
      interval_norm_max_ = std::isnan(n) ? n : std::max(interval_norm_max_, n);
    }
    interval_has_norm_ = true;
    grad_norm_max_ = eng::Tensor();
  }
  r.first_iteration = first_pending_;
  r.last_iteration = last_pending_;
  r.finite = std::isfinite(v[0]) && std::isfinite(v[1]) && std::isfinite(v[2]);
  r.loss = v[0];
  sum_loss_ += v[0];
  sum_cls_ += v[1];
  sum_box_ += v[2];
  for (size_t i = 0; i < components_.size(); ++i) sum_components_[i] += v[3 + i];
  interval_steps_ += pending_;
  total_ = cls_ = box_ = eng::Tensor();
  components_.clear();
  pending_ = 0;
  return r;
}

LossMeter::Interval LossMeter::take_interval() {
  Interval r;
  r.steps = interval_steps_;
  if (interval_steps_ > 0) {
    const double k = static_cast<double>(interval_steps_);
    r.loss = sum_loss_ / k;
    r.cls = sum_cls_ / k;
    r.box = sum_box_ / k;
    for (size_t i = 0; i < component_names_.size(); ++i)
      r.components.emplace_back(component_names_[i], sum_components_[i] / k);
  }
  std::fill(sum_components_.begin(), sum_components_.end(), 0.0);
  r.has_grad_norm = interval_has_norm_;
  r.grad_norm_max = interval_has_norm_ ? interval_norm_max_ : -1;
  sum_loss_ = sum_cls_ = sum_box_ = 0;
  interval_steps_ = 0;
  interval_has_norm_ = false;
  interval_norm_max_ = 0;
  return r;
}

}  // namespace app
