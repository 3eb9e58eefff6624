// cuda-emu cuBLAS: column-major C = alpha op(A) op(B) + beta C, as cuBLAS defines it (C is
// not read when beta == 0). Plain loops: the emulator checks results, not speed.
// The math mode is kept per handle: with CUBLAS_TF32_TENSOR_OP_MATH the single-precision
// GEMMs read A and B rounded to TF32 (as tensor cores do), accumulating in float.
// Arguments are checked at the call; the product runs on the handle's stream (emu::enqueue),
// with alpha / beta read at the call (host pointer mode).
#include <cublas_v2.h>
#include <emu_tf32.h>

#include <type_traits>
#include <vector>

namespace {
struct Handle {
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  cudaStream_t stream = nullptr;
};
Handle* handle_of(cublasHandle_t h) { return reinterpret_cast<Handle*>(h); }
// The low bits hold the mode; flags such as CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION
// (16) may be OR-ed on top, as cuBLAS allows.
bool tf32(cublasHandle_t h) { return h && (handle_of(h)->math & 0xF) == CUBLAS_TF32_TENSOR_OP_MATH; }

bool gemm_args_ok(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc) {
  if (m < 0 || n < 0 || k < 0) return false;
  return lda >= std::max(1, ta == CUBLAS_OP_N ? m : k) && ldb >= std::max(1, tb == CUBLAS_OP_N ? k : n) &&
         ldc >= std::max(1, m);
}

template <typename T>
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, T alpha, const T* A, int lda,
          const T* B, int ldb, T beta, T* C, int ldc, bool round_tf32) {
  auto operand = [round_tf32](T v) {
    if constexpr (std::is_same_v<T, float>) return round_tf32 ? emu::round_tf32(v) : v;
    return v;
  };
  auto a = [&](int i, int p) { return operand(ta == CUBLAS_OP_N ? A[i + static_cast<long long>(p) * lda] : A[p + static_cast<long long>(i) * lda]); };
  auto b = [&](int p, int j) { return operand(tb == CUBLAS_OP_N ? B[p + static_cast<long long>(j) * ldb] : B[j + static_cast<long long>(p) * ldb]); };
  std::vector<T> col(m);
  for (int j = 0; j < n; ++j) {
    std::fill(col.begin(), col.end(), T(0));
    for (int p = 0; p < k; ++p) {
      const T bp = b(p, j);
      for (int i = 0; i < m; ++i) col[i] += a(i, p) * bp;
    }
    T* c = C + static_cast<long long>(j) * ldc;
    for (int i = 0; i < m; ++i) c[i] = beta == T(0) ? alpha * col[i] : alpha * col[i] + beta * c[i];
  }
}

// `count` products (1 for a plain GEMM), queued on the handle's stream.
template <typename T>
cublasStatus_t batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, T alpha,
                       const T* A, int lda, long long sA, const T* B, int ldb, long long sB, T beta, T* C, int ldc,
                       long long sC, int count, bool round_tf32) {
  if (!gemm_args_ok(ta, tb, m, n, k, lda, ldb, ldc) || count < 0) return CUBLAS_STATUS_INVALID_VALUE;
  emu::enqueue(h ? handle_of(h)->stream : nullptr, [=] {
    for (int i = 0; i < count; ++i)
      gemm(ta, tb, m, n, k, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc, round_tf32);
  });
  return CUBLAS_STATUS_SUCCESS;
}
}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = reinterpret_cast<cublasHandle_t>(new Handle);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle_of(handle);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle_of(handle)->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if ((mode & 0xF) > CUBLAS_TF32_TENSOR_OP_MATH) return CUBLAS_STATUS_INVALID_VALUE;
  handle_of(handle)->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
  return batched(handle, ta, tb, m, n, k, *alpha, A, lda, 0, B, ldb, 0, *beta, C, ldc, 0, 1, tf32(handle));
}
cublasStatus_t cublasDgemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const double* alpha, const double* A, int lda, const double* B, int ldb,
                           const double* beta, double* C, int ldc) {
  return batched(handle, ta, tb, m, n, k, *alpha, A, lda, 0, B, ldb, 0, *beta, C, ldc, 0, 1, false);
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* A, int lda, long long strideA,
                                         const float* B, int ldb, long long strideB, const float* beta, float* C,
                                         int ldc, long long strideC, int batch) {
  return batched(handle, ta, tb, m, n, k, *alpha, A, lda, strideA, B, ldb, strideB, *beta, C, ldc, strideC, batch,
                 tf32(handle));
}
cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const double* alpha, const double* A, int lda, long long strideA,
                                         const double* B, int ldb, long long strideB, const double* beta,
                                         double* C, int ldc, long long strideC, int batch) {
  return batched(handle, ta, tb, m, n, k, *alpha, A, lda, strideA, B, ldb, strideB, *beta, C, ldc, strideC, batch,
                 false);
}
