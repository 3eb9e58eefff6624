// CPU reference for L2Norm (maths in kernels/l2norm.h).
//
// The work is split into blocks of up to kTile neighbouring columns of one image. Inside a
// block the loops run channel by channel over the kTile columns, so every inner loop reads
// contiguous memory; the per-column sums live in small arrays. Blocks are independent
// (OpenMP over blocks). The scale gradient is summed per block into its own row of a
// [blocks, C] buffer and the rows are added in block order afterwards, so the result does
// not depend on the number of threads.
#include "kernels/l2norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kern::cpu {
namespace {

constexpr int64_t kTile = 64;  // columns per block

struct Block {
  int64_t n, p0, width;  // image, first column, number of columns
};

Block block_at(const L2NormDims& d, int64_t b) {
  const int64_t tiles_per_image = (d.P + kTile - 1) / kTile;
  Block blk;
  blk.n = b / tiles_per_image;
  blk.p0 = (b % tiles_per_image) * kTile;
  blk.width = std::min(kTile, d.P - blk.p0);
  return blk;
}

int64_t block_count(const L2NormDims& d) { return d.N * ((d.P + kTile - 1) / kTile); }

}  // namespace

// S is the storage type of x / y / gy / gx (float, double, bf16); T = compute_t<S> is the
// type of scale / gscale and of every sum (float for bf16).
template <typename S>
void l2norm_forward(const L2NormDims& d, const S* x, const compute_t<S>* scale, double eps, S* y) {
  using T = compute_t<S>;
  const int64_t blocks = block_count(d);
  const T e = static_cast<T>(eps);
#pragma omp parallel for if (d.N * d.C * d.P > (1 << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    const Block blk = block_at(d, b);
    const int64_t base = blk.n * d.C * d.P + blk.p0;  // element (n, c = 0, p0)

    T sumsq[kTile] = {};
    for (int64_t c = 0; c < d.C; ++c) {
      const S* xr = x + base + c * d.P;
      for (int64_t j = 0; j < blk.width; ++j) sumsq[j] += to_compute(xr[j]) * to_compute(xr[j]);
    }
    T inv[kTile];
    for (int64_t j = 0; j < blk.width; ++j) inv[j] = T(1) / std::max(std::sqrt(sumsq[j]), e);

    for (int64_t c = 0; c < d.C; ++c) {
      const S* xr = x + base + c * d.P;
      S* yr = y + base + c * d.P;
      for (int64_t j = 0; j < blk.width; ++j) yr[j] = from_compute<S>(scale[c] * to_compute(xr[j]) * inv[j]);
    }
  }
}

template <typename S>
void l2norm_backward(const L2NormDims& d, const S* x, const compute_t<S>* scale, const S* gy, double eps, S* gx,
                     compute_t<S>* gscale) {
  using T = compute_t<S>;
  const int64_t blocks = block_count(d);
  const T e = static_cast<T>(eps);
  // Row b holds block b's contribution to gscale.
  std::vector<T> partial(gscale ? static_cast<size_t>(blocks * d.C) : 0, T(0));
#pragma omp parallel for if (d.N * d.C * d.P > (1 << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    const Block blk = block_at(d, b);
    const int64_t base = blk.n * d.C * d.P + blk.p0;

    // One pass over the column: the norm and sum_k scale[k] g[k] x[k].
    T sumsq[kTile] = {}, sgx[kTile] = {};
    for (int64_t c = 0; c < d.C; ++c) {
      const S* xr = x + base + c * d.P;
      const S* gr = gy + base + c * d.P;
      for (int64_t j = 0; j < blk.width; ++j) {
        const T xv = to_compute(xr[j]), gv = to_compute(gr[j]);
        sumsq[j] += xv * xv;
        sgx[j] += scale[c] * gv * xv;
      }
    }
    // gx[j] = inv * scale[j] g[j] - x[j] * coef with coef = inv^3 * sgx where the norm is
    // at least eps, 0 where the denominator is the constant eps.
    T inv[kTile], coef[kTile];
    for (int64_t j = 0; j < blk.width; ++j) {
      const T r = std::sqrt(sumsq[j]);
      inv[j] = T(1) / std::max(r, e);
      coef[j] = r >= e ? inv[j] * inv[j] * inv[j] * sgx[j] : T(0);
    }

    for (int64_t c = 0; c < d.C; ++c) {
      const S* xr = x + base + c * d.P;
      const S* gr = gy + base + c * d.P;
      if (gx) {
        S* out = gx + base + c * d.P;
        for (int64_t j = 0; j < blk.width; ++j)
          out[j] = from_compute<S>(inv[j] * scale[c] * to_compute(gr[j]) - to_compute(xr[j]) * coef[j]);
      }
      if (gscale) {
        T acc = T(0);
        for (int64_t j = 0; j < blk.width; ++j) acc += to_compute(gr[j]) * to_compute(xr[j]) * inv[j];
        partial[b * d.C + c] = acc;
      }
    }
  }
  if (gscale) {
    for (int64_t c = 0; c < d.C; ++c) gscale[c] = T(0);
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t c = 0; c < d.C; ++c) gscale[c] += partial[b * d.C + c];
  }
}

#define KERN_INSTANTIATE(T)                                                                        \
  template void l2norm_forward<T>(const L2NormDims&, const T*, const compute_t<T>*, double, T*);   \
  template void l2norm_backward<T>(const L2NormDims&, const T*, const compute_t<T>*, const T*, double, T*, \
                                   compute_t<T>*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
KERN_INSTANTIATE(bf16)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
