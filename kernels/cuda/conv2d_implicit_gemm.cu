// CUDA implicit-GEMM convolution (maths, GEMM views and tiling in conv2d_implicit_gemm.h;
// the CPU twins are in kernels/cpu/conv2d_implicit_gemm.cpp). Three kernels, numbered:
//   1. forward, float, FP32 FMA on CUDA cores, register micro-tiles: the baseline (below);
//   2. any pass (forward, backward-data, backward-filter), tensor cores through WMMA: TF32
//      (float in memory, rounded to tf32 when stored to shared memory) or BF16 (bf16 in
//      memory), FP32 accumulation, epilogue + bias, optional ReLU;
//   3. backward-data / backward-filter, FP32 CUDA cores, one output per thread in a 16x16
//      shared-memory tile: the simple version.
//
// ==== Kernel 1 ================================================================================
// One thread block computes a BM x BN tile of Y = A B (A = w as [O, C*kh*kw], B = the
// im2col matrix of the whole batch, gathered from x while loading). Per K step of BK:
//
//   global w  --(A loader)-->  As[BK][BM+pad]  \
//                                                 >  register micro-tile acc[TM][TN] += a x b
//   global x  --(B gather)-->  Bs[BK][BN]      /
//
// Thread layout inside the block (threads = (BM/TM) * (BN/TN) = 256):
//   tx = tid % (BN/TN), ty = tid / (BN/TN).
//   The TM rows of a thread are TM/4 groups of 4 consecutive rows, group g starting at
//   g*(BM/(TM/4)) + 4*ty; likewise its TN columns are groups of 4 at g*(BN/(TN/4)) + 4*tx.
//   So every fragment read from shared memory is a float4, and the threads of a warp read
//   consecutive float4s of Bs (no bank conflicts) and broadcast the same float4 of As.
// Loaders:
//   A: thread tid loads w[m0 + a, k0 + kk] with kk = tid % BK, a = tid / BK + r*(256/BK):
//      neighbouring threads read neighbouring k of one weight row. As rows are padded by 4
//      floats so that a warp's transposed stores spread over the banks (conflict-free for
//      BK = 8, two-way for BK = 16) instead of all landing in one.
//   B: thread tid gathers column q0 + tid % BN for rows kk = tid / BN + r*(256/BN): it
//      decodes its column (image, window origin) once, then per element splits k into
//      (c, i, j) and reads x or 0. Neighbouring threads read neighbouring output pixels.
// Double buffering: the loads of step t+1 go to registers before the FMAs of step t and are
// stored into the other shared buffer after them; one __syncthreads per step.
#include <cuda_bf16.h>
#include <mma.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "kernels/conv2d_implicit_gemm.h"
#include "kernels/cuda_check.h"

namespace kern::cuda {
namespace {

template <int BM_, int BN_, int BK_, int TM_, int TN_, int MIN_BLOCKS_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int kMinBlocksPerSm = MIN_BLOCKS_;  // __launch_bounds__: caps registers per thread
  static constexpr int kThreadsN = BN / TN, kThreadsM = BM / TM;
  static constexpr int kThreads = kThreadsM * kThreadsN;
  static constexpr int kAStep = kThreads / BK;  // rows between one thread's A loads
  static constexpr int kBStep = kThreads / BN;  // k rows between one thread's B loads
  static constexpr int kALoads = BM / kAStep;   // A elements per thread per K step
  static constexpr int kBLoads = BK / kBStep;   // B elements per thread per K step
  static constexpr int kAPad = 4;               // keeps float4 alignment, spreads banks
  static constexpr int kRowGroups = TM / 4, kColGroups = TN / 4;
  static constexpr int kRowGroupStride = BM / kRowGroups, kColGroupStride = BN / kColGroups;
  static_assert(TM % 4 == 0 && TN % 4 == 0, "micro-tiles are made of float4 groups");
  static_assert(kThreads % BK == 0 && BM % kAStep == 0, "A loader must cover the tile exactly");
  static_assert(kThreads % BN == 0 && BK % kBStep == 0, "B loader must cover the tile exactly");
  static_assert(kRowGroupStride == 4 * kThreadsM && kColGroupStride == 4 * kThreadsN, "thread grid mismatch");
};
// Registers (nvcc 13, sm_90, no spills): 128x128 has 64 accumulators per thread and is held
// to 128 registers (two blocks per SM); 64x64 to 85 (three blocks per SM; it uses ~80).
using Tile128 = Tile<128, 128, 8, 8, 8, 2>;
using Tile64 = Tile<64, 64, 16, 4, 4, 3>;

template <class Cfg, int KH, int KW>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocksPerSm)
    igemm_conv_kernel(IgemmShape s, const float* __restrict__ x, const float* __restrict__ w,
                      const float* __restrict__ bias, bool relu, float* __restrict__ y) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  __shared__ __align__(16) float As[2][BK][BM + Cfg::kAPad];
  __shared__ __align__(16) float Bs[2][BK][BN];

  const int tid = threadIdx.x;
  const int m0 = blockIdx.y * BM;
  const int64_t q0 = int64_t(blockIdx.x) * BN;

  // ---- A loader: fixed k lane, rows a_row + r*kAStep --------------------------------------
  const int a_kk = tid % BK, a_row = tid / BK;

  // ---- B loader: one fixed column, k rows b_kk + r*kBStep --------------------------------
  const int b_col = tid % BN, b_kk = tid / BN;
  const int64_t q = q0 + b_col;
  const bool b_col_ok = q < s.ncol;
  int ih0 = 0, iw0 = 0;
  const float* x_img = x;
  if (b_col_ok) {
    const IgemmColumn col = igemm_column(s, q);
    ih0 = col.ih0;
    iw0 = col.iw0;
    x_img = x + col.img * (int64_t(s.C) * s.H * s.W);
  }

  float a_next[Cfg::kALoads], b_next[Cfg::kBLoads];
  auto load_tiles_to_registers = [&](int k0) {
#pragma unroll
    for (int r = 0; r < Cfg::kALoads; ++r) {
      const int m = m0 + a_row + r * Cfg::kAStep, k = k0 + a_kk;
      a_next[r] = (m < s.O && k < s.K) ? __ldg(w + m * s.K + k) : 0.0f;
    }
#pragma unroll
    for (int r = 0; r < Cfg::kBLoads; ++r) {
      const int k = k0 + b_kk + r * Cfg::kBStep;
      b_next[r] = (b_col_ok && k < s.K) ? igemm_b_element<KH, KW>(s, x_img, ih0, iw0, k) : 0.0f;
    }
  };
  auto store_registers_to_shared = [&](int buf) {
#pragma unroll
    for (int r = 0; r < Cfg::kALoads; ++r) As[buf][a_kk][a_row + r * Cfg::kAStep] = a_next[r];
#pragma unroll
    for (int r = 0; r < Cfg::kBLoads; ++r) Bs[buf][b_kk + r * Cfg::kBStep][b_col] = b_next[r];
  };

  // ---- compute: this thread's TM x TN micro-tile ------------------------------------------
  const int tx = tid % Cfg::kThreadsN, ty = tid / Cfg::kThreadsN;
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  load_tiles_to_registers(0);
  store_registers_to_shared(0);
  __syncthreads();

  int buf = 0;
  for (int k0 = 0; k0 < s.K; k0 += BK) {
    const bool has_next = k0 + BK < s.K;
    if (has_next) load_tiles_to_registers(k0 + BK);  // in flight during the FMAs below

#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int g = 0; g < Cfg::kRowGroups; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(&As[buf][kk][g * Cfg::kRowGroupStride + 4 * ty]);
        a[4 * g + 0] = v.x, a[4 * g + 1] = v.y, a[4 * g + 2] = v.z, a[4 * g + 3] = v.w;
      }
#pragma unroll
      for (int g = 0; g < Cfg::kColGroups; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[buf][kk][g * Cfg::kColGroupStride + 4 * tx]);
        b[4 * g + 0] = v.x, b[4 * g + 1] = v.y, b[4 * g + 2] = v.z, b[4 * g + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }

    if (has_next) store_registers_to_shared(buf ^ 1);
    __syncthreads();  // the other buffer is complete, and everyone is done reading this one
    buf ^= 1;
  }

  // ---- epilogue: + bias, scatter the valid part of the micro-tile into NCHW y --------------
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int64_t qj = q0 + (j / 4) * Cfg::kColGroupStride + 4 * tx + (j % 4);
    if (qj >= s.ncol) continue;
    const IgemmColumn col = igemm_column(s, qj);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int m = m0 + (i / 4) * Cfg::kRowGroupStride + 4 * ty + (i % 4);
      if (m >= s.O) continue;
      const float v = acc[i][j] + (bias ? __ldg(bias + m) : 0.0f);
      y[igemm_y_index(s, col, m)] = relu ? fmaxf(v, 0.0f) : v;
    }
  }
}

int sm_count() {
  static std::atomic<int> cached{0};
  int n = cached.load();
  if (n == 0) {
    int dev = 0;
    KERN_CUDA_CHECK(cudaGetDevice(&dev));
    KERN_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    cached.store(n);
  }
  return n;
}

template <class Cfg>
void launch(const IgemmShape& s, const float* x, const float* w, const float* bias, bool relu, float* y,
            Stream stream) {
  const dim3 grid(static_cast<unsigned>((s.ncol + Cfg::BN - 1) / Cfg::BN), static_cast<unsigned>((s.O + Cfg::BM - 1) / Cfg::BM));
  if (s.kh == 3 && s.kw == 3)
    igemm_conv_kernel<Cfg, 3, 3><<<grid, Cfg::kThreads, 0, stream>>>(s, x, w, bias, relu, y);
  else
    igemm_conv_kernel<Cfg, 0, 0><<<grid, Cfg::kThreads, 0, stream>>>(s, x, w, bias, relu, y);
  KERN_LAUNCH_CHECK();
}

}  // namespace

IgemmTile conv2d_implicit_gemm_pick_tile(const Conv2dDims& d) {
  const int64_t blocks128 = ((d.O + 127) / 128) * ((d.N * d.Ho * d.Wo + 127) / 128);
  return blocks128 >= 2 * int64_t(sm_count()) ? IgemmTile::t128x128 : IgemmTile::t64x64;
}

void conv2d_implicit_gemm_forward(const Conv2dDims& d, const float* x, const float* w, const float* bias, float* y,
                                  Stream stream, IgemmTile tile) {
  if (!conv2d_implicit_gemm_supported(d))
    throw std::invalid_argument("conv2d_implicit_gemm: dims outside the kernel's 32-bit index range");
  const IgemmShape s = igemm_shape(d);
  if (s.ncol == 0) return;
  if (tile == IgemmTile::automatic) tile = conv2d_implicit_gemm_pick_tile(d);
  if (tile == IgemmTile::t128x128)
    launch<Tile128>(s, x, w, bias, false, y, stream);
  else
    launch<Tile64>(s, x, w, bias, false, y, stream);
}

namespace {

// ==== Kernel 2: tensor cores (WMMA) =========================================================
// One block of 128 threads (4 warps) computes a 64 x 64 tile of Out = A B of any of the three
// GEMM problems (IgemmForward / IgemmBackwardData / IgemmBackwardFilter), walking the depth
// in steps of 16:
//
//   A gather --> As[2][64][16+pad] (row-major m x k)  \   warp (wm, wn) of the 2 x 2 warp grid:
//                                                       >  acc[2][2] 16x16 float fragments of
//   B gather --> Bs[2][16][64+pad] (row-major k x q)  /   rows 32*wm.., columns 32*wn..
//
// Per step each warp does 2 x 2 mma_sync per WMMA k (TF32: k = 8, two per step; BF16:
// k = 16, one). The operands are converted once, when stored to shared memory (TF32:
// __float_to_tf32, round to nearest; BF16: already bf16 in memory), so the fragments are
// used as loaded. Loaders: thread t loads A[m0 + t/16 + 8r, k0 + t%16] (r < 8: neighbouring
// threads read neighbouring k of one row) and B[k0 + t/64 + 2r, q0 + t%64] (r < 8:
// neighbouring threads read neighbouring output pixels); the next step's loads go to
// registers during this step's mma_sync, then to the other shared buffer (double buffering,
// one __syncthreads per step). Everything past rows(), cols() or depth() is zero.
// Epilogue: the fragments go to a shared float tile (the lane mapping of a fragment is
// unspecified, so no kernel may read acc.x[] by position), then thread t writes column
// q0 + t%64, rows t/64 + 2r: + bias, ReLU, converted to the output type, scattered through
// the problem's out() (neighbouring threads write neighbouring addresses).
// Shared memory: TF32 10 + 8.5 + 17 KiB, BF16 6 + 4.5 + 17 KiB (static, under 48 KiB). Every
// fragment pointer is 32-byte aligned and every ldm a multiple of 16 bytes (WMMA's rules).

namespace wmma = nvcuda::wmma;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

template <typename T>
struct WmmaMath;
template <>
struct WmmaMath<float> {  // TF32
  using Smem = float;
  using Prec = wmma::precision::tf32;
  static constexpr int kK = 8, kPad = 4;  // pad: 16 bytes
  static __device__ __forceinline__ float to_smem(float v) { return wmma::__float_to_tf32(v); }
};
template <>
struct WmmaMath<__nv_bfloat16> {  // BF16
  using Smem = __nv_bfloat16;
  using Prec = __nv_bfloat16;
  static constexpr int kK = 16, kPad = 8;
  static __device__ __forceinline__ __nv_bfloat16 to_smem(__nv_bfloat16 v) { return v; }
};

constexpr int kTcBM = 64, kTcBN = 64, kTcBK = 16, kTcThreads = 128;

template <class Problem, typename T>
__global__ void __launch_bounds__(kTcThreads) igemm_wmma_kernel(Problem p) {
  using M = WmmaMath<T>;
  using S = typename M::Smem;
  constexpr int BM = kTcBM, BN = kTcBN, BK = kTcBK, WK = M::kK;
  constexpr int LDA = BK + M::kPad, LDB = BN + M::kPad, LDC = BN + 4;
  __shared__ __align__(32) S As[2][BM][LDA];
  __shared__ __align__(32) S Bs[2][BK][LDB];
  __shared__ __align__(32) float Cs[BM][LDC];

  const int tid = threadIdx.x, warp = tid / 32, wm = warp / 2, wn = warp % 2;
  const int m0 = blockIdx.y * BM;
  const int64_t q0 = int64_t(blockIdx.x) * BN;
  const int rows = p.rows(), depth = p.depth();
  const int64_t cols = p.cols();

  const int a_k = tid % BK, a_m = tid / BK;  // + 8r
  const int b_q = tid % BN, b_k = tid / BN;  // + 2r
  const bool b_ok = q0 + b_q < cols;
  typename Problem::Col b_col{};
  if (b_ok) b_col = p.column(q0 + b_q);

  T a_next[8], b_next[8];
  auto load_tiles_to_registers = [&](int k0) {
#pragma unroll
    for (int r = 0; r < 8; ++r) {
      const int m = m0 + a_m + 8 * r, k = k0 + a_k;
      a_next[r] = (m < rows && k < depth) ? p.a(m, k) : T(0.0f);
    }
#pragma unroll
    for (int r = 0; r < 8; ++r) {
      const int k = k0 + b_k + 2 * r;
      b_next[r] = (b_ok && k < depth) ? p.b(b_col, k) : T(0.0f);
    }
  };
  auto store_registers_to_shared = [&](int buf) {
#pragma unroll
    for (int r = 0; r < 8; ++r) As[buf][a_m + 8 * r][a_k] = M::to_smem(a_next[r]);
#pragma unroll
    for (int r = 0; r < 8; ++r) Bs[buf][b_k + 2 * r][b_q] = M::to_smem(b_next[r]);
  };

  wmma::fragment<wmma::accumulator, 16, 16, WK, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  load_tiles_to_registers(0);
  store_registers_to_shared(0);
  __syncthreads();
  int buf = 0;
  for (int k0 = 0; k0 < depth; k0 += BK) {
    const bool has_next = k0 + BK < depth;
    if (has_next) load_tiles_to_registers(k0 + BK);
#pragma unroll
    for (int kk = 0; kk < BK; kk += WK) {
      wmma::fragment<wmma::matrix_a, 16, 16, WK, typename M::Prec, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, WK, typename M::Prec, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &As[buf][32 * wm + 16 * i][kk], LDA);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &Bs[buf][kk][32 * wn + 16 * j], LDB);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    if (has_next) store_registers_to_shared(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }

#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&Cs[32 * wm + 16 * i][32 * wn + 16 * j], acc[i][j], LDC, wmma::mem_row_major);
  __syncthreads();
  if (!b_ok) return;
  for (int r = 0; r < BM / 2; ++r) {
    const int mi = b_k + 2 * r, m = m0 + mi;
    if (m >= rows) break;
    float v = Cs[mi][b_q];
    if (p.bias) v += to_float(p.bias[m]);
    if (p.relu) v = fmaxf(v, 0.0f);
    *p.out(b_col, m) = from_float<T>(v);
  }
}

template <typename T, class Problem>
void launch_wmma(const Problem& p, Stream stream) {
  if (p.cols() == 0 || p.rows() == 0) return;
  const dim3 grid(static_cast<unsigned>((p.cols() + kTcBN - 1) / kTcBN), static_cast<unsigned>((p.rows() + kTcBM - 1) / kTcBM));
  // depth() == 0 (backward-filter of an empty batch) runs too: the outputs become 0.
  igemm_wmma_kernel<Problem, T><<<grid, kTcThreads, 0, stream>>>(p);
  KERN_LAUNCH_CHECK();
}

// ==== Kernel 3: backward on CUDA cores, the simple version ===================================
// A 16 x 16 block computes a 16 x 16 tile of Out: per depth step of 16, thread (tx, ty)
// loads A[m0 + ty, k0 + tx] and B[k0 + ty, q0 + tx] into shared memory, then accumulates
// sum_kk As[ty][kk] * Bs[kk][tx] for its output (m0 + ty, q0 + tx) in FP32 FMA.
constexpr int kSimpleTile = 16;

template <class Problem>
__global__ void __launch_bounds__(kSimpleTile * kSimpleTile) igemm_simple_kernel(Problem p) {
  constexpr int T = kSimpleTile;
  __shared__ float As[T][T];
  __shared__ float Bs[T][T + 1];
  const int tx = threadIdx.x % T, ty = threadIdx.x / T;
  const int m0 = blockIdx.y * T;
  const int64_t q0 = int64_t(blockIdx.x) * T;
  const int rows = p.rows(), depth = p.depth();
  const int64_t q = q0 + tx;
  const bool q_ok = q < p.cols();
  typename Problem::Col col{};
  if (q_ok) col = p.column(q);
  float acc = 0.0f;
  for (int k0 = 0; k0 < depth; k0 += T) {
    const int m = m0 + ty, ka = k0 + tx, kb = k0 + ty;
    As[ty][tx] = (m < rows && ka < depth) ? p.a(m, ka) : 0.0f;
    Bs[ty][tx] = (q_ok && kb < depth) ? p.b(col, kb) : 0.0f;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < T; ++kk) acc = fmaf(As[ty][kk], Bs[kk][tx], acc);
    __syncthreads();
  }
  const int m = m0 + ty;
  if (q_ok && m < rows) *p.out(col, m) = acc;
}

template <class Problem>
void launch_simple(const Problem& p, Stream stream) {
  if (p.cols() == 0 || p.rows() == 0) return;
  const dim3 grid(static_cast<unsigned>((p.cols() + kSimpleTile - 1) / kSimpleTile),
                  static_cast<unsigned>((p.rows() + kSimpleTile - 1) / kSimpleTile));
  igemm_simple_kernel<Problem><<<grid, kSimpleTile * kSimpleTile, 0, stream>>>(p);
  KERN_LAUNCH_CHECK();
}

// Kernel 2 on the forward problem, with the 3x3 kernel size fixed at compile time (as kernel 1).
template <typename T>
void launch_wmma_forward(const IgemmShape& s, const T* x, const T* w, const T* bias, bool relu, T* y, Stream stream) {
  if (s.kh == 3 && s.kw == 3)
    launch_wmma<T>(IgemmForward<T, 3, 3>{s, x, w, bias, relu, y}, stream);
  else
    launch_wmma<T>(IgemmForward<T>{s, x, w, bias, relu, y}, stream);
}

void check_forward(const Conv2dDims& d, const char* what) {
  if (!conv2d_implicit_gemm_supported(d))
    throw std::invalid_argument(std::string(what) + ": dims outside the kernel's 32-bit index range: " +
                                igemm_dims_str(d));
}
void check_backward(const Conv2dDims& d, const char* what) {
  if (!conv2d_implicit_gemm_backward_supported(d))
    throw std::invalid_argument(std::string(what) + ": dims outside the kernel's 32-bit index range: " +
                                igemm_dims_str(d));
}
void check_float_math(ConvMath math, const char* what) {
  if (math != ConvMath::fp32 && math != ConvMath::tf32)
    throw std::invalid_argument(std::string(what) + ": float tensors take math fp32 or tf32 (bf16 takes the "
                                "__nv_bfloat16 overload)");
}

}  // namespace

// ---- entry points of the three passes (conv2d_implicit_gemm.h) -----------------------------

void conv2d_igemm_forward(const Conv2dDims& d, ConvMath math, const float* x, const float* w, const float* bias,
                          bool relu, float* y, Stream stream) {
  check_forward(d, "conv2d_igemm_forward");
  check_float_math(math, "conv2d_igemm_forward");
  const IgemmShape s = igemm_shape(d);
  if (s.ncol == 0) return;
  if (math == ConvMath::fp32) {
    if (conv2d_implicit_gemm_pick_tile(d) == IgemmTile::t128x128)
      launch<Tile128>(s, x, w, bias, relu, y, stream);
    else
      launch<Tile64>(s, x, w, bias, relu, y, stream);
    return;
  }
  launch_wmma_forward<float>(s, x, w, bias, relu, y, stream);
}

void conv2d_igemm_forward(const Conv2dDims& d, const __nv_bfloat16* x, const __nv_bfloat16* w,
                          const __nv_bfloat16* bias, bool relu, __nv_bfloat16* y, Stream stream) {
  check_forward(d, "conv2d_igemm_forward (bf16)");
  launch_wmma_forward<__nv_bfloat16>(igemm_shape(d), x, w, bias, relu, y, stream);
}

void conv2d_igemm_backward_data(const Conv2dDims& d, ConvMath math, const float* dy, const float* w, float* dx,
                                Stream stream) {
  check_backward(d, "conv2d_igemm_backward_data");
  check_float_math(math, "conv2d_igemm_backward_data");
  const IgemmShape s = igemm_shape(d);
  if (math == ConvMath::fp32) launch_simple(IgemmBackwardData<float>{s, dy, w, dx}, stream);
  else if (s.kh == 3 && s.kw == 3) launch_wmma<float>(IgemmBackwardData<float, 3, 3>{s, dy, w, dx}, stream);
  else launch_wmma<float>(IgemmBackwardData<float>{s, dy, w, dx}, stream);
}

void conv2d_igemm_backward_data(const Conv2dDims& d, const __nv_bfloat16* dy, const __nv_bfloat16* w,
                                __nv_bfloat16* dx, Stream stream) {
  check_backward(d, "conv2d_igemm_backward_data (bf16)");
  const IgemmShape s = igemm_shape(d);
  if (s.kh == 3 && s.kw == 3)
    launch_wmma<__nv_bfloat16>(IgemmBackwardData<__nv_bfloat16, 3, 3>{s, dy, w, dx}, stream);
  else
    launch_wmma<__nv_bfloat16>(IgemmBackwardData<__nv_bfloat16>{s, dy, w, dx}, stream);
}

void conv2d_igemm_backward_filter(const Conv2dDims& d, ConvMath math, const float* x, const float* dy, float* dw,
                                  Stream stream) {
  check_backward(d, "conv2d_igemm_backward_filter");
  check_float_math(math, "conv2d_igemm_backward_filter");
  const IgemmBackwardFilter<float> p{igemm_shape(d), x, dy, dw};
  if (math == ConvMath::fp32) launch_simple(p, stream);
  else launch_wmma<float>(p, stream);
}

void conv2d_igemm_backward_filter(const Conv2dDims& d, const __nv_bfloat16* x, const __nv_bfloat16* dy,
                                  __nv_bfloat16* dw, Stream stream) {
  check_backward(d, "conv2d_igemm_backward_filter (bf16)");
  launch_wmma<__nv_bfloat16>(IgemmBackwardFilter<__nv_bfloat16>{igemm_shape(d), x, dy, dw}, stream);
}

}  // namespace kern::cuda
