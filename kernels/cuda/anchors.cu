#include "kernels/anchors.h"
#include "kernels/cuda_check.h"

namespace kern::cuda {
namespace {

// One thread per output box: find the level (a handful of rows, linear scan), split the
// index into (location, box), place the box.
template <typename T>
__global__ void multibox_prior_kernel(PriorDims d, const double* __restrict__ table, T* __restrict__ out) {
  const double* boxes = table + static_cast<int64_t>(d.num_levels) * kPriorLevelCols;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < d.num_anchors;
       idx += (int64_t)gridDim.x * blockDim.x) {
    int l = 0;
    while (l + 1 < d.num_levels && table[(l + 1) * kPriorLevelCols] <= static_cast<double>(idx)) ++l;
    const double* level = table + l * kPriorLevelCols;
    const int64_t fmap_w = static_cast<int64_t>(level[2]);
    const int64_t per_loc = static_cast<int64_t>(level[6]);
    const int64_t local = idx - static_cast<int64_t>(level[0]);
    const int64_t loc = local / per_loc, k = local % per_loc;
    const int64_t i = loc / fmap_w, j = loc % fmap_w;
    const double cy = (static_cast<double>(i) + level[5]) * level[3];
    const double cx = (static_cast<double>(j) + level[5]) * level[4];
    const double* rel = boxes + (static_cast<int64_t>(level[7]) + k) * 4;
    prior::place(d, cx, cy, rel, out + idx * 4);
  }
}

}  // namespace

template <typename T>
void multibox_prior(const PriorDims& d, const double* table, T* out, Stream stream) {
  if (d.num_anchors == 0) return;
  multibox_prior_kernel<T><<<kern_grid_1d(d.num_anchors), 256, 0, stream>>>(d, table, out);
  KERN_LAUNCH_CHECK();
}

template void multibox_prior<float>(const PriorDims&, const double*, float*, Stream);
template void multibox_prior<double>(const PriorDims&, const double*, double*, Stream);

}  // namespace kern::cuda
