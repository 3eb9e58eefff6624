// bench_kernels rows: the engine's cuDNN convolutions (engine/detail/cudnn_conv.h) on SSD300
// layers, batch 8 and 32, in each precision of --precision (fp32, tf32, bf16):
//   conv2d_cudnn_fwd       eng::conv2d forward (cuDNN forward + bias add)
//   conv2d_cudnn_fwd_relu  eng::conv2d_relu (cuDNN conv + bias + ReLU in one call)
//   conv2d_cudnn_bwd       backward data + backward filter + backward bias (f32/tf32; the
//                          engine sums a bf16 bias gradient itself, so bf16 times data +
//                          filter), as one step's backward runs them
// The shape column names the layer, the precision and the algorithms cudnnFind chose. Each
// CUDA row is checked first on images 0 and N-1 against the CPU (im2col + GEMM) with the
// tolerance of the precision: FP32 the GEMM tolerance, TF32 1e-2 (10-bit operands), BF16
// 5e-2 (bf16 inputs, weights and output: 8 significant bits each).
// CUDA only: on the CPU these rows print one "skipped" line.
#include <cmath>
#include <cstdio>
#include <string>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/cudnn_conv.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bench {
using namespace eng;
namespace {

struct Layer {
  const char* name;
  int64_t C, O, H, k, stride, pad;
};
// SSD300 (VGG16-atrous) layers: the largest activation, the L2Norm source, fc7 (1x1) and a
// stride-2 extra layer.
const Layer kLayers[] = {
    {"conv1_2", 64, 64, 300, 3, 1, 1},
    {"conv4_3", 512, 512, 38, 3, 1, 1},
    {"fc7", 1024, 1024, 19, 1, 1, 0},
    {"conv8_2", 256, 512, 19, 3, 2, 1},
};

#ifdef ENGINE_WITH_CUDA
double worst_ratio(const Tensor& actual, const Tensor& ref, double atol, double rtol) {
  std::vector<double> a = actual.to_vector<double>(), b = ref.to_vector<double>();
  double worst = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double r = std::fabs(a[i] - b[i]) / (atol + rtol * std::fabs(b[i]));
    if (!(r <= worst)) worst = r;
  }
  return worst;
}
Tensor ends(const Tensor& t) { return concat({t.narrow(0, 0, 1), t.narrow(0, t.size(0) - 1, 1)}, 0); }

void layer_rows(const Options& o, std::vector<Row>& rows, const Layer& L, int64_t N, const std::string& prec) {
  const bool tf32 = prec == "tf32", bf16 = prec == "bf16";
  const DType dt = bf16 ? DType::bf16 : DType::f32;
  cuda::set_tf32(tf32);
  const Conv2dParams p = Conv2dParams::square(L.stride, L.pad);
  Generator gen(5);
  Tensor x = randn({N, L.C, L.H, L.H}, gen), w = randn({L.O, L.C, L.k, L.k}, gen) * (1.0 / std::sqrt(double(L.C * L.k * L.k)));
  Tensor b = randn({L.O}, gen);
  Tensor x2 = ends(x);
  Tensor ref, ref_relu;
  {
    NoGradGuard g;
    ref = conv2d(x2, w, b, p);
    ref_relu = relu(ref);
  }
  const int64_t Ho = ref.size(2);
  const double flops = 2.0 * N * L.O * Ho * Ho * L.C * L.k * L.k;
  const double atol = bf16 ? 5e-2 : tf32 ? 1e-2 : 1e-4, rtol = bf16 ? 5e-2 : tf32 ? 1e-2 : 1e-3;
  Tensor dx = x.to(dt).cuda(), dw = w.to(dt).cuda(), db = b.to(dt).cuda();
  kern::Conv2dDims d;
  d.N = N, d.C = L.C, d.H = d.W = L.H, d.O = L.O, d.kh = d.kw = L.k, d.stride_h = d.stride_w = L.stride;
  d.pad_h = d.pad_w = L.pad, d.Ho = d.Wo = Ho;
  auto shape = [&](cuda::cudnn::Direction dir, const char* extra) {
    const auto c = cuda::cudnn::chosen(d, dt, dir);
    char buf[200];
    std::snprintf(buf, sizeof buf, "%s N=%lld %lld->%lld %lldx%lld k%lld s%lld %s, %s%s", L.name, (long long)N,
                  (long long)L.C, (long long)L.O, (long long)L.H, (long long)L.H, (long long)L.k, (long long)L.stride,
                  prec.c_str(), c.found ? cuda::cudnn::algo_name(dir, c.algo).c_str() : "?", extra);
    return std::string(buf);
  };
  auto add_row = [&](const char* name, const std::string& shp, double err, const std::function<void()>& fn,
                     double fl) {
    Row r;
    if (err <= 1.0) r = time_it(o, true, fn);
    r.name = name, r.device = "cuda", r.shape = shp, r.flops = fl, r.max_err = err, r.valid = err <= 1.0;
    rows.push_back(r);
  };
  {
    NoGradGuard no_grad;
    Tensor y = conv2d(dx, dw, db, p);
    const double err = worst_ratio(ends(y).cpu().to(DType::f32), ref, atol, rtol);
    add_row("conv2d_cudnn_fwd", shape(cuda::cudnn::Direction::forward, ""), err, [&] { y = conv2d(dx, dw, db, p); },
            flops);
  }
  {
    NoGradGuard no_grad;
    Tensor y = conv2d_relu(dx, dw, db, p);
    const double err = worst_ratio(ends(y).cpu().to(DType::f32), ref_relu, atol, rtol);
    add_row("conv2d_cudnn_fwd_relu", shape(cuda::cudnn::Direction::forward, " + bias + ReLU fused"), err,
            [&] { y = conv2d_relu(dx, dw, db, p); }, flops);
  }
  {
    // Backward on a random dy: validated on the CPU through autograd on images 0 and N-1.
    Tensor gy = randn({N, L.O, Ho, Ho}, gen);
    Tensor gx_ref, gw_ref;
    {
      Tensor xl = x2.clone(), wl = w.clone();
      xl.set_requires_grad(true);
      wl.set_requires_grad(true);
      conv2d(xl, wl, b, p).backward(ends(gy));
      gx_ref = xl.grad();
      gw_ref = wl.grad();
    }
    Tensor dgy = gy.to(dt).cuda(), gx = empty_like(dx), gw = empty_like(dw), gb = empty_like(db);
    auto step = [&] {
      cuda::cudnn::conv_backward_data(d, dt, dw.raw_data(), dgy.raw_data(), gx.raw_data());
      cuda::cudnn::conv_backward_filter(d, dt, dx.raw_data(), dgy.raw_data(), gw.raw_data());
      if (!bf16) cuda::cudnn::conv_backward_bias(d, dt, dgy.raw_data(), gb.raw_data());
    };
    step();
    cuda::synchronize();
    // dw sums over the whole batch: checked against the 2-image reference only for N == 2;
    // otherwise the data gradient of images 0 and N-1 is what is checked.
    const double err = worst_ratio(ends(gx).cpu().to(DType::f32), gx_ref, atol, rtol);
    char extra[96];
    const auto cf = cuda::cudnn::chosen(d, dt, cuda::cudnn::Direction::backward_filter);
    std::snprintf(extra, sizeof extra, " + filter %s%s",
                  cf.found ? cuda::cudnn::algo_name(cuda::cudnn::Direction::backward_filter, cf.algo).c_str() : "?",
                  bf16 ? "" : " + bias");
    add_row("conv2d_cudnn_bwd", shape(cuda::cudnn::Direction::backward_data, extra), err, step, 2.0 * flops);
  }
  cuda::set_tf32(false);
}
#endif

void bench_conv2d_cudnn(const Options& o, std::vector<Row>& rows) {
  if (!cuda_rows_possible(o)) {
    std::printf("conv2d_cudnn_*: skipped: CUDA only (the engine's cuDNN path)\n");
    return;
  }
#ifdef ENGINE_WITH_CUDA
  for (const std::string& prec : o.precisions) {
    for (const Layer& L : kLayers)
      for (const int64_t N : {int64_t(8), int64_t(32)}) layer_rows(o, rows, L, N, prec);
  }
#endif
}

const RegisterRows kRows(11, {
    {"conv2d_cudnn",
     "eng::conv2d / conv2d_relu / backward through cuDNN on SSD300 layers (conv1_2, conv4_3, fc7, conv8_2), batch 8 "
     "and 32, per --precision",
     bench_conv2d_cudnn},
});

}  // namespace
}  // namespace bench
