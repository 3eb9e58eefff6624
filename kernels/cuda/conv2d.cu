// CUDA conv2d: hand-written im2col / col2im kernels + cuBLAS GEMMs, image by image
// (maths in conv2d.h). Simple first: one thread per output element, grid-stride loops.
#include "kernels/conv2d.h"
#include "kernels/cuda_check.h"
#include "kernels/gemm.h"

namespace kern::cuda {
namespace {

// One thread per col entry (r, p): r = (c*kh + i)*kw + j, p = oh*Wo + ow.
template <typename T>
__global__ void im2col_kernel(Conv2dDims d, const T* __restrict__ x_img, T* __restrict__ col) {
  const int64_t HWo = d.Ho * d.Wo;
  const int64_t total = d.C * d.kh * d.kw * HWo;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = idx / HWo, p = idx % HWo;
    const int64_t oh = p / d.Wo, ow = p % d.Wo;
    const int64_t c = r / (d.kh * d.kw), i = (r / d.kw) % d.kh, j = r % d.kw;
    const int64_t h = oh * d.stride_h - d.pad_h + i * d.dil_h;
    const int64_t v = ow * d.stride_w - d.pad_w + j * d.dil_w;
    col[idx] = (h >= 0 && h < d.H && v >= 0 && v < d.W) ? x_img[(c * d.H + h) * d.W + v] : T(0);
  }
}

// One thread per input pixel (c, h, v): gathers every col entry that read this pixel.
// Tap (i, j) read it from output (oh, ow) when h = oh*s - p + i*dil, i.e. when
// h + p - i*dil is a non-negative multiple of s whose quotient oh is < Ho (same for v).
template <typename T>
__global__ void col2im_kernel(Conv2dDims d, const T* __restrict__ col, T* __restrict__ gx_img) {
  const int64_t HWo = d.Ho * d.Wo;
  const int64_t total = d.C * d.H * d.W;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t v = idx % d.W, h = (idx / d.W) % d.H, c = idx / (d.H * d.W);
    T acc = 0;
    for (int64_t i = 0; i < d.kh; ++i) {
      const int64_t hs = h + d.pad_h - i * d.dil_h;
      if (hs < 0 || hs % d.stride_h != 0) continue;
      const int64_t oh = hs / d.stride_h;
      if (oh >= d.Ho) continue;
      for (int64_t j = 0; j < d.kw; ++j) {
        const int64_t vs = v + d.pad_w - j * d.dil_w;
        if (vs < 0 || vs % d.stride_w != 0) continue;
        const int64_t ow = vs / d.stride_w;
        if (ow >= d.Wo) continue;
        acc += col[((c * d.kh + i) * d.kw + j) * HWo + oh * d.Wo + ow];
      }
    }
    gx_img[idx] = acc;
  }
}

// y[n, o, :] += bias[o] over the whole batch.
template <typename T>
__global__ void add_bias_kernel(int64_t total, int64_t O, int64_t HWo, const T* __restrict__ bias, T* __restrict__ y) {
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x)
    y[idx] += bias[(idx / HWo) % O];
}

// gb[o] = sum over n and pixels of gy[n, o, :]: one block per channel, shared-memory tree.
constexpr int kBiasThreads = 256;
template <typename T>
__global__ void bias_grad_kernel(int64_t N, int64_t O, int64_t HWo, const T* __restrict__ gy, T* __restrict__ gb) {
  __shared__ T partial[kBiasThreads];
  const int64_t o = blockIdx.x;
  T s = 0;
  for (int64_t k = threadIdx.x; k < N * HWo; k += blockDim.x) {
    const int64_t n = k / HWo, p = k % HWo;
    s += gy[(n * O + o) * HWo + p];
  }
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) gb[o] = partial[0];
}

}  // namespace

template <typename T>
void im2col(const Conv2dDims& d, const T* x_img, T* col, Stream stream) {
  const int64_t total = conv2d_col_size(d);
  if (total == 0) return;
  im2col_kernel<T><<<kern_grid_1d(total), 256, 0, stream>>>(d, x_img, col);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void col2im(const Conv2dDims& d, const T* col, T* gx_img, Stream stream) {
  const int64_t total = d.C * d.H * d.W;
  if (total == 0) return;
  col2im_kernel<T><<<kern_grid_1d(total), 256, 0, stream>>>(d, col, gx_img);
  KERN_LAUNCH_CHECK();
}

template <typename T>
void conv2d_forward(const Conv2dDims& d, const T* x, const T* w, const T* bias, T* y, T* col, BlasHandle blas,
                    Stream stream) {
  const int64_t K = conv2d_col_rows(d), HWo = d.Ho * d.Wo;
  const bool pointwise = conv2d_is_pointwise(d);
  for (int64_t n = 0; n < d.N; ++n) {
    const T* xn = x + n * d.C * d.H * d.W;
    const T* cn = xn;
    if (!pointwise) {
      im2col<T>(d, xn, col, stream);
      cn = col;
    }
    gemm<T>(false, false, d.O, HWo, K, T(1), w, K, cn, HWo, T(0), y + n * d.O * HWo, HWo, blas, stream);
  }
  const int64_t total = d.N * d.O * HWo;
  if (bias && total > 0) {
    add_bias_kernel<T><<<kern_grid_1d(total), 256, 0, stream>>>(total, d.O, HWo, bias, y);
    KERN_LAUNCH_CHECK();
  }
}

template <typename T>
void conv2d_backward(const Conv2dDims& d, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, T* col,
                     BlasHandle blas, Stream stream) {
  const int64_t K = conv2d_col_rows(d), HWo = d.Ho * d.Wo;
  const bool pointwise = conv2d_is_pointwise(d);

  if (gb && d.O > 0) {
    bias_grad_kernel<T><<<static_cast<unsigned>(d.O), kBiasThreads, 0, stream>>>(d.N, d.O, HWo, gy, gb);
    KERN_LAUNCH_CHECK();
  }
  if (gw && d.N == 0) KERN_CUDA_CHECK(cudaMemsetAsync(gw, 0, sizeof(T) * d.O * K, stream));
  if (!gw && !gx) return;

  for (int64_t n = 0; n < d.N; ++n) {
    const T* xn = x + n * d.C * d.H * d.W;
    const T* gyn = gy + n * d.O * HWo;
    if (gw) {
      const T* cn = xn;
      if (!pointwise) {
        im2col<T>(d, xn, col, stream);
        cn = col;
      }
      gemm<T>(false, true, d.O, K, HWo, T(1), gyn, HWo, cn, HWo, n == 0 ? T(0) : T(1), gw, K, blas, stream);
    }
    if (gx) {
      T* gxn = gx + n * d.C * d.H * d.W;
      T* gcol = pointwise ? gxn : col;  // stream order: the gw GEMM has read col before this overwrites it
      gemm<T>(true, false, K, HWo, d.O, T(1), w, K, gyn, HWo, T(0), gcol, HWo, blas, stream);
      if (!pointwise) col2im<T>(d, gcol, gxn, stream);
    }
  }
}

#define KERN_INSTANTIATE(T)                                                                                   \
  template void im2col<T>(const Conv2dDims&, const T*, T*, Stream);                                           \
  template void col2im<T>(const Conv2dDims&, const T*, T*, Stream);                                           \
  template void conv2d_forward<T>(const Conv2dDims&, const T*, const T*, const T*, T*, T*, BlasHandle, Stream); \
  template void conv2d_backward<T>(const Conv2dDims&, const T*, const T*, const T*, T*, T*, T*, T*, BlasHandle, \
                                   Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
