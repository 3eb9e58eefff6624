// bench_kernels rows for the CPU kernels' vectorised loops (kernels/cpu_isa.h) against their
// reference loops (kern::cpu::ref), called directly on raw buffers (no autograd, no
// allocation inside the timed call), CPU only:
//   <op>_ref            variant 0, the reference loop
//   <op>_v1             variant 1 at the active ISA level (the best the CPU has, or ENGINE_CPU_ISA)
//   <op>_v1_baseline    variant 1 capped at the x86-64-v2 baseline (shows what AVX adds)
// The ops are the ones a tiny_ssd / SSD training step spends its non-GEMM time in: ReLU
// backward from the output, 2x2 s2 max-pool forward and backward, and training-mode batch
// norm forward (statistics + normalise) and backward (the two sums + the input gradient).
// max_err: worst |v1 - ref| / (1e-4 + 1e-3 |ref|) over the outputs (0 when bit-identical).
// Memory-bound: GB/s counts the minimum bytes read and written once.
#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "kernels/batch_norm.h"
#include "kernels/cpu_isa.h"
#include "kernels/elementwise.h"
#include "kernels/pool2d.h"

namespace bench {
namespace {

constexpr double kF = 4.0;  // bytes per float

std::vector<float> randn_vec(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& e : v) e = nd(gen);
  return v;
}

double worst(const std::vector<float>& a, const std::vector<float>& ref) {
  double w = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(ref[i])) continue;
    w = std::max(w, std::fabs(double(a[i]) - ref[i]) / (1e-4 + 1e-3 * std::fabs(double(ref[i]))));
  }
  return w;
}

// Times `run` three ways (reference, v1 at the active level, v1 capped at the baseline);
// check() compares the last outputs with the reference's.
void three_rows(const Options& o, std::vector<Row>& rows, const std::string& name, const std::string& shape,
                double bytes, const std::function<void(bool ref)>& run,
                const std::function<std::vector<float>()>& outputs) {
  using kern::cpu::Isa;
  run(true);
  const std::vector<float> want = outputs();
  auto one = [&](const std::string& suffix, bool ref, Isa cap) {
    const Isa prev = kern::cpu::set_isa_cap(cap);
    run(ref);
    const double err = ref ? 0.0 : worst(outputs(), want);
    Row r = time_it(o, false, [&] { run(ref); });
    kern::cpu::set_isa_cap(prev);
    r.name = name + suffix;
    r.device = "cpu";
    r.shape = shape + (ref ? "" : std::string(" [") + kern::cpu::isa_name(kern::cpu::isa_detected() < cap
                                                                             ? kern::cpu::isa_detected()
                                                                             : cap) + "]");
    r.bytes = bytes;
    r.max_err = err;
    r.valid = err <= 1.0;
    rows.push_back(r);
  };
  one("_ref", true, Isa::Avx512);
  one("_v1", false, Isa::Avx512);
  one("_v1_baseline", false, Isa::Baseline);
}

void relu_bwd_rows(const Options& o, std::vector<Row>& rows) {
  if (!o.cpu) return;
  const size_t n = size_t(8) * 64 * 150 * 150;
  const auto y0 = randn_vec(n, 1), g = randn_vec(n, 2);
  std::vector<float> y(n), gx(n);
  for (size_t i = 0; i < n; ++i) y[i] = std::max(y0[i], 0.0f);
  three_rows(
      o, rows, "relu_bwd", "8x64x150x150 f32", 3 * double(n) * kF,
      [&](bool ref) {
        if (ref)
          kern::cpu::ref::unary_backward<float>(kern::UnaryOp::Relu, n, y.data(), nullptr, g.data(), gx.data(), 0, 0);
        else
          kern::cpu::relu_backward<float>(n, y.data(), g.data(), gx.data());
      },
      [&] { return gx; });
}

void max_pool_rows(const Options& o, std::vector<Row>& rows) {
  if (!o.cpu) return;
  kern::Pool2dDims d;
  d.planes = 8 * 64, d.in_h = d.in_w = 150, d.out_h = d.out_w = 75;
  d.kernel_h = d.kernel_w = d.stride_h = d.stride_w = 2;
  const size_t in_n = d.planes * d.in_h * d.in_w, out_n = d.planes * d.out_h * d.out_w;
  const auto x = randn_vec(in_n, 3), gy = randn_vec(out_n, 4);
  std::vector<float> y(out_n), gx(in_n);
  std::vector<int32_t> idx(out_n);
  kern::cpu::ref::max_pool2d_forward<float, int32_t>(d, x.data(), y.data(), idx.data());
  const std::vector<int32_t> idx_ref = idx;
  three_rows(
      o, rows, "max_pool2d_2x2_fwd", "8x64x150x150 k2 s2 f32, int32 indices", (in_n + 2.0 * out_n) * kF,
      [&](bool ref) {
        if (ref)
          kern::cpu::ref::max_pool2d_forward<float, int32_t>(d, x.data(), y.data(), idx.data());
        else
          kern::cpu::max_pool2d_forward<float, int32_t>(d, x.data(), y.data(), idx.data());
      },
      [&] {
        std::vector<float> out = y;
        for (size_t i = 0; i < out_n; ++i) out.push_back(static_cast<float>(idx[i] - idx_ref[i]));
        return out;
      });
  three_rows(
      o, rows, "max_pool2d_2x2_bwd", "8x64x150x150 k2 s2 f32", (in_n + 2.0 * out_n) * kF,
      [&](bool ref) {
        if (ref)
          kern::cpu::ref::max_pool2d_backward<float, int32_t>(d, idx_ref.data(), gy.data(), gx.data());
        else
          kern::cpu::max_pool2d_backward<float, int32_t>(d, idx_ref.data(), gy.data(), gx.data());
      },
      [&] { return gx; });
}

// The ResNet stem's 3x3 s2 p1 pool (RetinaNet), the any-window row loop (and its padded edges).
void max_pool_3x3_rows(const Options& o, std::vector<Row>& rows) {
  if (!o.cpu) return;
  kern::Pool2dDims d;
  d.planes = 4 * 64, d.in_h = d.in_w = 128, d.out_h = d.out_w = 64;
  d.kernel_h = d.kernel_w = 3, d.stride_h = d.stride_w = 2, d.pad_h = d.pad_w = 1;
  const size_t in_n = d.planes * d.in_h * d.in_w, out_n = d.planes * d.out_h * d.out_w;
  const auto x = randn_vec(in_n, 7);
  std::vector<float> y(out_n);
  std::vector<int32_t> idx(out_n), idx_ref(out_n);
  kern::cpu::ref::max_pool2d_forward<float, int32_t>(d, x.data(), y.data(), idx_ref.data());
  three_rows(
      o, rows, "max_pool2d_3x3s2_fwd", "4x64x128x128 k3 s2 p1 f32, int32 indices", (in_n + 2.0 * out_n) * kF,
      [&](bool ref) {
        if (ref)
          kern::cpu::ref::max_pool2d_forward<float, int32_t>(d, x.data(), y.data(), idx.data());
        else
          kern::cpu::max_pool2d_forward<float, int32_t>(d, x.data(), y.data(), idx.data());
      },
      [&] {
        std::vector<float> out = y;
        for (size_t i = 0; i < out_n; ++i) out.push_back(static_cast<float>(idx[i] - idx_ref[i]));
        return out;
      });
}

void batch_norm_rows(const Options& o, std::vector<Row>& rows) {
  if (!o.cpu) return;
  const kern::BatchNormDims d{8, 128, 75 * 75};
  const size_t n = d.N * d.C * d.HW;
  const auto x = randn_vec(n, 5), gy = randn_vec(n, 6);
  std::vector<float> w(d.C, 1.5f), b(d.C, 0.25f), mean(d.C), var(d.C), sdy(d.C), sdx(d.C), y(n), gx(n);
  three_rows(
      o, rows, "batch_norm2d_train_fwd", "8x128x75x75 f32 (stats + normalise)", 3 * double(n) * kF,
      [&](bool ref) {
        if (ref) {
          kern::cpu::ref::batch_norm_stats<float>(d, x.data(), mean.data(), var.data());
          kern::cpu::ref::batch_norm_forward<float>(d, x.data(), mean.data(), var.data(), w.data(), b.data(), 1e-5,
                                                    y.data());
        } else {
          kern::cpu::batch_norm_stats<float>(d, x.data(), mean.data(), var.data());
          kern::cpu::batch_norm_forward<float>(d, x.data(), mean.data(), var.data(), w.data(), b.data(), 1e-5,
                                               y.data());
        }
      },
      [&] { return y; });
  three_rows(
      o, rows, "batch_norm2d_train_bwd", "8x128x75x75 f32 (sums + input gradient)", 5 * double(n) * kF,
      [&](bool ref) {
        if (ref) {
          kern::cpu::ref::batch_norm_backward_reduce<float>(d, x.data(), mean.data(), var.data(), 1e-5, gy.data(),
                                                            sdy.data(), sdx.data());
          kern::cpu::ref::batch_norm_backward_input<float>(d, x.data(), mean.data(), var.data(), w.data(), 1e-5, true,
                                                           gy.data(), sdy.data(), sdx.data(), gx.data());
        } else {
          kern::cpu::batch_norm_backward_reduce<float>(d, x.data(), mean.data(), var.data(), 1e-5, gy.data(),
                                                       sdy.data(), sdx.data());
          kern::cpu::batch_norm_backward_input<float>(d, x.data(), mean.data(), var.data(), w.data(), 1e-5, true,
                                                      gy.data(), sdy.data(), sdx.data(), gx.data());
        }
      },
      [&] { return gx; });
}

const RegisterRows kRows(21, {
    {"cpu_relu_bwd", "ReLU backward from the output, 8x64x150x150: reference / vectorised / baseline ISA",
     relu_bwd_rows},
    {"cpu_max_pool2d", "2x2 s2 max-pool forward and backward on 8x64x150x150: reference / vectorised",
     max_pool_rows},
    {"cpu_max_pool2d_3x3", "3x3 s2 p1 max-pool forward (ResNet stem) on 4x64x128x128: reference / vectorised",
     max_pool_3x3_rows},
    {"cpu_batch_norm2d", "training batch norm forward and backward on 8x128x75x75: reference / vectorised",
     batch_norm_rows},
});

}  // namespace
}  // namespace bench
