// Shared definitions for the kernel layer: raw pointers + dims, no Tensor.
//
// Every op header declares kern::cpu::<op>_forward/_backward and kern::cuda::<op>_forward/
// _backward side by side. The CUDA versions take the same arguments plus a stream. This
// header (and every op header) compiles without the CUDA headers: the stream and cuBLAS
// handle types are forward-declared exactly as the CUDA headers declare them.
#pragma once
#include <cstddef>
#include <cstdint>

struct CUstream_st;
struct cublasContext;

namespace kern {

using Stream = CUstream_st*;          // == cudaStream_t
using BlasHandle = cublasContext*;    // == cublasHandle_t

// The largest rank a strided kernel accepts (shapes, strides passed by value).
constexpr int kMaxDims = 8;

// A strided view of up to kMaxDims dimensions, in elements.
struct StridedDims {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
};

// Element types that kernels move around without arithmetic (copy / cast). bf16 is
// kern::bf16 (kernels/bf16.h) on the CPU and __nv_bfloat16 in CUDA code (same bits).
// The order matches eng::DType.
enum class ElemType : uint8_t { f32, f64, i32, i64, u8, b8, bf16 };

}  // namespace kern
