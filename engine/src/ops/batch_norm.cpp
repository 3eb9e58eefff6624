// Batch-norm front-ends: batch_norm2d (train / eval, running-stat update) and
// frozen_batch_norm2d (torchvision's FrozenBatchNorm2d: a fixed per-channel affine map).
// Maths in kernels/batch_norm.h. Both also take bf16 activations with f32 parameters and
// statistics (float maths, bf16 output and input gradient, f32 parameter gradients).
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"
#include "kernels/batch_norm.h"

namespace eng {
using namespace detail;

namespace {

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// A per-channel tensor must be 1-d [C] when given (it may be undefined only if `optional`).
void check_channel_param(const char* op, const Tensor& t, const char* what, int64_t C, const Tensor& x,
                         bool optional) {
  if (!t.defined()) {
    ENGINE_CHECK(optional, op, ": ", what, " is undefined");
    return;
  }
  ENGINE_CHECK(t.dim() == 1 && t.size(0) == C, op, ": ", what, " must have shape [", C, "] for input ",
               shape_str(x.sizes()), ", got ", shape_str(t.sizes()));
}

// The dtype of the per-channel tensors: the input's, or f32 for a bf16 input.
DType param_dtype(const Tensor& x) { return x.dtype() == DType::bf16 ? DType::f32 : x.dtype(); }

// Every defined per-channel tensor on the input's device with dtype param_dtype(x).
void check_bn_params(const char* op, const Tensor& x, const std::vector<Tensor>& params) {
  if (x.dtype() != DType::bf16) {
    std::vector<Tensor> all{x};
    all.insert(all.end(), params.begin(), params.end());
    check_same_device_dtype(op, all);
    return;
  }
  for (const Tensor& p : params) {
    if (!p.defined()) continue;
    ENGINE_CHECK(p.dtype() == DType::f32 && p.device() == x.device(), op, ": the parameters must be f32 on ",
                 x.device().str(), " for a bf16 input of shape ", shape_str(x.sizes()), ", got ",
                 dtype_name(p.dtype()), " on ", p.device().str());
  }
}

void check_bn_input(const char* op, const Tensor& x) {
  ENGINE_CHECK(x.defined(), op, ": undefined input");
  check_floating_or_bf16(op, x);
  ENGINE_CHECK(x.dim() == 4, op, ": expected a 4-d [N, C, H, W] input, got shape ", shape_str(x.sizes()));
}

kern::BatchNormDims bn_dims(const Tensor& x) {
  kern::BatchNormDims d;
  d.N = x.size(0);
  d.C = x.size(1);
  d.HW = x.size(2) * x.size(3);
  return d;
}

// Train or eval batch norm. Saves the statistics that normalised the forward pass (batch
// stats in training, a copy of the running stats in eval).
struct BatchNormBackward : Node {
  Tensor x, mean, var, weight;  // weight may be undefined (affine off)
  double eps;
  bool training;
  BatchNormBackward(Tensor xs, Tensor m, Tensor v, Tensor w, double e, bool t)
      : Node("BatchNormBackward"), x(std::move(xs)), mean(std::move(m)), var(std::move(v)), weight(std::move(w)),
        eps(e), training(t) {}
  std::vector<Tensor> apply(const Tensor& g_in) override {
    const bool need_x = next_edges()[0].fn != nullptr;
    const bool need_w = next_edges()[1].fn != nullptr, need_b = next_edges()[2].fn != nullptr;
    Tensor g = g_in.contiguous();
    const kern::BatchNormDims d = bn_dims(x);
    Tensor gx, sum_dy, sum_dy_xhat;
    const bool need_sums = need_w || need_b || (need_x && training);
    if (need_sums) {  // in the parameters' dtype (f32 for a bf16 input)
      sum_dy = empty({d.C}, TensorOptions(mean.dtype()).device(x.device()));
      sum_dy_xhat = empty({d.C}, TensorOptions(mean.dtype()).device(x.device()));
    }
    if (need_x) gx = new_empty(x.sizes(), x);
    dispatch_float_or_bf16(x, "batch_norm2d", [&](auto tag) {
      using T = decltype(tag);       // x, g, gx
      using F = kern::compute_t<T>;  // mean, var, weight, sums
      const T *px = x.data<T>(), *pg = g.data<T>();
      const F *pm = mean.data<F>(), *pv = var.data<F>();
      if (x.is_cuda()) {
        ENGINE_IF_CUDA({
          if (need_sums)
            kern::cuda::batch_norm_backward_reduce<T>(d, px, pm, pv, eps, pg, sum_dy.data<F>(),
                                                      sum_dy_xhat.data<F>(), cuda::stream());
          if (need_x)
            kern::cuda::batch_norm_backward_input<T>(d, px, pm, pv, ptr_or_null<F>(weight), eps, training, pg,
                                                     ptr_or_null<F>(sum_dy), ptr_or_null<F>(sum_dy_xhat),
                                                     gx.data<T>(), cuda::stream());
        });
      } else if (training && need_sums) {  // sums and gx in one pass per channel (same bits)
        kern::cpu::batch_norm_backward_train<T>(d, px, pm, pv, ptr_or_null<F>(weight), eps, pg, sum_dy.data<F>(),
                                                sum_dy_xhat.data<F>(), need_x ? gx.data<T>() : nullptr);
      } else {
        if (need_sums)
          kern::cpu::batch_norm_backward_reduce<T>(d, px, pm, pv, eps, pg, sum_dy.data<F>(), sum_dy_xhat.data<F>());
        if (need_x)
          kern::cpu::batch_norm_backward_input<T>(d, px, pm, pv, ptr_or_null<F>(weight), eps, training, pg,
                                                  ptr_or_null<F>(sum_dy), ptr_or_null<F>(sum_dy_xhat),
                                                  gx.data<T>());
      }
    });
    // dweight = sum dy * xhat, dbias = sum dy.
    return {gx, need_w ? sum_dy_xhat : Tensor(), need_b ? sum_dy : Tensor()};
  }
  void release_saved() override {
    x = Tensor();
    mean = Tensor();
    var = Tensor();
    weight = Tensor();
  }
};

// FrozenBatchNorm2d: dx = dy * scale; the parameters get no gradient.
struct FrozenBatchNormBackward : Node {
  Tensor scale;
  explicit FrozenBatchNormBackward(Tensor s) : Node("FrozenBatchNormBackward"), scale(std::move(s)) {}
  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous();
    Tensor gx = new_empty(g.sizes(), g);
    const kern::BatchNormDims d = bn_dims(g);
    dispatch_float_or_bf16(g, "frozen_batch_norm2d", [&](auto tag) {
      using T = decltype(tag);       // g, gx
      using F = kern::compute_t<T>;  // scale
      if (g.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::channel_affine<T>(d, g.data<T>(), scale.data<F>(), nullptr, gx.data<T>(),
                                                     cuda::stream()));
      } else {
        kern::cpu::channel_affine<T>(d, g.data<T>(), scale.data<F>(), nullptr, gx.data<T>());
      }
    });
    return {gx};
  }
  void release_saved() override { scale = Tensor(); }
};

}  // namespace

static Tensor batch_norm2d_untraced(const Tensor& x_in, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                    Tensor running_var, bool training, double momentum, double eps) {
  const char* op = "batch_norm2d";
  check_bn_input(op, x_in);
  const int64_t C = x_in.size(1);
  check_channel_param(op, weight, "weight", C, x_in, true);
  check_channel_param(op, bias, "bias", C, x_in, true);
  // Eval mode normalises with the running stats; train mode may run without them.
  check_channel_param(op, running_mean, "running_mean", C, x_in, training);
  check_channel_param(op, running_var, "running_var", C, x_in, training);
  check_bn_params(op, x_in, {weight, bias, running_mean, running_var});
  ENGINE_CHECK(eps >= 0, op, ": eps ", eps, " must be non-negative");
  const kern::BatchNormDims d = bn_dims(x_in);
  const int64_t M = d.N * d.HW;
  ENGINE_CHECK(!training || M > 1, op, ": expected more than 1 value per channel when training, got input ",
               shape_str(x_in.sizes()));

  Tensor x = x_in.detach().contiguous();
  Tensor w = weight.defined() ? weight.detach().contiguous() : Tensor();
  Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor mean, var;
  if (training) {
    mean = empty({C}, TensorOptions(param_dtype(x)).device(x.device()));
    var = empty({C}, TensorOptions(param_dtype(x)).device(x.device()));  // biased
    dispatch_float_or_bf16(x, op, [&](auto tag) {
      using T = decltype(tag);
      using F = kern::compute_t<T>;
      if (x.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::batch_norm_stats<T>(d, x.data<T>(), mean.data<F>(), var.data<F>(), cuda::stream()));
      } else {
        kern::cpu::batch_norm_stats<T>(d, x.data<T>(), mean.data<F>(), var.data<F>());
      }
    });
    // running = (1 - momentum) running + momentum batch, with the unbiased variance.
    NoGradGuard guard;
    if (running_mean.defined()) running_mean.copy_(running_mean * (1.0 - momentum) + mean * momentum);
    if (running_var.defined()) {
      const double unbias = static_cast<double>(M) / static_cast<double>(M - 1);
      running_var.copy_(running_var * (1.0 - momentum) + var * (momentum * unbias));
    }
  } else {
    // Copies: a later in-place update of the running stats must not change what backward sees.
    NoGradGuard guard;
    mean = running_mean.detach().clone();
    var = running_var.detach().clone();
  }

  Tensor y = new_empty(x.sizes(), x);
  dispatch_float_or_bf16(x, op, [&](auto tag) {
    using T = decltype(tag);
    using F = kern::compute_t<T>;
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::batch_norm_forward<T>(d, x.data<T>(), mean.data<F>(), var.data<F>(),
                                                       ptr_or_null<F>(w), ptr_or_null<F>(b), eps, y.data<T>(),
                                                       cuda::stream()));
    } else {
      kern::cpu::batch_norm_forward<T>(d, x.data<T>(), mean.data<F>(), var.data<F>(), ptr_or_null<F>(w),
                                       ptr_or_null<F>(b), eps, y.data<T>());
    }
  });
  if (any_requires_grad({x_in, weight, bias}))
    attach(y, std::make_shared<BatchNormBackward>(x, mean, var, w, eps, training), {x_in, weight, bias});
  return y;
}

std::pair<Tensor, Tensor> frozen_batch_norm2d_scale_shift(const Tensor& weight, const Tensor& bias,
                                                          const Tensor& running_mean, const Tensor& running_var,
                                                          double eps) {
  const char* op = "frozen_batch_norm2d";
  ENGINE_CHECK(weight.defined() && bias.defined() && running_mean.defined() && running_var.defined(), op,
               ": weight, bias, running_mean and running_var must all be defined");
  ENGINE_CHECK(eps >= 0, op, ": eps ", eps, " must be non-negative");
  // scale = w / sqrt(rv + eps), shift = b - rm * scale: constants, so no graph.
  NoGradGuard guard;
  Tensor scale = div(weight.detach(), sqrt(add_scalar(running_var.detach(), eps))).contiguous();
  Tensor shift = sub(bias.detach(), mul(running_mean.detach(), scale)).contiguous();
  return {scale, shift};
}

static Tensor frozen_batch_norm2d_affine_untraced(const Tensor& x_in, const Tensor& scale, const Tensor& shift) {
  const char* op = "frozen_batch_norm2d";
  check_bn_input(op, x_in);
  const int64_t C = x_in.size(1);
  check_channel_param(op, scale, "scale", C, x_in, false);
  check_channel_param(op, shift, "shift", C, x_in, false);
  check_bn_params(op, x_in, {scale, shift});
  ENGINE_CHECK(scale.is_contiguous() && shift.is_contiguous(), op, ": scale and shift must be contiguous");
  Tensor x = x_in.detach().contiguous();
  Tensor y = new_empty(x.sizes(), x);
  const kern::BatchNormDims d = bn_dims(x);
  dispatch_float_or_bf16(x, op, [&](auto tag) {
    using T = decltype(tag);       // x, y
    using F = kern::compute_t<T>;  // scale, shift
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::channel_affine<T>(d, x.data<T>(), scale.data<F>(), shift.data<F>(), y.data<T>(),
                                                   cuda::stream()));
    } else {
      kern::cpu::channel_affine<T>(d, x.data<T>(), scale.data<F>(), shift.data<F>(), y.data<T>());
    }
  });
  if (any_requires_grad({x_in})) attach(y, std::make_shared<FrozenBatchNormBackward>(scale.detach()), {x_in});
  return y;
}

Tensor frozen_batch_norm2d(const Tensor& x_in, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                           const Tensor& running_var, double eps) {
  const char* op = "frozen_batch_norm2d";
  check_bn_input(op, x_in);
  const int64_t C = x_in.size(1);
  check_channel_param(op, weight, "weight", C, x_in, false);
  check_channel_param(op, bias, "bias", C, x_in, false);
  check_channel_param(op, running_mean, "running_mean", C, x_in, false);
  check_channel_param(op, running_var, "running_var", C, x_in, false);
  check_bn_params(op, x_in, {weight, bias, running_mean, running_var});
  ENGINE_CHECK(eps >= 0, op, ": eps ", eps, " must be non-negative");
  auto [scale, shift] = frozen_batch_norm2d_scale_shift(weight, bias, running_mean, running_var, eps);
  return frozen_batch_norm2d_affine(x_in, scale, shift);
}

Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                    Tensor running_var, bool training, double momentum, double eps) {
  Tensor y = batch_norm2d_untraced(x, weight, bias, running_mean, running_var, training, momentum, eps);
  if (auto* r = trace::active())
    r->record("batch_norm2d", {x, weight, bias, running_mean, running_var}, {y},
              {{"training", int64_t{training}}, {"eps", eps}});
  return y;
}

Tensor frozen_batch_norm2d_affine(const Tensor& x, const Tensor& scale, const Tensor& shift) {
  Tensor y = frozen_batch_norm2d_affine_untraced(x, scale, shift);
  if (auto* r = trace::active()) r->record("frozen_bn_affine", {x, scale, shift}, {y}, {});
  return y;
}

}  // namespace eng
