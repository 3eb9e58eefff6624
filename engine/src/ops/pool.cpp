// Pooling front-ends: max_pool2d (PyTorch's output-size rule, ceil mode included) and the
// global max / average pools.
#include <type_traits>

#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"
#include "kernels/pool2d.h"

namespace eng {
using namespace detail;

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode) {
  ENGINE_CHECK(kernel > 0 && stride > 0 && pad >= 0, "pool_output_size: kernel ", kernel, " and stride ", stride,
               " must be positive and pad ", pad, " non-negative");
  ENGINE_CHECK(in + 2 * pad >= kernel, "pool_output_size: input size ", in, " with pad ", pad,
               " is smaller than the kernel ", kernel);
  // out = floor_or_ceil((in + 2p - k) / s) + 1
  int64_t out = (in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0)) / stride + 1;
  // In ceil mode the last window must start inside the input or the left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

namespace {

struct MaxPool2dBackward : Node {
  Tensor idx;  // i32 (i64 for planes past 2^31 elements) [N, C, OH, OW], index inside the input plane
  Shape in_sizes;
  kern::Pool2dDims d;
  MaxPool2dBackward(Tensor i, Shape s, const kern::Pool2dDims& dims)
      : Node("MaxPool2dBackward"), idx(std::move(i)), in_sizes(std::move(s)), d(dims) {}
  std::vector<Tensor> apply(const Tensor& g_in) override {
    Tensor g = g_in.contiguous();
    Tensor gx = new_empty(in_sizes, g);
    dispatch_float_or_bf16(g, "max_pool2d", [&](auto tag) {
      using T = decltype(tag);
      auto run = [&](const auto* ip) {
        using J = std::remove_const_t<std::remove_pointer_t<decltype(ip)>>;
        if (g.is_cuda()) {
          ENGINE_IF_CUDA(kern::cuda::max_pool2d_backward<T, J>(d, ip, g.data<T>(), gx.data<T>(), cuda::stream()));
        } else {
          kern::cpu::max_pool2d_backward<T, J>(d, ip, g.data<T>(), gx.data<T>());
        }
      };
      if (idx.dtype() == DType::i32) {
        run(static_cast<const int32_t*>(idx.data<int32_t>()));
      } else {
        run(static_cast<const int64_t*>(idx.data<int64_t>()));
      }
    });
    return {gx};
  }
  void release_saved() override { idx = Tensor(); }
};

// f32, f64 or bf16 (max_pool2d's kernels and the reductions the global pools use).
void check_pool_input(const char* op, const Tensor& x) {
  ENGINE_CHECK(x.defined(), op, ": undefined input");
  check_floating_or_bf16(op, x);
  ENGINE_CHECK(x.dim() == 4, op, ": expected a 4-d [N, C, H, W] input, got shape ", shape_str(x.sizes()));
}

}  // namespace

static Tensor max_pool2d_untraced(const Tensor& x_in, const Pool2dParams& p) {
  check_pool_input("max_pool2d", x_in);
  ENGINE_CHECK(p.kernel_h > 0 && p.kernel_w > 0, "max_pool2d: kernel ", p.kernel_h, "x", p.kernel_w,
               " must be positive");
  ENGINE_CHECK(p.stride_h > 0 && p.stride_w > 0, "max_pool2d: stride ", p.stride_h, "x", p.stride_w,
               " must be positive");
  ENGINE_CHECK(p.pad_h >= 0 && p.pad_w >= 0 && p.pad_h <= p.kernel_h / 2 && p.pad_w <= p.kernel_w / 2,
               "max_pool2d: pad ", p.pad_h, "x", p.pad_w, " must be between 0 and half the kernel ", p.kernel_h, "x",
               p.kernel_w);
  const int64_t H = x_in.size(2), W = x_in.size(3);
  ENGINE_CHECK(H > 0 && W > 0, "max_pool2d: empty spatial size in input ", shape_str(x_in.sizes()));
  ENGINE_CHECK(H + 2 * p.pad_h >= p.kernel_h && W + 2 * p.pad_w >= p.kernel_w, "max_pool2d: input ",
               shape_str(x_in.sizes()), " with pad ", p.pad_h, "x", p.pad_w, " is smaller than the kernel ",
               p.kernel_h, "x", p.kernel_w);

  kern::Pool2dDims d;
  d.planes = x_in.size(0) * x_in.size(1);
  d.in_h = H;
  d.in_w = W;
  d.out_h = pool_output_size(H, p.kernel_h, p.stride_h, p.pad_h, p.ceil_mode);
  d.out_w = pool_output_size(W, p.kernel_w, p.stride_w, p.pad_w, p.ceil_mode);
  d.kernel_h = p.kernel_h;
  d.kernel_w = p.kernel_w;
  d.stride_h = p.stride_h;
  d.stride_w = p.stride_w;
  d.pad_h = p.pad_h;
  d.pad_w = p.pad_w;

  Tensor x = x_in.detach().contiguous();
  const Shape out_shape{x.size(0), x.size(1), d.out_h, d.out_w};
  Tensor y = new_empty(out_shape, x);
  // The argmax (index inside an input plane) in 32 bits when a plane allows (kernels/pool2d.h),
  // and only when a backward will read it (none is allocated or written otherwise).
  const bool need_idx = any_requires_grad({x_in});
  const bool idx32 = kern::pool_argmax_int32(H, W);
  Tensor idx = need_idx ? empty(out_shape, TensorOptions(idx32 ? DType::i32 : DType::i64).device(x.device()))
                        : Tensor();
  dispatch_float_or_bf16(x, "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    auto run = [&](auto* ip) {
      using J = std::remove_pointer_t<decltype(ip)>;
      if (x.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::max_pool2d_forward<T, J>(d, x.data<T>(), y.data<T>(), ip, cuda::stream()));
      } else {
        kern::cpu::max_pool2d_forward<T, J>(d, x.data<T>(), y.data<T>(), ip);
      }
    };
    if (!need_idx) {
      run(static_cast<int32_t*>(nullptr));
    } else if (idx32) {
      run(idx.data<int32_t>());
    } else {
      run(idx.data<int64_t>());
    }
  });
  if (need_idx) attach(y, std::make_shared<MaxPool2dBackward>(idx, x.sizes(), d), {x_in});
  return y;
}

// Both globals reuse the reductions, so their backward comes from those ops:
//   global_max_pool2d = max over the flattened H*W (torch.max(dim) semantics: the gradient
//     goes to the first maximum; equals adaptive_max_pool2d(x, 1) for distinct values);
//   global_avg_pool2d = mean over (H, W) (equals adaptive_avg_pool2d(x, 1)).
static Tensor global_max_pool2d_untraced(const Tensor& x) {
  check_pool_input("global_max_pool2d", x);
  ENGINE_CHECK(x.size(2) * x.size(3) > 0, "global_max_pool2d: empty spatial size in ", shape_str(x.sizes()));
  const int64_t N = x.size(0), C = x.size(1);
  Tensor flat = x.reshape({N, C, x.size(2) * x.size(3)});
  return max(flat, 2, true).first.view({N, C, 1, 1});
}

static Tensor global_avg_pool2d_untraced(const Tensor& x) {
  check_pool_input("global_avg_pool2d", x);
  ENGINE_CHECK(x.size(2) * x.size(3) > 0, "global_avg_pool2d: empty spatial size in ", shape_str(x.sizes()));
  return mean(x, {2, 3}, true);
}

Tensor max_pool2d(const Tensor& x, const Pool2dParams& p) {
  Tensor y = max_pool2d_untraced(x, p);
  if (auto* r = trace::active())
    r->record("max_pool2d", {x}, {y},
              {{"kernel", std::vector<int64_t>{p.kernel_h, p.kernel_w}},
               {"stride", std::vector<int64_t>{p.stride_h, p.stride_w}},
               {"pad", std::vector<int64_t>{p.pad_h, p.pad_w}},
               {"ceil_mode", int64_t{p.ceil_mode}}});
  return y;
}

Tensor global_max_pool2d(const Tensor& x) {
  Tensor y = global_max_pool2d_untraced(x);
  if (auto* r = trace::active()) r->record("global_max_pool2d", {x}, {y}, {});
  return y;
}

Tensor global_avg_pool2d(const Tensor& x) {
  Tensor y = global_avg_pool2d_untraced(x);
  if (auto* r = trace::active()) r->record("global_avg_pool2d", {x}, {y}, {});
  return y;
}

}  // namespace eng
