// bench_kernels rows: GEMM and convolution.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/cudnn_conv.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "kernels/conv2d_implicit_gemm.h"
#include "kernels/gemm.h"

#ifdef BENCH_HAVE_CUDNN
#include <cudnn.h>
#endif
#ifdef ENGINE_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif

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


// VGG16 conv1_2 at SSD300 resolution / 2: 64 -> 64, 3x3, pad 1, 150x150.
void bench_conv2d_vgg(const Options& o, std::vector<Row>& rows) {
  bench_conv(o, rows, "conv2d_vgg", 1, 64, 64, 150, 150, 3, Conv2dParams::square(1, 1, 1));
}

// ---- SSD fc6, dilated: our implicit GEMM, the same conv undilated, cuDNN ---------------------
//
// fc6 of SSD300 (VGG16-atrous): 512 -> 1024, 3x3, dilation 6, pad 6 on 19x19. Batch 1 runs
// eng::conv2d on the CPU (im2col + OpenBLAS) and on CUDA; then, CUDA only, batch 8 and 32:
//   conv2d_dilated              eng::conv2d, which routes a dilated float forward to the
//                               implicit-GEMM kernel (kernels/conv2d_implicit_gemm.h)
//   conv2d_dilated_t128 / _t64  the kernel called directly with each tile configuration
//                               (for tuning the automatic choice)
//   conv2d_undilated            the kernel on the same shape with dilation 1, pad 1
//   conv2d_dilated_cudnn        cuDNN's fastest forward algorithm for the dilated shape
//                               (cudnnFindConvolutionForwardAlgorithmEx), FP32 FMA math like
//                               ours, + cudnnAddTensor for the bias
//   conv2d_dilated_cudnn_tf32   the same with CUDNN_DEFAULT_MATH (TF32 tensor cores allowed,
//                               PyTorch's default for convolutions), checked at 1e-2
//   conv2d_dilated_fp32         kern::cuda::conv2d_igemm_forward, ConvMath::fp32 (kernel 1),
//                               bias in the epilogue
//   conv2d_dilated_tf32         the same, ConvMath::tf32: WMMA tensor cores (kernel 2), float
//                               in memory, checked at 1e-2 (u = 2^-11 per operand; the typical
//                               error here is ~2u sqrt(sum (a b)^2) ~ 1e-3)
//   conv2d_dilated_bf16         the bf16 overload (kernel 2 on __nv_bfloat16 x, w, bias, y),
//                               checked at 5e-2 (u = 2^-8 per operand plus bf16 output rounding)
//   conv2d_dilated_cudnn_bf16   cuDNN in BF16 through the engine's cuDNN path (bf16 tensors,
//                               best algorithm of cudnnFind), checked at 5e-2
// Backward (dx + dw, no bias gradient), same batches:
//   conv2d_dilated_bwd_im2col   kern::cuda::conv2d_backward: per image im2col + cuBLAS + col2im
//                               (what eng::conv2d's backward runs), the reference of the rows below
//   conv2d_dilated_bwd_{fp32,tf32,bf16}  conv2d_igemm_backward_data + _backward_filter (kernel 3
//                               for fp32, kernel 2 for tf32 / bf16), whole batch, no workspace;
//                               checked with atol = tol * rms(ref), rtol = tol, tol 1e-3 / 1e-2 / 5e-2
// Every CUDA row is checked against the CPU conv of images 0 and N-1 before it is timed.
// FLOPs are the nominal 2*N*O*Ho*Wo*C*9 (taps in the padding are counted, as they are
// multiplied). After each batch a line gives ours/cuDNN and dilated/undilated time ratios.

#ifdef BENCH_HAVE_CUDNN
void cudnn_check(cudnnStatus_t st, const char* what) {
  if (st != CUDNN_STATUS_SUCCESS) throw std::runtime_error(std::string("cuDNN: ") + what + ": " + cudnnGetErrorString(st));
}
#define BENCH_CUDNN(expr) cudnn_check((expr), #expr)

// One float NCHW convolution (square kernel, same stride/pad/dilation on both axes) through
// cuDNN: finds the fastest forward algorithm once, then run() = forward + bias add.
class CudnnConv {
 public:
  CudnnConv(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv2dParams& p, bool allow_tf32)
      : x_(x), w_(w), b_(b), y_(y) {
    BENCH_CUDNN(cudnnCreate(&handle_));
    BENCH_CUDNN(cudnnSetStream(handle_, cuda::stream()));
    BENCH_CUDNN(cudnnCreateTensorDescriptor(&xd_));
    BENCH_CUDNN(cudnnCreateTensorDescriptor(&yd_));
    BENCH_CUDNN(cudnnCreateTensorDescriptor(&bd_));
    BENCH_CUDNN(cudnnCreateFilterDescriptor(&wd_));
    BENCH_CUDNN(cudnnCreateConvolutionDescriptor(&cd_));
    auto i32 = [](int64_t v) { return static_cast<int>(v); };
    BENCH_CUDNN(cudnnSetTensor4dDescriptor(xd_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, i32(x.size(0)), i32(x.size(1)),
                                           i32(x.size(2)), i32(x.size(3))));
    BENCH_CUDNN(cudnnSetFilter4dDescriptor(wd_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, i32(w.size(0)), i32(w.size(1)),
                                           i32(w.size(2)), i32(w.size(3))));
    BENCH_CUDNN(cudnnSetConvolution2dDescriptor(cd_, i32(p.pad_h), i32(p.pad_w), i32(p.stride_h), i32(p.stride_w),
                                                i32(p.dilation_h), i32(p.dilation_w), CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    BENCH_CUDNN(cudnnSetConvolutionMathType(cd_, allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    int n = 0, c = 0, h = 0, v = 0;
    BENCH_CUDNN(cudnnGetConvolution2dForwardOutputDim(cd_, xd_, wd_, &n, &c, &h, &v));
    if (Shape{n, c, h, v} != y.sizes())
      throw std::runtime_error("cuDNN output shape " + shape_str({n, c, h, v}) + " != " + shape_str(y.sizes()));
    BENCH_CUDNN(cudnnSetTensor4dDescriptor(yd_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, v));
    BENCH_CUDNN(cudnnSetTensor4dDescriptor(bd_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, c, 1, 1));

    // Workspace: the most any algorithm asks for, capped at 1 GiB (Find skips the rest).
    const size_t cap = size_t(1) << 30;
    for (int a = 0; a < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; ++a) {
      size_t need = 0;
      if (cudnnGetConvolutionForwardWorkspaceSize(handle_, xd_, wd_, cd_, yd_, static_cast<cudnnConvolutionFwdAlgo_t>(a),
                                                  &need) == CUDNN_STATUS_SUCCESS && need <= cap)
        ws_bytes_ = std::max(ws_bytes_, need);
    }
    ws_ = empty({int64_t(ws_bytes_ / sizeof(float)) + 1}, TensorOptions(DType::f32).device(Device::cuda()));

    int max_algos = 0, got = 0;
    BENCH_CUDNN(cudnnGetConvolutionForwardAlgorithmMaxCount(handle_, &max_algos));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(std::max(max_algos, 1));
    BENCH_CUDNN(cudnnFindConvolutionForwardAlgorithmEx(handle_, xd_, x.data<float>(), wd_, w.data<float>(), cd_, yd_,
                                                       y.data<float>(), int(perf.size()), &got, perf.data(),
                                                       ws_.data<float>(), ws_bytes_));
    for (int i = 0; i < got && !found_; ++i) {  // sorted fastest first
      if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > ws_bytes_) continue;
      algo_ = perf[i].algo;
      found_ = true;
      static const char* kNames[] = {"implicit_gemm", "implicit_precomp_gemm", "gemm", "direct", "fft",
                                     "fft_tiling", "winograd", "winograd_nonfused"};
      const int a = int(algo_);
      algo_name_ = (a >= 0 && a < 8 ? kNames[a] : "algo " + std::to_string(a));
      algo_name_ += perf[i].mathType == CUDNN_FMA_MATH ? " fma" : perf[i].mathType == CUDNN_DEFAULT_MATH ? " default-math" : " tensor-op";
    }
    if (!found_) throw std::runtime_error("cuDNN found no forward algorithm for this convolution");
  }
  ~CudnnConv() {
    cudnnDestroyConvolutionDescriptor(cd_);
    cudnnDestroyFilterDescriptor(wd_);
    cudnnDestroyTensorDescriptor(bd_);
    cudnnDestroyTensorDescriptor(yd_);
    cudnnDestroyTensorDescriptor(xd_);
    cudnnDestroy(handle_);
  }
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  void run() {
    const float one = 1.0f, zero = 0.0f;
    BENCH_CUDNN(cudnnConvolutionForward(handle_, &one, xd_, x_.data<float>(), wd_, w_.data<float>(), cd_, algo_,
                                        ws_.data<float>(), ws_bytes_, &zero, yd_, y_.data<float>()));
    BENCH_CUDNN(cudnnAddTensor(handle_, &one, bd_, b_.data<float>(), &one, yd_, y_.data<float>()));
  }
  const std::string& algo_name() const { return algo_name_; }

 private:
  Tensor x_, w_, b_, y_, ws_;
  size_t ws_bytes_ = 0;
  cudnnHandle_t handle_ = nullptr;
  cudnnTensorDescriptor_t xd_ = nullptr, yd_ = nullptr, bd_ = nullptr;
  cudnnFilterDescriptor_t wd_ = nullptr;
  cudnnConvolutionDescriptor_t cd_ = nullptr;
  cudnnConvolutionFwdAlgo_t algo_ = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  bool found_ = false;
  std::string algo_name_;
};
#endif  // BENCH_HAVE_CUDNN

// Images 0 and N-1 of a batch (the CUDA rows are checked on these against the CPU).
Tensor first_and_last(const Tensor& t) { return concat({t.narrow(0, 0, 1), t.narrow(0, t.size(0) - 1, 1)}, 0); }

// Worst |a - b| / (atol + rtol |b|).
double error_ratio(const Tensor& actual, const Tensor& ref, double atol, double rtol) {
  std::vector<double> a = actual.to_vector<double>(), b = ref.to_vector<double>();
  double worst = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double r = std::fabs(a[i] - b[i]) / (atol + rtol * std::fabs(b[i]));
    if (!(r <= worst)) worst = r;  // NaN-safe
  }
  return worst;
}

#ifdef ENGINE_WITH_CUDA
// A device copy of a float tensor in bf16 (caller frees), and a bf16 device array read back.
__nv_bfloat16* device_bf16(const Tensor& t) {
  const std::vector<float> h = t.to_vector<float>();
  std::vector<__nv_bfloat16> hb(h.size());
  for (size_t i = 0; i < h.size(); ++i) hb[i] = __float2bfloat16(h[i]);
  void* p = nullptr;
  if (cudaMalloc(&p, hb.size() * sizeof(__nv_bfloat16)) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
  if (cudaMemcpy(p, hb.data(), hb.size() * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice) != cudaSuccess)
    throw std::runtime_error("cudaMemcpy failed");
  return static_cast<__nv_bfloat16*>(p);
}
Tensor read_bf16(const __nv_bfloat16* p, const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::vector<__nv_bfloat16> hb(static_cast<size_t>(n));
  if (cudaMemcpy(hb.data(), p, hb.size() * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost) != cudaSuccess)
    throw std::runtime_error("cudaMemcpy failed");
  std::vector<float> hf(hb.size());
  for (size_t i = 0; i < hb.size(); ++i) hf[i] = __bfloat162float(hb[i]);
  return from_vector<float>(hf, shape);
}

// The backward rows of fc6 at batch N (see the list above): dx + dw of x, w and a random dy.
void bench_backward(const Options& o, std::vector<Row>& rows, int64_t N, const Tensor& dx, const Tensor& dw,
                    const std::function<std::string(const char*, const char*)>& shape, double fwd_flops) {
  kern::Conv2dDims d;
  d.N = N, d.C = dx.size(1), d.H = dx.size(2), d.W = dx.size(3), d.O = dw.size(0), d.kh = dw.size(2), d.kw = dw.size(3);
  d.pad_h = d.pad_w = 6, d.dil_h = d.dil_w = 6, d.Ho = d.H, d.Wo = d.W;
  Generator gen(5);
  const Tensor gy = randn({N, d.O, d.Ho, d.Wo}, gen), dgy = gy.cuda();
  const TensorOptions dev = TensorOptions(DType::f32).device(Device::cuda());
  Tensor gx_ref = full(dx.sizes(), NAN, dev), gw_ref = full(dw.sizes(), NAN, dev);
  Tensor col = empty({kern::conv2d_col_size(d)}, dev);
  auto im2col_run = [&] {
    kern::cuda::conv2d_backward<float>(d, dx.data<float>(), dw.data<float>(), dgy.data<float>(), gx_ref.data<float>(),
                                       gw_ref.data<float>(), nullptr, col.data<float>(), cuda::blas(), cuda::stream());
  };
  im2col_run();
  cuda::synchronize();
  const Tensor rx = gx_ref.cpu(), rw = gw_ref.cpu();
  auto rms = [](const Tensor& t) {
    double s = 0;
    const std::vector<double> v = t.to_vector<double>();
    for (double e : v) s += e * e;
    return v.empty() ? 0.0 : std::sqrt(s / double(v.size()));
  };
  const double rms_x = rms(rx), rms_w = rms(rw);
  auto check_and_time = [&](const char* name, const std::string& shp, const std::function<void()>& fn,
                            const std::function<std::pair<Tensor, Tensor>()>& outputs, double tol) {
    fn();
    cuda::synchronize();
    const std::pair<Tensor, Tensor> got = outputs();
    const double err = std::max(error_ratio(got.first, rx, tol * rms_x, tol), error_ratio(got.second, rw, tol * rms_w, tol));
    Row r;
    if (err <= 1.0) r = time_it(o, true, fn);
    r.name = name, r.device = "cuda", r.shape = shp, r.flops = 2 * fwd_flops, r.max_err = err, r.valid = err <= 1.0;
    rows.push_back(r);
  };
  {
    Row r = time_it(o, true, im2col_run);
    r.name = "conv2d_dilated_bwd_im2col", r.device = "cuda", r.shape = shape("d6 p6, dx + dw, im2col + cuBLAS", "f32");
    r.flops = 2 * fwd_flops, r.max_err = 0, r.valid = true;
    rows.push_back(r);
  }
  Tensor gx = full(dx.sizes(), NAN, dev), gw = full(dw.sizes(), NAN, dev);
  for (const kern::ConvMath m : {kern::ConvMath::fp32, kern::ConvMath::tf32}) {
    const bool tf = m == kern::ConvMath::tf32;
    check_and_time(tf ? "conv2d_dilated_bwd_tf32" : "conv2d_dilated_bwd_fp32",
                   shape(tf ? "d6 p6, dx + dw, WMMA TF32, tol 1e-2" : "d6 p6, dx + dw, FP32 kernel 3, tol 1e-3", "f32"),
                   [&, m] {
                     kern::cuda::conv2d_igemm_backward_data(d, m, dgy.data<float>(), dw.data<float>(), gx.data<float>(),
                                                            cuda::stream());
                     kern::cuda::conv2d_igemm_backward_filter(d, m, dx.data<float>(), dgy.data<float>(),
                                                              gw.data<float>(), cuda::stream());
                   },
                   [&] { return std::make_pair(gx.cpu(), gw.cpu()); }, tf ? 1e-2 : 1e-3);
  }
  __nv_bfloat16 *bx = device_bf16(dx.cpu()), *bw = device_bf16(dw.cpu()), *bgy = device_bf16(gy);
  __nv_bfloat16 *bgx = device_bf16(full(dx.sizes(), NAN)), *bgw = device_bf16(full(dw.sizes(), NAN));
  check_and_time("conv2d_dilated_bwd_bf16", shape("d6 p6, dx + dw, WMMA BF16, tol 5e-2", "bf16"),
                 [&] {
                   kern::cuda::conv2d_igemm_backward_data(d, bgy, bw, bgx, cuda::stream());
                   kern::cuda::conv2d_igemm_backward_filter(d, bx, bgy, bgw, cuda::stream());
                 },
                 [&] { return std::make_pair(read_bf16(bgx, dx.sizes()), read_bf16(bgw, dw.sizes())); }, 5e-2);
  cudaFree(bx), cudaFree(bw), cudaFree(bgy), cudaFree(bgx), cudaFree(bgw);
}
#endif

void bench_conv2d_dilated(const Options& o, std::vector<Row>& rows) {
  const int64_t C = 512, O = 1024, H = 19, k = 3;
  const Conv2dParams dil = Conv2dParams::square(1, 6, 6), plain = Conv2dParams::square(1, 1, 1);
  bench_conv(o, rows, "conv2d_dilated", 1, C, O, H, H, k, dil);  // batch 1: the CPU row (and CUDA, inference size)
  if (!cuda_rows_possible(o)) return;
#ifdef ENGINE_WITH_CUDA
  NoGradGuard no_grad;
  for (const int64_t N : {int64_t(8), int64_t(32)}) {
    Generator gen(3);
    Tensor x = randn({N, C, H, H}, gen), w = randn({O, C, k, k}, gen) * (1.0 / std::sqrt(double(C * k * k)));
    Tensor b = randn({O}, gen);
    const Tensor x2 = first_and_last(x);
    const Tensor ref_dil = conv2d(x2, w, b, dil), ref_plain = conv2d(x2, w, b, plain);  // CPU, im2col + GEMM
    Tensor dx = x.cuda(), dw = w.cuda(), db = b.cuda();
    const double flops = 2.0 * N * O * H * H * C * k * k;
    auto shape = [&](const char* what, const char* dtype = "f32") {
      char buf[160];
      std::snprintf(buf, sizeof buf, "N=%lld %lld->%lld %lldx%lld k3 %s %s", (long long)N, (long long)C,
                    (long long)O, (long long)H, (long long)H, what, dtype);
      return std::string(buf);
    };
    // Runs fn, checks its output `y` (a variable fn assigns or writes; images 0 and N-1)
    // against ref, then times fn. Returns the median (0 when not timed).
    auto cuda_row = [&](const char* name, const std::string& shp, const std::function<void()>& fn, const Tensor& y,
                        const Tensor& ref, double atol, double rtol) {
      fn();
      cuda::synchronize();
      const double err = error_ratio(first_and_last(y).cpu(), ref, atol, rtol);
      Row r;
      if (err <= 1.0) r = time_it(o, true, fn);
      r.name = name, r.device = "cuda", r.shape = shp, r.flops = flops, r.max_err = err, r.valid = err <= 1.0;
      rows.push_back(r);
      return r.valid ? r.median_ms : 0.0;
    };
    const double atol = 1e-4, rtol = 1e-3;  // the GEMM/conv tolerance (TF32 off)

    // Ours through the engine op (routed to the implicit GEMM), then the kernel per tile.
    Tensor y_op;
    const double t_ours = cuda_row("conv2d_dilated", shape("d6 p6, implicit GEMM via eng::conv2d"),
                                   [&] { y_op = conv2d(dx, dw, db, dil); }, y_op, ref_dil, atol, rtol);
    // The output of the rows below; refilled with NaN before each row, so that a row which
    // writes nothing cannot pass on the previous row's result.
    Tensor y;
    auto fresh_output = [&] { y = full({N, O, H, H}, NAN, TensorOptions(DType::f32).device(Device::cuda())); };
    auto kernel_call = [&](const Conv2dParams& p, kern::IgemmTile tile) {
      kern::Conv2dDims d;
      d.N = N, d.C = C, d.H = H, d.W = H, d.O = O, d.kh = k, d.kw = k;
      d.stride_h = d.stride_w = p.stride_h, d.pad_h = d.pad_w = p.pad_h, d.dil_h = d.dil_w = p.dilation_h;
      d.Ho = kern::conv2d_output_size(H, k, p.stride_h, p.pad_h, p.dilation_h);
      d.Wo = d.Ho;
      return [&, d, tile] {
        kern::cuda::conv2d_implicit_gemm_forward(d, dx.data<float>(), dw.data<float>(), db.data<float>(),
                                                 y.data<float>(), cuda::stream(), tile);
      };
    };
    fresh_output();
    cuda_row("conv2d_dilated_t128", shape("d6 p6, kernel, 128x128x8 tiles"),
             kernel_call(dil, kern::IgemmTile::t128x128), y, ref_dil, atol, rtol);
    fresh_output();
    cuda_row("conv2d_dilated_t64", shape("d6 p6, kernel, 64x64x16 tiles"), kernel_call(dil, kern::IgemmTile::t64x64),
             y, ref_dil, atol, rtol);
    fresh_output();
    const double t_plain = cuda_row("conv2d_undilated", shape("d1 p1, implicit GEMM kernel"),
                                    kernel_call(plain, kern::IgemmTile::automatic), y, ref_plain, atol, rtol);

    // The precision rows: kern::cuda::conv2d_igemm_forward at fp32 / tf32 (float tensors) and
    // bf16 (bf16 copies of x, w, b; the output is read back as float for the check).
    kern::Conv2dDims dd;
    dd.N = N, dd.C = C, dd.H = H, dd.W = H, dd.O = O, dd.kh = k, dd.kw = k;
    dd.pad_h = dd.pad_w = 6, dd.dil_h = dd.dil_w = 6, dd.Ho = H, dd.Wo = H;
    double t_math[3] = {0, 0, 0};
    for (const kern::ConvMath m : {kern::ConvMath::fp32, kern::ConvMath::tf32}) {
      fresh_output();
      const bool tf = m == kern::ConvMath::tf32;
      t_math[int(m)] = cuda_row(tf ? "conv2d_dilated_tf32" : "conv2d_dilated_fp32",
                                shape(tf ? "d6 p6, WMMA TF32 kernel, tol 1e-2" : "d6 p6, FP32 kernel 1 via ConvMath"),
                                [&, m] {
                                  kern::cuda::conv2d_igemm_forward(dd, m, dx.data<float>(), dw.data<float>(),
                                                                   db.data<float>(), false, y.data<float>(),
                                                                   cuda::stream());
                                },
                                y, ref_dil, tf ? 1e-2 : atol, tf ? 1e-2 : rtol);
    }
    {
      __nv_bfloat16 *bx = device_bf16(x), *bw = device_bf16(w), *bb = device_bf16(b);
      __nv_bfloat16* by = device_bf16(full({N, O, H, H}, NAN));
      auto fn = [&] { kern::cuda::conv2d_igemm_forward(dd, bx, bw, bb, false, by, cuda::stream()); };
      fn();
      cuda::synchronize();
      // Images 0 and N-1 back as float.
      const size_t img = size_t(O * H * H);
      std::vector<__nv_bfloat16> hb(2 * img);
      cudaMemcpy(hb.data(), by, img * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost);
      cudaMemcpy(hb.data() + img, by + (N - 1) * img, img * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost);
      std::vector<float> hf(hb.size());
      for (size_t i = 0; i < hb.size(); ++i) hf[i] = __bfloat162float(hb[i]);
      const double err = error_ratio(from_vector<float>(hf, {2, O, H, H}), ref_dil, 5e-2, 5e-2);
      Row r;
      if (err <= 1.0) r = time_it(o, true, fn);
      r.name = "conv2d_dilated_bf16", r.device = "cuda", r.shape = shape("d6 p6, WMMA BF16 kernel, tol 5e-2", "bf16");
      r.flops = flops, r.max_err = err, r.valid = err <= 1.0;
      rows.push_back(r);
      t_math[2] = r.valid ? r.median_ms : 0.0;
      cudaFree(bx), cudaFree(bw), cudaFree(bb), cudaFree(by);
    }

    bench_backward(o, rows, N, dx, dw, shape, flops);

    double t_cudnn = 0, t_cudnn_tf32 = 0, t_cudnn_bf16 = 0;
    {
      // cuDNN in BF16 through the engine's own cuDNN path (engine/detail/cudnn_conv.h, the one
      // eng::conv2d uses for undilated convs): bf16 x, w, b and y, best algorithm of cudnnFind.
      Tensor bx = dx.to(DType::bf16), bw = dw.to(DType::bf16), bb = db.to(DType::bf16);
      Tensor by = empty({N, O, H, H}, TensorOptions(DType::bf16).device(Device::cuda()));
      auto fn = [&] {
        cuda::cudnn::conv_forward(dd, DType::bf16, bx.raw_data(), bw.raw_data(), bb.raw_data(), by.raw_data(), false);
      };
      fn();
      cuda::synchronize();
      const double err = error_ratio(first_and_last(by).cpu().to(DType::f32), ref_dil, 5e-2, 5e-2);
      Row r;
      if (err <= 1.0) r = time_it(o, true, fn);
      const auto c = cuda::cudnn::chosen(dd, DType::bf16, cuda::cudnn::Direction::forward);
      const std::string what = "d6 p6, cuDNN " +
                               (c.found ? cuda::cudnn::algo_name(cuda::cudnn::Direction::forward, c.algo) : "?") +
                               " + bias (engine path), tol 5e-2";
      r.name = "conv2d_dilated_cudnn_bf16", r.device = "cuda", r.shape = shape(what.c_str(), "bf16");
      r.flops = flops, r.max_err = err, r.valid = err <= 1.0;
      rows.push_back(r);
      t_cudnn_bf16 = r.valid ? r.median_ms : 0.0;
    }
#ifdef BENCH_HAVE_CUDNN
    {
      fresh_output();
      CudnnConv fp32(dx, dw, db, y, dil, false);
      t_cudnn = cuda_row("conv2d_dilated_cudnn", shape(("d6 p6, cuDNN " + fp32.algo_name() + " + bias").c_str()),
                         [&] { fp32.run(); }, y, ref_dil, atol, rtol);
    }
    {
      fresh_output();
      CudnnConv tf32(dx, dw, db, y, dil, true);
      t_cudnn_tf32 = cuda_row("conv2d_dilated_cudnn_tf32",
               shape(("d6 p6, cuDNN " + tf32.algo_name() + " + bias, TF32 ok, tol 1e-2").c_str()),
               [&] { tf32.run(); }, y, ref_dil, 1e-2, 1e-2);
    }
#else
    std::printf("conv2d_dilated_cudnn (N=%lld): skipped: cuDNN not found\n", (long long)N);
#endif
    std::printf("conv2d_dilated N=%lld: dilated/undilated time %s", (long long)N,
                t_ours > 0 && t_plain > 0 ? "" : "n/a");
    if (t_ours > 0 && t_plain > 0) std::printf("%.2f", t_ours / t_plain);
    std::printf(", ours/cuDNN(FP32) time %s", t_ours > 0 && t_cudnn > 0 ? "" : "n/a");
    if (t_ours > 0 && t_cudnn > 0) std::printf("%.2f", t_ours / t_cudnn);
    std::printf("; fp32/tf32/bf16 kernel ms %.3f/%.3f/%.3f vs cuDNN FP32 %.3f, TF32 %.3f, BF16 %.3f (0 = not run)",
                t_math[0], t_math[1], t_math[2], t_cudnn, t_cudnn_tf32, t_cudnn_bf16);
    std::printf(" (the table follows)\n");
  }
#endif
}

const RegisterRows kRows(10, {
    {"sgemm", "float GEMM 1024^3 via kern::cpu::gemm / kern::cuda::gemm", bench_sgemm},
    {"conv2d_vgg", "eng::conv2d forward, VGG layer 64->64 3x3 pad 1 on 150x150", bench_conv2d_vgg},
    {"conv2d_dilated",
     "SSD fc6 512->1024 3x3 dilation 6 on 19x19: eng::conv2d (CPU batch 1; CUDA batch 8 and 32 via the implicit "
     "GEMM), the kernel per tile, undilated, FP32 / TF32 / BF16 kernels, and cuDNN's best algorithm",
     bench_conv2d_dilated},
});

}  // namespace
}  // namespace bench
