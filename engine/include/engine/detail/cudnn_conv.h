// cuDNN convolutions on the engine's CUDA path (engine/src/cuda/cudnn_conv.cpp). Not part of
// the user-facing API: engine/src/ops/conv2d.cpp routes every CUDA convolution that is not
// dilated here; dilated ones stay on our own implicit-GEMM kernel.
//
// Maths: the same cross-correlation as kernels/conv2d.h (NCHW, contiguous; d.groups > 1 is the
// grouped convolution there, filter [O, C / groups, kh, kw], cudnnSetConvolutionGroupCount):
//   forward          y  = conv(x, w) + bias                 (+ ReLU when `relu`)
//   backward data    dx = conv_transpose(dy, w)             (the adjoint of conv in x)
//   backward filter  dw = sum over n, oh, ow of dy * x      (the adjoint of conv in w)
//   backward bias    db[o] = sum over n, oh, ow of dy[n, o, oh, ow]
// Every output is overwritten (cuDNN's beta = 0).
//
// The whole batch goes in one call. Tensor layouts are NCHW; the element type is the
// tensors' dtype: f32 (FP32 maths, or TF32 tensor cores when cuda::tf32_enabled()), f64, or
// bf16 (stored bf16, multiplied on tensor cores, accumulated in FP32).
//
// Algorithms: the first call for a (shape, dtype, math, determinism) key runs
// cudnnFind*AlgorithmEx on the call's own buffers, with a workspace from the caching
// allocator of at most workspace_limit() bytes, and keeps the fastest algorithm that succeeded
// (deterministic ones only under cuda::set_deterministic(true)). Later calls reuse it: the key
// also owns the cuDNN descriptors. The workspace of each call comes from the caching
// allocator and goes back to it after the call (stream order makes that safe).
//
// Errors: a shape cuDNN rejects, a failed call, or a workspace the device cannot give is one
// eng::Error naming the direction, the shapes, the parameters and the dtype.
#pragma once
#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/dtype.h"
#include "kernels/conv2d.h"

namespace eng::cuda::cudnn {

void conv_forward(const kern::Conv2dDims& d, DType dt, const void* x, const void* w, const void* bias, void* y,
                  bool relu);
void conv_backward_data(const kern::Conv2dDims& d, DType dt, const void* w, const void* dy, void* dx);
void conv_backward_filter(const kern::Conv2dDims& d, DType dt, const void* x, const void* dy, void* dw);
void conv_backward_bias(const kern::Conv2dDims& d, DType dt, const void* dy, void* db);

// Whether cuDNN can run this convolution (conv2d's routing): a dtype cuDNN takes and every
// tensor's element count within cuDNN's int range.
inline bool supported(const kern::Conv2dDims& d, DType dt) {
  if (dt != DType::f32 && dt != DType::f64 && dt != DType::bf16) return false;
  const int64_t biggest = std::max({d.N * d.C * d.H * d.W, d.N * d.O * d.Ho * d.Wo, d.O * d.C * d.kh * d.kw});
  return biggest <= INT_MAX;
}

// What the cache chose for one key and direction, for tests, logs and bench_kernels.
enum class Direction { forward, backward_data, backward_filter };
struct AlgoChoice {
  bool found = false;        // false until a call for this key and direction has run
  int algo = -1;             // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t value
  size_t workspace = 0;      // bytes
  bool deterministic = false;
  bool tensor_op = false;    // its math type uses tensor cores (TF32 / BF16)
  float find_ms = 0.0f;      // the time cudnnFind measured for it
};
AlgoChoice chosen(const kern::Conv2dDims& d, DType dt, Direction dir);
std::string algo_name(Direction dir, int algo);

struct CacheStats {
  size_t keys = 0;        // distinct (shape, dtype, math, determinism) keys
  size_t find_calls = 0;  // cudnnFind*Ex calls since the start (one per key and direction)
};
CacheStats cache_stats();
void clear_cache();  // drops every key (tests; after changing the workspace limit)

// Upper bound on the workspace an algorithm may use (default 1 GiB). Find never offers more,
// so an algorithm that needs more is not chosen.
size_t workspace_limit();
void set_workspace_limit(size_t bytes);

}  // namespace eng::cuda::cudnn
