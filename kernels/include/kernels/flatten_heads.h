// Flatten + concatenate the per-level outputs of a detection head in one pass (SSD, TinySSD).
//
// Level l's head output is x_l [B, A_l * K, H_l, W_l] (contiguous; A_l anchors per location,
// K values per anchor: 4 box offsets or C class scores). The result is y [B, N, K] with
// N = sum_l H_l * W_l * A_l, in torchvision's order (location-major, then anchor):
//
//   y[b, off_l + (h * W_l + w) * A_l + a, k] = x_l[b, a * K + k, h, w]
//   off_l = sum_{j < l} H_j * W_j * A_j
//
// i.e. torch.cat([x.view(B, A, K, H, W).permute(0, 3, 4, 1, 2).reshape(B, -1, K) for x in xs], 1).
// The map is a bijection, so backward is the same map read the other way (a scatter with no
// sums): gx_l[b, a * K + k, h, w] = gy[b, off_l + (h * W_l + w) * A_l + a, k].
// T is float, double or kern::bf16: elements are moved, never rounded.
// One launch (CUDA) covers up to kMaxHeadLevels levels; more levels take more launches.
#pragma once
#include "kernels/common.h"

namespace kern {

constexpr int kMaxHeadLevels = 8;

struct FlattenHeadsDims {
  int levels = 0;            // <= kMaxHeadLevels
  int64_t batch = 0;         // B
  int64_t k = 0;             // K (values per anchor)
  int64_t total = 0;         // N: anchors per image over ALL levels of the output (not only these)
  int64_t anchors[kMaxHeadLevels] = {};  // A_l
  int64_t hw[kMaxHeadLevels] = {};       // H_l * W_l
  int64_t offset[kMaxHeadLevels] = {};   // off_l, the level's first anchor in y
};

namespace cpu {
// flat [B, N, K] <- levels (forward); levels <- flat (backward). levels[l] points to x_l / gx_l.
template <typename T>
void flatten_heads_forward(const FlattenHeadsDims& d, const T* const* levels, T* flat);
template <typename T>
void flatten_heads_backward(const FlattenHeadsDims& d, const T* flat, T* const* levels);
}  // namespace cpu

namespace cuda {
template <typename T>
void flatten_heads_forward(const FlattenHeadsDims& d, const T* const* levels, T* flat, Stream stream);
template <typename T>
void flatten_heads_backward(const FlattenHeadsDims& d, const T* flat, T* const* levels, Stream stream);
}  // namespace cuda

}  // namespace kern
