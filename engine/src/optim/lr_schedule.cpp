// Learning-rate schedules (formulas in engine/include/engine/optim.h).
#include <cmath>

#include "engine/optim.h"

namespace eng::optim {

namespace {

void check_iter(int64_t iter, const char* kind) {
  ENGINE_CHECK(iter >= 0, kind, ": lr_at(", iter, "): the iteration must be >= 0");
}

void check_lr(double lr, const char* kind, const char* what) {
  ENGINE_CHECK(std::isfinite(lr) && lr >= 0, kind, ": invalid ", what, " ", lr, " (must be >= 0)");
}

}  // namespace

ConstantLr::ConstantLr(double base_lr) : base_lr_(base_lr) { check_lr(base_lr, "ConstantLr", "base_lr"); }

double ConstantLr::lr_at(int64_t iter) const {
  check_iter(iter, "ConstantLr");
  return base_lr_;
}

MultiStep::MultiStep(double base_lr, std::vector<int64_t> milestones, double gamma)
    : base_lr_(base_lr), milestones_(std::move(milestones)), gamma_(gamma) {
  check_lr(base_lr, "MultiStep", "base_lr");
  ENGINE_CHECK(std::isfinite(gamma) && gamma > 0, "MultiStep: invalid gamma ", gamma, " (must be > 0)");
  for (size_t i = 0; i < milestones_.size(); ++i) {
    ENGINE_CHECK(milestones_[i] >= 0, "MultiStep: milestone ", milestones_[i], " is negative");
    ENGINE_CHECK(i == 0 || milestones_[i] > milestones_[i - 1], "MultiStep: milestones must be increasing, got ",
                 milestones_[i - 1], " then ", milestones_[i]);
  }
}

double MultiStep::lr_at(int64_t iter) const {
  check_iter(iter, "MultiStep");
  double lr = base_lr_;
  for (int64_t m : milestones_)
    if (m <= iter) lr *= gamma_;
  return lr;
}

Cosine::Cosine(double base_lr, int64_t total_iters, double min_lr)
    : base_lr_(base_lr), total_iters_(total_iters), min_lr_(min_lr) {
  check_lr(base_lr, "Cosine", "base_lr");
  check_lr(min_lr, "Cosine", "min_lr");
  ENGINE_CHECK(total_iters > 0, "Cosine: total_iters must be > 0, got ", total_iters);
}

double Cosine::lr_at(int64_t iter) const {
  check_iter(iter, "Cosine");
  if (iter >= total_iters_) return min_lr_;
  const double pi = std::acos(-1.0);
  const double progress = static_cast<double>(iter) / static_cast<double>(total_iters_);
  return min_lr_ + (base_lr_ - min_lr_) * (1.0 + std::cos(pi * progress)) / 2.0;
}

LinearWarmup::LinearWarmup(std::shared_ptr<const LrSchedule> inner, int64_t warmup_iters, double warmup_factor)
    : inner_(std::move(inner)), warmup_iters_(warmup_iters), warmup_factor_(warmup_factor) {
  ENGINE_CHECK(inner_ != nullptr, "LinearWarmup: the inner schedule is null");
  ENGINE_CHECK(warmup_iters >= 0, "LinearWarmup: warmup_iters must be >= 0, got ", warmup_iters);
  ENGINE_CHECK(warmup_factor > 0 && warmup_factor <= 1, "LinearWarmup: warmup_factor must be in (0, 1], got ",
               warmup_factor);
}

double LinearWarmup::factor_at(int64_t iter) const {
  check_iter(iter, "LinearWarmup");
  if (iter >= warmup_iters_) return 1.0;
  const double alpha = static_cast<double>(iter) / static_cast<double>(warmup_iters_);
  return warmup_factor_ + (1.0 - warmup_factor_) * alpha;
}

double LinearWarmup::lr_at(int64_t iter) const { return inner_->lr_at(iter) * factor_at(iter); }

}  // namespace eng::optim
