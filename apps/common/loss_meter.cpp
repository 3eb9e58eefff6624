#include "common/loss_meter.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace app {

void LossMeter::add(const models::LossParts& parts, int64_t iteration) {
  eng::NoGradGuard no_grad;
  const eng::Tensor t = parts.total.detach(), c = parts.classification.detach(), b = parts.box_regression.detach();
  if (pending_ == 0) {
    // The first step of a read: keep the (detached) values themselves, no launch.
    total_ = t;
    cls_ = c;
    box_ = b;
    first_pending_ = iteration;
  } else {
    total_ = eng::add(total_, t);
    cls_ = eng::add(cls_, c);
    box_ = eng::add(box_, b);
  }
  last_pending_ = iteration;
  ++pending_;
}

void LossMeter::add_sums(const eng::Tensor& sums, int64_t first_iteration, int64_t last_iteration) {
  ENGINE_CHECK(sums.numel() == 3 && last_iteration >= first_iteration, "LossMeter::add_sums: expected 3 sums over ",
               "iterations first <= last, got ", sums.numel(), " over ", first_iteration, "-", last_iteration);
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

LossMeter::Check LossMeter::check() {
  Check r;
  if (pending_ == 0) return r;
  eng::NoGradGuard no_grad;
  // One read for the three sums: concatenated on their device, copied back once.
  const eng::Tensor all = eng::concat({total_.reshape({1}), cls_.reshape({1}), box_.reshape({1})}, 0);
  const std::vector<double> v = all.to_vector<double>();
  r.first_iteration = first_pending_;
  r.last_iteration = last_pending_;
  r.finite = std::isfinite(v[0]) && std::isfinite(v[1]) && std::isfinite(v[2]);
  r.loss = v[0];
  sum_loss_ += v[0];
  sum_cls_ += v[1];
  sum_box_ += v[2];
  interval_steps_ += pending_;
  total_ = cls_ = box_ = eng::Tensor();
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
  }
  sum_loss_ = sum_cls_ = sum_box_ = 0;
  interval_steps_ = 0;
  return r;
}

}  // namespace app
