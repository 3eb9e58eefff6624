// CUDA implicit-GEMM convolution forward, float, FP32 FMA (maths, GEMM view and tiling in
// conv2d_implicit_gemm.h; the CPU twin kernels/cpu/conv2d_implicit_gemm.cpp walks the same
// tiles in plain loops).
//
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
#include <atomic>
#include <stdexcept>

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
                      const float* __restrict__ bias, float* __restrict__ y) {
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
      y[igemm_y_index(s, col, m)] = acc[i][j] + (bias ? __ldg(bias + m) : 0.0f);
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
void launch(const IgemmShape& s, const float* x, const float* w, const float* bias, float* y, Stream stream) {
  const dim3 grid(static_cast<unsigned>((s.ncol + Cfg::BN - 1) / Cfg::BN), static_cast<unsigned>((s.O + Cfg::BM - 1) / Cfg::BM));
  if (s.kh == 3 && s.kw == 3)
    igemm_conv_kernel<Cfg, 3, 3><<<grid, Cfg::kThreads, 0, stream>>>(s, x, w, bias, y);
  else
    igemm_conv_kernel<Cfg, 0, 0><<<grid, Cfg::kThreads, 0, stream>>>(s, x, w, bias, y);
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
    launch<Tile128>(s, x, w, bias, y, stream);
  else
    launch<Tile64>(s, x, w, bias, y, stream);
}

}  // namespace kern::cuda
