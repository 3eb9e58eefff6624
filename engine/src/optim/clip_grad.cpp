// grad_norm and clip_grad_norm_ (engine/optim.h): built from existing device ops, so they
// need no kernel of their own and never wait for the device.
#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "engine/optim.h"

namespace eng::optim {

namespace {

std::vector<Tensor> tensors_of(const NamedTensors& params) {
  std::vector<Tensor> out;
  out.reserve(params.size());
  for (const auto& [name, p] : params) out.push_back(p);
  return out;
}

// The defined gradients of `params`, checked to share one device.
std::vector<Tensor> gradients(const char* op, const std::vector<Tensor>& params) {
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    ENGINE_CHECK(p.defined(), op, ": an undefined parameter");
    Tensor g = p.grad();
    if (!g.defined()) continue;
    ENGINE_CHECK(grads.empty() || g.device() == grads.front().device(), op, ": gradients on ",
                 grads.front().device().str(), " and ", g.device().str(), " (all must share one device)");
    grads.push_back(g);
  }
  return grads;
}

// sqrt(sum_p sum(g_p^2)) as 0-dim f32; each square-sum in the gradient's own dtype (as torch
// takes each tensor's norm in its dtype), then summed in f32.
Tensor total_norm(const std::vector<Tensor>& grads, Device device) {
  if (grads.empty()) return zeros({}, TensorOptions(DType::f32).device(device));
  std::vector<Tensor> squares;
  squares.reserve(grads.size());
  for (const Tensor& g : grads) squares.push_back(sum(square(g)).to(DType::f32).reshape({1}));
  return sqrt(sum(concat(squares, 0)));
}

Device device_of(const std::vector<Tensor>& params) {
  for (const Tensor& p : params)
    if (p.defined()) return p.device();
  return Device::cpu();
}

}  // namespace

Tensor grad_norm(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  return total_norm(gradients("grad_norm", params), device_of(params));
}

Tensor grad_norm(const NamedTensors& params) { return grad_norm(tensors_of(params)); }

Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
  ENGINE_CHECK(std::isfinite(max_norm) && max_norm > 0, "clip_grad_norm_: max_norm must be finite and > 0, got ",
               max_norm);
  NoGradGuard no_grad;
  const std::vector<Tensor> grads = gradients("clip_grad_norm_", params);
  const Tensor total = total_norm(grads, device_of(params));
  if (grads.empty()) return total;
  // coef = min(1, max_norm / (total + 1e-6)): NaN stays NaN (clamp passes it through), an
  // infinite total gives 0. Multiplying by a coefficient of 1 is exact, so gradients under
  // the limit are unchanged bit for bit (torch multiplies unconditionally too).
  const Tensor coef = clamp(div(full({}, max_norm, TensorOptions(DType::f32).device(total.device())),
                                add_scalar(total, 1e-6)),
                            -INFINITY, 1.0);
  for (const Tensor& g : grads) {
    Tensor target = g;  // a handle on the same storage: the update is in place
    target.copy_(mul(g, coef.to(g.dtype())));
  }
  return total;
}

Tensor clip_grad_norm_(const NamedTensors& params, double max_norm) {
  return clip_grad_norm_(tensors_of(params), max_norm);
}

}  // namespace eng::optim
