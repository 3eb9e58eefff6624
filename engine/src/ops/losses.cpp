// Loss front-ends: cross_entropy (fused log-softmax + NLL with ignore_index), smooth_l1_loss
// and l1_loss (maths in kernels/losses.h).
//
// Each loss first computes the per-element loss with its kernel, then reduces it with
// sum() / div() without building a graph, and attaches ONE backward node to the result.
// That node calls the fused backward kernel with the output gradient read per element
// (Reduction::None, g_stride 1) or broadcast from one value (Sum / Mean, g_stride 0).
//
// Mean of nothing: cross_entropy with every element ignored, or a loss over zero elements,
// returns 0 and gives zero gradients. PyTorch returns NaN there; we deliberately return 0
// so that a batch without any labelled element does not poison training.
#include <limits>

#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "kernels/losses.h"

namespace eng {
using namespace detail;

namespace {

// ---------------------------------------------------------------- cross_entropy

struct CrossEntropyBackward : Node {
  Tensor x, target, lse;  // contiguous logits [N, C, inner], int64 target, logsumexp per element
  Tensor count;           // Mean only: 0-d max(#non-ignored, 1), same dtype/device as x
  kern::CrossEntropyDims d;
  Reduction reduction;
  int64_t ignore_index;
  CrossEntropyBackward(Tensor xs, Tensor ts, Tensor l, Tensor cnt, kern::CrossEntropyDims dims, Reduction r,
                       int64_t ignore)
      : Node("CrossEntropyBackward"), x(std::move(xs)), target(std::move(ts)), lse(std::move(l)),
        count(std::move(cnt)), d(dims), reduction(r), ignore_index(ignore) {}

  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous();
    int64_t g_stride = 1;
    if (reduction != Reduction::None) {
      g_stride = 0;  // one value for every element
      if (reduction == Reduction::Mean) g = div(g, count).contiguous();
    }
    Tensor gx = new_empty(x.sizes(), x);  // the logits' dtype (bf16 logits: bf16 gradient)
    dispatch_float_or_bf16(x, "cross_entropy", [&](auto tag) {
      using T = decltype(tag);       // storage of the logits
      using F = kern::compute_t<T>;  // lse and g (float for bf16 logits)
      if (x.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::cross_entropy_backward<T>(d, x.data<T>(), target.data<int64_t>(), lse.data<F>(),
                                                              ignore_index, g.data<F>(), g_stride, gx.data<T>(),
                                                              cuda::stream()));
      } else {
        kern::cpu::cross_entropy_backward<T>(d, x.data<T>(), target.data<int64_t>(), lse.data<F>(), ignore_index,
                                             g.data<F>(), g_stride, gx.data<T>());
      }
    });
    return {gx};
  }
  void release_saved() override {
    x = Tensor();
    target = Tensor();
    lse = Tensor();
    count = Tensor();
  }
};

// Expected target shape: logits' shape without dim 1.
Shape target_shape_for(const Shape& logits) {
  Shape s;
  for (size_t i = 0; i < logits.size(); ++i)
    if (i != 1) s.push_back(logits[i]);
  return s;
}

// ---------------------------------------------------------------- smooth_l1 / l1

struct SmoothL1Backward : Node {
  Tensor input, target;  // contiguous, detached
  double beta;
  Reduction reduction;
  SmoothL1Backward(const char* name, Tensor in, Tensor tg, double b, Reduction r)
      : Node(name), input(std::move(in)), target(std::move(tg)), beta(b), reduction(r) {}

  std::vector<Tensor> apply(const Tensor& g_in) override {
    const bool need_input = next_edges()[0].fn != nullptr, need_target = next_edges()[1].fn != nullptr;
    if (!need_input && !need_target) return {Tensor(), Tensor()};
    const int64_t n = input.numel();
    Tensor g = g_in.contiguous();
    int64_t g_stride = 1;
    if (reduction != Reduction::None) {
      g_stride = 0;
      if (reduction == Reduction::Mean && n > 0) g = mul_scalar(g, 1.0 / static_cast<double>(n)).contiguous();
    }
    Tensor gx = new_empty(input.sizes(), input);  // the input's dtype (bf16 input: bf16 gradient)
    dispatch_float_or_bf16(input, name().c_str(), [&](auto tag) {
      using T = decltype(tag);       // input, gx
      using F = kern::compute_t<T>;  // target, g
      if (input.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::smooth_l1_backward<T>(n, input.data<T>(), target.data<F>(), beta, g.data<F>(),
                                                         g_stride, gx.data<T>(), cuda::stream()));
      } else {
        kern::cpu::smooth_l1_backward<T>(n, input.data<T>(), target.data<F>(), beta, g.data<F>(), g_stride,
                                         gx.data<T>());
      }
    });
    // d = input - target, so the target's gradient is the negated input gradient (in the
    // target's dtype: an f32 target of a bf16 input gets it widened from bf16).
    Tensor gt;
    if (need_target) gt = input.dtype() == target.dtype() ? neg(gx) : neg(gx).to(target.dtype());
    return {need_input ? gx : Tensor(), gt};
  }
  void release_saved() override {
    input = Tensor();
    target = Tensor();
  }
};

// `op` is "smooth_l1_loss" or "l1_loss" (which is beta = 0); `node_name` names the backward.
Tensor smooth_l1_impl(const char* op, const char* node_name, const Tensor& input_in, const Tensor& target_in,
                      Reduction reduction, double beta) {
  ENGINE_CHECK(input_in.defined() && target_in.defined(), op, ": undefined input or target");
  check_floating_or_bf16(op, input_in);
  if (input_in.dtype() == DType::bf16) {  // bf16 predictions against f32 targets, f32 loss
    ENGINE_CHECK(target_in.dtype() == DType::f32 && target_in.device() == input_in.device(), op,
                 ": the target must be f32 on ", input_in.device().str(), " for a bf16 input of shape ",
                 shape_str(input_in.sizes()), ", got ", dtype_name(target_in.dtype()), " on ",
                 target_in.device().str());
  } else {
    check_same_device_dtype(op, {input_in, target_in});
  }
  ENGINE_CHECK(input_in.sizes() == target_in.sizes(), op, ": input ", shape_str(input_in.sizes()), " and target ",
               shape_str(target_in.sizes()), " must have the same shape");
  ENGINE_CHECK(beta >= 0.0, op, ": beta must be >= 0, got ", beta);
  Tensor input = input_in.detach().contiguous();
  Tensor target = target_in.detach().contiguous();
  const int64_t n = input.numel();
  Tensor loss = new_empty(input.sizes(), target);  // the target's dtype: f32 for a bf16 input
  dispatch_float_or_bf16(input, op, [&](auto tag) {
    using T = decltype(tag);
    using F = kern::compute_t<T>;
    if (input.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::smooth_l1_forward<T>(n, input.data<T>(), target.data<F>(), beta, loss.data<F>(),
                                                      cuda::stream()));
    } else {
      kern::cpu::smooth_l1_forward<T>(n, input.data<T>(), target.data<F>(), beta, loss.data<F>());
    }
  });
  Tensor out;
  {
    NoGradGuard no_grad;
    if (reduction == Reduction::None) out = loss;
    else if (reduction == Reduction::Sum) out = sum(loss);
    else out = mean(loss);  // mean() of zero elements is 0
  }
  if (any_requires_grad({input_in, target_in})) {
    attach(out, std::make_shared<SmoothL1Backward>(node_name, input, target, beta, reduction), {input_in, target_in});
  }
  return out;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits_in, const Tensor& target_in, Reduction reduction, int64_t ignore_index) {
  const char* op = "cross_entropy";
  ENGINE_CHECK(logits_in.defined() && target_in.defined(), op, ": undefined logits or target");
  check_floating_or_bf16(op, logits_in);
  ENGINE_CHECK(logits_in.dim() >= 2, op, ": logits must be [N, C] or [N, C, d...], got shape ",
               shape_str(logits_in.sizes()));
  ENGINE_CHECK(logits_in.dim() <= kern::kMaxDims, op, ": logits have more than ", kern::kMaxDims, " dims");
  ENGINE_CHECK(target_in.dtype() == DType::i64, op, ": target must be int64, got ", dtype_name(target_in.dtype()));
  ENGINE_CHECK(target_in.device() == logits_in.device(), op, ": logits on ", logits_in.device().str(),
               " but target on ", target_in.device().str());
  const Shape want = target_shape_for(logits_in.sizes());
  ENGINE_CHECK(target_in.sizes() == want, op, ": target shape ", shape_str(target_in.sizes()),
               " does not match logits ", shape_str(logits_in.sizes()), " (expected ", shape_str(want), ")");
  const int64_t C = logits_in.size(1);
  ENGINE_CHECK(C > 0, op, ": logits ", shape_str(logits_in.sizes()), " have no classes");

  Tensor x = logits_in.detach().contiguous();
  Tensor target = target_in.detach().contiguous();
  kern::CrossEntropyDims d;
  d.N = x.size(0);
  d.C = C;
  for (int64_t i = 2; i < x.dim(); ++i) d.inner *= x.size(i);
  const int64_t n_elem = d.N * d.inner;

  // On the CPU a bad label is an error; on CUDA the kernel writes NaN (kernels/losses.h).
  if (!target.is_cuda()) {
    const int64_t* t = target.data<int64_t>();
    const int64_t bad = kern::cpu::find_invalid_target(n_elem, t, C, ignore_index);
    ENGINE_CHECK(bad < 0, op, ": target ", (bad < 0 ? 0 : t[bad]), " at element ", bad, " is outside [0, ", C,
                 ") and is not ignore_index (", ignore_index, ")");
  }

  // Per-element loss, logsumexp and valid flags in the compute dtype: bf16 logits are read
  // as bf16 but the loss is f32 from the start (kernels/losses.h).
  const TensorOptions loss_opts =
      TensorOptions(x.dtype() == DType::bf16 ? DType::f32 : x.dtype()).device(x.device());
  Tensor loss = empty(target.sizes(), loss_opts);  // per element, shape of target
  Tensor lse = empty(target.sizes(), loss_opts);
  Tensor valid = reduction == Reduction::Mean ? empty(target.sizes(), loss_opts) : Tensor();
  dispatch_float_or_bf16(x, op, [&](auto tag) {
    using T = decltype(tag);
    using F = kern::compute_t<T>;
    F* pv = valid.defined() ? valid.data<F>() : nullptr;
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::cross_entropy_forward<T>(d, x.data<T>(), target.data<int64_t>(), ignore_index,
                                                          loss.data<F>(), lse.data<F>(), pv, cuda::stream()));
    } else {
      kern::cpu::cross_entropy_forward<T>(d, x.data<T>(), target.data<int64_t>(), ignore_index, loss.data<F>(),
                                          lse.data<F>(), pv);
    }
  });

  // Reduce without a graph. Mean divides by max(#non-ignored, 1): the count stays on the
  // device (no host sync); when every element is ignored the sum is 0, so the mean is 0.
  Tensor out, count;
  {
    NoGradGuard no_grad;
    if (reduction == Reduction::None) {
      out = loss;
    } else if (reduction == Reduction::Sum) {
      out = sum(loss);
    } else {
      count = clamp(sum(valid), 1.0, std::numeric_limits<double>::infinity());
      out = div(sum(loss), count);
    }
  }
  if (any_requires_grad({logits_in}))
    attach(out, std::make_shared<CrossEntropyBackward>(x, target, lse, count, d, reduction, ignore_index), {logits_in});
  return out;
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction reduction, double beta) {
  return smooth_l1_impl("smooth_l1_loss", "SmoothL1LossBackward", input, target, reduction, beta);
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  return smooth_l1_impl("l1_loss", "L1LossBackward", input, target, reduction, 0.0);
}

}  // namespace eng
