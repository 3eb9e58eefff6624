// sigmoid_focal_loss_weighted_sum front-end (maths in kernels/focal_weighted_sum.h).
//
// Forward: one kernel pass over the logits into at most kFocalWeightedPartials partial sums
// (a workspace tensor from the caching allocator) and one block adding them: the [B, A, C]
// loss is never stored. Backward on CUDA recomputes the derivative from the saved logits
// and labels, times w[b] and the upstream gradient, which stays on the device (no .item());
// on the CPU, where the exp / log1p / pow work bounds the op rather than memory, the forward
// also writes dloss/dx * w[b] and backward multiplies it by the gradient (one pass of maths
// instead of two: recomputing made the CPU fwd+bwd 1.6x slower than the unfused ops).
//
// Labels: validated (one-line error) only for CPU tensors; on CUDA an out-of-range label
// makes the loss NaN (kernels/focal_weighted_sum.h), so nothing is copied to the host.
// The weights are constants (a per-image normaliser such as 1 / num_foreground): a weights
// tensor that requires grad is refused rather than silently given no gradient.
#include <cmath>

#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "kernels/focal_weighted_sum.h"

namespace eng {
using namespace detail;

namespace {

struct FocalWeightedSumBackward : Node {
  // CUDA: the logits, labels and weights, to recompute the derivative (memory-bound there).
  // CPU: dloss_w = dloss/dx * w[b] from the forward (the maths bounds the CPU, not memory).
  Tensor x, labels, weights, dloss_w;
  kern::FocalWeightedDims d;
  kern::FocalLossParams p;
  DType x_dtype;
  FocalWeightedSumBackward(Tensor x_, Tensor l_, Tensor w_, Tensor dw_, const kern::FocalWeightedDims& d_,
                           const kern::FocalLossParams& p_, DType xd)
      : Node("SigmoidFocalLossWeightedSumBackward"),
        x(std::move(x_)),
        labels(std::move(l_)),
        weights(std::move(w_)),
        dloss_w(std::move(dw_)),
        d(d_),
        p(p_),
        x_dtype(xd) {}

  std::vector<Tensor> apply(const Tensor& g_in) override {
    const Tensor& like = dloss_w.defined() ? dloss_w : x;
    const DType f_dtype = x_dtype == DType::bf16 ? DType::f32 : x_dtype;
    Tensor g = g_in.to(f_dtype).contiguous();  // one value, on the logits' device (never read on the host)
    Tensor gx = empty({d.B, d.A, d.C}, TensorOptions(x_dtype).device(like.device()));
    dispatch_float_or_bf16(x_dtype, "sigmoid_focal_loss_weighted_sum", [&](auto tag) {
      using S = decltype(tag);
      using F = kern::compute_t<S>;
      if (dloss_w.defined()) {
        kern::cpu::sigmoid_focal_loss_backward<S>(dloss_w.numel(), dloss_w.data<F>(), g.data<F>(), 0, gx.data<S>());
      } else if (x.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::focal_weighted_sum_backward<S>(d, p, x.data<S>(), labels.data<int64_t>(),
                                                                  weights.data<F>(), g.data<F>(), gx.data<S>(),
                                                                  cuda::stream()));
      } else {
        kern::cpu::focal_weighted_sum_backward<S>(d, p, x.data<S>(), labels.data<int64_t>(), weights.data<F>(),
                                                  g.data<F>(), gx.data<S>());
      }
    });
    return {gx};
  }
  void release_saved() override {
    x = Tensor();
    labels = Tensor();
    weights = Tensor();
    dloss_w = Tensor();
  }
};

}  // namespace

Tensor sigmoid_focal_loss_weighted_sum(const Tensor& logits_in, const Tensor& labels_in, const Tensor& weights_in,
                                       double alpha, double gamma, int64_t background_label, int64_t ignore_index) {
  const char* op = "sigmoid_focal_loss_weighted_sum";
  ENGINE_CHECK(logits_in.defined() && labels_in.defined() && weights_in.defined(), op,
               ": undefined logits, labels or weights");
  check_floating_or_bf16(op, logits_in);
  check_floating_or_bf16(op, weights_in);
  ENGINE_CHECK(logits_in.dim() == 3, op, ": logits must be [B, A, C], got ", shape_str(logits_in.sizes()));
  const int64_t B = logits_in.size(0), A = logits_in.size(1), C = logits_in.size(2);
  ENGINE_CHECK(labels_in.dtype() == DType::i64, op, ": labels must be int64, got ", dtype_name(labels_in.dtype()));
  ENGINE_CHECK(labels_in.sizes() == Shape({B, A}), op, ": labels shape ", shape_str(labels_in.sizes()),
               " does not match logits ", shape_str(logits_in.sizes()), " (expected [", B, ", ", A, "])");
  ENGINE_CHECK(weights_in.sizes() == Shape({B}), op, ": weights must be [", B, "] (one per image), got ",
               shape_str(weights_in.sizes()));
  ENGINE_CHECK(labels_in.device() == logits_in.device() && weights_in.device() == logits_in.device(), op,
               ": logits on ", logits_in.device().str(), ", labels on ", labels_in.device().str(), ", weights on ",
               weights_in.device().str());
  ENGINE_CHECK(!weights_in.requires_grad(), op, ": weights are constants and get no gradient; detach() them");
  ENGINE_CHECK(C > 0, op, ": logits ", shape_str(logits_in.sizes()), " have no classes");
  ENGINE_CHECK(std::isfinite(gamma) && gamma >= 0.0, op, ": gamma must be >= 0, got ", gamma);
  ENGINE_CHECK(std::isfinite(alpha) && alpha <= 1.0, op, ": alpha must be in [0, 1], or negative to disable the ",
               "weighting, got ", alpha);
  ENGINE_CHECK(background_label != ignore_index, op, ": background_label and ignore_index are both ",
               ignore_index);

  kern::FocalWeightedDims d;
  d.B = B;
  d.A = A;
  d.C = C;
  kern::FocalLossParams p;
  p.alpha = alpha;
  p.gamma = gamma;
  p.background_label = background_label;
  p.ignore_index = ignore_index;

  Tensor x = logits_in.detach().contiguous();
  Tensor labels = labels_in.detach().contiguous();
  const DType f_dtype = x.dtype() == DType::bf16 ? DType::f32 : x.dtype();  // compute dtype
  Tensor weights = weights_in.detach().to(f_dtype).contiguous();
  const TensorOptions f_opts = TensorOptions(f_dtype).device(x.device());

  // CPU only: the labels are in host memory (on CUDA a bad label gives NaN instead).
  if (!labels.is_cuda()) {
    const int64_t* l = labels.data<int64_t>();
    const int64_t bad = kern::cpu::find_invalid_focal_label(B * A, l, C, p);
    ENGINE_CHECK(bad < 0, op, ": label ", (bad < 0 ? 0 : l[bad]), " at image ", (bad < 0 ? 0 : bad / A),
                 " anchor ", (bad < 0 ? 0 : bad % A), " is outside [0, ", C, ") and is neither background_label (",
                 background_label, ") nor ignore_index (", ignore_index, ")");
  }

  const bool need_grad = any_requires_grad({logits_in});
  Tensor dloss_w = need_grad && !x.is_cuda() ? empty(x.sizes(), f_opts) : Tensor();
  Tensor out = empty({}, f_opts);
  Tensor partials = empty({kern::kFocalWeightedPartials}, TensorOptions(DType::f64).device(x.device()));
  dispatch_float_or_bf16(x, op, [&](auto tag) {
    using S = decltype(tag);
    using F = kern::compute_t<S>;
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::focal_weighted_sum_forward<S>(d, p, x.data<S>(), labels.data<int64_t>(),
                                                               weights.data<F>(), out.data<F>(),
                                                               partials.data<double>(), cuda::stream()));
    } else {
      kern::cpu::focal_weighted_sum_forward<S>(d, p, x.data<S>(), labels.data<int64_t>(), weights.data<F>(),
                                               out.data<F>(), partials.data<double>(),
                                               dloss_w.defined() ? dloss_w.data<F>() : nullptr);
    }
  });
  if (need_grad) {
    if (x.is_cuda())
      attach(out, std::make_shared<FocalWeightedSumBackward>(x, labels, weights, Tensor(), d, p, x.dtype()),
             {logits_in});
    else
      attach(out, std::make_shared<FocalWeightedSumBackward>(Tensor(), Tensor(), Tensor(), dloss_w, d, p, x.dtype()),
             {logits_in});
  }
  return out;
}

}  // namespace eng
