// General matrix multiply (GEMM) on row-major matrices.
//
//   C = alpha * op(A) * op(B) + beta * C
//
// op(A) is M x K and op(B) is K x N; C is M x N. Everything is ROW-MAJOR:
//   transA == false: A is stored M x K, element (i, k) at A[i * lda + k], lda >= K.
//   transA == true:  A is stored K x M, element (i, k) of op(A) = A^T at A[k * lda + i], lda >= M.
//   transB == false: B is stored K x N, element (k, j) at B[k * ldb + j], ldb >= N.
//   transB == true:  B is stored N x K, element (k, j) of op(B) = B^T at B[j * ldb + k], ldb >= K.
//   C: element (i, j) at C[i * ldc + j], ldc >= N.
// When beta == 0, C is only written, never read (NaN in C does not leak), as in BLAS.
// K == 0 gives C = beta * C. Equals torch.addmm(C, op(A), op(B), beta=beta, alpha=alpha).
//
// Strided-batched variant: for b in [0, batch):
//   C + b*strideC = alpha * op(A + b*strideA) * op(B + b*strideB) + beta * (C + b*strideC)
// (torch.baddbmm on contiguous [batch, ., .] arrays: strides = M*K, K*N, M*N).
//
// Back ends:
//   cpu::gemm          cblas_sgemm / cblas_dgemm (OpenBLAS) when the build found it, else
//                      cpu::gemm_builtin.
//   cpu::gemm_builtin  always compiled: a cache-blocked loop nest (packs a KC x NC panel of
//                      op(B) and an MC x KC block of alpha*op(A), then a contiguous inner
//                      loop the compiler vectorises); OpenMP over row blocks.
//   cuda::gemm         cuBLAS. cuBLAS is column-major, so the row-major product is computed
//                      as its transpose: C^T = op(B)^T op(A)^T, i.e. cublas<t>gemm with the
//                      operands swapped (B first, A second) and M/N exchanged. A row-major
//                      matrix with leading dim ld read column-major is its transpose, so no
//                      data moves. The handle is bound to `stream` before the call.
//                      Float GEMMs follow the handle's math mode (TF32 off by default).
#pragma once
#include <string>

#include "kernels/common.h"

namespace kern {

namespace cpu {
template <typename T>
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

template <typename T>
void gemm_builtin(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                  const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

template <typename T>
void gemm_strided_batched(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                          int64_t lda, int64_t strideA, const T* B, int64_t ldb, int64_t strideB, T beta, T* C,
                          int64_t ldc, int64_t strideC, int64_t batch);

// True when cpu::gemm calls OpenBLAS (false: it calls gemm_builtin).
bool gemm_uses_blas();
// The kernel set OpenBLAS chose for this CPU ("Haswell", "SkylakeX", ...; openblas_get_corename);
// "" without OpenBLAS.
std::string blas_core_name();
}  // namespace cpu

namespace cuda {
template <typename T>
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc, BlasHandle handle, Stream stream);

template <typename T>
void gemm_strided_batched(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                          int64_t lda, int64_t strideA, const T* B, int64_t ldb, int64_t strideB, T beta, T* C,
                          int64_t ldc, int64_t strideC, int64_t batch, BlasHandle handle, Stream stream);
}  // namespace cuda

}  // namespace kern
