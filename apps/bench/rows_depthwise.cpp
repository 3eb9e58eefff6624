// bench_kernels rows: depthwise convolution on SSDlite320 (MobileNetV3-Large at 320x320)
// layers, batch 8, fp32 and bf16 (of --precision):
//   depthwise_fwd / depthwise_bwd        our kernel (kernels/conv2d_depthwise.h) through
//                                        eng::conv2d (groups == C); bwd = backward data +
//                                        backward weight (+ the bias sum), as a step runs them;
//                                        on the CPU, fp32 forward, the direct loops
//                                        (kern::cpu::depthwise_forward)
//   depthwise_cudnn_fwd / _bwd           the same convolutions through cuDNN with the group
//                                        count set, cudnnFind's fastest algorithm (named in the
//                                        shape column); only where cuDNN is built (BENCH_HAVE_CUDNN)
// Each CUDA row is validated first against the CPU in f32 on the whole batch (tolerance: the
// GEMM one for fp32, 5e-2 for bf16). Layers: the expanded depthwise convs of torchvision's
// mobilenet_v3_large blocks at a 320 input (features.1, .3, .4, .13).
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
  int64_t C, H, k, stride;
};
const Layer kLayers[] = {
    {"features.1 16@160", 16, 160, 3, 1},
    {"features.3 72@80", 72, 80, 3, 1},
    {"features.4 72@80", 72, 80, 5, 2},
    {"features.13 672@20", 672, 20, 5, 2},
};
constexpr int64_t kBatch = 8;

struct Problem {
  Conv2dParams p;
  kern::Conv2dDims d;
  Tensor x, w, b, gy;  // CPU f32
  double flops = 0, bytes_fwd = 0;
};
Problem make_problem(const Layer& L) {
  Problem P;
  P.p = Conv2dParams::square(L.stride, L.k / 2);
  P.p.groups = L.C;
  Generator gen(7);
  P.x = randn({kBatch, L.C, L.H, L.H}, gen);
  P.w = randn({L.C, 1, L.k, L.k}, gen) * (1.0 / L.k);
  P.b = randn({L.C}, gen);
  const int64_t Ho = kern::conv2d_output_size(L.H, L.k, L.stride, L.k / 2, 1);
  P.gy = randn({kBatch, L.C, Ho, Ho}, gen);
  kern::Conv2dDims& d = P.d;
  d.N = kBatch, d.C = d.O = d.groups = L.C, d.H = d.W = L.H, d.kh = d.kw = L.k;
  d.stride_h = d.stride_w = L.stride, d.pad_h = d.pad_w = L.k / 2, d.Ho = d.Wo = Ho;
  P.flops = 2.0 * kBatch * L.C * Ho * Ho * L.k * L.k;
  P.bytes_fwd = 4.0 * (kBatch * L.C * (L.H * L.H + Ho * Ho));
  return P;
}
std::string shape_of(const Layer& L, const std::string& prec, const std::string& extra) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s N=%lld k%lld s%lld %s%s", L.name, (long long)kBatch, (long long)L.k,
                (long long)L.stride, prec.c_str(), extra.c_str());
  return buf;
}

// Forward and (x, w, b) gradients on the CPU in f32: the reference every CUDA row is checked on.
struct Ref {
  Tensor y, gx, gw;
};
Ref cpu_ref(const Problem& P) {
  Tensor x = P.x.clone(), w = P.w.clone();
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  Tensor y = conv2d(x, w, P.b, P.p);
  y.backward(P.gy);
  return {y.detach(), x.grad(), w.grad()};
}

void cpu_rows(const Options& o, std::vector<Row>& rows, const Layer& L) {
  const Problem P = make_problem(L);
  NoGradGuard ng;
  Row r = time_it(o, false, [&] { conv2d(P.x, P.w, P.b, P.p); });
  r.name = "depthwise_fwd", r.device = "cpu", r.shape = shape_of(L, "fp32", ", direct loops");
  r.flops = P.flops, r.bytes = P.bytes_fwd;
  rows.push_back(r);
}

#ifdef ENGINE_WITH_CUDA
double worst_ratio(const Tensor& actual, const Tensor& ref, double atol, double rtol) {
  std::vector<double> a = actual.to_vector<double>(), b = ref.to_vector<double>();
  double worst = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double q = std::fabs(a[i] - b[i]) / (atol + rtol * std::fabs(b[i]));
    if (!(q <= worst)) worst = q;
  }
  return worst;
}

void cuda_rows(const Options& o, std::vector<Row>& rows, const Layer& L, const Ref& ref, const Problem& P,
               const std::string& prec) {
  const bool bf16 = prec == "bf16";
  const DType dt = bf16 ? DType::bf16 : DType::f32;
  const double atol = bf16 ? 5e-2 : 1e-4, rtol = bf16 ? 5e-2 : 1e-3;
  Tensor dx = P.x.to(dt).cuda(), dw = P.w.to(dt).cuda(), db = P.b.to(dt).cuda(), dgy = P.gy.to(dt).cuda();
  auto add_row = [&](const char* name, const std::string& shp, double err, const std::function<void()>& fn,
                     double fl, double by) {
    Row r;
    if (err <= 1.0) r = time_it(o, true, fn);
    r.name = name, r.device = "cuda", r.shape = shp, r.flops = fl, r.bytes = by, r.max_err = err, r.valid = err <= 1.0;
    rows.push_back(r);
  };
  const double elem = bf16 ? 0.5 : 1.0;  // bytes_fwd counts 4-byte elements
  {
    NoGradGuard ng;
    Tensor y = conv2d(dx, dw, db, P.p);
    const double err = worst_ratio(y.cpu().to(DType::f32), ref.y, atol, rtol);
    add_row("depthwise_fwd", shape_of(L, prec, ", our kernel"), err, [&] { y = conv2d(dx, dw, db, P.p); }, P.flops,
            elem * P.bytes_fwd);
  }
  {
    Tensor xl, wl, bl;
    auto step = [&] {
      xl = dx.detach(), wl = dw.detach(), bl = db.detach();
      xl.set_requires_grad(true), wl.set_requires_grad(true), bl.set_requires_grad(true);
      conv2d(xl, wl, bl, P.p).backward(dgy);
    };
    step();
    cuda::synchronize();
    const double err = std::max(worst_ratio(xl.grad().cpu().to(DType::f32), ref.gx, atol, rtol),
                                worst_ratio(wl.grad().cpu().to(DType::f32), ref.gw, atol, rtol));
    add_row("depthwise_bwd", shape_of(L, prec, ", our kernel, fwd + data + weight + bias"), err, step, 3.0 * P.flops,
            3.0 * elem * P.bytes_fwd);
  }
#ifdef BENCH_HAVE_CUDNN
  namespace dnn = cuda::cudnn;
  {
    Tensor y = empty({kBatch, L.C, P.d.Ho, P.d.Wo}, TensorOptions(dt).device(Device::cuda()));
    auto fwd = [&] { dnn::conv_forward(P.d, dt, dx.raw_data(), dw.raw_data(), db.raw_data(), y.raw_data(), false); };
    fwd();
    cuda::synchronize();
    const double err = worst_ratio(y.cpu().to(DType::f32), ref.y, atol, rtol);
    const auto c = dnn::chosen(P.d, dt, dnn::Direction::forward);
    add_row("depthwise_cudnn_fwd",
            shape_of(L, prec, ", cuDNN " + (c.found ? dnn::algo_name(dnn::Direction::forward, c.algo) : "?")), err, fwd,
            P.flops, elem * P.bytes_fwd);
  }
  {
    Tensor gx = empty_like(dx), gw = empty_like(dw);
    auto bwd = [&] {
      dnn::conv_backward_data(P.d, dt, dw.raw_data(), dgy.raw_data(), gx.raw_data());
      dnn::conv_backward_filter(P.d, dt, dx.raw_data(), dgy.raw_data(), gw.raw_data());
    };
    bwd();
    cuda::synchronize();
    const double err = std::max(worst_ratio(gx.cpu().to(DType::f32), ref.gx, atol, rtol),
                                worst_ratio(gw.cpu().to(DType::f32), ref.gw, atol, rtol));
    const auto cd = dnn::chosen(P.d, dt, dnn::Direction::backward_data);
    const auto cf = dnn::chosen(P.d, dt, dnn::Direction::backward_filter);
    add_row("depthwise_cudnn_bwd",
            shape_of(L, prec,
                     ", cuDNN data " + (cd.found ? dnn::algo_name(dnn::Direction::backward_data, cd.algo) : "?") +
                         " + filter " + (cf.found ? dnn::algo_name(dnn::Direction::backward_filter, cf.algo) : "?")),
            err, bwd, 2.0 * P.flops, 2.0 * elem * P.bytes_fwd);
  }
#endif
}
#endif

void bench_depthwise(const Options& o, std::vector<Row>& rows) {
  for (const Layer& L : kLayers) {
    if (o.cpu) cpu_rows(o, rows, L);
#ifdef ENGINE_WITH_CUDA
    if (!cuda_rows_possible(o)) continue;
    const Problem P = make_problem(L);
    const Ref ref = cpu_ref(P);
    for (const std::string& prec : o.precisions)
      if (prec == "fp32" || prec == "bf16") cuda_rows(o, rows, L, ref, P, prec);
#endif
  }
  if (!cuda_rows_possible(o)) std::printf("depthwise_* (cuda): skipped: no CUDA device\n");
}

const RegisterRows kRows(12, {
    {"depthwise",
     "depthwise conv2d (groups == C) on SSDlite320 / MobileNetV3-Large layers, batch 8: our kernel forward and "
     "backward (fp32, bf16), beside cuDNN's fastest algorithm where cuDNN is built; the CPU forward",
     bench_depthwise},
});

}  // namespace
}  // namespace bench
