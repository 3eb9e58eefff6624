// bench_kernels rows: GEMM and convolution.
#include <cmath>
#include <cstdio>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "kernels/gemm.h"

namespace bench {
using namespace eng;
namespace {

// C = A B, row-major float, M = N = K = 1024, straight through the gemm kernels.
void bench_sgemm(const Options& o, std::vector<Row>& rows) {
  const int64_t n = 1024;
  const std::string shape = "M=N=K=1024 f32";
  const double flops = 2.0 * n * n * n;
  Generator gen(1);
  Tensor A = randn({n, n}, gen), B = randn({n, n}, gen), C = zeros({n, n});
  auto cpu_run = [&] {
    kern::cpu::gemm<float>(false, false, n, n, n, 1.0f, A.data<float>(), n, B.data<float>(), n, 0.0f, C.data<float>(),
                           n);
  };
  if (o.cpu || cuda_rows_possible(o)) cpu_run();  // the reference for validation
  if (o.cpu) {
    Row r = time_it(o, false, cpu_run);
    r.name = "sgemm", r.device = "cpu", r.shape = shape, r.flops = flops;
    rows.push_back(r);
  }
#ifdef ENGINE_WITH_CUDA
  if (cuda_rows_possible(o)) {
    Tensor dA = A.cuda(), dB = B.cuda(), dC = zeros({n, n}, Device::cuda());
    auto gpu_run = [&] {
      kern::cuda::gemm<float>(false, false, n, n, n, 1.0f, dA.data<float>(), n, dB.data<float>(), n, 0.0f,
                              dC.data<float>(), n, cuda::blas(), cuda::stream());
    };
    gpu_run();
    cuda::synchronize();
    Row r;
    const double err = tolerance_ratio(dC.cpu(), C);
    if (err <= 1.0) r = time_it(o, true, gpu_run);
    r.name = "sgemm", r.device = "cuda", r.shape = shape, r.flops = flops, r.max_err = err, r.valid = err <= 1.0;
    rows.push_back(r);
  }
#endif
}

// One forward conv2d through the engine op (im2col + GEMM), float, no grad.
void bench_conv(const Options& o, std::vector<Row>& rows, const char* name, int64_t N, int64_t C, int64_t O,
                int64_t H, int64_t W, int64_t k, const Conv2dParams& p) {
  NoGradGuard no_grad;
  Generator gen(2);
  Tensor x = randn({N, C, H, W}, gen), w = randn({O, C, k, k}, gen) * (1.0 / std::sqrt(double(C * k * k)));
  Tensor b = randn({O}, gen);
  Tensor y = conv2d(x, w, b, p);  // the reference for validation
  const int64_t Ho = y.size(2), Wo = y.size(3);
  const double flops = 2.0 * N * O * Ho * Wo * C * k * k;
  char shape[160];
  std::snprintf(shape, sizeof shape, "N=%lld %lld->%lld %lldx%lld k%lld s%lld p%lld d%lld f32", (long long)N,
                (long long)C, (long long)O, (long long)H, (long long)W, (long long)k, (long long)p.stride_h,
                (long long)p.pad_h, (long long)p.dilation_h);
  if (o.cpu) {
    Row r = time_it(o, false, [&] { y = conv2d(x, w, b, p); });
    r.name = name, r.device = "cpu", r.shape = shape, r.flops = flops;
    rows.push_back(r);
  }
  if (cuda_rows_possible(o)) {
    Tensor dx = x.cuda(), dw = w.cuda(), db = b.cuda();
    Tensor dy = conv2d(dx, dw, db, p);
    Row r;
    const double err = tolerance_ratio(dy.cpu(), y);
    if (err <= 1.0) r = time_it(o, true, [&] { dy = conv2d(dx, dw, db, p); });
    r.name = name, r.device = "cuda", r.shape = shape, r.flops = flops, r.max_err = err, r.valid = err <= 1.0;
    rows.push_back(r);
  }
}

Conv2dParams conv_params(int64_t stride, int64_t pad, int64_t dil) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.dilation_h = p.dilation_w = dil;
  return p;
}

// VGG16 conv1_2 at SSD300 resolution / 2: 64 -> 64, 3x3, pad 1, 150x150.
void bench_conv2d_vgg(const Options& o, std::vector<Row>& rows) {
  bench_conv(o, rows, "conv2d_vgg", 1, 64, 64, 150, 150, 3, conv_params(1, 1, 1));
}

// SSD fc6: 512 -> 1024, 3x3, dilation 6, pad 6, 19x19.
void bench_conv2d_dilated(const Options& o, std::vector<Row>& rows) {
  bench_conv(o, rows, "conv2d_dilated", 1, 512, 1024, 19, 19, 3, conv_params(1, 6, 6));
}

const RegisterRows kRows(10, {
    {"sgemm", "float GEMM 1024^3 via kern::cpu::gemm / kern::cuda::gemm", bench_sgemm},
    {"conv2d_vgg", "eng::conv2d forward, VGG layer 64->64 3x3 pad 1 on 150x150", bench_conv2d_vgg},
    {"conv2d_dilated", "eng::conv2d forward, SSD fc6 512->1024 3x3 dilation 6 on 19x19", bench_conv2d_dilated},
});

}  // namespace
}  // namespace bench
