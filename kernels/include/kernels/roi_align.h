// RoIAlign (Mask R-CNN's bilinear RoI pooling) and the multi-level variant of the FPN pooler,
// equal to torchvision.ops.roi_align(x, rois, (PH, PW), spatial_scale, sampling_ratio, aligned)
// and, with a per-RoI level array, to torchvision.ops.MultiScaleRoIAlign's per-level loop.
//
// Layout: the feature levels x_l [N, C, H_l, W_l] contiguous (one level for plain RoIAlign);
// rois [K, 5] rows (batch_index, x1, y1, x2, y2) in image coordinates, in the features' type;
// levels (optional) int64 [K], the level of each RoI (null: every RoI on level 0);
// y [K, C, PH, PW].
//
// Forward, for RoI k on level l (scale s = scale[l], map H x W), channel c, bin (ph, pw):
//   off = aligned ? 0.5 : 0
//   xs = x1 s - off, ys = y1 s - off, xe = x2 s - off, ye = y2 s - off
//   w = xe - xs, h = ye - ys; only when !aligned: w = max(w, 1), h = max(h, 1)
//   bin_h = h / PH, bin_w = w / PW
//   gh = sr > 0 ? sr : ceil(h / PH), gw = sr > 0 ? sr : ceil(w / PW)   (sr = sampling_ratio)
//   sample points y = ys + ph bin_h + (iy + 0.5) bin_h / gh, iy < gh; x likewise, ix < gw
//   y[k, c, ph, pw] = sum_{iy, ix} bilinear(x_l[n, c], y, x) / count, count = max(gh gw, 1)
// bilinear(map, y, x), the rule of torchvision and maskrcnn-benchmark:
//   1. y < -1 or y > H or x < -1 or x > W: the sample is 0 (it still counts in `count`);
//   2. else clamp y, x to >= 0; y_low = (int)y; if y_low >= H - 1 then y_low = y_high = H - 1
//      and y = y_low, else y_high = y_low + 1; x likewise;
//   3. ly = y - y_low, lx = x - x_low, hy = 1 - ly, hx = 1 - lx; the value is
//      hy hx m[y_low, x_low] + hy lx m[y_low, x_high] + ly hx m[y_high, x_low] + ly lx m[y_high, x_high].
// A degenerate box (aligned, x2 < x1) has gw <= 0: no samples, count 1, value 0.
//
// Backward (no gradient to the rois, as torchvision): every output scatters
// gy[k, c, ph, pw] * w_i / count into the 4 neighbours of each sample inside the map (rule 1:
// a sample outside adds nothing). gx is fully written (zeros where nothing lands).
//
// Deviations and guards, the same on the CPU and CUDA (torchvision has none of them):
//   * a RoI whose batch index is not an integer in [0, N), whose level is outside
//     [0, levels), or whose scaled coordinates / sizes are not finite gives zeros and no
//     gradient (never an out-of-bounds read). The engine's CPU front-end refuses a bad batch
//     index with an error before the kernel runs; on CUDA it is not read back.
//   * the adaptive grid is capped at kRoiAlignMaxGrid samples per bin axis (torchvision has no
//     cap: a box kRoiAlignMaxGrid * PH feature pixels tall would loop for ever); a fixed
//     sampling_ratio must be <= kRoiAlignMaxGrid (checked by the front-end).
//   * the "all 4 indices >= 0" test of torchvision's backward is rule 1 (the indices of a
//     sample inside the map are never negative; the map has H, W >= 1).
//
// Level mapper (torchvision.ops.poolers.LevelMapper), per RoI, computed in double:
//   torchvision:          k = floor(canonical_level + log2(sqrt((x2-x1)(y2-y1)) / canonical_scale) + eps)
//   maskrcnn-benchmark:   k = floor(canonical_level + log2(sqrt((x2-x1+1)(y2-y1+1)) / canonical_scale + eps))
//   clamped to [k_min, k_max], minus k_min. A NaN (negative area, non-finite box) gives k_min
//   (torchvision casts NaN to int64: undefined).
#pragma once
#include <cmath>

#include "kernels/common.h"

#ifdef __CUDACC__
#define KERN_ROI_HD __host__ __device__ __forceinline__
#else
#define KERN_ROI_HD inline
#endif

namespace kern {

constexpr int kRoiAlignMaxLevels = 8;
constexpr int64_t kRoiAlignMaxGrid = 128;

struct RoiAlignDims {
  int64_t N = 0, C = 0;  // images and channels (the same on every level)
  int64_t K = 0;         // RoIs
  int64_t PH = 1, PW = 1;
  int64_t sampling_ratio = 0;  // <= 0: adaptive
  bool aligned = false;
  int levels = 1;
  int64_t H[kRoiAlignMaxLevels] = {};
  int64_t W[kRoiAlignMaxLevels] = {};
  double scale[kRoiAlignMaxLevels] = {};
};

// One pointer per level (const T* for the features, T* for their gradients), passed by value.
template <typename P>
struct RoiAlignLevelPtrs {
  P p[kRoiAlignMaxLevels] = {};
};

struct RoiLevelParams {
  int64_t k_min = 2, k_max = 5;
  double canonical_scale = 224.0;
  int64_t canonical_level = 4;
  double eps = 1e-6;
  bool plus_one_area = false;
};

namespace roi_math {

#ifndef __CUDA_ARCH__
using std::ceil;
using std::floor;
using std::log2;
using std::sqrt;
#endif

// v - v is 0 exactly for finite v, NaN for inf / NaN (no isfinite overload games).
template <typename T>
KERN_ROI_HD bool finite(T v) {
  return v - v == T(0);
}

// The sampling geometry of one RoI; valid == false: zeros / no gradient.
template <typename T>
struct Box {
  bool valid = false;
  int64_t n = 0;
  int level = 0;
  T ys = 0, xs = 0, bin_h = 0, bin_w = 0;
  int64_t gh = 0, gw = 0;  // samples per bin axis, in [0, kRoiAlignMaxGrid]
  T count = 1;
};

// ceil(v) as a grid size: negative -> 0 (no samples, as a non-positive torchvision grid),
// above the cap -> the cap.
template <typename T>
KERN_ROI_HD int64_t grid_size(T v) {
  const T c = ceil(v);
  if (!(c > T(0))) return 0;
  if (c > T(kRoiAlignMaxGrid)) return kRoiAlignMaxGrid;
  return static_cast<int64_t>(c);
}

template <typename T>
KERN_ROI_HD Box<T> box_of(const RoiAlignDims& d, const T* roi, int64_t level) {
  Box<T> b;
  const T bi = roi[0];
  if (!(bi >= T(0) && bi < T(d.N)) || floor(bi) != bi) return b;
  if (level < 0 || level >= d.levels) return b;
  const T s = static_cast<T>(d.scale[level]);
  const T off = d.aligned ? T(0.5) : T(0);
  const T xs = roi[1] * s - off, ys = roi[2] * s - off;
  const T xe = roi[3] * s - off, ye = roi[4] * s - off;
  T w = xe - xs, h = ye - ys;
  if (!finite(xs) || !finite(ys) || !finite(w) || !finite(h)) return b;
  if (!d.aligned) {
    w = w > T(1) ? w : T(1);
    h = h > T(1) ? h : T(1);
  }
  b.bin_h = h / static_cast<T>(d.PH);
  b.bin_w = w / static_cast<T>(d.PW);
  b.gh = d.sampling_ratio > 0 ? d.sampling_ratio : grid_size(h / static_cast<T>(d.PH));
  b.gw = d.sampling_ratio > 0 ? d.sampling_ratio : grid_size(w / static_cast<T>(d.PW));
  const int64_t cnt = b.gh * b.gw;
  b.count = static_cast<T>(cnt > 1 ? cnt : 1);
  b.ys = ys;
  b.xs = xs;
  b.n = static_cast<int64_t>(bi);
  b.level = static_cast<int>(level);
  b.valid = true;
  return b;
}

// The coordinate of sample i of bin p along one axis.
template <typename T>
KERN_ROI_HD T sample_at(T start, int64_t p, T bin, int64_t i, int64_t grid) {
  return start + static_cast<T>(p) * bin + (static_cast<T>(i) + T(0.5)) * bin / static_cast<T>(grid);
}

// The 4 neighbours (offsets y * W + x in the map) and weights of one sample; inside == false:
// the sample is 0 and passes no gradient.
template <typename T>
struct Bilinear {
  bool inside = false;
  int64_t o1 = 0, o2 = 0, o3 = 0, o4 = 0;  // (y_low, x_low) (y_low, x_high) (y_high, x_low) (y_high, x_high)
  T w1 = 0, w2 = 0, w3 = 0, w4 = 0;
};

template <typename T>
KERN_ROI_HD Bilinear<T> bilinear(int64_t H, int64_t W, T y, T x) {
  Bilinear<T> b;
  // Written as a negation so that a NaN sample counts as outside.
  if (!(y >= T(-1) && y <= static_cast<T>(H) && x >= T(-1) && x <= static_cast<T>(W))) return b;
  if (y <= T(0)) y = T(0);
  if (x <= T(0)) x = T(0);
  int64_t yl = static_cast<int64_t>(y), xl = static_cast<int64_t>(x), yh, xh;
  if (yl >= H - 1) {
    yh = yl = H - 1;
    y = static_cast<T>(yl);
  } else {
    yh = yl + 1;
  }
  if (xl >= W - 1) {
    xh = xl = W - 1;
    x = static_cast<T>(xl);
  } else {
    xh = xl + 1;
  }
  if (yl < 0 || xl < 0) return b;  // an empty map (refused by the front-end)
  const T ly = y - static_cast<T>(yl), lx = x - static_cast<T>(xl);
  const T hy = T(1) - ly, hx = T(1) - lx;
  b.w1 = hy * hx;
  b.w2 = hy * lx;
  b.w3 = ly * hx;
  b.w4 = ly * lx;
  b.o1 = yl * W + xl;
  b.o2 = yl * W + xh;
  b.o3 = yh * W + xl;
  b.o4 = yh * W + xh;
  b.inside = true;
  return b;
}

// y[k, c, ph, pw] for a valid box: the mean of its samples on the plane m (H x W).
template <typename T>
KERN_ROI_HD T pool_bin(const Box<T>& b, const T* m, int64_t H, int64_t W, int64_t ph, int64_t pw) {
  T acc = T(0);
  for (int64_t iy = 0; iy < b.gh; ++iy) {
    const T y = sample_at(b.ys, ph, b.bin_h, iy, b.gh);
    for (int64_t ix = 0; ix < b.gw; ++ix) {
      const T x = sample_at(b.xs, pw, b.bin_w, ix, b.gw);
      const Bilinear<T> q = bilinear(H, W, y, x);
      if (q.inside) acc += q.w1 * m[q.o1] + q.w2 * m[q.o2] + q.w3 * m[q.o3] + q.w4 * m[q.o4];
    }
  }
  return acc / b.count;
}

// The level index of one RoI (maths in the file comment).
template <typename T>
KERN_ROI_HD int64_t level_of(const T* roi, const RoiLevelParams& p) {
  const double one = p.plus_one_area ? 1.0 : 0.0;
  const double w = static_cast<double>(roi[3]) - static_cast<double>(roi[1]) + one;
  const double h = static_cast<double>(roi[4]) - static_cast<double>(roi[2]) + one;
  const double s = sqrt(w * h);
  const double lvl = static_cast<double>(p.canonical_level);
  const double k = p.plus_one_area ? floor(lvl + log2(s / p.canonical_scale + p.eps))
                                   : floor(lvl + log2(s / p.canonical_scale) + p.eps);
  const double lo = static_cast<double>(p.k_min), hi = static_cast<double>(p.k_max);
  const double kc = !(k >= lo) ? lo : (k > hi ? hi : k);  // NaN -> k_min
  return static_cast<int64_t>(kc) - p.k_min;
}

}  // namespace roi_math

// ---- CPU reference (kernels/cpu/roi_align.cpp), T = float or double ----
// Forward: OpenMP over (k, c). Backward: OpenMP over channels; each channel's planes are
// written by one thread that walks the RoIs in order (deterministic, no atomics).
namespace cpu {
template <typename T>
void roi_align_forward(const RoiAlignDims& d, const RoiAlignLevelPtrs<const T*>& x, const T* rois,
                       const int64_t* levels, T* y);
template <typename T>
void roi_align_backward(const RoiAlignDims& d, const T* rois, const int64_t* levels, const T* gy,
                        const RoiAlignLevelPtrs<T*>& gx);
// levels_out[k] = roi_math::level_of(rois + 5 k, p), k < K.
template <typename T>
void roi_levels(int64_t K, const T* rois, const RoiLevelParams& p, int64_t* levels_out);
}  // namespace cpu

// ---- CUDA (kernels/cuda/roi_align.cu) ----
// Forward: one thread per output (k, c, ph, pw), grid-stride loop.
// Backward: zeroes gx, then one thread per output scatters into its 4 neighbours per sample
// with atomicAdd (the order of the float additions varies from run to run).
// Backward, deterministic: one thread per (level, image, channel) plane walks the RoIs in
// order and adds the contributions of those on its level and image: no atomics, bit-identical
// from run to run, the CPU reference's order of additions. Far less parallel (levels * N * C
// threads): chosen only when eng::cuda::deterministic() is on.
namespace cuda {
template <typename T>
void roi_align_forward(const RoiAlignDims& d, const RoiAlignLevelPtrs<const T*>& x, const T* rois,
                       const int64_t* levels, T* y, Stream stream);
template <typename T>
void roi_align_backward(const RoiAlignDims& d, const T* rois, const int64_t* levels, const T* gy,
                        const RoiAlignLevelPtrs<T*>& gx, Stream stream);
template <typename T>
void roi_align_backward_deterministic(const RoiAlignDims& d, const T* rois, const int64_t* levels, const T* gy,
                                      const RoiAlignLevelPtrs<T*>& gx, Stream stream);
template <typename T>
void roi_levels(int64_t K, const T* rois, const RoiLevelParams& p, int64_t* levels_out, Stream stream);
}  // namespace cuda

}  // namespace kern
