// Softmax family front-ends: softmax(x, dim) and log_softmax(x, dim) over any dim.
// The input is made contiguous and seen as [outer, C, inner] around `dim` (kernels/softmax.h);
// backward needs only the saved output. bf16: storage only, maths in float (kernels/softmax.h).
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"
#include "kernels/softmax.h"

namespace eng {
using namespace detail;

namespace {

// [outer, C, inner] around `dim` (already wrapped); a 0-d tensor is one row of one value.
kern::SoftmaxDims softmax_dims(const Tensor& x, int64_t dim) {
  kern::SoftmaxDims d;
  if (x.dim() == 0) return d;
  for (int64_t i = 0; i < dim; ++i) d.outer *= x.size(i);
  d.C = x.size(dim);
  for (int64_t i = dim + 1; i < x.dim(); ++i) d.inner *= x.size(i);
  return d;
}

struct SoftmaxBackward : Node {
  Tensor y;  // the forward output (probabilities, or log-probabilities for log_softmax)
  kern::SoftmaxDims d;
  bool log_space;
  SoftmaxBackward(Tensor out, kern::SoftmaxDims dims, bool log)
      : Node(log ? "LogSoftmaxBackward" : "SoftmaxBackward"), y(std::move(out)), d(dims), log_space(log) {}

  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous();
    Tensor gx = new_empty(y.sizes(), y);
    const char* op = log_space ? "log_softmax" : "softmax";
    dispatch_float_or_bf16(y, op, [&](auto tag) {
      using T = decltype(tag);
      if (y.is_cuda()) {
        if (log_space) {
          ENGINE_IF_CUDA(kern::cuda::log_softmax_backward<T>(d, y.data<T>(), g.data<T>(), gx.data<T>(), cuda::stream()));
        } else {
          ENGINE_IF_CUDA(kern::cuda::softmax_backward<T>(d, y.data<T>(), g.data<T>(), gx.data<T>(), cuda::stream()));
        }
      } else {
        if (log_space) kern::cpu::log_softmax_backward<T>(d, y.data<T>(), g.data<T>(), gx.data<T>());
        else kern::cpu::softmax_backward<T>(d, y.data<T>(), g.data<T>(), gx.data<T>());
      }
    });
    return {gx};
  }
  void release_saved() override { y = Tensor(); }
};

Tensor softmax_impl(const Tensor& x_in, int64_t dim_in, bool log_space) {
  const char* op = log_space ? "log_softmax" : "softmax";
  ENGINE_CHECK(x_in.defined(), op, ": undefined input");
  check_floating_or_bf16(op, x_in);
  const int64_t dim = wrap_dim(dim_in, x_in.dim(), op);
  Tensor x = x_in.detach().contiguous();
  const kern::SoftmaxDims d = softmax_dims(x, dim);
  Tensor y = new_empty(x.sizes(), x);
  dispatch_float_or_bf16(x, op, [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
      if (log_space) {
        ENGINE_IF_CUDA(kern::cuda::log_softmax_forward<T>(d, x.data<T>(), y.data<T>(), cuda::stream()));
      } else {
        ENGINE_IF_CUDA(kern::cuda::softmax_forward<T>(d, x.data<T>(), y.data<T>(), cuda::stream()));
      }
    } else {
      if (log_space) kern::cpu::log_softmax_forward<T>(d, x.data<T>(), y.data<T>());
      else kern::cpu::softmax_forward<T>(d, x.data<T>(), y.data<T>());
    }
  });
  if (any_requires_grad({x_in})) attach(y, std::make_shared<SoftmaxBackward>(y.detach(), d, log_space), {x_in});
  return y;
}

}  // namespace

static Tensor softmax_untraced(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
static Tensor log_softmax_untraced(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

Tensor softmax(const Tensor& x, int64_t dim) {
  Tensor y = softmax_untraced(x, dim);
  if (auto* r = trace::active()) r->record("softmax", {x}, {y}, {{"dim", dim < 0 ? dim + x.dim() : dim}});
  return y;
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  Tensor y = log_softmax_untraced(x, dim);
  if (auto* r = trace::active()) r->record("log_softmax", {x}, {y}, {{"dim", dim < 0 ? dim + x.dim() : dim}});
  return y;
}

}  // namespace eng
