// roi_align, roi_levels, multiscale_roi_align front-ends (engine/roi_align.h; maths in
// kernels/roi_align.h). Both poolers run the same fused kernels: plain roi_align is the
// one-level case with no level array; the multi-scale pooler computes each RoI's level on
// the rois' device (roi_levels) and passes every level's map to one kernel. The backward
// node saves the rois and the level array (never the features: the backward is linear in
// the output gradient) and returns one gradient per feature level.
#include "engine/roi_align.h"

#include <cmath>
#include <string>

#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "kernels/roi_align.h"

namespace eng {
using namespace detail;

namespace {

struct RoiAlignBackward : Node {
  Tensor rois, levels;  // contiguous, detached; levels undefined for one level
  kern::RoiAlignDims d;
  std::vector<Tensor> like;  // per level: an empty tensor with the level's dtype / device (for new_empty)
  RoiAlignBackward(Tensor r, Tensor l, const kern::RoiAlignDims& dims, std::vector<Tensor> ref)
      : Node("RoiAlignBackward"), rois(std::move(r)), levels(std::move(l)), d(dims), like(std::move(ref)) {}

  std::vector<Tensor> apply(const Tensor& g_in) override {
    std::vector<Tensor> grads(static_cast<size_t>(d.levels));
    bool any = false;
    for (int l = 0; l < d.levels; ++l) {
      if (!next_edges()[static_cast<size_t>(l)].fn) continue;
      grads[static_cast<size_t>(l)] = new_empty({d.N, d.C, d.H[l], d.W[l]}, like[0]);
      any = true;
    }
    if (!any) return grads;
    Tensor g = g_in.contiguous();
    const int64_t* lv = levels.defined() ? levels.data<int64_t>() : nullptr;
    dispatch_float(rois, "roi_align", [&](auto tag) {
      using T = decltype(tag);
      kern::RoiAlignLevelPtrs<T*> gx;
      for (int l = 0; l < d.levels; ++l)
        gx.p[l] = grads[static_cast<size_t>(l)].defined() ? grads[static_cast<size_t>(l)].data<T>() : nullptr;
      if (rois.is_cuda() && cuda::deterministic()) {
        ENGINE_IF_CUDA(kern::cuda::roi_align_backward_deterministic<T>(d, rois.data<T>(), lv, g.data<T>(), gx,
                                                                       cuda::stream()));
      } else if (rois.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::roi_align_backward<T>(d, rois.data<T>(), lv, g.data<T>(), gx, cuda::stream()));
      } else {
        kern::cpu::roi_align_backward<T>(d, rois.data<T>(), lv, g.data<T>(), gx);
      }
    });
    return grads;
  }
  void release_saved() override {
    rois = Tensor();
    levels = Tensor();
    like.clear();
  }
};

void check_rois(const char* op, const Tensor& rois, const Tensor& ref) {
  ENGINE_CHECK(rois.defined(), op, ": undefined rois");
  ENGINE_CHECK(rois.dim() == 2 && rois.size(1) == 5, op,
               ": rois must have shape [K, 5] (batch_index, x1, y1, x2, y2), got ", shape_str(rois.sizes()));
  ENGINE_CHECK(rois.dtype() == ref.dtype(), op, ": rois must be ", dtype_name(ref.dtype()),
               " like the features, got ", dtype_name(rois.dtype()));
  ENGINE_CHECK(rois.device() == ref.device(), op, ": rois on ", rois.device().str(), ", features on ",
               ref.device().str());
}

// CPU only (CUDA rois are not read back: the kernels give zeros for a bad index).
void check_batch_indices(const char* op, const Tensor& rois, int64_t N) {
  if (rois.is_cuda()) return;
  const std::vector<double> v = rois.to_vector<double>();
  for (int64_t k = 0; k < rois.size(0); ++k) {
    const double b = v[static_cast<size_t>(k * 5)];
    ENGINE_CHECK(b >= 0.0 && b < static_cast<double>(N) && std::floor(b) == b, op, ": rois[", k,
                 "] has batch index ", b, ", expected an integer in [0, ", N, ")");
  }
}

void check_pool_params(const char* op, int64_t out_h, int64_t out_w, int64_t sampling_ratio) {
  ENGINE_CHECK(out_h >= 1 && out_w >= 1 && out_h <= 4096 && out_w <= 4096, op,
               ": output size must be in [1, 4096], got ", out_h, "x", out_w);
  ENGINE_CHECK(sampling_ratio <= kern::kRoiAlignMaxGrid, op, ": sampling_ratio must be <= ",
               kern::kRoiAlignMaxGrid, " (or <= 0 for adaptive), got ", sampling_ratio);
}

// The fused pooler: every RoI from level levels[k] (levels undefined: level 0).
Tensor pool(const char* op, const std::vector<Tensor>& features_in, const Tensor& rois_in, const Tensor& levels,
            const std::vector<double>& scales, int64_t out_h, int64_t out_w, int64_t sampling_ratio, bool aligned) {
  const Tensor& f0 = features_in[0];
  kern::RoiAlignDims d;
  d.N = f0.size(0);
  d.C = f0.size(1);
  d.K = rois_in.size(0);
  d.PH = out_h;
  d.PW = out_w;
  d.sampling_ratio = sampling_ratio;
  d.aligned = aligned;
  d.levels = static_cast<int>(features_in.size());
  std::vector<Tensor> feats;
  for (int l = 0; l < d.levels; ++l) {
    const Tensor& f = features_in[static_cast<size_t>(l)];
    d.H[l] = f.size(2);
    d.W[l] = f.size(3);
    d.scale[l] = scales[static_cast<size_t>(l)];
    feats.push_back(f.detach().contiguous());
  }
  Tensor rois = rois_in.detach().contiguous();
  Tensor y = new_empty({d.K, d.C, d.PH, d.PW}, f0);
  const int64_t* lv = levels.defined() ? levels.data<int64_t>() : nullptr;
  dispatch_float(f0, op, [&](auto tag) {
    using T = decltype(tag);
    kern::RoiAlignLevelPtrs<const T*> x;
    for (int l = 0; l < d.levels; ++l) x.p[l] = feats[static_cast<size_t>(l)].data<T>();
    if (f0.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::roi_align_forward<T>(d, x, rois.data<T>(), lv, y.data<T>(), cuda::stream()));
    } else {
      kern::cpu::roi_align_forward<T>(d, x, rois.data<T>(), lv, y.data<T>());
    }
  });
  if (any_requires_grad(features_in)) {
    std::vector<Tensor> like{new_empty({0}, f0)};
    attach(y, std::make_shared<RoiAlignBackward>(rois, levels, d, std::move(like)), features_in);
  }
  return y;
}

void check_features(const char* op, const Tensor& f, const Tensor& ref, size_t level) {
  ENGINE_CHECK(f.defined(), op, ": undefined features at level ", level);
  check_floating(op, f);
  ENGINE_CHECK(f.dim() == 4, op, ": features must be [N, C, H, W], got ", shape_str(f.sizes()), " at level ", level);
  ENGINE_CHECK(f.size(2) >= 1 && f.size(3) >= 1, op, ": empty feature map ", shape_str(f.sizes()), " at level ",
               level);
  if (&f == &ref) return;
  ENGINE_CHECK(f.dtype() == ref.dtype() && f.device() == ref.device(), op, ": level ", level, " is ",
               dtype_name(f.dtype()), " on ", f.device().str(), ", level 0 is ", dtype_name(ref.dtype()), " on ",
               ref.device().str());
  ENGINE_CHECK(f.size(0) == ref.size(0) && f.size(1) == ref.size(1), op, ": level ", level, " has shape ",
               shape_str(f.sizes()), ", level 0 has ", shape_str(ref.sizes()), " (N and C must match)");
}

}  // namespace

Tensor roi_align(const Tensor& features, const Tensor& rois, int64_t out_h, int64_t out_w, double spatial_scale,
                 int64_t sampling_ratio, bool aligned) {
  const char* op = "roi_align";
  check_features(op, features, features, 0);
  check_rois(op, rois, features);
  check_pool_params(op, out_h, out_w, sampling_ratio);
  ENGINE_CHECK(std::isfinite(spatial_scale) && spatial_scale > 0.0, op,
               ": spatial_scale must be positive and finite, got ", spatial_scale);
  check_batch_indices(op, rois, features.size(0));
  return pool(op, {features}, rois, Tensor(), {spatial_scale}, out_h, out_w, sampling_ratio, aligned);
}

Tensor roi_levels(const Tensor& rois_in, int64_t k_min, int64_t k_max, double canonical_scale,
                  int64_t canonical_level, double eps, bool plus_one_area) {
  const char* op = "roi_levels";
  ENGINE_CHECK(rois_in.defined(), op, ": undefined rois");
  check_floating(op, rois_in);
  ENGINE_CHECK(rois_in.dim() == 2 && rois_in.size(1) == 5, op,
               ": rois must have shape [K, 5] (batch_index, x1, y1, x2, y2), got ", shape_str(rois_in.sizes()));
  ENGINE_CHECK(k_min <= k_max && k_min > -64 && k_max < 64, op, ": need -64 < k_min <= k_max < 64, got ", k_min,
               " and ", k_max);
  ENGINE_CHECK(std::isfinite(canonical_scale) && canonical_scale > 0.0, op,
               ": canonical_scale must be positive and finite, got ", canonical_scale);
  ENGINE_CHECK(canonical_level > -64 && canonical_level < 64, op, ": canonical_level must be in (-64, 64), got ",
               canonical_level);
  ENGINE_CHECK(std::isfinite(eps) && eps >= 0.0, op, ": eps must be finite and >= 0, got ", eps);
  kern::RoiLevelParams p;
  p.k_min = k_min;
  p.k_max = k_max;
  p.canonical_scale = canonical_scale;
  p.canonical_level = canonical_level;
  p.eps = eps;
  p.plus_one_area = plus_one_area;
  Tensor rois = rois_in.detach().contiguous();
  const int64_t K = rois.size(0);
  Tensor out = empty({K}, TensorOptions(DType::i64).device(rois.device()));
  dispatch_float(rois, op, [&](auto tag) {
    using T = decltype(tag);
    if (rois.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::roi_levels<T>(K, rois.data<T>(), p, out.data<int64_t>(), cuda::stream()));
    } else {
      kern::cpu::roi_levels<T>(K, rois.data<T>(), p, out.data<int64_t>());
    }
  });
  return out;
}

std::vector<double> infer_pooler_scales(const std::vector<Tensor>& features, int64_t image_h, int64_t image_w) {
  const char* op = "infer_pooler_scales";
  ENGINE_CHECK(image_h >= 1 && image_w >= 1, op, ": image size must be positive, got ", image_h, "x", image_w);
  ENGINE_CHECK(!features.empty(), op, ": no feature levels");
  std::vector<double> scales;
  for (size_t l = 0; l < features.size(); ++l) {
    const Tensor& f = features[l];
    ENGINE_CHECK(f.defined() && f.dim() == 4 && f.size(2) >= 1, op, ": level ", l,
                 " must be a non-empty [N, C, H, W] tensor, got ", f.defined() ? shape_str(f.sizes()) : "undefined");
    // torchvision: approx = H / image_h in double, then log2 of a float32 tensor, torch.round
    // (half to even), 2 ** that.
    const float approx = static_cast<float>(static_cast<double>(f.size(2)) / static_cast<double>(image_h));
    const double e = std::nearbyint(static_cast<double>(std::log2(approx)));
    scales.push_back(std::exp2(e));
  }
  for (size_t l = 1; l < scales.size(); ++l)
    ENGINE_CHECK(scales[l] * 2.0 == scales[l - 1], op, ": level ", l, " has scale ", scales[l], " after ",
                 scales[l - 1], " (each level must halve the previous one; feature heights ", features[l - 1].size(2),
                 " and ", features[l].size(2), " for an image of height ", image_h, ")");
  return scales;
}

Tensor multiscale_roi_align(const std::vector<Tensor>& features, const Tensor& rois, int64_t image_h,
                            int64_t image_w, const MultiScaleRoIAlignOptions& o) {
  const char* op = "multiscale_roi_align";
  ENGINE_CHECK(!features.empty() && features.size() <= static_cast<size_t>(kern::kRoiAlignMaxLevels), op,
               ": expected 1 to ", kern::kRoiAlignMaxLevels, " feature levels, got ", features.size());
  for (size_t l = 0; l < features.size(); ++l) check_features(op, features[l], features[0], l);
  check_rois(op, rois, features[0]);
  check_pool_params(op, o.output_size, o.output_size, o.sampling_ratio);
  const std::vector<double> scales = infer_pooler_scales(features, image_h, image_w);
  check_batch_indices(op, rois, features[0].size(0));
  const int64_t k_min = static_cast<int64_t>(std::lround(-std::log2(scales.front())));
  const int64_t k_max = static_cast<int64_t>(std::lround(-std::log2(scales.back())));
  Tensor levels = roi_levels(rois, k_min, k_max, o.canonical_scale, o.canonical_level, 1e-6, o.plus_one_area);
  return pool(op, features, rois, levels, scales, o.output_size, o.output_size, o.sampling_ratio, o.aligned);
}

}  // namespace eng
