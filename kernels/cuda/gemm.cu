// CUDA GEMM through cuBLAS, row-major by the transpose trick (see gemm.h):
//   row-major C (M x N) == column-major C^T (N x M), and C^T = op(B)^T op(A)^T,
// so we ask cuBLAS for the column-major product of "B" (N x K after op) and "A" (K x M after
// op), passing the same transpose flags and leading dims we were given.
#include <cublas_v2.h>

#include <climits>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/gemm.h"

namespace kern::cuda {
namespace {

void check_cublas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLAS error in ") + what + ": status " + std::to_string(static_cast<int>(st)));
}

int as_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX) throw std::invalid_argument(std::string("gemm: ") + what + " = " + std::to_string(v) +
                                                        " is outside cuBLAS's int range");
  return static_cast<int>(v);
}

void check_lds(bool transA, bool transB, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
  auto at_least = [](int64_t a, int64_t b) { return a >= (b > 1 ? b : 1); };
  if (!at_least(lda, transA ? M : K) || !at_least(ldb, transB ? K : N) || !at_least(ldc, N))
    throw std::invalid_argument("gemm: leading dimension too small (M=" + std::to_string(M) + ", N=" +
                                std::to_string(N) + ", K=" + std::to_string(K) + ", lda=" + std::to_string(lda) +
                                ", ldb=" + std::to_string(ldb) + ", ldc=" + std::to_string(ldc) + ")");
}

cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                         float* C, int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const double* alpha, const double* A, int lda, const double* B, int ldb,
                         const double* beta, double* C, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
cublasStatus_t batched_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const float* alpha, const float* A, int lda, long long sA, const float* B, int ldb,
                            long long sB, const float* beta, float* C, int ldc, long long sC, int batch) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}
cublasStatus_t batched_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const double* alpha, const double* A, int lda, long long sA, const double* B, int ldb,
                            long long sB, const double* beta, double* C, int ldc, long long sC, int batch) {
  return cublasDgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}

// C = beta * C for the K == 0 case (cuBLAS's handling of k == 0 is not something to rely on).
template <typename T>
__global__ void scale_kernel(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  const int64_t n = M * N;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    T* c = C + (i / N) * ldc + (i % N);
    *c = beta == T(0) ? T(0) : beta * *c;
  }
}

}  // namespace

template <typename T>
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc, BlasHandle handle, Stream stream) {
  check_lds(transA, transB, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    scale_kernel<T><<<kern_grid_1d(M * N), 256, 0, stream>>>(M, N, beta, C, ldc);
    KERN_LAUNCH_CHECK();
    return;
  }
  auto h = reinterpret_cast<cublasHandle_t>(handle);
  check_cublas(cublasSetStream(h, stream), "cublasSetStream");
  // Swapped operands: column-major (N x M) = op(B)^T (N x K) * op(A)^T (K x M).
  check_cublas(gemm_call(h, op(transB), op(transA), as_int(N, "N"), as_int(M, "M"), as_int(K, "K"), &alpha, B,
                         as_int(ldb, "ldb"), A, as_int(lda, "lda"), &beta, C, as_int(ldc, "ldc")),
               "gemm");
  counters::add_launches();  // one cuBLAS call counts as one launch (kernels/counters.h)
}

template <typename T>
void gemm_strided_batched(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                          int64_t lda, int64_t strideA, const T* B, int64_t ldb, int64_t strideB, T beta, T* C,
                          int64_t ldc, int64_t strideC, int64_t batch, BlasHandle handle, Stream stream) {
  check_lds(transA, transB, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0 || batch == 0) return;
  if (K == 0) {
    for (int64_t b = 0; b < batch; ++b) {
      scale_kernel<T><<<kern_grid_1d(M * N), 256, 0, stream>>>(M, N, beta, C + b * strideC, ldc);
      KERN_LAUNCH_CHECK();
    }
    return;
  }
  auto h = reinterpret_cast<cublasHandle_t>(handle);
  check_cublas(cublasSetStream(h, stream), "cublasSetStream");
  check_cublas(batched_call(h, op(transB), op(transA), as_int(N, "N"), as_int(M, "M"), as_int(K, "K"), &alpha, B,
                            as_int(ldb, "ldb"), strideB, A, as_int(lda, "lda"), strideA, &beta, C,
                            as_int(ldc, "ldc"), strideC, as_int(batch, "batch")),
               "gemm_strided_batched");
  counters::add_launches();
}

#define KERN_INSTANTIATE(T)                                                                                    \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, T*, \
                        int64_t, BlasHandle, Stream);                                                          \
  template void gemm_strided_batched<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, int64_t,   \
                                        const T*, int64_t, int64_t, T, T*, int64_t, int64_t, int64_t,          \
                                        BlasHandle, Stream);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cuda
