// bench_kernels rows for SSD's L2Norm (conv4_3 of SSD300) and RetinaNet's sigmoid focal loss.
// All are memory-bound: GB/s counts the minimum bytes (each input read once, each output
// written once, see kernels/l2norm.h and kernels/focal_loss.h). The rows use the training
// batch (32 for SSD300, 16 for RetinaNet), except the CPU focal-loss row, which uses batch 2
// (named in the shape column) so that one repetition stays under a second on a small
// machine; its CUDA row is still validated against a CPU run at the full size.
#include <cstdio>
#include <string>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
namespace {

constexpr double kF = 4.0;  // bytes per float

// SSD300 conv4_3: [batch, 512, 38, 38]; RetinaNet at 512x512: [batch, 49104 anchors, 91 classes].
constexpr int64_t kL2CpuBatch = 32, kL2GpuBatch = 32;
constexpr int64_t kFocalCpuBatch = 2, kFocalGpuBatch = 16;
constexpr int64_t kAnchors = 49104, kClasses = 91;

Shape conv4_3(int64_t batch) { return {batch, 512, 38, 38}; }

std::string shape_label(const char* fmt, int64_t batch) {
  char buf[96];
  std::snprintf(buf, sizeof buf, fmt, static_cast<long long>(batch));
  return buf;
}

// The CPU row at batch `cpu_batch`, then the CUDA row at `gpu_batch` (one shared CPU
// reference when they are equal). `make(device, batch)`
// builds the inputs; `bytes(batch)` is the minimum traffic of one repetition.
void cpu_and_cuda_rows(const Options& o, std::vector<Row>& rows, const std::string& name, const char* shape_fmt,
                       int64_t cpu_batch, int64_t gpu_batch, const std::function<double(int64_t)>& bytes,
                       const std::function<std::vector<Tensor>(Device, int64_t)>& make,
                       const std::function<Tensor(const std::vector<Tensor>&)>& fn) {
  if (cpu_batch == gpu_batch) {
    bench_engine_op(o, rows, name, shape_label(shape_fmt, cpu_batch), 0, bytes(cpu_batch),
                    [&](Device d) { return make(d, cpu_batch); }, fn);
    return;
  }
  Options oc = o;
  oc.cuda = false;
  bench_engine_op(oc, rows, name, shape_label(shape_fmt, cpu_batch), 0, bytes(cpu_batch),
                  [&](Device d) { return make(d, cpu_batch); }, fn);
  Options og = o;
  og.cpu = false;
  bench_engine_op(og, rows, name, shape_label(shape_fmt, gpu_batch), 0, bytes(gpu_batch),
                  [&](Device d) { return make(d, gpu_batch); }, fn);
}

Tensor randn_on(const Shape& s, uint64_t seed, Device d) {
  Generator g(seed);
  return randn(s, g).to(d);
}

// Forward: reads x, writes y.
void l2norm_fwd(const Options& o, std::vector<Row>& rows) {
  cpu_and_cuda_rows(
      o, rows, "l2norm_fwd", "%lldx512x38x38 f32, scale 20", kL2CpuBatch, kL2GpuBatch,
      [](int64_t b) { return 2.0 * static_cast<double>(shape_numel(conv4_3(b))) * kF; },
      [](Device d, int64_t b) { return std::vector<Tensor>{randn_on(conv4_3(b), 1, d), full({512}, 20.0, d)}; },
      [](const std::vector<Tensor>& in) {
        NoGradGuard g;
        return l2norm(in[0], in[1]);
      });
}

// Backward alone: the node built by one forward is applied to a fixed output gradient
// (reads x and gy, writes gx; gscale is 512 values). Returns gx for validation.
void l2norm_bwd(const Options& o, std::vector<Row>& rows) {
  cpu_and_cuda_rows(
      o, rows, "l2norm_bwd", "%lldx512x38x38 f32, gx and gscale", kL2CpuBatch, kL2GpuBatch,
      [](int64_t b) { return 3.0 * static_cast<double>(shape_numel(conv4_3(b))) * kF; },
      [](Device d, int64_t b) {
        Tensor x = randn_on(conv4_3(b), 1, d).set_requires_grad(true);
        Tensor s = full({512}, 20.0, d).set_requires_grad(true);
        Tensor y = l2norm(x, s);
        return std::vector<Tensor>{x, s, y, randn_on(conv4_3(b), 2, d)};
      },
      [](const std::vector<Tensor>& in) { return in[2].grad_fn()->apply(in[3])[0]; });
}

// RetinaNet's classification loss: forward (Sum, with the saved derivative) + backward
// (applied to a gradient of 1). Per element: reads x, writes dloss, reads dloss, writes gx
// (16 bytes); labels are 8 bytes per anchor. Returns gx for validation.
void focal_loss_rows(const Options& o, std::vector<Row>& rows) {
  auto n_elem = [](int64_t b) { return static_cast<double>(b * kAnchors * kClasses); };
  cpu_and_cuda_rows(
      o, rows, "focal_loss", "%lldx49104x91 f32, fwd+bwd, sum", kFocalCpuBatch, kFocalGpuBatch,
      [=](int64_t b) { return 4.0 * n_elem(b) * kF + 8.0 * static_cast<double>(b * kAnchors); },
      [](Device d, int64_t b) {
        // About 1% foreground anchors, 10% ignored (RetinaNet's matcher), the rest background.
        Generator g(5);
        std::vector<int64_t> lab(static_cast<size_t>(b * kAnchors));
        for (auto& v : lab) {
          const double u = g.uniform();
          v = u < 0.01 ? static_cast<int64_t>(g.uniform() * kClasses) : (u < 0.11 ? -2 : -1);
        }
        Tensor x = randn_on({b, kAnchors, kClasses}, 6, d) - 4.6;  // near the prior bias -log(99)
        return std::vector<Tensor>{x, from_vector(lab, {b, kAnchors}).to(d), ones({}, d)};
      },
      [](const std::vector<Tensor>& in) {
        Tensor x = in[0].detach().set_requires_grad(true);
        Tensor loss = sigmoid_focal_loss(x, in[1], 0.25, 2.0, Reduction::Sum);
        return loss.grad_fn()->apply(in[2])[0];
      });
}

const RegisterRows kRows(30, {
    {"l2norm_fwd", "eng::l2norm forward on SSD300 conv4_3 (512x38x38)", l2norm_fwd},
    {"l2norm_bwd", "eng::l2norm backward (gx and gscale) on SSD300 conv4_3", l2norm_bwd},
    {"focal_loss", "eng::sigmoid_focal_loss forward + backward on RetinaNet-512 scores (49104 x 91)",
     focal_loss_rows},
});

}  // namespace
}  // namespace bench
