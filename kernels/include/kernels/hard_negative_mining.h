// Hard-negative mining for the SSD loss (front-end: eng::det::hard_negative_mining in
// engine/src/detection/hard_negative_mining.cpp).
//
// Layout: loss T [B, A] and labels int64 [B, A] contiguous; output mask uint8 [B, A], fully
// written (1 = selected negative, 0 otherwise; positives are never in the mask).
//
// Per image b:
//   P = #{a : labels[a] > 0}                  (positives)
//   C = #{a : labels[a] == 0}                 (candidates; labels < 0 are never selected)
//   k = min(floor(ratio * P), C)   when P > 0   (floor and product in double)
//     = min(min_negatives, C)      when P == 0
//   mask[a] = 1 for the first k candidates in the order (loss descending, index ascending),
//   i.e. exactly "sort the candidates by (loss desc, a asc), take k". This equals the
//   selection of torchvision's SSD loss (negative_loss.sort(descending=True)), with the tie
//   rule made explicit.
// Loss order: NaN ranks above every number (as in torch.sort(descending=True)) and all NaNs
// are equal to each other; -0.0 and +0.0 are equal; +-inf are ordinary. `order_key` below
// maps a loss to an unsigned integer with exactly this order, which the CUDA version sorts on.
//
// CPU: per image, the candidates as (loss, index) pairs, std::nth_element with the comparator
// above (a strict total order, so the first k are unique), then mark them.
// CUDA: one block per image, no sort:
//   1. count P and C (per-thread counts, then shared atomics), compute k; k == 0 or k == C
//      are answered directly;
//   2. radix select of the k-th largest key over key(a) = order_key(loss[a]) for a candidate,
//      0 for any other anchor (every candidate's key is >= 1, so with 1 <= k <= C the k-th
//      largest is a candidate's key): sizeof(T) passes of 8 bits, most significant first, each
//      a 256-bin shared histogram of the keys that match the digits found so far; a scan of
//      the histogram from the top (one warp: 8 bins per lane, a suffix sum over the lanes)
//      finds the digit holding the k-th key. The result is the
//      threshold key K and r, the number of anchors with key == K that belong to the top k;
//   3. one sweep over the image in tiles of blockDim anchors, in index order: key > K is
//      selected; key == K is selected when fewer than r anchors with key == K precede it
//      (a block-wide prefix count with warp ballots, carried from tile to tile).
// The keys are recomputed from loss and labels in each pass (the row stays in L1/L2).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/common.h"

#ifdef __CUDACC__
#define KERN_HNM_HD __host__ __device__ __forceinline__
#else
#define KERN_HNM_HD inline
#endif

namespace kern {

struct MiningDims {
  int64_t B = 0;  // images
  int64_t A = 0;  // anchors per image
};

namespace mining {

template <typename T> struct KeyOf;
template <> struct KeyOf<float> { using type = uint32_t; };
template <> struct KeyOf<double> { using type = uint64_t; };

// Unsigned key with key(x) < key(y) exactly when x ranks below y in the loss order above:
// flip all bits of a negative number, only the sign bit of a non-negative one; -0.0 is
// first turned into +0.0 and every NaN into the all-ones key. The smallest key (that of -inf)
// is 0x007FFFFF (float) / 0x000FFFFFFFFFFFFF (double), so 0 is free to mean "not a candidate".
template <typename T>
KERN_HNM_HD typename KeyOf<T>::type order_key(T v) {
  using K = typename KeyOf<T>::type;
  constexpr K sign = K(1) << (8 * sizeof(K) - 1);
  if (v != v) return ~K(0);  // NaN
  if (v == T(0)) v = T(0);   // -0.0 -> +0.0
  K bits;
  memcpy(&bits, &v, sizeof bits);
  return (bits & sign) ? ~bits : (bits | sign);
}

// k of the rule above.
KERN_HNM_HD int64_t num_negatives(int64_t positives, int64_t candidates, double ratio, int64_t min_negatives) {
  if (positives == 0) return min_negatives < candidates ? min_negatives : candidates;
  const double want = floor(ratio * static_cast<double>(positives));
  return want >= static_cast<double>(candidates) ? candidates : static_cast<int64_t>(want);
}

}  // namespace mining

namespace cpu {
template <typename T>
void hard_negative_mining(const MiningDims& d, const T* loss, const int64_t* labels, double ratio,
                          int64_t min_negatives, uint8_t* mask);
}  // namespace cpu

namespace cuda {
template <typename T>
void hard_negative_mining(const MiningDims& d, const T* loss, const int64_t* labels, double ratio,
                          int64_t min_negatives, uint8_t* mask, Stream stream);
}  // namespace cuda

}  // namespace kern
