// cuda-emu cuDNN, private: what the descriptors hold and the helpers the three source files
// share (cudnn.cpp: handle, descriptors, tensor ops; cudnn_algo.cpp: algorithm tables,
// Find / Get / workspace queries; cudnn_conv.cpp: the convolutions themselves).
#pragma once
#include <cudnn.h>

#include <cstdint>
#include <vector>

#include "kernels/conv2d.h"

struct cudnnContext {
  cudaStream_t stream = nullptr;
  // Counts the calls of non-deterministic algorithms: their summation order rotates with it.
  unsigned long long nondet_calls = 0;
};

struct cudnnTensorStruct {
  bool set = false;
  cudnnDataType_t dt = CUDNN_DATA_FLOAT;
  int dim[4] = {};         // n, c, h, w
  int64_t stride[4] = {};  // in elements
};

struct cudnnFilterStruct {
  bool set = false;
  cudnnDataType_t dt = CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  int dim[4] = {};  // k (out channels), c, h, w
};

struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  int groups = 1;
};

struct cudnnActivationStruct {
  bool set = false;
  cudnnActivationMode_t mode = CUDNN_ACTIVATION_RELU;
  cudnnNanPropagation_t nan = CUDNN_NOT_PROPAGATE_NAN;
  double coef = 0;
};

namespace emu::dnn {

// Where element (n, c, h, w) of a tensor or filter lives: offset = sum dim_i * stride_i.
struct Layout {
  cudnnDataType_t dt = CUDNN_DATA_FLOAT;
  int64_t dim[4] = {};
  int64_t stride[4] = {};
  int64_t count() const { return dim[0] * dim[1] * dim[2] * dim[3]; }
};
Layout layout(const cudnnTensorStruct& t);
Layout layout(const cudnnFilterStruct& f);  // NCHW: k,c,h,w row-major; NHWC: c fastest

// The data types the stand-in computes with: FLOAT, DOUBLE, BFLOAT16 (as float).
bool computable(cudnnDataType_t dt);
// alpha / beta: float for FLOAT / HALF / BFLOAT16 data, double for DOUBLE data.
double scalar(cudnnDataType_t data_type, const void* p);

// Reads a tensor into a contiguous NCHW buffer of T (bf16 -> float).
template <typename T>
std::vector<T> gather(const Layout& l, const void* p);
// p = alpha * r + beta * p for every element the layout addresses; p is not read when
// beta == 0. r is contiguous NCHW; the result is converted to l.dt (bf16: round to nearest even).
template <typename T>
void blend(const Layout& l, void* p, const std::vector<T>& r, T alpha, T beta);
// Writes NaN into every element the layout addresses (what Find*Ex leaves in its output).
void poison(const Layout& l, void* p);

// ---- convolutions (cudnn_algo.cpp) ----
// A validated convolution: kernel-layer dims plus the layouts of x [N,C,H,W], w [O,C,kh,kw]
// and y [N,O,Ho,Wo] (for backward passes: dx, dw, dy).
struct Problem {
  kern::Conv2dDims d;
  Layout x, w, y;
  cudnnDataType_t dt = CUDNN_DATA_FLOAT;  // data type of x, w and y (all equal)
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  bool tf32 = false;  // FLOAT data, math type not FMA: operands rounded to TF32
  bool flip = false;  // CUDNN_CONVOLUTION: the kernel is applied flipped
};
// BAD_PARAM for unset / null descriptors, mismatched channels, output dims or data types;
// NOT_SUPPORTED for data / compute type combinations the stand-in does not compute.
cudnnStatus_t make_problem(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t c,
                           cudnnTensorDescriptor_t y, Problem* p);

// Declares `Problem p` from four descriptors, returning their error from the calling API.
#define EMU_PROBLEM(x, w, c, y) \
  Problem p;                    \
  if (const cudnnStatus_t st_ = make_problem(x, w, c, y, &p); st_ != CUDNN_STATUS_SUCCESS) return st_

enum class Dir { fwd, bwd_data, bwd_filter };
struct AlgoInfo {
  bool supported = false;
  size_t workspace = 0;  // bytes
  cudnnDeterminism_t determinism = CUDNN_DETERMINISTIC;
  float time = 0;  // made-up milliseconds, stable for a problem
};
int algo_count(Dir dir);
AlgoInfo algo_info(const Problem& p, Dir dir, int algo);
// Before running `algo`: BAD_PARAM for an unknown algorithm, a workspace smaller than it
// needs or a null workspace with a nonzero size; NOT_SUPPORTED for an algorithm that does
// not apply to the problem.
cudnnStatus_t check_algo(const Problem& p, Dir dir, int algo, const void* workspace, size_t workspace_bytes);

}  // namespace emu::dnn
