// The scalar maths of kernels/elementwise.h, shared by the CPU and CUDA kernels so that the
// two can only differ in rounding. Host+device inline functions.
#pragma once
#include <cmath>

#include "kernels/elementwise.h"

#ifdef __CUDACC__
#define KERN_HD __host__ __device__ __forceinline__
#else
#define KERN_HD inline
#endif

namespace kern::math {

// Unqualified exp / log / sqrt below: on the host these pick std::'s float overloads (not the
// double C functions); in the device pass CUDA's own float overloads are found.
#ifndef __CUDA_ARCH__
using std::exp;
using std::log;
using std::sqrt;
#endif

template <typename T>
KERN_HD T binary(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return T(0);
}

template <typename T>
KERN_HD T sigmoid(T x) {
  // Never exponentiate a large positive number: e^-|x| is in (0, 1].
  if (x >= T(0)) return T(1) / (T(1) + exp(-x));
  T e = exp(x);
  return e / (T(1) + e);
}

// min(max(v, 0), 6) written with comparisons so a NaN passes through (as in torch).
template <typename T>
KERN_HD T relu6(T v) {
  return v < T(0) ? T(0) : (v > T(6) ? T(6) : v);
}

template <typename T>
KERN_HD T unary(UnaryOp op, T x, T p0, T p1) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::AddScalar: return x + p0;
    case UnaryOp::MulScalar: return x * p0;
    case UnaryOp::RSubScalar: return p0 - x;
    case UnaryOp::Relu: return x > T(0) ? x : T(0);
    case UnaryOp::Sigmoid: return sigmoid(x);
    case UnaryOp::Exp: return exp(x);
    case UnaryOp::Log: return log(x);
    case UnaryOp::Sqrt: return sqrt(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Abs: return x < T(0) ? -x : x;
    case UnaryOp::Clamp: return x < p0 ? p0 : (x > p1 ? p1 : x);
    case UnaryOp::Relu6: return relu6(x);
    case UnaryOp::Hardsigmoid: return relu6(x + T(3)) / T(6);
    case UnaryOp::Hardswish: return x * relu6(x + T(3)) / T(6);
  }
  return T(0);
}

// gy * f'(x), with y = f(x) already known.
template <typename T>
KERN_HD T unary_grad(UnaryOp op, T x, T y, T gy, T p0, T p1) {
  switch (op) {
    case UnaryOp::Neg: return -gy;
    case UnaryOp::AddScalar: return gy;
    case UnaryOp::MulScalar: return gy * p0;
    case UnaryOp::RSubScalar: return -gy;
    case UnaryOp::Relu: return x > T(0) ? gy : T(0);
    case UnaryOp::Sigmoid: return gy * y * (T(1) - y);
    case UnaryOp::Exp: return gy * y;
    case UnaryOp::Log: return gy / x;
    case UnaryOp::Sqrt: return gy / (T(2) * y);
    case UnaryOp::Square: return gy * T(2) * x;
    case UnaryOp::Abs: return x > T(0) ? gy : (x < T(0) ? -gy : T(0));
    case UnaryOp::Clamp: return (x >= p0 && x <= p1) ? gy : T(0);
    // Relu6 reads only y (x may be null): 0 < y < 6 exactly when 0 < x < 6.
    case UnaryOp::Relu6: return (y > T(0) && y < T(6)) ? gy : T(0);
    case UnaryOp::Hardsigmoid: return (x > T(-3) && x < T(3)) ? gy * (T(1) / T(6)) : T(0);
    case UnaryOp::Hardswish: return x <= T(-3) ? T(0) : (x < T(3) ? gy * (x / T(3) + T(0.5)) : gy);
  }
  return T(0);
}

}  // namespace kern::math
