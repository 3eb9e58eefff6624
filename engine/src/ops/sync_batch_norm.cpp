// sync_batch_norm2d and convert_sync_batchnorm: the maths is in engine/dist/sync_batch_norm.h.
#include "engine/dist/sync_batch_norm.h"

#include "engine/autograd.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"

namespace eng::dist {

Tensor sync_batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                         Tensor running_var, bool training, double momentum, double eps) {
  Communicator* comm = current();
  if (!training || comm == nullptr || comm->size() == 1)
    return batch_norm2d(x, weight, bias, running_mean, running_var, training, momentum, eps);
  const char* op = "sync_batch_norm2d";
  ENGINE_CHECK(x.defined(), op, ": undefined input");
  ENGINE_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64 || x.dtype() == DType::bf16, op,
               ": expected a f32, f64 or bf16 input, got ", dtype_name(x.dtype()));
  ENGINE_CHECK(x.dim() == 4, op, ": expected a 4-d [N, C, H, W] input, got shape ", shape_str(x.sizes()));
  const int64_t C = x.size(1);
  const int64_t m = x.size(0) * x.size(2) * x.size(3);
  ENGINE_CHECK(m > 0, op, ": empty input of shape ", shape_str(x.sizes()), " (every rank needs values)");
  const DType ft = x.dtype() == DType::bf16 ? DType::f32 : x.dtype();  // the compute dtype
  for (const Tensor* t : std::initializer_list<const Tensor*>{&weight, &bias, &running_mean, &running_var}) {
    if (!t->defined()) continue;
    ENGINE_CHECK(t->dim() == 1 && t->size(0) == C && t->dtype() == ft && t->device() == x.device(), op,
                 ": the per-channel tensors must be ", dtype_name(ft), " [", C, "] on ", x.device().str(),
                 " for input ", shape_str(x.sizes()), ", got ", dtype_name(t->dtype()), " ",
                 shape_str(t->sizes()), " on ", t->device().str());
  }
  const Tensor xf = x.dtype() == ft ? x : x.to(ft);
  const Shape bc{1, C, 1, 1};
  const TensorOptions f64 = TensorOptions(DType::f64).device(x.device());

  // Pass 1: the global mean (the count travels with the sums, in f64).
  const Tensor count = full({1}, static_cast<double>(m), f64);
  const Tensor r1 = all_reduce_sum(concat({sum(xf, {0, 2, 3}).to(DType::f64), count}, 0));
  const Tensor n = r1.narrow(0, C, 1);
  const Tensor mean = div(r1.narrow(0, 0, C), n).to(ft);
  // Pass 2: the global biased variance around it.
  const Tensor xc = sub(xf, mean.view(bc));
  const Tensor s2 = all_reduce_sum(sum(square(xc), {0, 2, 3}).to(DType::f64));
  const Tensor var = div(s2, n).to(ft);
  Tensor scale = div(ones({C}, TensorOptions(ft).device(x.device())), sqrt(add_scalar(var, eps)));
  if (weight.defined()) scale = mul(scale, weight);
  Tensor y = mul(xc, scale.view(bc));
  if (bias.defined()) y = add(y, bias.view(bc));

  {
    NoGradGuard guard;
    if (running_mean.defined()) running_mean.copy_(running_mean * (1.0 - momentum) + mean.detach() * momentum);
    if (running_var.defined()) {
      const Tensor unbiased = div(s2.detach(), sub_scalar(n.detach(), 1.0)).to(ft);
      running_var.copy_(running_var * (1.0 - momentum) + unbiased * momentum);
    }
  }
  return x.dtype() == ft ? y : y.to(x.dtype());
}

int convert_sync_batchnorm(nn::Module& module) {
  int switched = 0;
  for (auto& [name, m] : module.named_modules()) {
    if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(m)) {
      bn->sync = true;
      ++switched;
    }
  }
  return switched;
}

}  // namespace eng::dist
