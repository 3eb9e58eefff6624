// sigmoid_focal_loss front-end (maths in kernels/focal_loss.h).
//
// One fused forward kernel writes what the reduction needs (the per-element loss for None,
// the deterministic sum for Sum / Mean) and, when the logits need a gradient, the
// per-element derivative dloss/dx. The backward node keeps only that derivative, and its
// backward is one multiply by the incoming gradient (read per element for None, one value
// for Sum, one value / element count for Mean).
//
// Mean divides by the number of logits, rows * C, ignored rows included (torchvision's
// loss.mean()); a loss over zero elements is 0 with zero gradients, not NaN.
//
// bf16 logits: read as bf16, maths in float; the loss and the saved derivative are f32,
// the gradient for the logits is bf16 (rounded once from the f32 product).
#include <cmath>

#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "kernels/focal_loss.h"

namespace eng {
using namespace detail;

namespace {

struct SigmoidFocalLossBackward : Node {
  Tensor dloss;  // dloss/dx per element, shape of the logits, in the compute dtype
  DType x_dtype;  // the logits' dtype: the gradient's
  Reduction reduction;
  SigmoidFocalLossBackward(Tensor dl, DType xd, Reduction r)
      : Node("SigmoidFocalLossBackward"), dloss(std::move(dl)), x_dtype(xd), reduction(r) {}

  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous();
    const int64_t n = dloss.numel();
    int64_t g_stride = 1;
    if (reduction != Reduction::None) {
      g_stride = 0;  // one value for every element
      if (reduction == Reduction::Mean && n > 0) g = mul_scalar(g, 1.0 / static_cast<double>(n)).contiguous();
    }
    Tensor gx = empty(dloss.sizes(), TensorOptions(x_dtype).device(dloss.device()));
    dispatch_float_or_bf16(x_dtype, "sigmoid_focal_loss", [&](auto tag) {
      using T = decltype(tag);       // storage of the logits and of gx
      using F = kern::compute_t<T>;  // dloss and g
      if (dloss.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::sigmoid_focal_loss_backward<T>(n, dloss.data<F>(), g.data<F>(), g_stride,
                                                                  gx.data<T>(), cuda::stream()));
      } else {
        kern::cpu::sigmoid_focal_loss_backward<T>(n, dloss.data<F>(), g.data<F>(), g_stride, gx.data<T>());
      }
    });
    return {gx};
  }
  void release_saved() override { dloss = Tensor(); }
};

}  // namespace

Tensor sigmoid_focal_loss(const Tensor& logits_in, const Tensor& labels_in, double alpha, double gamma,
                          Reduction reduction, int64_t background_label, int64_t ignore_index) {
  const char* op = "sigmoid_focal_loss";
  ENGINE_CHECK(logits_in.defined() && labels_in.defined(), op, ": undefined logits or labels");
  check_floating_or_bf16(op, logits_in);
  ENGINE_CHECK(logits_in.dim() >= 1, op, ": logits must be [..., C], got a 0-d tensor");
  ENGINE_CHECK(labels_in.dtype() == DType::i64, op, ": labels must be int64, got ", dtype_name(labels_in.dtype()));
  ENGINE_CHECK(labels_in.device() == logits_in.device(), op, ": logits on ", logits_in.device().str(),
               " but labels on ", labels_in.device().str());
  const Shape want(logits_in.sizes().begin(), logits_in.sizes().end() - 1);
  ENGINE_CHECK(labels_in.sizes() == want, op, ": labels shape ", shape_str(labels_in.sizes()),
               " does not match logits ", shape_str(logits_in.sizes()), " (expected ", shape_str(want), ")");
  const int64_t C = logits_in.size(-1);
  ENGINE_CHECK(C > 0, op, ": logits ", shape_str(logits_in.sizes()), " have no classes");
  ENGINE_CHECK(std::isfinite(gamma) && gamma >= 0.0, op, ": gamma must be >= 0, got ", gamma);
  ENGINE_CHECK(std::isfinite(alpha) && alpha <= 1.0, op, ": alpha must be in [0, 1], or negative to disable the ",
               "weighting, got ", alpha);
  ENGINE_CHECK(background_label != ignore_index, op, ": background_label and ignore_index are both ",
               ignore_index);

  Tensor x = logits_in.detach().contiguous();
  Tensor labels = labels_in.detach().contiguous();
  kern::FocalLossDims d;
  d.C = C;
  d.rows = labels.numel();
  kern::FocalLossParams p;
  p.alpha = alpha;
  p.gamma = gamma;
  p.background_label = background_label;
  p.ignore_index = ignore_index;

  // On the CPU a bad label is an error; on CUDA the kernel writes NaN (kernels/focal_loss.h).
  if (!labels.is_cuda()) {
    const int64_t* l = labels.data<int64_t>();
    const int64_t bad = kern::cpu::find_invalid_focal_label(d.rows, l, C, p);
    ENGINE_CHECK(bad < 0, op, ": label ", (bad < 0 ? 0 : l[bad]), " at row ", bad, " is outside [0, ", C,
                 ") and is neither background_label (", background_label, ") nor ignore_index (", ignore_index, ")");
  }

  const bool need_grad = any_requires_grad({logits_in});
  // Everything but the logits in the compute dtype (f32 for bf16 logits).
  const TensorOptions f_opts = TensorOptions(x.dtype() == DType::bf16 ? DType::f32 : x.dtype()).device(x.device());
  Tensor loss = reduction == Reduction::None ? empty(x.sizes(), f_opts) : Tensor();
  Tensor loss_sum = reduction != Reduction::None ? empty({}, f_opts) : Tensor();
  Tensor partials = reduction != Reduction::None ? empty({kern::kFocalLossPartials}, f_opts) : Tensor();
  Tensor dloss = need_grad ? empty(x.sizes(), f_opts) : Tensor();
  dispatch_float_or_bf16(x, op, [&](auto tag) {
    using T = decltype(tag);
    using F = kern::compute_t<T>;
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data<F>() : nullptr; };
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::sigmoid_focal_loss_forward<T>(d, p, x.data<T>(), labels.data<int64_t>(), ptr(loss),
                                                               ptr(loss_sum), ptr(partials), ptr(dloss),
                                                               cuda::stream()));
    } else {
      kern::cpu::sigmoid_focal_loss_forward<T>(d, p, x.data<T>(), labels.data<int64_t>(), ptr(loss), ptr(loss_sum),
                                               ptr(partials), ptr(dloss));
    }
  });

  Tensor out;
  {
    NoGradGuard no_grad;
    if (reduction == Reduction::None) out = loss;
    else if (reduction == Reduction::Sum) out = loss_sum;
    else out = x.numel() > 0 ? mul_scalar(loss_sum, 1.0 / static_cast<double>(x.numel())) : loss_sum;
  }
  if (need_grad) attach(out, std::make_shared<SigmoidFocalLossBackward>(dloss, x.dtype(), reduction), {logits_in});
  return out;
}

}  // namespace eng
