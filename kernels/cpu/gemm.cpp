// CPU GEMM: OpenBLAS when available, and a built-in cache-blocked fallback (see gemm.h).
#include "kernels/gemm.h"

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#include <cstdlib>
#include <cstring>
#include <mutex>

#ifdef KERN_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace kern::cpu {
namespace {

// Leading dims must cover the stored row length (at least 1, as BLAS requires).
void check_gemm_args(bool transA, bool transB, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                     int64_t ldc) {
  auto fail = [&](const char* what) {
    throw std::invalid_argument(std::string("gemm: ") + what + " (M=" + std::to_string(M) +
                                ", N=" + std::to_string(N) + ", K=" + std::to_string(K) + ", lda=" +
                                std::to_string(lda) + ", ldb=" + std::to_string(ldb) + ", ldc=" +
                                std::to_string(ldc) + ")");
  };
  if (M < 0 || N < 0 || K < 0) fail("negative size");
  if (lda < std::max<int64_t>(1, transA ? M : K)) fail("lda too small");
  if (ldb < std::max<int64_t>(1, transB ? K : N)) fail("ldb too small");
  if (ldc < std::max<int64_t>(1, N)) fail("ldc too small");
}

// C = beta * C over an M x N block; beta == 0 writes zeros without reading C.
template <typename T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  if (beta == T(1)) return;
  for (int64_t i = 0; i < M; ++i) {
    T* c = C + i * ldc;
    if (beta == T(0)) {
      std::fill(c, c + N, T(0));
    } else {
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
  }
}

// Block sizes: a KC x NC panel of op(B) (256 x 256 doubles = 512 KiB, floats half) stays
// in L2 while every MC-row block of A streams past it; the MC x KC block of A fits L2 too.
constexpr int64_t kMC = 64;
constexpr int64_t kKC = 256;
constexpr int64_t kNC = 256;

// Bp[p * nc + j] = op(B)(pc + p, jc + j): the panel in row-major order, transposes resolved.
template <typename T>
void pack_b(bool transB, const T* B, int64_t ldb, int64_t pc, int64_t kc, int64_t jc, int64_t nc, T* Bp) {
  for (int64_t p = 0; p < kc; ++p) {
    T* dst = Bp + p * nc;
    if (!transB) {
      const T* src = B + (pc + p) * ldb + jc;
      std::copy(src, src + nc, dst);
    } else {
      for (int64_t j = 0; j < nc; ++j) dst[j] = B[(jc + j) * ldb + (pc + p)];
    }
  }
}

// Ap[i * kc + p] = alpha * op(A)(ic + i, pc + p).
template <typename T>
void pack_a(bool transA, const T* A, int64_t lda, T alpha, int64_t ic, int64_t mc, int64_t pc, int64_t kc, T* Ap) {
  for (int64_t i = 0; i < mc; ++i) {
    T* dst = Ap + i * kc;
    for (int64_t p = 0; p < kc; ++p)
      dst[p] = alpha * (transA ? A[(pc + p) * lda + (ic + i)] : A[(ic + i) * lda + (pc + p)]);
  }
}

// C[0:mc, 0:nc] += Ap (mc x kc) * Bp (kc x nc). Four rows of C at a time so that each
// loaded element of Bp is used four times; the j loop is contiguous and vectorises.
template <typename T>
void block_multiply(int64_t mc, int64_t nc, int64_t kc, const T* Ap, const T* Bp, T* C, int64_t ldc) {
  int64_t i = 0;
  for (; i + 4 <= mc; i += 4) {
    T* c0 = C + (i + 0) * ldc;
    T* c1 = C + (i + 1) * ldc;
    T* c2 = C + (i + 2) * ldc;
    T* c3 = C + (i + 3) * ldc;
    for (int64_t p = 0; p < kc; ++p) {
      const T a0 = Ap[(i + 0) * kc + p], a1 = Ap[(i + 1) * kc + p];
      const T a2 = Ap[(i + 2) * kc + p], a3 = Ap[(i + 3) * kc + p];
      const T* b = Bp + p * nc;
      for (int64_t j = 0; j < nc; ++j) {
        const T bj = b[j];
        c0[j] += a0 * bj;
        c1[j] += a1 * bj;
        c2[j] += a2 * bj;
        c3[j] += a3 * bj;
      }
    }
  }
  for (; i < mc; ++i) {
    T* c = C + i * ldc;
    for (int64_t p = 0; p < kc; ++p) {
      const T a = Ap[i * kc + p];
      const T* b = Bp + p * nc;
      for (int64_t j = 0; j < nc; ++j) c[j] += a * b[j];
    }
  }
}

}  // namespace

template <typename T>
void gemm_builtin(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                  const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  check_gemm_args(transA, transB, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  scale_c(M, N, beta, C, ldc);
  if (K == 0 || alpha == T(0)) return;

  std::vector<T> Bp(static_cast<size_t>(std::min(K, kKC) * std::min(N, kNC)));
  const bool parallel = M * N * K > (int64_t(1) << 18);
  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = std::min(kNC, N - jc);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      pack_b(transB, B, ldb, pc, kc, jc, nc, Bp.data());
#pragma omp parallel if (parallel)
      {
        std::vector<T> Ap(static_cast<size_t>(kMC * kc));
#pragma omp for schedule(static)
        for (int64_t ic = 0; ic < M; ic += kMC) {
          const int64_t mc = std::min(kMC, M - ic);
          pack_a(transA, A, lda, alpha, ic, mc, pc, kc, Ap.data());
          block_multiply(mc, nc, kc, Ap.data(), Bp.data(), C + ic * ldc + jc, ldc);
        }
      }
    }
  }
}

#ifdef KERN_HAVE_OPENBLAS
namespace {
int as_blas_int(int64_t v) {
  if (v > INT_MAX) throw std::invalid_argument("gemm: size " + std::to_string(v) + " exceeds the BLAS int range");
  return static_cast<int>(v);
}
CBLAS_TRANSPOSE blas_trans(bool t) { return t ? CblasTrans : CblasNoTrans; }

void blas_gemm(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, blas_trans(tA), blas_trans(tB), as_blas_int(M), as_blas_int(N), as_blas_int(K), alpha,
              A, as_blas_int(lda), B, as_blas_int(ldb), beta, C, as_blas_int(ldc));
}
void blas_gemm(bool tA, bool tB, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
               const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, blas_trans(tA), blas_trans(tB), as_blas_int(M), as_blas_int(N), as_blas_int(K), alpha,
              A, as_blas_int(lda), B, as_blas_int(ldb), beta, C, as_blas_int(ldc));
}
// One thread pool, not two. OpenBLAS's own threads and the OpenMP threads of every other
// kernel fight over the cores (each pool spins while the other runs: measured 3x slower
// TinySSD training on 2 cores). So OpenBLAS runs single-threaded and large products are
// split here over OpenMP threads, by column blocks of C (or row blocks when M > N). Setting
// OPENBLAS_NUM_THREADS above 1 in the environment keeps OpenBLAS's own threading instead
// (the programs set it to 1 when unset, so that OpenBLAS starts no threads: eng::init_cpu_threads).
bool use_openmp_split() {
  static const bool split = [] {
    const char* env = std::getenv("OPENBLAS_NUM_THREADS");
    if (env != nullptr && *env != '\0' && std::strcmp(env, "1") != 0) return false;
    openblas_set_num_threads(1);
    return true;
  }();
  return split;
}

template <typename T>
void blas_gemm_split(bool tA, bool tB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                     const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  int threads = 1;
#ifdef _OPENMP
  if (use_openmp_split() && !omp_in_parallel()) threads = omp_get_max_threads();
#endif
  if (threads <= 1 || M * N * K < (int64_t(1) << 18)) return blas_gemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  const bool by_columns = N >= M;
  const int64_t extent = by_columns ? N : M;
  const int64_t chunk = std::max<int64_t>(16, (extent / threads + 15) / 16 * 16);
  const int64_t pieces = (extent + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pieces; ++p) {
    const int64_t lo = p * chunk, n = std::min(chunk, extent - lo);
    if (by_columns) {  // C[:, lo:lo+n] = A * B[:, lo:lo+n]; B is [K, N] (or [N, K] transposed)
      blas_gemm(tA, tB, M, n, K, alpha, A, lda, tB ? B + lo * ldb : B + lo, ldb, beta, C + lo, ldc);
    } else {           // C[lo:lo+n, :] = A[lo:lo+n, :] * B; A is [M, K] (or [K, M] transposed)
      blas_gemm(tA, tB, n, N, K, alpha, tA ? A + lo : A + lo * lda, lda, B, ldb, beta, C + lo * ldc, ldc);
    }
  }
}
}  // namespace
#endif

template <typename T>
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
#ifdef KERN_HAVE_OPENBLAS
  check_gemm_args(transA, transB, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  // BLAS may skip C when K == 0; make the beta semantics explicit (zeros when beta == 0).
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  blas_gemm_split(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
  gemm_builtin(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

template <typename T>
void gemm_strided_batched(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                          int64_t lda, int64_t strideA, const T* B, int64_t ldb, int64_t strideB, T beta, T* C,
                          int64_t ldc, int64_t strideC, int64_t batch) {
  for (int64_t b = 0; b < batch; ++b)
    gemm(transA, transB, M, N, K, alpha, A + b * strideA, lda, B + b * strideB, ldb, beta, C + b * strideC, ldc);
}

bool gemm_uses_blas() {
#ifdef KERN_HAVE_OPENBLAS
  return true;
#else
  return false;
#endif
}

std::string blas_core_name() {
#ifdef KERN_HAVE_OPENBLAS
  const char* name = openblas_get_corename();
  return name != nullptr ? std::string(name) : std::string();
#else
  return std::string();
#endif
}

#define KERN_INSTANTIATE(T)                                                                                       \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, T*,    \
                        int64_t);                                                                                 \
  template void gemm_builtin<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, \
                                T*, int64_t);                                                                     \
  template void gemm_strided_batched<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, int64_t,      \
                                        const T*, int64_t, int64_t, T, T*, int64_t, int64_t, int64_t);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
