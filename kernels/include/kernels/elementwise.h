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
// All arrays are contiguous of length n.
// T is float, double or kern::bf16 (kernels/bf16.h): bf16 is storage only, loaded as float,
// computed in float (p0 / p1 as float) and stored rounded to nearest even, on the CPU
// and in CUDA alike.
#pragma once
#include "kernels/common.h"

namespace kern {

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };
enum class UnaryOp : uint8_t { Neg, AddScalar, MulScalar, RSubScalar, Relu, Sigmoid, Exp, Log, Sqrt, Square, Abs, Clamp };

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
