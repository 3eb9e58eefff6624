// cuda-emu cuDNN: convolution problem validation, the algorithm tables and the queries
// (MaxCount, Get*_v7, Find*Ex, Get*WorkspaceSize) for the three convolution directions.
//
// Algorithms offered (names and determinism as in cuDNN; workspace sizes and "times" are
// made up but stable, so a caller's selection logic is exercised, not measured):
//   forward       IMPLICIT_GEMM (ws 0), IMPLICIT_PRECOMP_GEMM (small ws), GEMM (im2col ws,
//                 the fastest), FFT (large ws; stride 1 and dilation 1 only); all deterministic.
//   backward data ALGO_0 (ws 0, non-deterministic, the fastest), ALGO_1 (im2col ws), FFT.
//   backward flt  ALGO_0 (ws 0, non-deterministic, the fastest), ALGO_3 (small ws,
//                 non-deterministic), ALGO_1 (im2col ws), FFT.
// Every other enum value is NOT_SUPPORTED.
#include <algorithm>
#include <cstring>

#include "cudnn_internal.h"

namespace emu::dnn {

cudnnStatus_t make_problem(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t c,
                           cudnnTensorDescriptor_t y, Problem* p) {
  if (!x || !w || !c || !y || !x->set || !w->set || !c->set || !y->set) return CUDNN_STATUS_BAD_PARAM;
  int n = 0, k = 0, h = 0, wd = 0;
  const cudnnStatus_t st = cudnnGetConvolution2dForwardOutputDim(c, x, w, &n, &k, &h, &wd);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  if (y->dim[0] != n || y->dim[1] != k || y->dim[2] != h || y->dim[3] != wd) return CUDNN_STATUS_BAD_PARAM;
  if (x->dt != w->dt || x->dt != y->dt) return CUDNN_STATUS_BAD_PARAM;
  switch (x->dt) {
    case CUDNN_DATA_FLOAT:
    case CUDNN_DATA_BFLOAT16:  // bf16 in memory, float arithmetic
      if (c->compute != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
      break;
    case CUDNN_DATA_DOUBLE:
      if (c->compute != CUDNN_DATA_DOUBLE) return CUDNN_STATUS_NOT_SUPPORTED;
      break;
    default:
      return CUDNN_STATUS_NOT_SUPPORTED;  // HALF, integers, FP8: not emulated
  }
  kern::Conv2dDims& d = p->d;
  d.N = x->dim[0], d.C = x->dim[1], d.H = x->dim[2], d.W = x->dim[3];
  d.O = w->dim[0], d.kh = w->dim[2], d.kw = w->dim[3];
  d.stride_h = c->u, d.stride_w = c->v, d.pad_h = c->pad_h, d.pad_w = c->pad_w;
  d.dil_h = c->dil_h, d.dil_w = c->dil_w;
  d.groups = c->groups;
  d.Ho = h, d.Wo = wd;
  p->x = layout(*x), p->w = layout(*w), p->y = layout(*y);
  p->dt = x->dt;
  p->math = c->math;
  p->tf32 = x->dt == CUDNN_DATA_FLOAT && c->math != CUDNN_FMA_MATH;
  p->flip = c->mode == CUDNN_CONVOLUTION;
  return CUDNN_STATUS_SUCCESS;
}

int algo_count(Dir dir) {
  switch (dir) {
    case Dir::fwd:
      return CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    case Dir::bwd_data:
      return CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    default:
      return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  }
}

AlgoInfo algo_info(const Problem& p, Dir dir, int algo) {
  const kern::Conv2dDims& d = p.d;
  const size_t elem = p.dt == CUDNN_DATA_DOUBLE ? sizeof(double) : sizeof(float);  // compute type
  const size_t col = static_cast<size_t>(kern::conv2d_col_size(d)) * elem;
  const bool unit = d.stride_h == 1 && d.stride_w == 1 && d.dil_h == 1 && d.dil_w == 1;
  const size_t fft =
      2 * elem * static_cast<size_t>((d.N * d.C + d.O * d.C + d.N * d.O) * (d.H + 2 * d.pad_h) * (d.W + 2 * d.pad_w));
  // The made-up time: a cost proportional to the multiply-adds, scaled per algorithm.
  const float base = static_cast<float>(2.0 * d.N * d.O * kern::conv2d_col_size(d) / 1e9 + 0.01);
  AlgoInfo a;
  auto set = [&](size_t ws, float factor, cudnnDeterminism_t det) {
    a.supported = true, a.workspace = ws, a.time = base * factor, a.determinism = det;
  };
  const cudnnDeterminism_t DET = CUDNN_DETERMINISTIC, NONDET = CUDNN_NON_DETERMINISTIC;
  switch (dir) {
    case Dir::fwd:
      if (algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM) set(0, 1.3f, DET);
      if (algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM)
        set(sizeof(int) * static_cast<size_t>(kern::conv2d_col_rows(d)) + 256, 1.0f, DET);
      if (algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM) set(col, 0.9f, DET);
      if (algo == CUDNN_CONVOLUTION_FWD_ALGO_FFT && unit) set(fft, 1.6f, DET);
      break;
    case Dir::bwd_data:
      if (algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0) set(0, 0.8f, NONDET);
      if (algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1) set(col, 1.0f, DET);
      if (algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT && unit) set(fft, 1.8f, DET);
      break;
    case Dir::bwd_filter:
      if (algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0) set(0, 0.8f, NONDET);
      if (algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3)
        set(elem * static_cast<size_t>(d.O * kern::conv2d_col_rows(d)), 0.9f, NONDET);
      if (algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1) set(col, 1.0f, DET);
      if (algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT && unit) set(fft, 1.8f, DET);
      break;
  }
  return a;
}

cudnnStatus_t check_algo(const Problem& p, Dir dir, int algo, const void* workspace, size_t workspace_bytes) {
  if (algo < 0 || algo >= algo_count(dir)) return CUDNN_STATUS_BAD_PARAM;
  const AlgoInfo a = algo_info(p, dir, algo);
  if (!a.supported) return CUDNN_STATUS_NOT_SUPPORTED;
  if (workspace_bytes > 0 && !workspace) return CUDNN_STATUS_BAD_PARAM;
  if (workspace_bytes < a.workspace) return CUDNN_STATUS_BAD_PARAM;
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace emu::dnn

using namespace emu::dnn;

namespace {

// Fills perf results for every algorithm of `dir`: successes first, fastest first; then the
// ones that did not fit the workspace (Find*Ex only: ALLOC_FAILED), then NOT_SUPPORTED,
// each group in enum order. Failed entries have time -1.
template <typename Perf, typename Algo>
cudnnStatus_t list_algos(const Problem& p, Dir dir, bool limit_ws, const void* ws, size_t ws_bytes, int requested,
                         int* returned, Perf* out) {
  if (requested <= 0 || !returned || !out) return CUDNN_STATUS_BAD_PARAM;
  std::vector<Perf> v;
  for (int algo = 0; algo < algo_count(dir); ++algo) {
    const AlgoInfo a = algo_info(p, dir, algo);
    Perf r;
    std::memset(&r, 0, sizeof r);
    r.algo = static_cast<Algo>(algo);
    r.memory = a.workspace;
    r.determinism = a.determinism;
    r.mathType = p.math;
    r.time = -1.0f;
    if (!a.supported)
      r.status = CUDNN_STATUS_NOT_SUPPORTED;
    else if (limit_ws && (a.workspace > ws_bytes || (a.workspace > 0 && !ws)))
      r.status = CUDNN_STATUS_ALLOC_FAILED;
    else
      r.status = CUDNN_STATUS_SUCCESS, r.time = a.time;
    v.push_back(r);
  }
  auto rank = [](const Perf& r) {
    return r.status == CUDNN_STATUS_SUCCESS ? 0 : r.status == CUDNN_STATUS_ALLOC_FAILED ? 1 : 2;
  };
  std::stable_sort(v.begin(), v.end(), [&](const Perf& a, const Perf& b) {
    if (rank(a) != rank(b)) return rank(a) < rank(b);
    return rank(a) == 0 && a.time < b.time;
  });
  const int n = std::min<int>(requested, static_cast<int>(v.size()));
  std::copy(v.begin(), v.begin() + n, out);
  *returned = n;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t workspace_size(const Problem& p, Dir dir, int algo, size_t* size) {
  if (!size || algo < 0 || algo >= algo_count(dir)) return CUDNN_STATUS_BAD_PARAM;
  const AlgoInfo a = algo_info(p, dir, algo);
  if (!a.supported) return CUDNN_STATUS_NOT_SUPPORTED;
  *size = a.workspace;
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace

// ---- forward -------------------------------------------------------------------------------
cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  if (!handle || !count) return CUDNN_STATUS_BAD_PARAM;
  *count = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
                                                     const cudnnFilterDescriptor_t filterDesc,
                                                     const cudnnConvolutionDescriptor_t convDesc,
                                                     const cudnnTensorDescriptor_t destDesc,
                                                     const int requestedAlgoCount, int* returnedAlgoCount,
                                                     cudnnConvolutionFwdAlgoPerf_t* perfResults) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(srcDesc, filterDesc, convDesc, destDesc);
  return list_algos<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      p, Dir::fwd, false, nullptr, 0, requestedAlgoCount, returnedAlgoCount, perfResults);
}
cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                     const void* x, const cudnnFilterDescriptor_t wDesc, const void* w,
                                                     const cudnnConvolutionDescriptor_t convDesc,
                                                     const cudnnTensorDescriptor_t yDesc, void* y,
                                                     const int requestedAlgoCount, int* returnedAlgoCount,
                                                     cudnnConvolutionFwdAlgoPerf_t* perfResults, void* workSpace,
                                                     size_t workSpaceSizeInBytes) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(xDesc, wDesc, convDesc, yDesc);
  if (!x || !w || !y) return CUDNN_STATUS_BAD_PARAM;
  const cudnnStatus_t st = list_algos<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      p, Dir::fwd, true, workSpace, workSpaceSizeInBytes, requestedAlgoCount, returnedAlgoCount, perfResults);
  if (st == CUDNN_STATUS_SUCCESS) emu::enqueue(handle->stream, [l = p.y, y] { poison(l, y); });  // the trial runs leave y undefined
  return st;
}
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                      const cudnnFilterDescriptor_t wDesc,
                                                      const cudnnConvolutionDescriptor_t convDesc,
                                                      const cudnnTensorDescriptor_t yDesc,
                                                      cudnnConvolutionFwdAlgo_t algo, size_t* sizeInBytes) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(xDesc, wDesc, convDesc, yDesc);
  return workspace_size(p, Dir::fwd, algo, sizeInBytes);
}

// ---- backward data -------------------------------------------------------------------------
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  if (!handle || !count) return CUDNN_STATUS_BAD_PARAM;
  *count = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc,
                                                          const void* w, const cudnnTensorDescriptor_t dyDesc,
                                                          const void* dy, const cudnnConvolutionDescriptor_t convDesc,
                                                          const cudnnTensorDescriptor_t dxDesc, void* dx,
                                                          const int requestedAlgoCount, int* returnedAlgoCount,
                                                          cudnnConvolutionBwdDataAlgoPerf_t* perfResults,
                                                          void* workSpace, size_t workSpaceSizeInBytes) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(dxDesc, wDesc, convDesc, dyDesc);
  if (!w || !dy || !dx) return CUDNN_STATUS_BAD_PARAM;
  const cudnnStatus_t st = list_algos<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      p, Dir::bwd_data, true, workSpace, workSpaceSizeInBytes, requestedAlgoCount, returnedAlgoCount, perfResults);
  if (st == CUDNN_STATUS_SUCCESS) emu::enqueue(handle->stream, [l = p.x, dx] { poison(l, dx); });
  return st;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t filterDesc, const cudnnTensorDescriptor_t diffDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t gradDesc, const int requestedAlgoCount,
    int* returnedAlgoCount, cudnnConvolutionBwdDataAlgoPerf_t* perfResults) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(gradDesc, filterDesc, convDesc, diffDesc);
  return list_algos<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      p, Dir::bwd_data, false, nullptr, 0, requestedAlgoCount, returnedAlgoCount, perfResults);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc,
                                                           const cudnnTensorDescriptor_t dyDesc,
                                                           const cudnnConvolutionDescriptor_t convDesc,
                                                           const cudnnTensorDescriptor_t dxDesc,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t* sizeInBytes) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(dxDesc, wDesc, convDesc, dyDesc);
  return workspace_size(p, Dir::bwd_data, algo, sizeInBytes);
}

// ---- backward filter -----------------------------------------------------------------------
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  if (!handle || !count) return CUDNN_STATUS_BAD_PARAM;
  *count = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                            const void* x, const cudnnTensorDescriptor_t dyDesc,
                                                            const void* y, const cudnnConvolutionDescriptor_t convDesc,
                                                            const cudnnFilterDescriptor_t dwDesc, void* dw,
                                                            const int requestedAlgoCount, int* returnedAlgoCount,
                                                            cudnnConvolutionBwdFilterAlgoPerf_t* perfResults,
                                                            void* workSpace, size_t workSpaceSizeInBytes) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(xDesc, dwDesc, convDesc, dyDesc);
  if (!x || !y || !dw) return CUDNN_STATUS_BAD_PARAM;
  const cudnnStatus_t st = list_algos<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      p, Dir::bwd_filter, true, workSpace, workSpaceSizeInBytes, requestedAlgoCount, returnedAlgoCount, perfResults);
  if (st == CUDNN_STATUS_SUCCESS) emu::enqueue(handle->stream, [l = p.w, dw] { poison(l, dw); });
  return st;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
                                                            const cudnnTensorDescriptor_t diffDesc,
                                                            const cudnnConvolutionDescriptor_t convDesc,
                                                            const cudnnFilterDescriptor_t gradDesc,
                                                            const int requestedAlgoCount, int* returnedAlgoCount,
                                                            cudnnConvolutionBwdFilterAlgoPerf_t* perfResults) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(srcDesc, gradDesc, convDesc, diffDesc);
  return list_algos<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      p, Dir::bwd_filter, false, nullptr, 0, requestedAlgoCount, returnedAlgoCount, perfResults);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                             const cudnnTensorDescriptor_t dyDesc,
                                                             const cudnnConvolutionDescriptor_t convDesc,
                                                             const cudnnFilterDescriptor_t gradDesc,
                                                             cudnnConvolutionBwdFilterAlgo_t algo,
                                                             size_t* sizeInBytes) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  EMU_PROBLEM(xDesc, gradDesc, convDesc, dyDesc);
  return workspace_size(p, Dir::bwd_filter, algo, sizeInBytes);
}
