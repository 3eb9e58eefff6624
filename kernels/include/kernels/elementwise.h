// Elementwise kernels: broadcasting binary ops and unary ops with their backward.
//
// Binary (out contiguous over `d.sizes`; a and b read through their own strides, a stride
// of 0 broadcasts, exactly torch.add/sub/mul/div with broadcasting):
//   Add: a + b      Sub: a - b      Mul: a * b      Div: a / b
// Their gradients are formed by the front-end from these same ops (g, g*b, g/b, -g*a/b^2)
// followed by a sum over the broadcast dims, so no separate binary backward kernel exists.
//
// Unary, y = f(x; p0, p1), and backward gx = gy * f'(x) (computed from x and/or y):
//   Neg        y = -x                      f' = -1
//   AddScalar  y = x + p0                  f' = 1
//   MulScalar  y = x * p0                  f' = p0
//   RSubScalar y = p0 - x                  f' = -1
//   Relu       y = max(x, 0)               f' = 1 if x > 0 else 0   (torch: 0 at x = 0)
//   Sigmoid    y = 1 / (1 + e^-x)          f' = y (1 - y)           (stable for large |x|)
//   Exp        y = e^x                     f' = y
//   Log        y = ln x                    f' = 1 / x
//   Sqrt       y = sqrt x                  f' = 1 / (2 y)
//   Square     y = x^2                     f' = 2 x
//   Abs        y = |x|                     f' = sign(x) (0 at 0)
//   Clamp      y = min(max(x, p0), p1)     f' = 1 if p0 <= x <= p1 else 0 (torch's rule)
// The mobile activations (MobileNetV2/V3), torch's definitions, forward and gradient bit for
// bit in f32 (checked against torch 2.15's CPU kernels). Their kinks follow torch, which is
// NOT the convention of Clamp above (torch's hardtanh_backward / hardsigmoid_backward use
// open intervals; hardswish_backward was changed to an open interval too, in ATen's
// Activation.cpp and ActivationHardswishKernel.cu: older releases gave -g/2 at x = -3 and 1.5 g
// at x = 3):
//   Relu6        y = min(max(x, 0), 6)       f' = 1 if 0 < x < 6 else 0 (0 at both kinks)
//                (torch.nn.functional.relu6 = hardtanh(x, 0, 6); backward reads y, which
//                equals x on (0, 6) and is 0 or 6 outside, so relu6_ can run in place)
//   Hardsigmoid  y = relu6(x + 3) / 6        f' = 1/6 if -3 < x < 3 else 0 (0 at +-3)
//   Hardswish    y = x * relu6(x + 3) / 6    f' = 0 if x <= -3, x/3 + 1/2 if -3 < x < 3,
//                (computed as (x * r) / 6)     1 if x >= 3 (so 0 at -3 and 1 at +3)
//   In f32 / bf16 the 1/6 of Hardsigmoid's gradient is gy * (1.0f / 6.0f) like torch; in f64
//   it is gy * (1.0 / 6.0) (torch multiplies by the float constant 1.0f / 6.0f even in f64,
//   a 3e-8 relative difference; this engine keeps the exact derivative).
// All arrays are contiguous of length n.
// T is float, double or kern::bf16 (kernels/bf16.h): bf16 is storage only, loaded as float,
// computed in float (p0 / p1 as float) and stored rounded to nearest even, on the CPU
// and in CUDA alike.
#pragma once
#include "kernels/common.h"

namespace kern {

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };
enum class UnaryOp : uint8_t { Neg, AddScalar, MulScalar, RSubScalar, Relu, Sigmoid, Exp, Log, Sqrt, Square, Abs, Clamp,
                              Relu6, Hardsigmoid, Hardswish };

struct BroadcastDims {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};      // output sizes
  int64_t a_strides[kMaxDims] = {};  // 0 where a is broadcast
  int64_t b_strides[kMaxDims] = {};
};

namespace cpu {
template <typename T>
void binary_forward(BinaryOp op, const BroadcastDims& d, const T* a, const T* b, T* out);
template <typename T>
void unary_forward(UnaryOp op, int64_t n, const T* x, T* y, double p0, double p1);
template <typename T>
void unary_backward(UnaryOp op, int64_t n, const T* x, const T* y, const T* gy, T* gx, double p0, double p1);
// x[i] = f(x[i]) in place (relu_): the same maths as unary_forward with y == x.
template <typename T>
void unary_inplace(UnaryOp op, int64_t n, T* x, double p0, double p1);
// ReLU / ReLU6 backward from the output, the dedicated vectorised loops unary_backward uses
// for Relu / Relu6: gx = y > 0 ? gy : 0, and gx = 0 < y < 6 ? gy : 0 (a select: 0 at the
// kinks, 0 where y is NaN, gy passed unchanged, NaN included, where the mask holds).
template <typename T>
void relu_backward(int64_t n, const T* y, const T* gy, T* gx);
template <typename T>
void relu6_backward(int64_t n, const T* y, const T* gy, T* gx);
// The reference loops (variant 0: the op switched per element) the ones above are checked
// against; the ones above are compiled per ISA level (kernels/cpu_isa.h).
namespace ref {
template <typename T>
void binary_forward(BinaryOp op, const BroadcastDims& d, const T* a, const T* b, T* out);
template <typename T>
void unary_forward(UnaryOp op, int64_t n, const T* x, T* y, double p0, double p1);
template <typename T>
void unary_backward(UnaryOp op, int64_t n, const T* x, const T* y, const T* gy, T* gx, double p0, double p1);
template <typename T>
void unary_inplace(UnaryOp op, int64_t n, T* x, double p0, double p1);
}  // namespace ref
}  // namespace cpu

namespace cuda {
template <typename T>
void binary_forward(BinaryOp op, const BroadcastDims& d, const T* a, const T* b, T* out, Stream stream);
template <typename T>
void unary_forward(UnaryOp op, int64_t n, const T* x, T* y, double p0, double p1, Stream stream);
template <typename T>
void unary_inplace(UnaryOp op, int64_t n, T* x, double p0, double p1, Stream stream);
template <typename T>
void unary_backward(UnaryOp op, int64_t n, const T* x, const T* y, const T* gy, T* gx, double p0, double p1,
                    Stream stream);
}  // namespace cuda

}  // namespace kern
