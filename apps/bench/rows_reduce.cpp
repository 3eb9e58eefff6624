// bench_kernels rows for the multi-block reductions (kernels/reduce_multiblock.h) and the
// fused weighted focal loss (kernels/focal_weighted_sum.h), each next to its baseline:
//   sum_large / sum_large_1block       whole-tensor sum of RetinaNet's focal-loss map,
//                                      16 x 49104 x 91 f32 = 286 MB (CPU rows at batch 2)
//   sum_small / sum_small_1block       a 64 K-element sum (launch-bound)
//   sum_dim_rows / sum_dim_rows_1block sum over dim 1 of [4, 4M]: few rows, long R
//   bias_grad / bias_grad_1block       conv bias gradient of a RetinaNet head conv at P3 of
//                                      a 512 image, gy [16, 256, 64, 64]; the baseline is
//                                      the im2col path's one-block-per-channel kernel
//   focal_wsum / focal_wsum_unfused    RetinaNet's weighted classification loss, forward +
//                                      backward, fused against sigmoid_focal_loss(None) *
//                                      w[b] summed by the engine
// The *_1block rows call the simple kernels directly (kern::cuda::sum_dim with one block
// per row; conv2d_backward with only the bias gradient). All rows are memory-bound: GB/s
// counts the minimum bytes of the task (each input read once; for the focal rows the fused
// op's 12 B per f32 element + labels), the same figure for a row and its baseline, so the
// columns compare as effective bandwidth. bench_kernels prints the fraction of the HBM peak
// (bench::device_peaks: H100 SXM 3.35 TB/s, H100 PCIe 2.0, H200 4.8, from the device name).
#include <string>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "kernels/conv2d.h"
#include "kernels/reduce.h"

namespace bench {
using namespace eng;
namespace {

constexpr int64_t kAnchors = 49104, kClasses = 91;  // RetinaNet at 512x512 (rows_l2norm_focal.cpp)
constexpr int64_t kCpuBatch = 2, kGpuBatch = 16;

Tensor randn_on(const Shape& s, uint64_t seed, Device d) {
  Generator g(seed);
  return randn(s, g).to(d);
}

std::string label(const std::string& fmt_prefix, int64_t batch, const std::string& rest) {
  return fmt_prefix + std::to_string(batch) + rest;
}

// A CPU row at cpu_batch and a CUDA row (validated against a CPU run) at gpu_batch.
void two_rows(const Options& o, std::vector<Row>& rows, const std::string& name,
              const std::function<std::string(int64_t)>& shape, const std::function<double(int64_t)>& bytes,
              const std::function<std::vector<Tensor>(Device, int64_t)>& make,
              const std::function<Tensor(const std::vector<Tensor>&)>& fn, int64_t cpu_batch, int64_t gpu_batch) {
  Options oc = o;
  oc.cuda = false;
  if (oc.cpu)
    bench_engine_op(oc, rows, name, shape(cpu_batch), 0, bytes(cpu_batch),
                    [&](Device d) { return make(d, cpu_batch); }, fn);
  Options og = o;
  og.cpu = false;
  if (cuda_rows_possible(og))
    bench_engine_op(og, rows, name, shape(gpu_batch), 0, bytes(gpu_batch),
                    [&](Device d) { return make(d, gpu_batch); }, fn);
}

// y = sum over dim 1 of x viewed as [outer, R] by the single-block-per-row kernels.
Tensor sum_rows_1block(const Tensor& x, int64_t outer) {
  const int64_t R = x.numel() / outer;
  Tensor y = empty({outer}, TensorOptions(DType::f32).device(x.device()));
  if (x.is_cuda()) {
    ENGINE_IF_CUDA(kern::cuda::sum_dim<float>(outer, R, 1, x.data<float>(), y.data<float>(), 1.0, cuda::stream()));
  } else {
    kern::cpu::sum_dim<float>(outer, R, 1, x.data<float>(), y.data<float>(), 1.0);
  }
  return y;
}

Shape focal_map(int64_t b) { return {b, kAnchors, kClasses}; }

void sum_large(const Options& o, std::vector<Row>& rows, bool baseline) {
  two_rows(
      o, rows, baseline ? "sum_large_1block" : "sum_large",
      [](int64_t b) { return label("", b, "x49104x91 f32 -> scalar"); },
      [](int64_t b) { return 4.0 * static_cast<double>(shape_numel(focal_map(b))); },
      [](Device d, int64_t b) { return std::vector<Tensor>{randn_on(focal_map(b), 1, d)}; },
      [baseline](const std::vector<Tensor>& in) { return baseline ? sum_rows_1block(in[0], 1) : sum(in[0]); },
      kCpuBatch, kGpuBatch);
}

void sum_small(const Options& o, std::vector<Row>& rows, bool baseline) {
  bench_engine_op(o, rows, baseline ? "sum_small_1block" : "sum_small", "65536 f32 -> scalar", 0, 4.0 * 65536,
                  [](Device d) { return std::vector<Tensor>{randn_on({65536}, 2, d)}; },
                  [baseline](const std::vector<Tensor>& in) {
                    return baseline ? sum_rows_1block(in[0], 1) : sum(in[0]);
                  });
}

void sum_dim_rows(const Options& o, std::vector<Row>& rows, bool baseline) {
  const int64_t R = int64_t{1} << 22;
  bench_engine_op(o, rows, baseline ? "sum_dim_rows_1block" : "sum_dim_rows", "4x4194304 f32, sum dim 1", 0,
                  4.0 * 4 * static_cast<double>(R),
                  [R](Device d) { return std::vector<Tensor>{randn_on({4, R}, 3, d)}; },
                  [baseline](const std::vector<Tensor>& in) {
                    return baseline ? sum_rows_1block(in[0], 4) : sum(in[0], {1});
                  });
}

// gb[o] = sum over n, h, w of gy[n, o, h, w].
Tensor bias_grad_1block(const Tensor& gy) {
  kern::Conv2dDims d;
  d.N = gy.size(0), d.O = gy.size(1), d.Ho = gy.size(2), d.Wo = gy.size(3);
  d.C = 1, d.H = d.Ho, d.W = d.Wo;  // unused: only the bias gradient is asked for
  Tensor gb = empty({d.O}, TensorOptions(DType::f32).device(gy.device()));
  if (gy.is_cuda()) {
    ENGINE_IF_CUDA(kern::cuda::conv2d_backward<float>(d, nullptr, nullptr, gy.data<float>(), nullptr, nullptr,
                                                      gb.data<float>(), nullptr, cuda::blas(), cuda::stream()));
  } else {
    kern::cpu::conv2d_backward<float>(d, nullptr, nullptr, gy.data<float>(), nullptr, nullptr, gb.data<float>(),
                                      nullptr);
  }
  return gb;
}

void bias_grad(const Options& o, std::vector<Row>& rows, bool baseline) {
  two_rows(
      o, rows, baseline ? "bias_grad_1block" : "bias_grad",
      [](int64_t b) { return label("gy ", b, "x256x64x64 f32 -> [256]"); },
      [](int64_t b) { return 4.0 * static_cast<double>(b * 256 * 64 * 64); },
      [](Device d, int64_t b) { return std::vector<Tensor>{randn_on({b, 256, 64, 64}, 4, d)}; },
      [baseline](const std::vector<Tensor>& in) { return baseline ? bias_grad_1block(in[0]) : sum(in[0], {0, 2, 3}); },
      kCpuBatch, kGpuBatch);
}

// Inputs: logits, labels, per-image weights, the upstream gradient (1).
std::vector<Tensor> focal_inputs(Device d, int64_t b) {
  // About 1% foreground anchors, 10% ignored, the rest background (as the focal_loss row).
  Generator g(5);
  std::vector<int64_t> lab(static_cast<size_t>(b * kAnchors));
  for (auto& v : lab) {
    const double u = g.uniform();
    v = u < 0.01 ? static_cast<int64_t>(g.uniform() * kClasses) : (u < 0.11 ? -2 : -1);
  }
  std::vector<float> w(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) w[i] = 1.0f / static_cast<float>(400 + 7 * i);  // 1 / num_foreground
  Tensor x = randn_on(focal_map(b), 6, d) - 4.6;  // near the prior bias -log(99)
  return {x, from_vector(lab, {b, kAnchors}).to(d), from_vector(w, {b}).to(d), ones({}, d)};
}

void focal_wsum(const Options& o, std::vector<Row>& rows, bool unfused) {
  two_rows(
      o, rows, unfused ? "focal_wsum_unfused" : "focal_wsum",
      [](int64_t b) { return label("", b, "x49104x91 f32, fwd+bwd, weighted sum"); },
      // Forward reads x, backward reads x and writes gx; labels read twice.
      [](int64_t b) { return 12.0 * static_cast<double>(shape_numel(focal_map(b))) + 16.0 * b * kAnchors; },
      focal_inputs,
      [unfused](const std::vector<Tensor>& in) {
        Tensor x = in[0].detach().set_requires_grad(true);
        Tensor loss;
        if (unfused) {
          Tensor l = sigmoid_focal_loss(x, in[1], 0.25, 2.0, Reduction::None);
          loss = sum(mul(l, in[2].reshape({in[2].size(0), 1, 1})));
        } else {
          loss = sigmoid_focal_loss_weighted_sum(x, in[1], in[2], 0.25, 2.0);
        }
        loss.backward(in[3]);
        return x.grad();
      },
      kCpuBatch, kGpuBatch);
}

const RegisterRows kRows(25, {
    {"sum_large", "eng::sum, multi-block two-pass, of a 286 MB focal-loss map",
     [](const Options& o, std::vector<Row>& r) { sum_large(o, r, false); }},
    {"sum_large_1block", "baseline: kern::cuda::sum_dim, one 256-thread block, same tensor",
     [](const Options& o, std::vector<Row>& r) { sum_large(o, r, true); }},
    {"sum_small", "eng::sum of 64 K floats (multi-block path)",
     [](const Options& o, std::vector<Row>& r) { sum_small(o, r, false); }},
    {"sum_small_1block", "baseline: one block, 64 K floats",
     [](const Options& o, std::vector<Row>& r) { sum_small(o, r, true); }},
    {"sum_dim_rows", "eng::sum over dim 1 of [4, 4M]: R split over blocks",
     [](const Options& o, std::vector<Row>& r) { sum_dim_rows(o, r, false); }},
    {"sum_dim_rows_1block", "baseline: one block per row of [4, 4M]",
     [](const Options& o, std::vector<Row>& r) { sum_dim_rows(o, r, true); }},
    {"bias_grad", "conv bias gradient sum(gy, {0, 2, 3}), multi-block, gy 16x256x64x64",
     [](const Options& o, std::vector<Row>& r) { bias_grad(o, r, false); }},
    {"bias_grad_1block", "baseline: conv2d_backward's one block per channel",
     [](const Options& o, std::vector<Row>& r) { bias_grad(o, r, true); }},
    {"focal_wsum", "eng::sigmoid_focal_loss_weighted_sum fwd+bwd, RetinaNet-512 scores",
     [](const Options& o, std::vector<Row>& r) { focal_wsum(o, r, false); }},
    {"focal_wsum_unfused", "baseline: sigmoid_focal_loss(None) * w[b], eng::sum, backward",
     [](const Options& o, std::vector<Row>& r) { focal_wsum(o, r, true); }},
});

}  // namespace
}  // namespace bench
