// l2norm front-end: SSD's L2Norm, y = scale[c] * x / max(||x[n, :, h, w]||, eps)
// (maths in kernels/l2norm.h). The backward node saves x and scale only: the kernel-level
// backward recomputes each column's norm in the same pass that forms its dot product.
// bf16 input: x (and y, and their gradients) are bf16, scale stays an f32 parameter, the
// maths runs in float (kernels/l2norm.h).
#include <cmath>

#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"
#include "kernels/l2norm.h"

namespace eng {
using namespace detail;

namespace {

kern::L2NormDims l2norm_dims(const Tensor& x) {
  kern::L2NormDims d;
  d.N = x.size(0);
  d.C = x.size(1);
  d.P = x.size(2) * x.size(3);
  return d;
}

struct L2NormBackward : Node {
  Tensor x, scale;  // contiguous, detached
  double eps;
  L2NormBackward(Tensor xs, Tensor s, double e) : Node("L2NormBackward"), x(std::move(xs)), scale(std::move(s)), eps(e) {}

  std::vector<Tensor> apply(const Tensor& g_in) override {
    const bool need_x = next_edges()[0].fn != nullptr, need_scale = next_edges()[1].fn != nullptr;
    if (!need_x && !need_scale) return {Tensor(), Tensor()};
    Tensor g = g_in.contiguous();
    Tensor gx = need_x ? new_empty(x.sizes(), x) : Tensor();
    Tensor gscale = need_scale ? new_empty(scale.sizes(), scale) : Tensor();
    const kern::L2NormDims d = l2norm_dims(x);
    dispatch_float_or_bf16(x, "l2norm", [&](auto tag) {
      using T = decltype(tag);       // x, g, gx
      using F = kern::compute_t<T>;  // scale, gscale
      T* pgx = need_x ? gx.data<T>() : nullptr;
      F* pgs = need_scale ? gscale.data<F>() : nullptr;
      if (x.is_cuda() && pgs && cuda::deterministic()) {
        // Fixed-order scale gradient (the fused kernel adds it with float atomics).
        ENGINE_IF_CUDA({
          if (pgx) kern::cuda::l2norm_backward<T>(d, x.data<T>(), scale.data<F>(), g.data<T>(), eps, pgx, nullptr,
                                                   cuda::stream());
          Tensor inv = new_empty({d.N * d.P}, scale);
          kern::cuda::l2norm_backward_scale_deterministic<T>(d, x.data<T>(), g.data<T>(), eps, pgs, inv.data<F>(),
                                                             cuda::stream());
        });
      } else if (x.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::l2norm_backward<T>(d, x.data<T>(), scale.data<F>(), g.data<T>(), eps, pgx, pgs,
                                                      cuda::stream()));
      } else {
        kern::cpu::l2norm_backward<T>(d, x.data<T>(), scale.data<F>(), g.data<T>(), eps, pgx, pgs);
      }
    });
    return {gx, gscale};
  }
  void release_saved() override {
    x = Tensor();
    scale = Tensor();
  }
};

}  // namespace

static Tensor l2norm_untraced(const Tensor& x_in, const Tensor& scale_in, double eps) {
  const char* op = "l2norm";
  ENGINE_CHECK(x_in.defined() && scale_in.defined(), op, ": undefined input or scale");
  check_floating_or_bf16(op, x_in);
  ENGINE_CHECK(x_in.dim() == 4, op, ": expected a 4-d [N, C, H, W] input, got shape ", shape_str(x_in.sizes()));
  ENGINE_CHECK(scale_in.dim() == 1 && scale_in.size(0) == x_in.size(1), op, ": scale must have shape [",
               x_in.size(1), "] for input ", shape_str(x_in.sizes()), ", got ", shape_str(scale_in.sizes()));
  ENGINE_CHECK(scale_in.device() == x_in.device(), op, ": tensors on different devices (", x_in.device().str(),
               " and ", scale_in.device().str(), ")");
  // scale has the input's dtype, except that a bf16 input takes the f32 parameter as it is.
  const DType scale_dtype = x_in.dtype() == DType::bf16 ? DType::f32 : x_in.dtype();
  ENGINE_CHECK(scale_in.dtype() == scale_dtype, op, ": scale must be ", dtype_name(scale_dtype), " for a ",
               dtype_name(x_in.dtype()), " input of shape ", shape_str(x_in.sizes()), ", got ",
               dtype_name(scale_in.dtype()));
  ENGINE_CHECK(eps > 0.0 && std::isfinite(eps), op, ": eps must be positive and finite, got ", eps);
  ENGINE_CHECK(scale_dtype != DType::f32 || static_cast<float>(eps) > 0.0f, op, ": eps ", eps,
               " rounds to 0 in f32");

  Tensor x = x_in.detach().contiguous();
  Tensor scale = scale_in.detach().contiguous();
  const kern::L2NormDims d = l2norm_dims(x);
  Tensor y = new_empty(x.sizes(), x);
  dispatch_float_or_bf16(x, op, [&](auto tag) {
    using T = decltype(tag);
    using F = kern::compute_t<T>;
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::l2norm_forward<T>(d, x.data<T>(), scale.data<F>(), eps, y.data<T>(), cuda::stream()));
    } else {
      kern::cpu::l2norm_forward<T>(d, x.data<T>(), scale.data<F>(), eps, y.data<T>());
    }
  });
  if (any_requires_grad({x_in, scale_in}))
    attach(y, std::make_shared<L2NormBackward>(x, scale, eps), {x_in, scale_in});
  return y;
}

Tensor l2norm(const Tensor& x, const Tensor& scale, double eps) {
  Tensor y = l2norm_untraced(x, scale, eps);
  if (auto* r = trace::active()) r->record("l2norm", {x, scale}, {y}, {{"eps", eps}});
  return y;
}

}  // namespace eng
