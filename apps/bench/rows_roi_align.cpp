// bench_kernels rows for the multi-scale RoIAlign pooler at Faster R-CNN R50-FPN shapes: P2..P5
// of an 800 x 800 image (200, 100, 50, 25), 256 channels, 2 images x 512 RoIs, 7 x 7 output,
// sampling ratio 2, aligned false (torchvision's box head input). RoIs: side lengths
// log-uniform in [16, 800] (every level gets RoIs), centres uniform in the image.
// tools/bench_torch.py times torchvision.ops.MultiScaleRoIAlign on the same shapes under the
// same row names.
//
// The work is gather-bound (4 samples x 4 taps per output, scattered reads): GB/s counts the
// minimum bytes only, forward: the pooled output written; backward: the output gradient read
// and the four gradient maps written (they are zeroed, then scattered into).
// The CPU rows use 2 x 32 RoIs (said in the shape column) so that a repetition stays short on
// a small machine; the CUDA rows are validated against a CPU run at the full size.
#include <cmath>
#include <string>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/roi_align.h"

namespace bench {
using namespace eng;
namespace {

constexpr int64_t kImages = 2, kChannels = 256, kImage = 800, kOut = 7;
constexpr int64_t kGpuRois = 512, kCpuRois = 32;  // per image
constexpr double kF = 4.0;

int64_t level_pixels() {
  int64_t p = 0;
  for (int l = 0; l < 4; ++l) p += (kImage / (4 << l)) * (kImage / (4 << l));
  return p;
}

// make(device) -> {P2, P3, P4, P5, rois}.
std::vector<Tensor> make_inputs(Device d, int64_t rois_per_image, bool requires_grad) {
  std::vector<Tensor> in;
  Generator g(7);
  for (int l = 0; l < 4; ++l) {
    const int64_t s = kImage / (4 << l);
    Tensor x = randn({kImages, kChannels, s, s}, g).to(d);
    if (requires_grad) x.set_requires_grad(true);
    in.push_back(x);
  }
  std::vector<float> rv;
  for (int64_t n = 0; n < kImages; ++n)
    for (int64_t k = 0; k < rois_per_image; ++k) {
      const double w = 16.0 * std::exp(g.uniform() * std::log(50.0)), h = 16.0 * std::exp(g.uniform() * std::log(50.0));
      const double cx = g.uniform() * kImage, cy = g.uniform() * kImage;
      rv.insert(rv.end(), {static_cast<float>(n), static_cast<float>(cx - w / 2), static_cast<float>(cy - h / 2),
                           static_cast<float>(cx + w / 2), static_cast<float>(cy + h / 2)});
    }
  in.push_back(from_vector<float>(rv, {kImages * rois_per_image, 5}).to(d));
  return in;
}

std::string shape_of(int64_t rois_per_image) {
  return "P2-P5 of 800x800, 2x256ch, 2x" + std::to_string(rois_per_image) + " rois, 7x7 sr2 f32";
}

double out_bytes(int64_t rois_per_image) {
  return static_cast<double>(kImages * rois_per_image * kChannels * kOut * kOut) * kF;
}

Tensor pool(const std::vector<Tensor>& in) {
  MultiScaleRoIAlignOptions o;  // 7x7, sr 2, !aligned
  return multiscale_roi_align({in[0], in[1], in[2], in[3]}, in[4], kImage, kImage, o);
}

void rows_for(const Options& o, std::vector<Row>& rows, const char* name, double (*bytes)(int64_t),
              const std::function<std::vector<Tensor>(Device, int64_t)>& make,
              const std::function<Tensor(const std::vector<Tensor>&)>& fn, bool cpu_row) {
  if (cpu_row) {
    Options oc = o;
    oc.cuda = false;
    bench_engine_op(oc, rows, name, shape_of(kCpuRois), 0, bytes(kCpuRois),
                    [&](Device d) { return make(d, kCpuRois); }, fn);
  }
  Options og = o;
  og.cpu = false;
  bench_engine_op(og, rows, name, shape_of(kGpuRois), 0, bytes(kGpuRois), [&](Device d) { return make(d, kGpuRois); },
                  fn);
}

double fwd_bytes(int64_t r) { return out_bytes(r); }
double bwd_bytes(int64_t r) {
  return out_bytes(r) + static_cast<double>(kImages * kChannels * level_pixels()) * kF;
}

void roi_align_fwd(const Options& o, std::vector<Row>& rows) {
  rows_for(
      o, rows, "roi_align_fwd", fwd_bytes, [](Device d, int64_t r) { return make_inputs(d, r, false); },
      [](const std::vector<Tensor>& in) {
        NoGradGuard g;
        return pool(in);
      },
      true);
}

// Backward alone: the node of one forward applied to a fixed output gradient; returns the
// P2 gradient (every level is computed) for validation.
std::vector<Tensor> with_graph(Device d, int64_t r) {
  std::vector<Tensor> in = make_inputs(d, r, true);
  Tensor y = pool(in);
  Generator g(8);
  in.push_back(y);
  in.push_back(randn(y.sizes(), g).to(d));
  return in;
}

void roi_align_bwd(const Options& o, std::vector<Row>& rows) {
  rows_for(
      o, rows, "roi_align_bwd", bwd_bytes, with_graph,
      [](const std::vector<Tensor>& in) { return in[5].grad_fn()->apply(in[6])[0]; }, true);
}

// The deterministic (fixed-order, no float atomics) CUDA backward (eng::cuda::set_deterministic).
void roi_align_bwd_det(const Options& o, std::vector<Row>& rows) {
  rows_for(
      o, rows, "roi_align_bwd_det", bwd_bytes, with_graph,
      [](const std::vector<Tensor>& in) {
        const bool prev = cuda::deterministic();
        cuda::set_deterministic(true);
        Tensor gx = in[5].grad_fn()->apply(in[6])[0];
        cuda::set_deterministic(prev);
        return gx;
      },
      false);
}

const RegisterRows kRows(36, {
    {"roi_align_fwd", "eng::multiscale_roi_align forward, Faster R-CNN R50-FPN box pooler (4 levels, 7x7, sr 2)",
     roi_align_fwd},
    {"roi_align_bwd", "eng::multiscale_roi_align backward (atomic scatter) on the same shapes", roi_align_bwd},
    {"roi_align_bwd_det", "eng::multiscale_roi_align deterministic backward (one thread per plane, no atomics)",
     roi_align_bwd_det},
});

}  // namespace
}  // namespace bench
