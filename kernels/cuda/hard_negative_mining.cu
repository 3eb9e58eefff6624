// CUDA hard-negative mining: one block per image, radix select of the k-th largest loss key,
// then one ordered sweep (maths, order and the plan in kernels/hard_negative_mining.h).
#include "kernels/cuda_check.h"
#include "kernels/hard_negative_mining.h"

namespace kern::cuda {
namespace {

constexpr int kBlock = 256;  // a multiple of the warp size
constexpr int kWarps = kBlock / 32;
constexpr int kBins = 256;   // 8-bit digits

// order_key(loss) for a candidate (label 0), 0 for a positive or an ignored anchor.
template <typename T>
__device__ __forceinline__ typename mining::KeyOf<T>::type candidate_key(const T* loss, const int64_t* labels,
                                                                        int64_t a) {
  return labels[a] == 0 ? mining::order_key(loss[a]) : 0;
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    mining_kernel(MiningDims d, const T* __restrict__ loss, const int64_t* __restrict__ labels, double ratio,
                  int64_t min_negatives, uint8_t* __restrict__ mask) {
  using K = typename mining::KeyOf<T>::type;
  __shared__ unsigned long long s_positives, s_candidates;
  __shared__ unsigned int hist[kBins];
  __shared__ K s_prefix;
  __shared__ long long s_rank;
  __shared__ int warp_counts[kWarps];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;

  for (int64_t b = blockIdx.x; b < d.B; b += gridDim.x) {  // uniform in the block
    const T* l = loss + b * d.A;
    const int64_t* lab = labels + b * d.A;
    uint8_t* m = mask + b * d.A;

    // ---- 1. P, C and k
    if (tid == 0) s_positives = s_candidates = 0;
    __syncthreads();
    unsigned long long pos = 0, cand = 0;
    for (int64_t a = tid; a < d.A; a += blockDim.x) {
      pos += lab[a] > 0;
      cand += lab[a] == 0;
    }
    atomicAdd(&s_positives, pos);
    atomicAdd(&s_candidates, cand);
    __syncthreads();
    const int64_t C = static_cast<int64_t>(s_candidates);
    const int64_t k = mining::num_negatives(static_cast<int64_t>(s_positives), C, ratio, min_negatives);
    if (k <= 0 || k == C) {  // nothing, or every candidate: no selection needed
      for (int64_t a = tid; a < d.A; a += blockDim.x) m[a] = (k > 0 && lab[a] == 0) ? 1 : 0;
      __syncthreads();  // s_positives is reset for the next image
      continue;
    }

    // ---- 2. radix select: the k-th largest key, 8 bits at a time from the top.
    // Invariant: the k-th largest key starts with the digits in `prefix` (bits under
    // `known`), and it is the rank-th largest among the keys that start so.
    K prefix = 0, known = 0;
    long long rank = k;
    for (int shift = 8 * static_cast<int>(sizeof(K)) - 8; shift >= 0; shift -= 8) {
      for (int i = tid; i < kBins; i += blockDim.x) hist[i] = 0;
      __syncthreads();
      for (int64_t a = tid; a < d.A; a += blockDim.x) {
        const K key = candidate_key(l, lab, a);
        if ((key & known) == prefix) atomicAdd(&hist[(key >> shift) & 0xFF], 1u);
      }
      __syncthreads();
      if (warp == 0) {
        // Find the digit holding the rank-th largest key. Lane L owns the 8 bins 8L..8L+7;
        // a suffix sum over the lanes tells each lane how many keys lie in higher bins.
        const int first = lane * (kBins / 32);
        long long mine = 0;
        for (int i = 0; i < kBins / 32; ++i) mine += hist[first + i];
        long long at_or_above = mine;  // keys in bins >= first
        for (int off = 1; off < 32; off <<= 1) {
          const long long v = __shfl_down_sync(0xFFFFFFFFu, at_or_above, off);
          if (lane + off < 32) at_or_above += v;
        }
        const long long above = at_or_above - mine;
        if (above < rank && rank <= at_or_above) {  // exactly one lane
          long long r = rank - above;
          int digit = first + kBins / 32 - 1;
          while (r > static_cast<long long>(hist[digit])) r -= hist[digit--];
          s_prefix = prefix | (static_cast<K>(digit) << shift);
          s_rank = r;
        }
      }
      __syncthreads();
      prefix = s_prefix;
      rank = s_rank;
      known |= static_cast<K>(0xFF) << shift;
    }
    // Now `prefix` is the k-th largest key K, and the top k are: every key > K, plus the
    // first `rank` anchors (by index) whose key == K.
    const K threshold = prefix;
    const long long take_equal = rank;

    // ---- 3. ordered sweep with a block-wide count of the equal keys seen so far.
    long long equal_before = 0;  // equal keys in earlier tiles (the same in every thread)
    for (int64_t start = 0; start < d.A; start += blockDim.x) {
      const int64_t a = start + tid;
      const K key = a < d.A ? candidate_key(l, lab, a) : K(0);
      const bool equal = a < d.A && key == threshold;  // threshold >= 1: no padding or non-candidate
      const unsigned ballot = __ballot_sync(0xFFFFFFFFu, equal);
      if (lane == 0) warp_counts[warp] = __popc(ballot);
      __syncthreads();
      long long before = __popc(ballot & ((1u << lane) - 1u));  // equal keys before me in my warp
      long long tile_total = 0;
      for (int w = 0; w < kWarps; ++w) {
        if (w < warp) before += warp_counts[w];
        tile_total += warp_counts[w];
      }
      if (a < d.A) m[a] = (key > threshold || (equal && equal_before + before < take_equal)) ? 1 : 0;
      equal_before += tile_total;
      __syncthreads();  // warp_counts is rewritten by the next tile
    }
  }
}

}  // namespace

template <typename T>
void hard_negative_mining(const MiningDims& d, const T* loss, const int64_t* labels, double ratio,
                          int64_t min_negatives, uint8_t* mask, Stream stream) {
  if (d.B * d.A == 0) return;
  const int64_t cap = 65535LL * 8;
  const unsigned grid = static_cast<unsigned>(d.B < cap ? d.B : cap);
  mining_kernel<T><<<grid, kBlock, 0, stream>>>(d, loss, labels, ratio, min_negatives, mask);
  KERN_LAUNCH_CHECK();
}

template void hard_negative_mining<float>(const MiningDims&, const float*, const int64_t*, double, int64_t, uint8_t*,
                                          Stream);
template void hard_negative_mining<double>(const MiningDims&, const double*, const int64_t*, double, int64_t,
                                           uint8_t*, Stream);

}  // namespace kern::cuda
