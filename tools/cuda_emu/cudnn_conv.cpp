// cuda-emu cuDNN: the convolutions themselves (forward, backward data, backward filter, fused
// bias + activation forward). Each call gathers its operands into contiguous NCHW buffers
// (float for FLOAT / BFLOAT16 data, double for DOUBLE), rounds FLOAT operands to TF32 when
// the descriptor's math type allows tensor cores (anything but CUDNN_FMA_MATH, as cuDNN >= 8
// does by default), runs the project's CPU reference (kern::cpu::conv2d_forward /
// conv2d_backward) and blends the result into the strided output: alpha * result + beta *
// output, the output not read when beta == 0.
//
// CUDNN_CONVOLUTION (true convolution) runs the reference on the spatially flipped kernel;
// its filter gradient is the flipped gradient of that kernel.
//
// Non-deterministic algorithms (BWD_DATA_ALGO_0, BWD_FILTER_ALGO_0 / _3) split the reduction
// into up to 4 partial results and add them starting from a partial that rotates with a
// per-handle call counter, as atomics would in a varying order on a GPU: two calls can differ
// in the last bits. Deterministic algorithms always add in one order.
//
// Grouped convolutions (group count > 1) run kern::cpu::conv2d_grouped_* in one order for
// every algorithm.
//
// After a call the workspace bytes the algorithm asked for are overwritten (0xFF): a caller
// that keeps data there across calls sees it destroyed, as it would be on a GPU.
#include <emu_tf32.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "cudnn_internal.h"

using namespace emu::dnn;

namespace {

template <typename T>
void to_tf32(std::vector<T>& v) {
  if constexpr (std::is_same_v<T, float>)
    for (T& e : v) e = emu::round_tf32(e);
}

// Flips every [kh, kw] slice of an [O, C, kh, kw] kernel in both axes: (i, j) <-> (kh-1-i,
// kw-1-j), which is reversing the slice read as a flat kh*kw array.
template <typename T>
void flip_kernel(const kern::Conv2dDims& d, std::vector<T>& w) {
  const int64_t khw = d.kh * d.kw;
  for (int64_t s = 0; s < d.O * (d.C / d.groups); ++s) std::reverse(w.begin() + s * khw, w.begin() + (s + 1) * khw);
}

// Grouped convolutions (cudnnSetConvolutionGroupCount > 1) run the project's grouped CPU
// reference (kern::cpu::conv2d_grouped_*) in one fixed order, whatever the algorithm.
template <typename T>
std::vector<T> grouped_col_buffer(const kern::Conv2dDims& d) {
  return std::vector<T>(static_cast<size_t>(std::max<int64_t>(kern::conv2d_grouped_col_size(d), 1)));
}
int64_t filter_count(const kern::Conv2dDims& d) { return d.O * (d.C / d.groups) * d.kh * d.kw; }

template <typename T>
std::vector<T> col_buffer(const kern::Conv2dDims& d) {
  return std::vector<T>(kern::conv2d_is_pointwise(d) ? 1 : static_cast<size_t>(kern::conv2d_col_size(d)));
}

// parts[first] + parts[first + 1] + ... (cyclically), element by element, left to right.
template <typename T>
std::vector<T> rotated_sum(const std::vector<std::vector<T>>& parts, size_t first) {
  const size_t G = parts.size();
  std::vector<T> acc = parts[first % G];
  for (size_t i = 1; i < G; ++i) {
    const std::vector<T>& p = parts[(first + i) % G];
    for (size_t e = 0; e < acc.size(); ++e) acc[e] += p[e];
  }
  return acc;
}

constexpr int64_t kMaxParts = 4;

template <typename T>
std::vector<T> forward_values(const Problem& p, const void* x, const void* w) {
  const kern::Conv2dDims& d = p.d;
  std::vector<T> xv = gather<T>(p.x, x), wv = gather<T>(p.w, w);
  if (p.tf32) to_tf32(xv), to_tf32(wv);
  if (p.flip) flip_kernel(d, wv);
  std::vector<T> y(static_cast<size_t>(d.N * d.O * d.Ho * d.Wo));
  if (d.groups > 1) {
    std::vector<T> col = grouped_col_buffer<T>(d);
    kern::cpu::conv2d_grouped_forward<T>(d, xv.data(), wv.data(), nullptr, y.data(), col.data());
    return y;
  }
  std::vector<T> col = col_buffer<T>(d);
  kern::cpu::conv2d_forward<T>(d, xv.data(), wv.data(), nullptr, y.data(), col.data());
  return y;
}

template <typename T>
std::vector<T> backward_data_values(const Problem& p, const void* w, const void* dy, bool nondet,
                                    unsigned long long call) {
  const kern::Conv2dDims& d = p.d;
  std::vector<T> wv = gather<T>(p.w, w), gv = gather<T>(p.y, dy);
  if (p.tf32) to_tf32(wv), to_tf32(gv);
  if (p.flip) flip_kernel(d, wv);
  std::vector<T> dx(static_cast<size_t>(d.N * d.C * d.H * d.W));
  if (d.groups > 1) {
    std::vector<T> col = grouped_col_buffer<T>(d);
    kern::cpu::conv2d_grouped_backward<T>(d, nullptr, wv.data(), gv.data(), dx.data(), nullptr, nullptr, col.data(),
                                          nullptr);
    return dx;
  }
  std::vector<T> col = col_buffer<T>(d);
  if (!nondet) {
    kern::cpu::conv2d_backward<T>(d, nullptr, wv.data(), gv.data(), dx.data(), nullptr, nullptr, col.data());
    return dx;
  }
  // dx sums over (output channel o, kernel tap t): split the flat index o * kh*kw + t into G
  // ranges; each part sees only its range's weights (the others zeroed).
  const int64_t khw = d.kh * d.kw, HWo = d.Ho * d.Wo, units = d.O * khw, G = std::min(units, kMaxParts);
  std::vector<std::vector<T>> parts;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t u0 = g * units / G, u1 = (g + 1) * units / G, o0 = u0 / khw, o1 = (u1 - 1) / khw + 1;
    kern::Conv2dDims s = d;
    s.O = o1 - o0;
    std::vector<T> ws(static_cast<size_t>(s.O * d.C * khw)), gs(static_cast<size_t>(d.N * s.O * HWo));
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t c = 0; c < d.C; ++c)
        for (int64_t t = 0; t < khw; ++t) {
          const int64_t u = o * khw + t;
          ws[((o - o0) * d.C + c) * khw + t] = (u >= u0 && u < u1) ? wv[(o * d.C + c) * khw + t] : T(0);
        }
    for (int64_t n = 0; n < d.N; ++n)
      std::copy(gv.begin() + (n * d.O + o0) * HWo, gv.begin() + (n * d.O + o1) * HWo, gs.begin() + n * s.O * HWo);
    parts.emplace_back(dx.size());
    kern::cpu::conv2d_backward<T>(s, nullptr, ws.data(), gs.data(), parts.back().data(), nullptr, nullptr, col.data());
  }
  return rotated_sum(parts, static_cast<size_t>(call % static_cast<unsigned long long>(G)));
}

template <typename T>
std::vector<T> backward_filter_values(const Problem& p, const void* x, const void* dy, bool nondet,
                                      unsigned long long call) {
  const kern::Conv2dDims& d = p.d;
  std::vector<T> xv = gather<T>(p.x, x), gv = gather<T>(p.y, dy);
  if (p.tf32) to_tf32(xv), to_tf32(gv);
  std::vector<T> dw(static_cast<size_t>(filter_count(d)));
  if (d.groups > 1) {
    std::vector<T> col = grouped_col_buffer<T>(d), tmp(static_cast<size_t>(filter_count(d) / d.groups));
    kern::cpu::conv2d_grouped_backward<T>(d, xv.data(), nullptr, gv.data(), nullptr, dw.data(), nullptr, col.data(),
                                          tmp.data());
    if (p.flip) flip_kernel(d, dw);
    return dw;
  }
  std::vector<T> col = col_buffer<T>(d);
  if (!nondet) {
    kern::cpu::conv2d_backward<T>(d, xv.data(), nullptr, gv.data(), nullptr, dw.data(), nullptr, col.data());
  } else {
    // dw sums over (image n, output row oh): split the flat index n * Ho + oh into G ranges;
    // each part runs on the images its range touches, with dy zeroed outside the range.
    const int64_t HWo = d.Ho * d.Wo, CHW = d.C * d.H * d.W, units = d.N * d.Ho, G = std::min(units, kMaxParts);
    std::vector<std::vector<T>> parts;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t q0 = g * units / G, q1 = (g + 1) * units / G, n0 = q0 / d.Ho, n1 = (q1 - 1) / d.Ho + 1;
      kern::Conv2dDims s = d;
      s.N = n1 - n0;
      std::vector<T> gs(static_cast<size_t>(s.N * d.O * HWo));
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t o = 0; o < d.O; ++o)
          for (int64_t oh = 0; oh < d.Ho; ++oh) {
            const int64_t q = n * d.Ho + oh;
            const T* src = gv.data() + ((n * d.O + o) * d.Ho + oh) * d.Wo;
            T* dst = gs.data() + (((n - n0) * d.O + o) * d.Ho + oh) * d.Wo;
            for (int64_t ow = 0; ow < d.Wo; ++ow) dst[ow] = (q >= q0 && q < q1) ? src[ow] : T(0);
          }
      parts.emplace_back(dw.size());
      kern::cpu::conv2d_backward<T>(s, xv.data() + n0 * CHW, nullptr, gs.data(), nullptr, parts.back().data(), nullptr,
                                    col.data());
    }
    dw = rotated_sum(parts, static_cast<size_t>(call % static_cast<unsigned long long>(G)));
  }
  if (p.flip) flip_kernel(d, dw);
  return dw;
}

void clobber_workspace(const Problem& p, Dir dir, int algo, void* ws) {
  const size_t need = algo_info(p, dir, algo).workspace;
  if (need && ws) std::memset(ws, 0xFF, need);
}

}  // namespace

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha, const cudnnTensorDescriptor_t xDesc,
                                      const void* x, const cudnnFilterDescriptor_t wDesc, const void* w,
                                      const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionFwdAlgo_t algo,
                                      void* workSpace, size_t workSpaceSizeInBytes, const void* beta,
                                      const cudnnTensorDescriptor_t yDesc, void* y) {
  if (!handle || !alpha || !beta) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(xDesc, wDesc, convDesc, yDesc);
  if (!x || !w || !y) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check_algo(p, Dir::fwd, algo, workSpace, workSpaceSizeInBytes); st) return st;
  const double a = scalar(p.dt, alpha), b = scalar(p.dt, beta);
  emu::enqueue(handle->stream, [=] {
    if (p.dt == CUDNN_DATA_DOUBLE)
      blend<double>(p.y, y, forward_values<double>(p, x, w), a, b);
    else
      blend<float>(p.y, y, forward_values<float>(p, x, w), static_cast<float>(a), static_cast<float>(b));
    clobber_workspace(p, Dir::fwd, algo, workSpace);
  });
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha, const cudnnFilterDescriptor_t wDesc,
                                           const void* w, const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                           const cudnnConvolutionDescriptor_t convDesc,
                                           cudnnConvolutionBwdDataAlgo_t algo, void* workSpace,
                                           size_t workSpaceSizeInBytes, const void* beta,
                                           const cudnnTensorDescriptor_t dxDesc, void* dx) {
  if (!handle || !alpha || !beta) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(dxDesc, wDesc, convDesc, dyDesc);
  if (!w || !dy || !dx) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check_algo(p, Dir::bwd_data, algo, workSpace, workSpaceSizeInBytes); st) return st;
  const bool nondet = algo_info(p, Dir::bwd_data, algo).determinism == CUDNN_NON_DETERMINISTIC;
  const unsigned long long call = nondet ? handle->nondet_calls++ : 0;
  const double a = scalar(p.dt, alpha), b = scalar(p.dt, beta);
  emu::enqueue(handle->stream, [=] {
    if (p.dt == CUDNN_DATA_DOUBLE)
      blend<double>(p.x, dx, backward_data_values<double>(p, w, dy, nondet, call), a, b);
    else
      blend<float>(p.x, dx, backward_data_values<float>(p, w, dy, nondet, call), static_cast<float>(a),
                   static_cast<float>(b));
    clobber_workspace(p, Dir::bwd_data, algo, workSpace);
  });
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha,
                                             const cudnnTensorDescriptor_t xDesc, const void* x,
                                             const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                             const cudnnConvolutionDescriptor_t convDesc,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* workSpace,
                                             size_t workSpaceSizeInBytes, const void* beta,
                                             const cudnnFilterDescriptor_t dwDesc, void* dw) {
  if (!handle || !alpha || !beta) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(xDesc, dwDesc, convDesc, dyDesc);
  if (!x || !dy || !dw) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check_algo(p, Dir::bwd_filter, algo, workSpace, workSpaceSizeInBytes); st) return st;
  const bool nondet = algo_info(p, Dir::bwd_filter, algo).determinism == CUDNN_NON_DETERMINISTIC;
  const unsigned long long call = nondet ? handle->nondet_calls++ : 0;
  const double a = scalar(p.dt, alpha), b = scalar(p.dt, beta);
  emu::enqueue(handle->stream, [=] {
    if (p.dt == CUDNN_DATA_DOUBLE)
      blend<double>(p.w, dw, backward_filter_values<double>(p, x, dy, nondet, call), a, b);
    else
      blend<float>(p.w, dw, backward_filter_values<float>(p, x, dy, nondet, call), static_cast<float>(a),
                   static_cast<float>(b));
    clobber_workspace(p, Dir::bwd_filter, algo, workSpace);
  });
  return CUDNN_STATUS_SUCCESS;
}

namespace {
// y = act(alpha1 * conv(x, w) + alpha2 * z + bias[o]); z is not read when alpha2 == 0.
template <typename T>
void bias_activation(const Problem& p, double alpha1, const void* x, const void* w, double alpha2, const Layout& zl,
                     const void* z, const Layout& bl, const void* bias, const cudnnActivationStruct& act, void* y) {
  const std::vector<T> r = forward_values<T>(p, x, w);
  const std::vector<T> zv = alpha2 != 0 ? gather<T>(zl, z) : std::vector<T>();
  const std::vector<T> bv = gather<T>(bl, bias);
  const int64_t HWo = p.d.Ho * p.d.Wo, O = p.d.O;
  std::vector<T> out(r.size());
  for (size_t i = 0; i < r.size(); ++i) {
    T v = static_cast<T>(alpha1) * r[i] + bv[(static_cast<int64_t>(i) / HWo) % O];
    if (alpha2 != 0) v += static_cast<T>(alpha2) * zv[i];
    if (act.mode == CUDNN_ACTIVATION_RELU && !(act.nan == CUDNN_PROPAGATE_NAN && std::isnan(v)))
      v = v > T(0) ? v : T(0);
    out[i] = v;
  }
  blend<T>(p.y, y, out, T(1), T(0));
}
}  // namespace

cudnnStatus_t cudnnConvolutionBiasActivationForward(
    cudnnHandle_t handle, const void* alpha1, const cudnnTensorDescriptor_t xDesc, const void* x,
    const cudnnFilterDescriptor_t wDesc, const void* w, const cudnnConvolutionDescriptor_t convDesc,
    cudnnConvolutionFwdAlgo_t algo, void* workSpace, size_t workSpaceSizeInBytes, const void* alpha2,
    const cudnnTensorDescriptor_t zDesc, const void* z, const cudnnTensorDescriptor_t biasDesc, const void* bias,
    const cudnnActivationDescriptor_t activationDesc, const cudnnTensorDescriptor_t yDesc, void* y) {
  if (!handle || !alpha1 || !alpha2) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(xDesc, wDesc, convDesc, yDesc);
  if (!x || !w || !y || !bias || !z) return CUDNN_STATUS_BAD_PARAM;
  if (!zDesc || !zDesc->set || !biasDesc || !biasDesc->set || !activationDesc || !activationDesc->set)
    return CUDNN_STATUS_BAD_PARAM;
  for (int i = 0; i < 4; ++i)
    if (zDesc->dim[i] != yDesc->dim[i]) return CUDNN_STATUS_BAD_PARAM;
  if (biasDesc->dim[0] != 1 || biasDesc->dim[1] != yDesc->dim[1] || biasDesc->dim[2] != 1 || biasDesc->dim[3] != 1)
    return CUDNN_STATUS_BAD_PARAM;
  if (zDesc->dt != p.dt || biasDesc->dt != p.dt) return CUDNN_STATUS_BAD_PARAM;
  // cuDNN runs the identity (no activation) variant only with IMPLICIT_PRECOMP_GEMM.
  if (activationDesc->mode == CUDNN_ACTIVATION_IDENTITY && algo != CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM)
    return CUDNN_STATUS_NOT_SUPPORTED;
  if (const cudnnStatus_t st = check_algo(p, Dir::fwd, algo, workSpace, workSpaceSizeInBytes); st) return st;
  const double a1 = scalar(p.dt, alpha1), a2 = scalar(p.dt, alpha2);
  const Layout zl = layout(*zDesc), bl = layout(*biasDesc);
  const cudnnActivationStruct act = *activationDesc;  // descriptors are read at the call
  emu::enqueue(handle->stream, [=] {
    if (p.dt == CUDNN_DATA_DOUBLE)
      bias_activation<double>(p, a1, x, w, a2, zl, z, bl, bias, act, y);
    else
      bias_activation<float>(p, a1, x, w, a2, zl, z, bl, bias, act, y);
    clobber_workspace(p, Dir::fwd, algo, workSpace);
  });
  return CUDNN_STATUS_SUCCESS;
}
