// bench_kernels rows: the CPU convolution paths of eng::conv2d (engine/src/ops/conv2d.cpp)
// on SSD's dilated fc6, conv1_2 and ResNet 1x1 layers, batch 1, f32, forward and forward +
// backward. Rows without a suffix run the default path choice (ENGINE_CPU_CONV=auto):
//   conv2d_cpu_fc6_fwd / _bwd        512 -> 1024, 3x3, dilation 6, pad 6 on 19x19: the
//                                    padding-free regions path (kernels/conv2d_regions.h)
//   conv2d_cpu_fc6_fwd_im2col / _bwd_im2col  the same forced through the banded im2col path at
//                                    the default col budget (16 MiB: one band here)
//   conv2d_cpu_fc6_fwd_ref / _bwd_ref  the whole-image im2col reference (col budget 0, as
//                                    ENGINE_CPU_CONV_CHUNK_MB=0)
//   conv2d_cpu_fc6_512_fwd / _bwd    SSD512's fc6 on 32x32 (regions by the rule); _im2col: the banded path
//   conv2d_cpu_conv1_2_fwd / _bwd    SSD300's conv1_2, 64 -> 64, 3x3, pad 1 on 300x300: Winograd
//                                    F(4x4, 3x3); _im2col: 13 bands of 24 rows at 16 MiB; _ref:
//                                    the 207 MB whole-image col
//   conv2d_cpu_1x1_fwd / _bwd        ResNet-50 layer3 1x1 1024 -> 256 on 32x32 (plain GEMMs, no col)
//   conv2d_cpu_1x1s2_fwd / _bwd      ResNet-50 layer3 downsample 1x1 stride 2, 512 -> 1024 on 64x64
//                                    (strided gather into a band col, then GEMMs)
//   conv2d_cpu_fc6_fwd_taps          variant 2 (kernels/conv2d_taps.h) called directly: one GEMM
//                                    per tap over its in-image pixels (not dispatched)
// _bwd rows time forward + backward of sum(y * r) (dx, dw, db). Compare with PyTorch on the
// same shapes: tools/bench_conv_cpu_torch.py prints the rows without a suffix.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/detail/conv2d_col_budget.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "kernels/conv2d_taps.h"

namespace bench {
using namespace eng;
namespace {

void conv_rows(const Options& o, std::vector<Row>& rows, const std::string& name, int64_t C, int64_t O, int64_t H,
               int64_t k, const Conv2dParams& p, size_t budget, const char* mode = "auto") {
  if (!o.cpu) return;
  const char* old_mode = std::getenv("ENGINE_CPU_CONV");
  const std::string saved = old_mode ? old_mode : "";
  setenv("ENGINE_CPU_CONV", mode, 1);
  Generator gen(3);
  Tensor x = randn({1, C, H, H}, gen), w = randn({O, C, k, k}, gen) * (1.0 / std::sqrt(double(C * k * k)));
  Tensor b = randn({O}, gen);
  detail::set_conv_col_budget(budget);
  Tensor y;
  {
    NoGradGuard ng;
    y = conv2d(x, w, b, p);
  }
  const double flops = 2.0 * O * y.size(2) * y.size(3) * C * k * k;
  char shape[160];
  std::snprintf(shape, sizeof shape,
                "N=1 %lld->%lld %lldx%lld k%lld s%lld p%lld d%lld f32, ENGINE_CPU_CONV=%s, col budget %zu MiB",
                (long long)C, (long long)O, (long long)H, (long long)H, (long long)k, (long long)p.stride_h,
                (long long)p.pad_h, (long long)p.dilation_h, mode, budget >> 20);
  Row f = time_it(o, false, [&] {
    NoGradGuard ng;
    y = conv2d(x, w, b, p);
  });
  f.name = name + "_fwd", f.device = "cpu", f.shape = shape, f.flops = flops;
  rows.push_back(f);
  Tensor xl = x.clone(), wl = w.clone(), bl = b.clone();
  xl.set_requires_grad(true), wl.set_requires_grad(true), bl.set_requires_grad(true);
  Tensor r = randn(y.sizes(), gen);
  Row bw = time_it(o, false, [&] {
    xl.zero_grad(), wl.zero_grad(), bl.zero_grad();
    sum(mul(conv2d(xl, wl, bl, p), r)).backward();
  });
  bw.name = name + "_bwd", bw.device = "cpu", bw.shape = shape, bw.flops = 3.0 * flops;
  rows.push_back(bw);
  detail::reset_conv_col_budget();
  if (old_mode)
    setenv("ENGINE_CPU_CONV", saved.c_str(), 1);
  else
    unsetenv("ENGINE_CPU_CONV");
}

// The tap-by-tap forward (variant 2) on fc6, straight through the kernel.
void fc6_taps_row(const Options& o, std::vector<Row>& rows) {
  if (!o.cpu) return;
  kern::Conv2dDims d;
  d.N = 1, d.C = 512, d.H = d.W = 19, d.O = 1024, d.kh = d.kw = 3;
  d.stride_h = d.stride_w = 1, d.pad_h = d.pad_w = 6, d.dil_h = d.dil_w = 6;
  d.Ho = d.Wo = 19;
  Generator gen(3);
  Tensor x = randn({1, 512, 19, 19}, gen), w = randn({1024, 512, 3, 3}, gen) * (1.0 / std::sqrt(512.0 * 9));
  Tensor b = randn({1024}, gen), y = empty({1, 1024, 19, 19}), ws = empty({kern::conv2d_taps_workspace_size(d)});
  Row r = time_it(o, false, [&] {
    kern::cpu::conv2d_forward_taps<float>(d, x.data<float>(), w.data<float>(), b.data<float>(), y.data<float>(),
                                          ws.data<float>());
  });
  r.name = "conv2d_cpu_fc6_fwd_taps", r.device = "cpu", r.flops = 2.0 * 1024 * 361 * 512 * 9;
  r.shape = "N=1 512->1024 19x19 k3 s1 p6 d6 f32, variant 2 (taps), col budget 0 MiB";
  rows.push_back(r);
}

void bench_conv_cpu(const Options& o, std::vector<Row>& rows) {
  fc6_taps_row(o, rows);
  const size_t def = detail::kDefaultConvColBudget;
  auto suffix = [&](const char* sfx) { rows[rows.size() - 2].name += sfx, rows[rows.size() - 1].name += sfx; };
  const Conv2dParams fc6 = Conv2dParams::square(1, 6, 6), same = Conv2dParams::square(1, 1, 1);
  conv_rows(o, rows, "conv2d_cpu_fc6", 512, 1024, 19, 3, fc6, def);
  conv_rows(o, rows, "conv2d_cpu_fc6", 512, 1024, 19, 3, fc6, def, "im2col");
  suffix("_im2col");
  conv_rows(o, rows, "conv2d_cpu_fc6", 512, 1024, 19, 3, fc6, 0, "im2col");
  suffix("_ref");
  // SSD512's fc6 (32x32, coverage 0.77): regions by the rule; _im2col the banded path.
  conv_rows(o, rows, "conv2d_cpu_fc6_512", 512, 1024, 32, 3, fc6, def);
  conv_rows(o, rows, "conv2d_cpu_fc6_512", 512, 1024, 32, 3, fc6, def, "im2col");
  suffix("_im2col");
  conv_rows(o, rows, "conv2d_cpu_conv1_2", 64, 64, 300, 3, same, def);
  conv_rows(o, rows, "conv2d_cpu_conv1_2", 64, 64, 300, 3, same, def, "im2col");
  suffix("_im2col");
  conv_rows(o, rows, "conv2d_cpu_conv1_2", 64, 64, 300, 3, same, 0, "im2col");
  suffix("_ref");
  conv_rows(o, rows, "conv2d_cpu_1x1", 1024, 256, 32, 1, Conv2dParams::square(1, 0, 1), def);
  conv_rows(o, rows, "conv2d_cpu_1x1s2", 512, 1024, 64, 1, Conv2dParams::square(2, 0, 1), def);
}

const RegisterRows kRows(13, {
    {"conv_cpu",
     "CPU conv2d: SSD fc6 (dilated: regions) and conv1_2 (Winograd) by the default path, the banded im2col path and the "
     "whole-image reference, ResNet 1x1 layers (plain GEMM, strided gather), forward and forward + backward",
     bench_conv_cpu},
});

}  // namespace
}  // namespace bench
