// Loss normalisers computed on the loss's device from the per-image positive counts of
// eng::det::assign_targets (no host copy). Internal to models/src.
#pragma once
#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/tensor.h"

namespace models::detail {

// 1 / max(1, sum_b num_positive[b]) as a 0-dim tensor of dtype dt on num_positive's device.
// Losses multiply by it: x * fl(1 / N) is what div_scalar(x, N) computed when N came from
// the host (div_scalar multiplies by the reciprocal), so forward values and gradients are
// bit-identical to that. The float quotient 1.0f / N equals (float)(1.0 / N) for every
// integer N <= 2^24, and the count is a sum of integers, exact in f32 up to 2^24.
inline eng::Tensor inverse_positive_count(const eng::Tensor& num_positive, eng::DType dt) {
  eng::NoGradGuard ng;
  const eng::TensorOptions opts = eng::TensorOptions(dt).device(num_positive.device());
  eng::Tensor n = eng::clamp(eng::sum(num_positive.to(dt)), 1.0, INFINITY);  // max(1, num_pos)
  return eng::div(eng::full({}, 1.0, opts), n);
}

// RetinaNet's per-image weights 1 / (B max(1, num_positive[b])) as f32 [B]: the same float
// operations, in the same order, as the host expression 1.0f / (float(B) * float(max(1, fg))).
inline eng::Tensor retinanet_image_weights(const eng::Tensor& num_positive) {
  eng::NoGradGuard ng;
  const int64_t B = num_positive.size(0);
  eng::Tensor fg = eng::clamp(num_positive.to(eng::DType::f32), 1.0, INFINITY);
  return eng::div(eng::full({B}, 1.0, eng::TensorOptions(eng::DType::f32).device(num_positive.device())),
                  eng::mul_scalar(fg, static_cast<double>(B)));
}

}  // namespace models::detail
