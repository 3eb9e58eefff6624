// CPU reference for RoIAlign, single- and multi-level (maths in kernels/roi_align.h).
//
// The sampling geometry and the bilinear rule are the host+device functions of
// kern::roi_math, so the CPU and CUDA kernels can only differ in the order of additions
// (and in contraction of multiply-adds by the CUDA compiler).
#include <cstring>

#include "kernels/roi_align.h"

namespace kern::cpu {

template <typename T>
void roi_align_forward(const RoiAlignDims& d, const RoiAlignLevelPtrs<const T*>& x, const T* rois,
                       const int64_t* levels, T* y) {
  const int64_t KC = d.K * d.C, bins = d.PH * d.PW;
#pragma omp parallel for if (KC * bins > 4096)
  for (int64_t kc = 0; kc < KC; ++kc) {
    const int64_t k = kc / d.C, c = kc % d.C;
    const roi_math::Box<T> b = roi_math::box_of(d, rois + 5 * k, levels ? levels[k] : 0);
    T* out = y + kc * bins;
    if (!b.valid) {
      for (int64_t i = 0; i < bins; ++i) out[i] = T(0);
      continue;
    }
    const int64_t H = d.H[b.level], W = d.W[b.level];
    const T* plane = x.p[b.level] + (b.n * d.C + c) * H * W;
    for (int64_t ph = 0; ph < d.PH; ++ph)
      for (int64_t pw = 0; pw < d.PW; ++pw) out[ph * d.PW + pw] = roi_math::pool_bin(b, plane, H, W, ph, pw);
  }
}

template <typename T>
void roi_align_backward(const RoiAlignDims& d, const T* rois, const int64_t* levels, const T* gy,
                        const RoiAlignLevelPtrs<T*>& gx) {
  for (int l = 0; l < d.levels; ++l)
    if (gx.p[l]) std::memset(gx.p[l], 0, sizeof(T) * static_cast<size_t>(d.N * d.C * d.H[l] * d.W[l]));
  // Channel c's planes (every level and image) belong to one thread, which adds the RoIs'
  // contributions in RoI order: the result does not depend on the number of threads.
#pragma omp parallel for if (d.K * d.C * d.PH * d.PW > 4096)
  for (int64_t c = 0; c < d.C; ++c) {
    for (int64_t k = 0; k < d.K; ++k) {
      const roi_math::Box<T> b = roi_math::box_of(d, rois + 5 * k, levels ? levels[k] : 0);
      if (!b.valid || !gx.p[b.level]) continue;
      const int64_t H = d.H[b.level], W = d.W[b.level];
      T* plane = gx.p[b.level] + (b.n * d.C + c) * H * W;
      const T* g = gy + (k * d.C + c) * d.PH * d.PW;
      for (int64_t ph = 0; ph < d.PH; ++ph)
        for (int64_t pw = 0; pw < d.PW; ++pw) {
          const T gb = g[ph * d.PW + pw];
          for (int64_t iy = 0; iy < b.gh; ++iy) {
            const T yy = roi_math::sample_at(b.ys, ph, b.bin_h, iy, b.gh);
            for (int64_t ix = 0; ix < b.gw; ++ix) {
              const T xx = roi_math::sample_at(b.xs, pw, b.bin_w, ix, b.gw);
              const roi_math::Bilinear<T> q = roi_math::bilinear(H, W, yy, xx);
              if (!q.inside) continue;
              plane[q.o1] += gb * q.w1 / b.count;
              plane[q.o2] += gb * q.w2 / b.count;
              plane[q.o3] += gb * q.w3 / b.count;
              plane[q.o4] += gb * q.w4 / b.count;
            }
          }
        }
    }
  }
}

template <typename T>
void roi_levels(int64_t K, const T* rois, const RoiLevelParams& p, int64_t* levels_out) {
  for (int64_t k = 0; k < K; ++k) levels_out[k] = roi_math::level_of(rois + 5 * k, p);
}

#define KERN_INSTANTIATE(T)                                                                                     \
  template void roi_align_forward<T>(const RoiAlignDims&, const RoiAlignLevelPtrs<const T*>&, const T*,        \
                                     const int64_t*, T*);                                                       \
  template void roi_align_backward<T>(const RoiAlignDims&, const T*, const int64_t*, const T*,                 \
                                      const RoiAlignLevelPtrs<T*>&);                                            \
  template void roi_levels<T>(int64_t, const T*, const RoiLevelParams&, int64_t*);
KERN_INSTANTIATE(float)
KERN_INSTANTIATE(double)
#undef KERN_INSTANTIATE

}  // namespace kern::cpu
