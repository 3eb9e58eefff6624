// Self-tests of the cuDNN stand-in in tools/cuda_emu (rules): the calls cuDNN refuses are
// refused (wrong output dims, channel / type mismatches, unset descriptors, too small or
// missing workspaces, algorithms that do not apply, the identity activation outside
// IMPLICIT_PRECOMP_GEMM), the algorithm lists (Get*_v7, Find*Ex with its workspace limit)
// carry cuDNN's names, determinism flags and a stable order, non-deterministic algorithms
// really vary between calls while deterministic ones are bit-identical, and the fused
// bias + activation forward computes act(alpha1 conv + alpha2 z + bias).
#include "cuda_emu/cudnn_emu_util.h"

using namespace dnn_test;

namespace {
const Shape kShape{2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1};
}

TEST_CASE("cudnn_emu: handle, version and error strings", "[cuda_emu]") {
  CHECK(cudnnGetVersion() == static_cast<size_t>(CUDNN_VERSION));
  CHECK(CUDNN_STATUS_BAD_PARAM == 2000);
  CHECK(CUDNN_STATUS_NOT_SUPPORTED == 3000);
  CHECK(std::string(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM)) == "CUDNN_STATUS_BAD_PARAM");
  CHECK(std::string(cudnnGetErrorString(CUDNN_STATUS_SUCCESS)) == "CUDNN_STATUS_SUCCESS");
  cudnnHandle_t h = nullptr;
  REQUIRE(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
  CHECK(cudnnSetStream(h, s) == CUDNN_STATUS_SUCCESS);
  cudaStream_t got = nullptr;
  CHECK(cudnnGetStream(h, &got) == CUDNN_STATUS_SUCCESS);
  CHECK(got == s);
  CHECK(cudnnSetStream(nullptr, s) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnDestroy(h) == CUDNN_STATUS_SUCCESS);
  cudaStreamDestroy(s);
}

TEST_CASE("cudnn_emu: descriptors are validated as cuDNN validates them", "[cuda_emu]") {
  Handle h;
  TensorDesc t;
  CHECK(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 0, 1, 1, 1) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetTensor4dDescriptorEx(t, CUDNN_DATA_FLOAT, 1, 1, 1, 1, 1, 1, 0, 1) == CUDNN_STATUS_BAD_PARAM);
  FilterDesc f;
  CHECK(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 1, -1, 3, 3) == CUDNN_STATUS_BAD_PARAM);
  ConvDesc c;
  CHECK(cudnnSetConvolution2dDescriptor(c, -1, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(c, 0, 0, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolutionGroupCount(c, 0) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolutionGroupCount(c, 2) == CUDNN_STATUS_SUCCESS);  // grouped: test_cudnn_emu_groups.cpp
  CHECK(cudnnSetConvolutionGroupCount(c, 1) == CUDNN_STATUS_SUCCESS);
  ActDesc a;
  CHECK(cudnnSetActivationDescriptor(a, CUDNN_ACTIVATION_SIGMOID, CUDNN_NOT_PROPAGATE_NAN, 0) ==
        CUDNN_STATUS_NOT_SUPPORTED);

  const Shape s = kShape;
  const float one = 1, zero = 0;
  float* x = dev<float>(s.xs());
  float* w = dev<float>(s.ws());
  float* y = dev<float>(s.ys() * 2);
  Problem p(s, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT);
  int n, k, ho, wo;
  DNN_OK(cudnnGetConvolution2dForwardOutputDim(p.conv, p.x, p.w, &n, &k, &ho, &wo));
  CHECK((n == s.N && k == s.O && ho == s.Ho() && wo == s.Wo()));
  auto fwd = [&](cudnnTensorDescriptor_t xd, cudnnFilterDescriptor_t wd, cudnnConvolutionDescriptor_t cd,
                 cudnnTensorDescriptor_t yd) {
    return cudnnConvolutionForward(h, &one, xd, x, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0,
                                   &zero, yd, y);
  };
  CHECK(fwd(p.x, p.w, p.conv, p.y) == CUDNN_STATUS_SUCCESS);
  SECTION("output dims that are not GetConvolution2dForwardOutputDim's") {
    TensorDesc y_tall(CUDNN_DATA_FLOAT, s.N, s.O, s.Ho() + 1, s.Wo()),
        y_ch(CUDNN_DATA_FLOAT, s.N, s.O + 1, s.Ho(), s.Wo());
    CHECK(fwd(p.x, p.w, p.conv, y_tall) == CUDNN_STATUS_BAD_PARAM);
    CHECK(fwd(p.x, p.w, p.conv, y_ch) == CUDNN_STATUS_BAD_PARAM);
    DNN_OK(cudnnSetConvolution2dDescriptor(p.conv, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CHECK(fwd(p.x, p.w, p.conv, p.y) == CUDNN_STATUS_BAD_PARAM);  // padding changed, y did not
    size_t ws = 0;
    CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, CUDNN_CONVOLUTION_FWD_ALGO_GEMM, &ws) ==
          CUDNN_STATUS_BAD_PARAM);
  }
  SECTION("channels and data types must agree") {
    FilterDesc w_ch(CUDNN_DATA_FLOAT, s.O, s.C + 1, s.kh, s.kw), w_dbl(CUDNN_DATA_DOUBLE, s.O, s.C, s.kh, s.kw);
    CHECK(fwd(p.x, w_ch, p.conv, p.y) == CUDNN_STATUS_BAD_PARAM);
    CHECK(cudnnGetConvolution2dForwardOutputDim(p.conv, p.x, w_ch, &n, &k, &ho, &wo) == CUDNN_STATUS_BAD_PARAM);
    CHECK(fwd(p.x, w_dbl, p.conv, p.y) == CUDNN_STATUS_BAD_PARAM);
    Problem d(s, CUDNN_DATA_DOUBLE, CUDNN_DATA_FLOAT);  // DOUBLE data needs DOUBLE compute
    CHECK(fwd(d.x, d.w, d.conv, d.y) == CUDNN_STATUS_NOT_SUPPORTED);
    Problem hf(s, CUDNN_DATA_HALF, CUDNN_DATA_FLOAT);  // HALF is not emulated
    CHECK(fwd(hf.x, hf.w, hf.conv, hf.y) == CUDNN_STATUS_NOT_SUPPORTED);
  }
  SECTION("unset descriptors and null pointers") {
    TensorDesc unset;
    CHECK(fwd(unset, p.w, p.conv, p.y) == CUDNN_STATUS_BAD_PARAM);
    CHECK(fwd(p.x, p.w, p.conv, unset) == CUDNN_STATUS_BAD_PARAM);
    ConvDesc unset_conv;
    CHECK(fwd(p.x, p.w, unset_conv, p.y) == CUDNN_STATUS_BAD_PARAM);
    CHECK(cudnnConvolutionForward(h, &one, p.x, nullptr, p.w, w, p.conv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                  nullptr, 0, &zero, p.y, y) == CUDNN_STATUS_BAD_PARAM);
    CHECK(cudnnConvolutionForward(h, nullptr, p.x, x, p.w, w, p.conv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr,
                                  0, &zero, p.y, y) == CUDNN_STATUS_BAD_PARAM);
  }
  cudaFree(x), cudaFree(w), cudaFree(y);
}

TEST_CASE("cudnn_emu: workspaces are checked and algorithms that do not apply are refused", "[cuda_emu]") {
  Handle h;
  const Shape s = kShape;
  Problem p(s, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT);
  const float one = 1, zero = 0;
  float* x = dev(as<float>(random_values(s.xs(), 1)));
  float* w = dev(as<float>(random_values(s.ws(), 2)));
  float* y = dev<float>(s.ys());
  size_t gemm_ws = 0, precomp_ws = 0, implicit_ws = 1;
  DNN_OK(cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, CUDNN_CONVOLUTION_FWD_ALGO_GEMM, &gemm_ws));
  DNN_OK(cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y,
                                                 CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, &precomp_ws));
  DNN_OK(cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                                 &implicit_ws));
  CHECK(implicit_ws == 0);
  CHECK(precomp_ws > 0);
  CHECK(gemm_ws == sizeof(float) * s.C * s.kh * s.kw * s.Ho() * s.Wo());  // one image's im2col
  char* ws = dev<char>(gemm_ws);
  auto run = [&](cudnnConvolutionFwdAlgo_t algo, void* wsp, size_t bytes) {
    return cudnnConvolutionForward(h, &one, p.x, x, p.w, w, p.conv, algo, wsp, bytes, &zero, p.y, y);
  };
  CHECK(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, ws, gemm_ws) == CUDNN_STATUS_SUCCESS);
  CHECK(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, ws, gemm_ws - 1) == CUDNN_STATUS_BAD_PARAM);
  CHECK(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, nullptr, gemm_ws) == CUDNN_STATUS_BAD_PARAM);
  CHECK(run(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, nullptr, 0) == CUDNN_STATUS_BAD_PARAM);
  CHECK(run(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0) == CUDNN_STATUS_SUCCESS);
  CHECK(run(CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, ws, gemm_ws) == CUDNN_STATUS_NOT_SUPPORTED);
  CHECK(run(static_cast<cudnnConvolutionFwdAlgo_t>(42), ws, gemm_ws) == CUDNN_STATUS_BAD_PARAM);
  // The workspace is scratch: after a call its contents are garbage (0xFF here).
  std::vector<char> junk(gemm_ws, 7);
  cudaMemcpy(ws, junk.data(), gemm_ws, cudaMemcpyHostToDevice);
  DNN_OK(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, ws, gemm_ws));
  CHECK(host(ws, gemm_ws) != junk);
  // Backward: ALGO_1 needs the im2col workspace.
  float* g = dev<float>(s.xs());
  CHECK(cudnnConvolutionBackwardData(h, &one, p.w, w, p.y, y, p.conv, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, nullptr, 0,
                                     &zero, p.x, g) == CUDNN_STATUS_BAD_PARAM);
  float* gw = dev<float>(s.ws());
  CHECK(cudnnConvolutionBackwardFilter(h, &one, p.x, x, p.y, y, p.conv, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, nullptr, 0,
                                       &zero, p.w, gw) == CUDNN_STATUS_BAD_PARAM);
  // FFT: not for stride or dilation > 1.
  Shape s2 = s;
  s2.sh = 2;
  Problem p2(s2, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT);
  size_t fft_ws = 0;
  DNN_OK(cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, CUDNN_CONVOLUTION_FWD_ALGO_FFT, &fft_ws));
  CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, p2.x, p2.w, p2.conv, p2.y, CUDNN_CONVOLUTION_FWD_ALGO_FFT,
                                                &fft_ws) == CUDNN_STATUS_NOT_SUPPORTED);
  char* big = dev<char>(1 << 20);
  CHECK(cudnnConvolutionForward(h, &one, p2.x, x, p2.w, w, p2.conv, CUDNN_CONVOLUTION_FWD_ALGO_FFT, big, 1 << 20, &zero,
                                p2.y, y) == CUDNN_STATUS_NOT_SUPPORTED);
  cudaFree(x), cudaFree(w), cudaFree(y), cudaFree(ws), cudaFree(g), cudaFree(gw), cudaFree(big);
}

TEST_CASE("cudnn_emu: algorithm lists carry cuDNN's names, flags and a stable order", "[cuda_emu]") {
  Handle h;
  const Shape s = kShape;
  Problem p(s, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_TENSOR_OP_MATH);
  int count = 0;
  DNN_OK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &count));
  CHECK(count == CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
  DNN_OK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &count));
  CHECK(count == CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
  DNN_OK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &count));
  CHECK(count == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);

  float* x = dev(as<float>(random_values(s.xs(), 1)));
  float* w = dev(as<float>(random_values(s.ws(), 2)));
  float* y = dev(as<float>(random_values(s.ys(), 3)));
  cudnnConvolutionFwdAlgoPerf_t perf[8];
  int n = 0;
  // Find with no workspace: only IMPLICIT_GEMM fits; the others come back ALLOC_FAILED or
  // NOT_SUPPORTED after it. y is left undefined (NaN here), as by cuDNN's trial runs.
  DNN_OK(cudnnFindConvolutionForwardAlgorithmEx(h, p.x, x, p.w, w, p.conv, p.y, y, 8, &n, perf, nullptr, 0));
  REQUIRE(n == 8);
  CHECK(perf[0].algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
  CHECK(perf[0].status == CUDNN_STATUS_SUCCESS);
  CHECK(perf[0].mathType == CUDNN_TENSOR_OP_MATH);
  CHECK(perf[1].status == CUDNN_STATUS_ALLOC_FAILED);
  CHECK(perf[7].status == CUDNN_STATUS_NOT_SUPPORTED);
  CHECK(std::isnan(host(y, 1)[0]));
  // With a big enough workspace: GEMM (the fastest) first, times ascending, all deterministic.
  char* ws = dev<char>(1 << 20);
  DNN_OK(cudnnFindConvolutionForwardAlgorithmEx(h, p.x, x, p.w, w, p.conv, p.y, y, 8, &n, perf, ws, 1 << 20));
  CHECK(perf[0].algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM);
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    ++ok;
    CHECK(perf[i].determinism == CUDNN_DETERMINISTIC);
    if (i > 0) CHECK(perf[i].time >= perf[i - 1].time);
  }
  CHECK(ok == 4);  // IMPLICIT_GEMM, IMPLICIT_PRECOMP_GEMM, GEMM, FFT
  cudnnConvolutionFwdAlgoPerf_t again[8];
  DNN_OK(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, 2, &n, again));
  CHECK(n == 2);  // requestedAlgoCount caps the list
  CHECK(again[0].algo == perf[0].algo);
  CHECK(again[1].algo == perf[1].algo);
  CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, 0, &n, again) == CUDNN_STATUS_BAD_PARAM);

  // Backward: the non-deterministic algorithms are flagged as cuDNN flags them.
  cudnnConvolutionBwdDataAlgoPerf_t bd[6];
  DNN_OK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, p.w, w, p.y, y, p.conv, p.x, x, 6, &n, bd, ws, 1 << 20));
  int seen = 0;
  for (int i = 0; i < n; ++i) {
    if (bd[i].algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0) {
      CHECK(bd[i].determinism == CUDNN_NON_DETERMINISTIC);
      ++seen;
    }
    if (bd[i].algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1) {
      CHECK(bd[i].determinism == CUDNN_DETERMINISTIC);
      ++seen;
    }
  }
  CHECK(seen == 2);
  CHECK(bd[0].algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0);  // the fastest is non-deterministic
  cudnnConvolutionBwdFilterAlgoPerf_t bf[7];
  DNN_OK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, p.x, x, p.y, y, p.conv, p.w, w, 7, &n, bf, ws, 1 << 20));
  seen = 0;
  for (int i = 0; i < n; ++i) {
    const auto a = bf[i].algo;
    if (a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3) {
      CHECK(bf[i].determinism == CUDNN_NON_DETERMINISTIC);
      ++seen;
    }
    if (a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1) {
      CHECK(bf[i].determinism == CUDNN_DETERMINISTIC);
      ++seen;
    }
  }
  CHECK(seen == 3);
  cudaFree(x), cudaFree(w), cudaFree(y), cudaFree(ws);
}

namespace {
template <typename Run>
bool bit_identical_twice(size_t n, Run run) {
  float* a = dev<float>(n);
  float* b = dev<float>(n);
  run(a);
  run(b);
  const bool same = std::memcmp(host(a, n).data(), host(b, n).data(), n * sizeof(float)) == 0;
  cudaFree(a), cudaFree(b);
  return same;
}
}  // namespace

TEST_CASE("cudnn_emu: non-deterministic algorithms vary between calls, deterministic ones do not", "[cuda_emu]") {
  Handle h;
  const Shape s{4, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1};
  Problem p(s, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT);
  float* x = dev(as<float>(random_values(s.xs(), 21)));
  float* w = dev(as<float>(random_values(s.ws(), 22)));
  float* dy = dev(as<float>(random_values(s.ys(), 23)));
  char* ws = dev<char>(1 << 22);
  const float one = 1, zero = 0;
  auto bwd_filter = [&](cudnnConvolutionBwdFilterAlgo_t algo) {
    return bit_identical_twice(s.ws(), [&](float* out) {
      DNN_OK(cudnnConvolutionBackwardFilter(h, &one, p.x, x, p.y, dy, p.conv, algo, ws, 1 << 22, &zero, p.w, out));
    });
  };
  auto bwd_data = [&](cudnnConvolutionBwdDataAlgo_t algo) {
    return bit_identical_twice(s.xs(), [&](float* out) {
      DNN_OK(cudnnConvolutionBackwardData(h, &one, p.w, w, p.y, dy, p.conv, algo, ws, 1 << 22, &zero, p.x, out));
    });
  };
  CHECK_FALSE(bwd_filter(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0));
  CHECK_FALSE(bwd_filter(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3));
  CHECK(bwd_filter(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1));
  CHECK(bwd_filter(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT));
  CHECK_FALSE(bwd_data(CUDNN_CONVOLUTION_BWD_DATA_ALGO_0));
  CHECK(bwd_data(CUDNN_CONVOLUTION_BWD_DATA_ALGO_1));
  CHECK(bwd_data(CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT));
  // "Deterministic only" selection: the first DETERMINISTIC success of Find is reproducible.
  cudnnConvolutionBwdFilterAlgoPerf_t bf[7];
  int n = 0;
  float* scratch = dev<float>(s.ws());
  DNN_OK(
      cudnnFindConvolutionBackwardFilterAlgorithmEx(h, p.x, x, p.y, dy, p.conv, p.w, scratch, 7, &n, bf, ws, 1 << 22));
  int pick = -1;
  for (int i = 0; i < n && pick < 0; ++i)
    if (bf[i].status == CUDNN_STATUS_SUCCESS && bf[i].determinism == CUDNN_DETERMINISTIC) pick = i;
  REQUIRE(pick > 0);  // the fastest ones are non-deterministic
  CHECK(bwd_filter(bf[pick].algo));
  for (cudnnConvolutionFwdAlgo_t algo : {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_GEMM}) {
    CHECK(bit_identical_twice(s.ys(), [&](float* out) {
      DNN_OK(cudnnConvolutionForward(h, &one, p.x, x, p.w, w, p.conv, algo, ws, 1 << 22, &zero, p.y, out));
    }));
  }
  cudaFree(x), cudaFree(w), cudaFree(dy), cudaFree(ws), cudaFree(scratch);
}

TEST_CASE("cudnn_emu: fused convolution + bias + activation", "[cuda_emu]") {
  Handle h;
  const Shape s = kShape;
  Problem p(s, CUDNN_DATA_DOUBLE, CUDNN_DATA_DOUBLE);
  const std::vector<double> x = random_values(s.xs(), 31), w = random_values(s.ws(), 32);
  const std::vector<double> z = random_values(s.ys(), 33), b = random_values(s.O, 34);
  const std::vector<double> conv = naive_forward(s, x, w);
  TensorDesc bias_d(CUDNN_DATA_DOUBLE, 1, s.O, 1, 1);
  double* dx_ = dev(x);
  double* dw_ = dev(w);
  double* dz = dev(z);
  double* db = dev(b);
  double* y = dev<double>(s.ys());
  char* ws = dev<char>(1 << 20);
  const double a1 = 0.5, a2 = -2, zero = 0;
  const int HW = s.Ho() * s.Wo();
  auto want = [&](bool relu, double alpha2) {
    std::vector<double> r(conv.size());
    for (size_t i = 0; i < r.size(); ++i) {
      const double v = a1 * conv[i] + alpha2 * z[i] + b[(i / HW) % s.O];
      r[i] = relu ? std::max(v, 0.0) : v;
    }
    return r;
  };
  auto run = [&](cudnnConvolutionFwdAlgo_t algo, cudnnActivationDescriptor_t act, const double* alpha2,
                 const double* zp, cudnnTensorDescriptor_t bd = nullptr) {
    return cudnnConvolutionBiasActivationForward(h, &a1, p.x, dx_, p.w, dw_, p.conv, algo, ws, 1 << 20, alpha2, p.y, zp,
                                                 bd ? bd : bias_d.d, db, act, p.y, y);
  };
  ActDesc relu, ident;
  DNN_OK(cudnnSetActivationDescriptor(relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0));
  DNN_OK(cudnnSetActivationDescriptor(ident, CUDNN_ACTIVATION_IDENTITY, CUDNN_NOT_PROPAGATE_NAN, 0));
  DNN_OK(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, relu, &a2, dz));
  const std::vector<double> r1 = host(y, s.ys()), w1 = want(true, a2);
  CHECK(error_ratio(r1, w1, 1e-12, 1e-12) <= 1);
  CHECK(std::count(r1.begin(), r1.end(), 0.0) > 0);  // the ReLU clipped something
  DNN_OK(run(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, ident, &a2, dz));
  CHECK(error_ratio(host(y, s.ys()), want(false, a2), 1e-12, 1e-12) <= 1);
  // Identity only with IMPLICIT_PRECOMP_GEMM.
  CHECK(run(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, ident, &a2, dz) == CUDNN_STATUS_NOT_SUPPORTED);
  CHECK(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, ident, &a2, dz) == CUDNN_STATUS_NOT_SUPPORTED);
  // alpha2 = 0: z is not read (a NaN z changes nothing).
  double* z_nan = dev<double>(s.ys());
  DNN_OK(run(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, ident, &zero, z_nan));
  CHECK(error_ratio(host(y, s.ys()), want(false, 0), 1e-12, 1e-12) <= 1);
  // A bias that is not [1, O, 1, 1], an unset activation.
  TensorDesc bad_bias(CUDNN_DATA_DOUBLE, 1, s.O, 1, 2);
  CHECK(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, relu, &a2, dz, bad_bias) == CUDNN_STATUS_BAD_PARAM);
  ActDesc unset;
  CHECK(run(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, unset, &a2, dz) == CUDNN_STATUS_BAD_PARAM);
  cudaFree(dx_), cudaFree(dw_), cudaFree(dz), cudaFree(db), cudaFree(y), cudaFree(ws), cudaFree(z_nan);
}
