// roi_align, roi_levels and multiscale_roi_align on CUDA against the CPU reference (float):
// forward, the atomic and the deterministic backward, edge boxes (outside, degenerate,
// reversed, non-finite, a batch index out of range: zeros on CUDA, never a read outside),
// and the deterministic backward's run-to-run bit equality.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "engine/cuda_context.h"
#include "engine/roi_align.h"
#include "test_helpers.h"

using namespace eng;

namespace {

// Restores the deterministic flag on scope exit (a failing REQUIRE must not leak it).
struct DeterministicScope {
  bool prev;
  explicit DeterministicScope(bool on) : prev(cuda::deterministic()) { cuda::set_deterministic(on); }
  ~DeterministicScope() { cuda::set_deterministic(prev); }
};

// Random RoIs on `n_images` images of size `side`, plus the edge cases of kernels/roi_align.h.
std::vector<float> edge_rois(int64_t n_images, float side, uint64_t seed, int random_count) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  std::vector<float> v = {
      0, 1.5f, 2.5f, 20.f, 14.f,                // inside
      1, -9.f, -6.f, 10.f, 8.f,                 // partly outside
      0, side - 4.f, side - 3.f, side + 9.f, side + 7.f,  // partly outside, far corner
      1, 5.f, 5.f, 5.f, 5.f,                    // zero size
      0, 12.f, 9.f, 3.f, 2.f,                   // reversed
      1, side + 10.f, side + 10.f, side + 30.f, side + 20.f,  // entirely outside
      0, -40.f, -30.f, -9.f, -5.f,              // entirely outside, before the origin
      1, -3.f, 2.f, 2.f * side, side - 1.f,     // wider than the map (adaptive grid > 2)
      0, nan, 1.f, 4.f, 5.f,                    // NaN coordinate
      1, 0.f, 0.f, inf, 3.f,                    // inf coordinate
  };
  Generator g(seed);
  for (int i = 0; i < random_count; ++i) {
    const float x1 = static_cast<float>(g.uniform() * side * 1.2 - side * 0.1);
    const float y1 = static_cast<float>(g.uniform() * side * 1.2 - side * 0.1);
    const float w = static_cast<float>(std::exp(g.uniform() * std::log(side)));
    const float h = static_cast<float>(std::exp(g.uniform() * std::log(side)));
    v.insert(v.end(), {static_cast<float>(i % n_images), x1, y1, x1 + w, y1 + h});
  }
  return v;
}

struct Run {
  Tensor y, gx;
};

Run run_roi_align(const Tensor& x_val, const Tensor& rois, const Tensor& r, bool on_cuda, int64_t oh, int64_t ow,
                  double scale, int64_t sr, bool aligned) {
  Tensor x = on_cuda ? test::cuda_leaf(x_val) : test::cpu_leaf(x_val);
  Tensor y = roi_align(x, rois.to(x.device()), oh, ow, scale, sr, aligned);
  y.backward(r.to(x.device()));
  return {y.detach().cpu(), x.grad().cpu()};
}

}  // namespace

TEST_CASE("roi_align: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const Tensor x = test::random_f32({2, 3, 12, 16}, 1);
  const std::vector<float> rv = edge_rois(2, 24.f, 2, 10);  // image 32 x 24 at scale 0.5
  const int64_t K = static_cast<int64_t>(rv.size() / 5);
  const Tensor rois = from_vector<float>(rv, {K, 5});
  for (bool aligned : {false, true})
    for (int64_t sr : {2, 0})
      for (bool det : {false, true}) {
        INFO("aligned " << aligned << " sr " << sr << " deterministic " << det);
        const Tensor r = test::random_f32({K, 3, 3, 4}, 3);
        const Run cpu = run_roi_align(x, rois, r, false, 3, 4, 0.5, sr, aligned);
        DeterministicScope scope(det);
        const Run gpu = run_roi_align(x, rois, r, true, 3, 4, 0.5, sr, aligned);
        REQUIRE_CLOSE(gpu.y, cpu.y, test::kReductionAtol, test::kReductionRtol);
        REQUIRE_CLOSE(gpu.gx, cpu.gx, test::kReductionAtol, test::kReductionRtol);
      }
  // The NaN / inf rows (8, 9) are zero on both devices; rows 0 and 1 are not.
  const Run cpu = run_roi_align(x, rois, test::random_f32({K, 3, 3, 4}, 3), false, 3, 4, 0.5, 2, false);
  const std::vector<double> y = cpu.y.to_vector<double>();
  auto row_abs = [&](int64_t k) {
    double s = 0;
    for (int64_t i = 0; i < 36; ++i) s += std::fabs(y[static_cast<size_t>(k * 36 + i)]);
    return s;
  };
  REQUIRE(row_abs(0) > 0);
  REQUIRE(row_abs(1) > 0);
  REQUIRE(row_abs(8) == 0);
  REQUIRE(row_abs(9) == 0);
}

TEST_CASE("roi_align: cuda gives zeros for a batch index out of range", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  const Tensor x = test::random_f32({2, 2, 8, 8}, 11);
  // Rows 1..4 have bad batch indices (2, -1, 0.5, NaN); the CPU refuses them, CUDA pools zeros.
  std::vector<float> rv = {0, 1, 1, 9, 12, 2, 1, 1, 9, 12, -1, 0, 0, 5, 5, 0.5f, 0, 0, 5, 5,
                           std::nanf(""), 0, 0, 5, 5, 1, 2, 3, 14, 10};
  const Tensor rois = from_vector<float>(rv, {6, 5});
  REQUIRE_THROWS_WITH(roi_align(x, rois, 2, 2, 0.5, 2, false), Catch::Contains("rois[1] has batch index 2"));
  const Tensor r = test::random_f32({6, 2, 2, 2}, 12);
  // The reference: the bad rows moved to image 0 on the CPU, then their outputs and gradients dropped.
  std::vector<float> fixed = rv;
  std::vector<float> rmask(static_cast<size_t>(r.numel()), 1.f);
  for (int k = 1; k <= 4; ++k) {
    fixed[static_cast<size_t>(k * 5)] = 0;
    for (int i = 0; i < 8; ++i) rmask[static_cast<size_t>(k * 8 + i)] = 0.f;
  }
  const Tensor mask = from_vector<float>(rmask, {6, 2, 2, 2});
  for (bool det : {false, true}) {
    INFO("deterministic " << det);
    const Run cpu = run_roi_align(x, from_vector<float>(fixed, {6, 5}), r * mask, false, 2, 2, 0.5, 2, false);
    DeterministicScope scope(det);
    const Run gpu = run_roi_align(x, rois, r, true, 2, 2, 0.5, 2, false);
    REQUIRE_CLOSE(gpu.y, cpu.y * mask, test::kReductionAtol, test::kReductionRtol);
    REQUIRE_CLOSE(gpu.gx, cpu.gx, test::kReductionAtol, test::kReductionRtol);
  }
}

TEST_CASE("roi_align: cuda deterministic backward is bit-identical across runs", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // Many RoIs on one small map: every pixel gets many additions (the atomic order varies on a GPU).
  const Tensor x = test::random_f32({2, 4, 10, 10}, 21);
  const std::vector<float> rv = edge_rois(2, 20.f, 22, 40);
  const int64_t K = static_cast<int64_t>(rv.size() / 5);
  const Tensor rois = from_vector<float>(rv, {K, 5});
  const Tensor r = test::random_f32({K, 4, 2, 2}, 23);
  DeterministicScope scope(true);
  const Run a = run_roi_align(x, rois, r, true, 2, 2, 0.5, 0, true);
  const Run b = run_roi_align(x, rois, r, true, 2, 2, 0.5, 0, true);
  REQUIRE(a.gx.to_vector<float>() == b.gx.to_vector<float>());
  cuda::set_deterministic(false);
  const Run atomic = run_roi_align(x, rois, r, true, 2, 2, 0.5, 0, true);
  REQUIRE_CLOSE(atomic.gx, a.gx, test::kReductionAtol, test::kReductionRtol);
  REQUIRE(atomic.y.to_vector<float>() == a.y.to_vector<float>());  // the forward has no atomics
}

TEST_CASE("roi_levels and multiscale_roi_align: cuda matches cpu", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  // Four levels of a 64 x 64 image (16, 8, 4, 2), canonical scale 16 so that every level is used.
  std::vector<Tensor> xs;
  for (int l = 0; l < 4; ++l) xs.push_back(test::random_f32({2, 3, 16 >> l, 16 >> l}, 30 + static_cast<uint64_t>(l)));
  const std::vector<float> rv = edge_rois(2, 64.f, 35, 24);
  const int64_t K = static_cast<int64_t>(rv.size() / 5);
  const Tensor rois = from_vector<float>(rv, {K, 5});

  const std::vector<int64_t> lv = roi_levels(rois, 2, 5, 16.0).to_vector<int64_t>();
  REQUIRE(roi_levels(rois.cuda(), 2, 5, 16.0).cpu().to_vector<int64_t>() == lv);
  REQUIRE(roi_levels(rois.cuda(), 2, 5, 16.0, 4, 1e-6, true).cpu().to_vector<int64_t>() ==
          roi_levels(rois, 2, 5, 16.0, 4, 1e-6, true).to_vector<int64_t>());
  for (int64_t l = 0; l < 4; ++l) REQUIRE(std::count(lv.begin(), lv.end(), l) > 0);

  MultiScaleRoIAlignOptions o;
  o.canonical_scale = 16;
  const Tensor r = test::random_f32({K, 3, 7, 7}, 36);
  auto run = [&](bool on_cuda) {
    std::vector<Tensor> in;
    for (const Tensor& x : xs) in.push_back(on_cuda ? test::cuda_leaf(x) : test::cpu_leaf(x));
    Tensor y = multiscale_roi_align(in, rois.to(in[0].device()), 64, 64, o);
    y.backward(r.to(in[0].device()));
    std::vector<Tensor> out{y.detach().cpu()};
    for (const Tensor& x : in) out.push_back(x.grad().cpu());
    return out;
  };
  const std::vector<Tensor> cpu = run(false);
  for (bool det : {false, true}) {
    INFO("deterministic " << det);
    DeterministicScope scope(det);
    const std::vector<Tensor> gpu = run(true);
    for (size_t i = 0; i < cpu.size(); ++i) {
      INFO("tensor " << i);
      REQUIRE_CLOSE(gpu[i], cpu[i], test::kReductionAtol, test::kReductionRtol);
    }
  }
  // No RoIs on the device.
  Tensor y0 = multiscale_roi_align({xs[0].cuda(), xs[1].cuda()}, zeros({0, 5}).cuda(), 64, 64, o);
  REQUIRE(y0.sizes() == Shape{0, 3, 7, 7});
}
