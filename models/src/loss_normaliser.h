// Loss normalisers computed on the loss's device from the per-image positive counts of
// eng::det::assign_targets (no host copy). Internal to models/src.
//
// Data-parallel training (engine/dist): when eng::dist::current() joins several ranks, the
// counts are summed over the ranks before the division, so every rank divides by the
// positives (or images) of the whole global batch, as GluonCV does; the gradients summed
// over the ranks then equal the single process's on the global batch. With no communicator
// (or one rank) nothing is reduced and the values are bit-identical to before.
#pragma once
#include <cmath>

#include "engine/autograd.h"
#include "engine/dist/communicator.h"
#include "engine/ops.h"
#include "engine/tensor.h"

namespace models::detail {

// t summed over the ranks of eng::dist::current() (a copy; t itself when single-process).
inline eng::Tensor sum_over_ranks(const eng::Tensor& t) {
  eng::dist::Communicator* comm = eng::dist::current();
  if (comm == nullptr || comm->size() == 1) return t;
  eng::Tensor r = t.contiguous().clone();
  comm->all_reduce(r);
  return r;
}

// 1 / max(1, sum over ranks and images of num_positive[b]) as a 0-dim tensor of dtype dt on num_positive's device.
// Losses multiply by it: x * fl(1 / N) is what div_scalar(x, N) computed when N came from
// the host (div_scalar multiplies by the reciprocal), so forward values and gradients are
// bit-identical to that. The float quotient 1.0f / N equals (float)(1.0 / N) for every
// integer N <= 2^24, and the count is a sum of integers, exact in f32 up to 2^24.
inline eng::Tensor inverse_positive_count(const eng::Tensor& num_positive, eng::DType dt) {
  eng::NoGradGuard ng;
  const eng::TensorOptions opts = eng::TensorOptions(dt).device(num_positive.device());
  eng::Tensor n = eng::clamp(sum_over_ranks(eng::sum(num_positive.to(dt))), 1.0, INFINITY);  // max(1, num_pos)
  return eng::div(eng::full({}, 1.0, opts), n);
}

// RetinaNet's per-image weights 1 / (B max(1, num_positive[b])) as f32 [B]: the same float
// operations, in the same order, as the host expression 1.0f / (float(B) * float(max(1, fg))).
// B is the global batch: the images of every rank (each rank's own count, summed, since a
// rank's shard can lose a bad image).
inline eng::Tensor retinanet_image_weights(const eng::Tensor& num_positive) {
  eng::NoGradGuard ng;
  const int64_t B = num_positive.size(0);
  const eng::TensorOptions f32 = eng::TensorOptions(eng::DType::f32).device(num_positive.device());
  eng::Tensor fg = eng::clamp(num_positive.to(eng::DType::f32), 1.0, INFINITY);
  if (eng::dist::current() != nullptr && eng::dist::current()->size() > 1) {
    // The global batch as a device scalar (no host round trip): fg * B_global, rounded as
    // the single-process fg * B.
    eng::Tensor b = sum_over_ranks(eng::full({1}, static_cast<double>(B), f32));
    return eng::div(eng::full({B}, 1.0, f32), eng::mul(fg, b));
  }
  return eng::div(eng::full({B}, 1.0, f32), eng::mul_scalar(fg, static_cast<double>(B)));
}

}  // namespace models::detail
