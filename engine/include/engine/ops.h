// Op front-ends. Each checks shapes/dtypes/devices with a clear message, makes inputs
// contiguous, dispatches to kern::cpu or kern::cuda by device, and (when an input needs
// grad) attaches a backward Node. Implementations live in engine/src/ops/<family>.cpp.
//
// Float ops accept f32 and f64 on either device; all tensor inputs of one op must be on
// the same device.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace eng {

// ---- elementwise binary, broadcasting like NumPy/PyTorch (ops/elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
// Shape that a and b broadcast to; throws naming both shapes when they do not.
Shape broadcast_shapes(const Shape& a, const Shape& b);
// Sums `t` down to `shape` (the reverse of broadcasting to t's shape).
Tensor sum_to(const Tensor& t, const Shape& shape);

// ---- elementwise unary and scalar variants (ops/elementwise.cpp) ----
Tensor neg(const Tensor& x);
Tensor add_scalar(const Tensor& x, double s);   // x + s
Tensor sub_scalar(const Tensor& x, double s);   // x - s
Tensor rsub_scalar(const Tensor& x, double s);  // s - x
Tensor mul_scalar(const Tensor& x, double s);   // x * s
Tensor div_scalar(const Tensor& x, double s);   // x / s
Tensor relu(const Tensor& x);  // backward reads the output, not the input
// In-place ReLU (torch.relu_, nn.ReLU(inplace=True)): x becomes max(x, 0) and returns x; when
// autograd records, x's history gains a ReLU node that differentiates from the output, so no
// copy of the activation is made or kept. Refused (eng::Error, one line) when x is a leaf that
// requires grad (grad mode on), is not contiguous, or shares its memory with any other tensor:
// a view, or a tensor an op saved for its backward (conv2d's or max_pool2d's input, sigmoid's
// or relu's output): overwriting it would corrupt that backward. f32, f64, bf16.
Tensor& relu_(Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor abs(const Tensor& x);
// Gradient flows where lo <= x <= hi (PyTorch's rule: boundary values pass the gradient).
Tensor clamp(const Tensor& x, double lo, double hi);
// The MobileNet activations, torch.nn.functional.relu6 / hardsigmoid / hardswish (f32, f64,
// bf16). Their gradients at the kinks follow torch, not clamp's rule above (kernels/elementwise.h):
//   relu6(x)       = min(max(x, 0), 6)      grad 0 at x = 0 and x = 6; backward reads the output
//   hardsigmoid(x) = relu6(x + 3) / 6       grad 0 at x = -3 and x = 3
//   hardswish(x)   = x * relu6(x + 3) / 6   grad 0 at x = -3, 1 at x = 3
Tensor relu6(const Tensor& x);
Tensor hardsigmoid(const Tensor& x);
Tensor hardswish(const Tensor& x);
// In-place relu6 (torch.nn.ReLU6(inplace=True)), refused in the same cases as relu_.
Tensor& relu6_(Tensor& x);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add_scalar(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return sub_scalar(a, s); }
inline Tensor operator*(const Tensor& a, double s) { return mul_scalar(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return div_scalar(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add_scalar(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return rsub_scalar(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul_scalar(a, s); }

// ---- reductions (ops/reduce.cpp) ----
Tensor sum(const Tensor& x);                                            // all -> 0-dim
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Max over one dim: values (differentiable) and int64 indices of the first maximum.
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);     // not differentiable

// ---- linear algebra (ops/matmul.cpp) ----
// a [.., M, K] @ b [K, N] or batched [B, M, K] @ [B, K, N]; 2-D x 2-D is the plain case.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [N, in] -> x W^T + b, with W [out, in], b [out] (b may be undefined).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- convolution (ops/conv2d.cpp) ----
struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  // Grouped convolution (torch's `groups`): must divide C and O; weight [O, C / groups, kh, kw].
  // groups == C == O is depthwise (hand-written CUDA kernel, kernels/conv2d_depthwise.h).
  int64_t groups = 1;
  // The same stride, padding and dilation on both axes.
  static Conv2dParams square(int64_t stride, int64_t pad, int64_t dilation = 1) {
    Conv2dParams p;
    p.stride_h = p.stride_w = stride;
    p.pad_h = p.pad_w = pad;
    p.dilation_h = p.dilation_w = dilation;
    return p;
  }
};
// x [N, C, H, W], weight [O, C / groups, kh, kw], bias [O] or undefined -> [N, O, Ho, Wo] with
// Ho = (H + 2 pad_h - dilation_h (kh - 1) - 1) / stride_h + 1.
// groups > 1 (engine/src/ops/conv2d_grouped.cpp): CPU per-slice reference; CUDA depthwise
// (groups == C, O a multiple of C) our kernel, other groups cuDNN.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p);
// relu(conv2d(x, weight, bias, p)) as one op: on CUDA, cuDNN computes conv + bias + ReLU in
// one call (cudnnConvolutionBiasActivationForward) when there is a bias; the backward masks
// the gradient with the output's sign. nn::Sequential uses it for a Conv2d followed by ReLU.
Tensor conv2d_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p);

// ---- pooling and resampling (ops/pool.cpp, ops/upsample.cpp) ----
struct Pool2dParams {
  int64_t kernel_h = 2, kernel_w = 2;
  int64_t stride_h = 2, stride_w = 2;
  int64_t pad_h = 0, pad_w = 0;
  bool ceil_mode = false;
};
// PyTorch's output-size rule, including "the last window must start inside the input or
// the left padding" in ceil mode (75 -> 38 for 2x2 s2 ceil).
int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode);
Tensor max_pool2d(const Tensor& x, const Pool2dParams& p);
Tensor global_max_pool2d(const Tensor& x);  // [N, C, H, W] -> [N, C, 1, 1]
Tensor global_avg_pool2d(const Tensor& x);  // [N, C, H, W] -> [N, C, 1, 1]
Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w);  // PyTorch 'nearest'

// ---- normalisation (ops/batch_norm.cpp) ----
// Train mode: normalise with the batch statistics (biased variance) and update the running
// stats in place: running = (1 - momentum) running + momentum * batch (unbiased variance).
// Eval mode: normalise with the running stats. weight/bias may be undefined (affine off).
Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                    Tensor running_mean, Tensor running_var, bool training,
                    double momentum = 0.1, double eps = 1e-5);
// torchvision FrozenBatchNorm2d: y = x * scale + shift with scale = w * rsqrt(rv + eps),
// shift = b - rm * scale; all four are constants (eps 1e-5 like torchvision's default).
Tensor frozen_batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                           const Tensor& running_mean, const Tensor& running_var, double eps = 1e-5);
// Its two halves, so that nn::FrozenBatchNorm2d computes scale and shift once per change of its
// buffers: the constants (no graph; the buffers' dtype and device), and
// y[n, c] = x[n, c] * scale[c] + shift[c] with gradient to x only (same checks and kernels).
std::pair<Tensor, Tensor> frozen_batch_norm2d_scale_shift(const Tensor& weight, const Tensor& bias,
                                                          const Tensor& running_mean, const Tensor& running_var,
                                                          double eps = 1e-5);
Tensor frozen_batch_norm2d_affine(const Tensor& x, const Tensor& scale, const Tensor& shift);

// ---- joining (ops/concat.cpp) ----
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);

// ---- detection heads (ops/flatten_heads.cpp) ----
// levels[l]: [B, A_l * K, H_l, W_l] head outputs -> [B, sum_l H_l * W_l * A_l, K] in torchvision's
// order, written by one kernel (kernels/flatten_heads.h has the index map). Equals
// concat({x.reshape({B, A_l, K, H_l, W_l}).permute({0, 3, 4, 1, 2}).reshape({B, -1, K})...}, 1).
// f32, f64 or bf16; differentiable (backward scatters the gradient back to each level).
Tensor flatten_concat_heads(const std::vector<Tensor>& levels, int64_t k);

// ---- softmax family and losses (ops/softmax.cpp, ops/losses.cpp) ----
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

enum class Reduction { None, Sum, Mean };
// logits [N, C] (or [N, C, d...] with classes on dim 1), target int64 [N] (or [N, d...]).
// Per-element loss -log_softmax(x)[target]; elements whose target == ignore_index give 0
// and no gradient. Mean divides by the number of non-ignored elements.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction = Reduction::Mean,
                     int64_t ignore_index = -100);
// Elementwise: |d| < beta ? 0.5 d^2 / beta : |d| - 0.5 beta, d = input - target.
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean,
                      double beta = 1.0);
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);

// ---- detection ops (ops/l2norm.cpp, ops/focal_loss.cpp) ----
// SSD's L2Norm on conv4_3: x [N, C, H, W], scale [C] ->
//   y[n, c, h, w] = scale[c] * x[n, c, h, w] / max(||x[n, :, h, w]||_2, eps)
// exactly torchvision's scale.view(1, -1, 1, 1) * F.normalize(x, dim=1, eps=eps), including
// all-zero columns (which give 0). Differentiable in x and scale.
Tensor l2norm(const Tensor& x, const Tensor& scale, double eps = 1e-12);

// Sigmoid focal loss (torchvision.ops.sigmoid_focal_loss with one-hot targets built from
// labels): logits [..., C], labels i64 [...]. For label >= 0 the target is one-hot at that
// class; label == background_label (-1) means all-zero targets; label == ignore_index (-2)
// contributes no loss and no gradient. Per element (p = sigmoid(x), t the target):
//   loss = -alpha_t (1 - p_t)^gamma ln(p_t), p_t = t p + (1 - t)(1 - p),
//   alpha_t = t alpha + (1 - t)(1 - alpha)  (alpha < 0 disables the weighting).
// Reduction None returns [..., C]; Sum and Mean reduce over all elements (Mean divides by
// the element count, as torchvision; RetinaNet sums and divides by the foreground count).
Tensor sigmoid_focal_loss(const Tensor& logits, const Tensor& labels, double alpha = 0.25, double gamma = 2.0,
                          Reduction reduction = Reduction::Sum, int64_t background_label = -1,
                          int64_t ignore_index = -2);
// RetinaNet's classification loss in one pass (ops/focal_weighted_sum.cpp): logits
// [B, A, C] (f32, f64 or bf16), labels i64 [B, A] (conventions of sigmoid_focal_loss),
// weights [B] (one per image, constants: refused if they require grad) ->
//   0-d tensor = sum(sigmoid_focal_loss(logits, labels, alpha, gamma, None) * weights[b])
// in the compute dtype (f32 for bf16 logits). Never stores the [B, A, C] loss; backward
// recomputes from the logits. Deterministic (fixed-order two-pass sum). Bad labels: an
// error on the CPU; NaN loss on CUDA (labels are not copied to the host).
Tensor sigmoid_focal_loss_weighted_sum(const Tensor& logits, const Tensor& labels, const Tensor& weights,
                                       double alpha = 0.25, double gamma = 2.0, int64_t background_label = -1,
                                       int64_t ignore_index = -2);

}  // namespace eng
