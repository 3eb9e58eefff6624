// Helpers for the cuDNN stand-in's self-tests (test_cudnn_emu*.cpp): RAII descriptors, device
// buffers, random data and a direct (loop-per-term, double) 2-D convolution that shares no
// code with the stand-in or the kernel layer's im2col reference.
#pragma once
#include <cuda_runtime.h>
#include <cudnn.h>
#include <emu_tf32.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace dnn_test {

#define DNN_OK(call) REQUIRE((call) == CUDNN_STATUS_SUCCESS)

struct Shape {
  int N, C, H, W, O, kh, kw, ph, pw, sh, sw, dh, dw;
  int Ho() const { return (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1; }
  int Wo() const { return (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1; }
  size_t xs() const { return static_cast<size_t>(N) * C * H * W; }
  size_t ws() const { return static_cast<size_t>(O) * C * kh * kw; }
  size_t ys() const { return static_cast<size_t>(N) * O * Ho() * Wo(); }
};

// Calls f(x index, w index, y index) for every multiply-add of the convolution (NCHW, OCkk,
// NOHW contiguous); `flip` applies the kernel rotated by 180 degrees (CUDNN_CONVOLUTION).
template <typename F>
void for_each_term(const Shape& s, bool flip, F&& f) {
  const int Ho = s.Ho(), Wo = s.Wo();
  for (int n = 0; n < s.N; ++n)
    for (int o = 0; o < s.O; ++o)
      for (int oh = 0; oh < Ho; ++oh)
        for (int ow = 0; ow < Wo; ++ow)
          for (int c = 0; c < s.C; ++c)
            for (int i = 0; i < s.kh; ++i)
              for (int j = 0; j < s.kw; ++j) {
                const int h = oh * s.sh - s.ph + i * s.dh, v = ow * s.sw - s.pw + j * s.dw;
                if (h < 0 || h >= s.H || v < 0 || v >= s.W) continue;
                const int wi = flip ? s.kh - 1 - i : i, wj = flip ? s.kw - 1 - j : j;
                f(((static_cast<size_t>(n) * s.C + c) * s.H + h) * s.W + v,
                  ((static_cast<size_t>(o) * s.C + c) * s.kh + wi) * s.kw + wj,
                  ((static_cast<size_t>(n) * s.O + o) * Ho + oh) * Wo + ow);
              }
}
inline std::vector<double> naive_forward(const Shape& s, const std::vector<double>& x, const std::vector<double>& w,
                                         bool flip = false) {
  std::vector<double> y(s.ys(), 0.0);
  for_each_term(s, flip, [&](size_t xi, size_t wi, size_t yi) { y[yi] += w[wi] * x[xi]; });
  return y;
}
inline std::vector<double> naive_backward_data(const Shape& s, const std::vector<double>& w,
                                               const std::vector<double>& dy, bool flip = false) {
  std::vector<double> dx(s.xs(), 0.0);
  for_each_term(s, flip, [&](size_t xi, size_t wi, size_t yi) { dx[xi] += w[wi] * dy[yi]; });
  return dx;
}
inline std::vector<double> naive_backward_filter(const Shape& s, const std::vector<double>& x,
                                                 const std::vector<double>& dy, bool flip = false) {
  std::vector<double> dw(s.ws(), 0.0);
  for_each_term(s, flip, [&](size_t xi, size_t wi, size_t yi) { dw[wi] += x[xi] * dy[yi]; });
  return dw;
}

inline std::vector<double> random_values(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<double> v(n);
  for (double& e : v) e = u(rng);  // float-representable, so float and double runs see the same data
  return v;
}
template <typename T>
std::vector<T> as(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
inline std::vector<double> tf32(const std::vector<double>& v) {
  std::vector<double> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = emu::round_tf32(static_cast<float>(v[i]));
  return r;
}

// Device buffers (host memory in the emulator; fresh ones are NaN-poisoned).
template <typename T>
T* dev(size_t n) {
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
  return static_cast<T*>(p);
}
template <typename T>
T* dev(const std::vector<T>& h) {
  T* p = dev<T>(h.size());
  REQUIRE(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  return p;
}
template <typename T>
std::vector<T> host(const T* p, size_t n) {
  std::vector<T> h(n);
  REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
  return h;
}

// Largest |got - want| / (atol + rtol |want|); <= 1 means within tolerance.
template <typename T>
double error_ratio(const std::vector<T>& got, const std::vector<double>& want, double atol, double rtol) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]) / (atol + rtol * std::fabs(want[i]));
    worst = std::isnan(e) ? INFINITY : std::max(worst, e);
  }
  return worst;
}

struct Handle {
  cudnnHandle_t h = nullptr;
  Handle() { DNN_OK(cudnnCreate(&h)); }
  ~Handle() { cudnnDestroy(h); }
  operator cudnnHandle_t() const { return h; }
};
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc() { DNN_OK(cudnnCreateTensorDescriptor(&d)); }
  TensorDesc(cudnnDataType_t dt, int n, int c, int h, int w, cudnnTensorFormat_t f = CUDNN_TENSOR_NCHW) : TensorDesc() {
    DNN_OK(cudnnSetTensor4dDescriptor(d, f, dt, n, c, h, w));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  operator cudnnTensorDescriptor_t() const { return d; }
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc() { DNN_OK(cudnnCreateFilterDescriptor(&d)); }
  FilterDesc(cudnnDataType_t dt, int k, int c, int h, int w, cudnnTensorFormat_t f = CUDNN_TENSOR_NCHW) : FilterDesc() {
    DNN_OK(cudnnSetFilter4dDescriptor(d, dt, f, k, c, h, w));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  operator cudnnFilterDescriptor_t() const { return d; }
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc() { DNN_OK(cudnnCreateConvolutionDescriptor(&d)); }
  ConvDesc(const Shape& s, cudnnDataType_t compute, cudnnMathType_t math = CUDNN_DEFAULT_MATH,
           cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION)
      : ConvDesc() {
    DNN_OK(cudnnSetConvolution2dDescriptor(d, s.ph, s.pw, s.sh, s.sw, s.dh, s.dw, mode, compute));
    DNN_OK(cudnnSetConvolutionMathType(d, math));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  operator cudnnConvolutionDescriptor_t() const { return d; }
};
struct ActDesc {
  cudnnActivationDescriptor_t d = nullptr;
  ActDesc() { DNN_OK(cudnnCreateActivationDescriptor(&d)); }
  ~ActDesc() { cudnnDestroyActivationDescriptor(d); }
  operator cudnnActivationDescriptor_t() const { return d; }
};

// The descriptors of one NCHW problem of data type dt.
struct Problem {
  Shape s;
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  Problem(const Shape& sh, cudnnDataType_t dt, cudnnDataType_t compute, cudnnMathType_t math = CUDNN_DEFAULT_MATH,
          cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION)
      : s(sh),
        x(dt, sh.N, sh.C, sh.H, sh.W),
        y(dt, sh.N, sh.O, sh.Ho(), sh.Wo()),
        w(dt, sh.O, sh.C, sh.kh, sh.kw),
        conv(sh, compute, math, mode) {}
};

}  // namespace dnn_test
