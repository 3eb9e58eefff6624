// cuda-emu cuDNN: handle, error strings, tensor / filter / convolution / activation
// descriptors, cudnnAddTensor and cudnnConvolutionBackwardBias, plus the tensor read/write
// helpers the convolutions share. Descriptor setters validate as cuDNN does (non-positive
// sizes, strides, dilations -> BAD_PARAM); a descriptor used before it is set -> BAD_PARAM.
#include <emu_tf32.h>

#include <cmath>
#include <limits>

#include "cudnn_internal.h"

namespace emu::dnn {

Layout layout(const cudnnTensorStruct& t) {
  Layout l;
  l.dt = t.dt;
  for (int i = 0; i < 4; ++i) {
    l.dim[i] = t.dim[i];
    l.stride[i] = t.stride[i];
  }
  return l;
}

Layout layout(const cudnnFilterStruct& f) {
  Layout l;
  l.dt = f.dt;
  const int64_t k = f.dim[0], c = f.dim[1], h = f.dim[2], w = f.dim[3];
  (void)k;
  for (int i = 0; i < 4; ++i) l.dim[i] = f.dim[i];
  if (f.format == CUDNN_TENSOR_NHWC) {  // [k, h, w, c]
    l.stride[0] = h * w * c, l.stride[1] = 1, l.stride[2] = w * c, l.stride[3] = c;
  } else {
    l.stride[0] = c * h * w, l.stride[1] = h * w, l.stride[2] = w, l.stride[3] = 1;
  }
  return l;
}

bool computable(cudnnDataType_t dt) {
  return dt == CUDNN_DATA_FLOAT || dt == CUDNN_DATA_DOUBLE || dt == CUDNN_DATA_BFLOAT16;
}

double scalar(cudnnDataType_t data_type, const void* p) {
  return data_type == CUDNN_DATA_DOUBLE ? *static_cast<const double*>(p) : *static_cast<const float*>(p);
}

namespace {
// Visits every element in NCHW order with its offset (in elements) in the strided buffer.
template <typename F>
void for_each_offset(const Layout& l, F&& f) {
  int64_t i = 0;
  for (int64_t n = 0; n < l.dim[0]; ++n)
    for (int64_t c = 0; c < l.dim[1]; ++c)
      for (int64_t h = 0; h < l.dim[2]; ++h)
        for (int64_t w = 0; w < l.dim[3]; ++w)
          f(i++, n * l.stride[0] + c * l.stride[1] + h * l.stride[2] + w * l.stride[3]);
}
}  // namespace

template <typename T>
std::vector<T> gather(const Layout& l, const void* p) {
  std::vector<T> r(static_cast<size_t>(l.count()));
  switch (l.dt) {
    case CUDNN_DATA_FLOAT:
      for_each_offset(l, [&](int64_t i, int64_t o) { r[i] = static_cast<T>(static_cast<const float*>(p)[o]); });
      break;
    case CUDNN_DATA_DOUBLE:
      for_each_offset(l, [&](int64_t i, int64_t o) { r[i] = static_cast<T>(static_cast<const double*>(p)[o]); });
      break;
    case CUDNN_DATA_BFLOAT16:
      for_each_offset(
          l, [&](int64_t i, int64_t o) { r[i] = static_cast<T>(bf16_to_float(static_cast<const uint16_t*>(p)[o])); });
      break;
    default:
      break;  // callers check computable() first
  }
  return r;
}

template <typename T>
void blend(const Layout& l, void* p, const std::vector<T>& r, T alpha, T beta) {
  const bool read = beta != T(0);
  switch (l.dt) {
    case CUDNN_DATA_FLOAT:
      for_each_offset(l, [&](int64_t i, int64_t o) {
        float* q = static_cast<float*>(p) + o;
        *q = static_cast<float>(read ? alpha * r[i] + beta * static_cast<T>(*q) : alpha * r[i]);
      });
      break;
    case CUDNN_DATA_DOUBLE:
      for_each_offset(l, [&](int64_t i, int64_t o) {
        double* q = static_cast<double*>(p) + o;
        *q = static_cast<double>(read ? alpha * r[i] + beta * static_cast<T>(*q) : alpha * r[i]);
      });
      break;
    case CUDNN_DATA_BFLOAT16:
      for_each_offset(l, [&](int64_t i, int64_t o) {
        uint16_t* q = static_cast<uint16_t*>(p) + o;
        const T v = read ? alpha * r[i] + beta * static_cast<T>(bf16_to_float(*q)) : alpha * r[i];
        *q = float_to_bf16(static_cast<float>(v));
      });
      break;
    default:
      break;
  }
}

void poison(const Layout& l, void* p) {
  switch (l.dt) {
    case CUDNN_DATA_FLOAT:
      for_each_offset(l,
                      [&](int64_t, int64_t o) { static_cast<float*>(p)[o] = std::numeric_limits<float>::quiet_NaN(); });
      break;
    case CUDNN_DATA_DOUBLE:
      for_each_offset(
          l, [&](int64_t, int64_t o) { static_cast<double*>(p)[o] = std::numeric_limits<double>::quiet_NaN(); });
      break;
    case CUDNN_DATA_BFLOAT16:
      for_each_offset(l, [&](int64_t, int64_t o) { static_cast<uint16_t*>(p)[o] = 0x7fc0; });
      break;
    default:
      break;
  }
}

template std::vector<float> gather<float>(const Layout&, const void*);
template std::vector<double> gather<double>(const Layout&, const void*);
template void blend<float>(const Layout&, void*, const std::vector<float>&, float, float);
template void blend<double>(const Layout&, void*, const std::vector<double>&, double, double);

}  // namespace emu::dnn

using namespace emu::dnn;

// ---- handle --------------------------------------------------------------------------------
size_t cudnnGetVersion(void) { return CUDNN_VERSION; }

const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_SUCCESS:
      return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED:
      return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM:
      return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER:
      return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_NOT_SUPPORTED:
      return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_INTERNAL_ERROR:
      return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED:
      return "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED";
    case CUDNN_STATUS_EXECUTION_FAILED:
      return "CUDNN_STATUS_EXECUTION_FAILED";
    case CUDNN_STATUS_INVALID_VALUE:
      return "CUDNN_STATUS_INVALID_VALUE";
    default:
      break;
  }
  switch (status / 1000 * 1000) {  // the category, as CUDNN_STATUS_CATEGORY computes it
    case CUDNN_STATUS_BAD_PARAM:
      return "CUDNN_STATUS_BAD_PARAM (subcode)";
    case CUDNN_STATUS_NOT_SUPPORTED:
      return "CUDNN_STATUS_NOT_SUPPORTED (subcode)";
    case CUDNN_STATUS_INTERNAL_ERROR:
      return "CUDNN_STATUS_INTERNAL_ERROR (subcode)";
    case CUDNN_STATUS_EXECUTION_FAILED:
      return "CUDNN_STATUS_EXECUTION_FAILED (subcode)";
    default:
      return "CUDNN_STATUS_UNKNOWN";
  }
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  *handle = new cudnnContext;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  handle->stream = streamId;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t* streamId) {
  if (!handle || !streamId) return CUDNN_STATUS_BAD_PARAM;
  *streamId = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

// ---- tensor descriptors --------------------------------------------------------------------
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* tensorDesc) {
  if (!tensorDesc) return CUDNN_STATUS_BAD_PARAM;
  *tensorDesc = new cudnnTensorStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t tensorDesc) {
  delete tensorDesc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t t, cudnnDataType_t dataType, int n, int c, int h,
                                           int w, int nStride, int cStride, int hStride, int wStride) {
  if (!t || n <= 0 || c <= 0 || h <= 0 || w <= 0 || nStride <= 0 || cStride <= 0 || hStride <= 0 || wStride <= 0)
    return CUDNN_STATUS_BAD_PARAM;
  if (dataType < CUDNN_DATA_FLOAT || dataType > CUDNN_DATA_COMPLEX_FP64) return CUDNN_STATUS_BAD_PARAM;
  t->set = true;
  t->dt = dataType;
  const int d[4] = {n, c, h, w}, s[4] = {nStride, cStride, hStride, wStride};
  for (int i = 0; i < 4; ++i) t->dim[i] = d[i], t->stride[i] = s[i];
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t t, cudnnTensorFormat_t format,
                                         cudnnDataType_t dataType, int n, int c, int h, int w) {
  if (!t) return CUDNN_STATUS_BAD_PARAM;
  if (format == CUDNN_TENSOR_NCHW) return cudnnSetTensor4dDescriptorEx(t, dataType, n, c, h, w, c * h * w, h * w, w, 1);
  if (format == CUDNN_TENSOR_NHWC) return cudnnSetTensor4dDescriptorEx(t, dataType, n, c, h, w, h * w * c, 1, w * c, c);
  return format == CUDNN_TENSOR_NCHW_VECT_C ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_BAD_PARAM;
}

cudnnStatus_t cudnnGetTensor4dDescriptor(const cudnnTensorDescriptor_t t, cudnnDataType_t* dataType, int* n, int* c,
                                         int* h, int* w, int* nStride, int* cStride, int* hStride, int* wStride) {
  if (!t || !t->set || !dataType || !n || !c || !h || !w || !nStride || !cStride || !hStride || !wStride)
    return CUDNN_STATUS_BAD_PARAM;
  *dataType = t->dt;
  *n = t->dim[0], *c = t->dim[1], *h = t->dim[2], *w = t->dim[3];
  *nStride = static_cast<int>(t->stride[0]), *cStride = static_cast<int>(t->stride[1]);
  *hStride = static_cast<int>(t->stride[2]), *wStride = static_cast<int>(t->stride[3]);
  return CUDNN_STATUS_SUCCESS;
}

// ---- filter descriptors --------------------------------------------------------------------
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* filterDesc) {
  if (!filterDesc) return CUDNN_STATUS_BAD_PARAM;
  *filterDesc = new cudnnFilterStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t filterDesc) {
  delete filterDesc;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t f, cudnnDataType_t dataType,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
  if (!f || k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (dataType < CUDNN_DATA_FLOAT || dataType > CUDNN_DATA_COMPLEX_FP64) return CUDNN_STATUS_BAD_PARAM;
  if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC)
    return format == CUDNN_TENSOR_NCHW_VECT_C ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_BAD_PARAM;
  f->set = true;
  f->dt = dataType;
  f->format = format;
  f->dim[0] = k, f->dim[1] = c, f->dim[2] = h, f->dim[3] = w;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetFilter4dDescriptor(const cudnnFilterDescriptor_t f, cudnnDataType_t* dataType,
                                         cudnnTensorFormat_t* format, int* k, int* c, int* h, int* w) {
  if (!f || !f->set || !dataType || !format || !k || !c || !h || !w) return CUDNN_STATUS_BAD_PARAM;
  *dataType = f->dt;
  *format = f->format;
  *k = f->dim[0], *c = f->dim[1], *h = f->dim[2], *w = f->dim[3];
  return CUDNN_STATUS_SUCCESS;
}

// ---- activation descriptors ----------------------------------------------------------------
cudnnStatus_t cudnnCreateActivationDescriptor(cudnnActivationDescriptor_t* activationDesc) {
  if (!activationDesc) return CUDNN_STATUS_BAD_PARAM;
  *activationDesc = new cudnnActivationStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyActivationDescriptor(cudnnActivationDescriptor_t activationDesc) {
  delete activationDesc;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetActivationDescriptor(cudnnActivationDescriptor_t a, cudnnActivationMode_t mode,
                                           cudnnNanPropagation_t reluNanOpt, double coef) {
  if (!a) return CUDNN_STATUS_BAD_PARAM;
  if (reluNanOpt != CUDNN_NOT_PROPAGATE_NAN && reluNanOpt != CUDNN_PROPAGATE_NAN) return CUDNN_STATUS_BAD_PARAM;
  if (mode < CUDNN_ACTIVATION_SIGMOID || mode > CUDNN_ACTIVATION_SWISH) return CUDNN_STATUS_BAD_PARAM;
  // The stand-in computes only the two modes a fused convolution here needs.
  if (mode != CUDNN_ACTIVATION_RELU && mode != CUDNN_ACTIVATION_IDENTITY) return CUDNN_STATUS_NOT_SUPPORTED;
  a->set = true;
  a->mode = mode;
  a->nan = reluNanOpt;
  a->coef = coef;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetActivationDescriptor(const cudnnActivationDescriptor_t a, cudnnActivationMode_t* mode,
                                           cudnnNanPropagation_t* reluNanOpt, double* coef) {
  if (!a || !a->set || !mode || !reluNanOpt || !coef) return CUDNN_STATUS_BAD_PARAM;
  *mode = a->mode, *reluNanOpt = a->nan, *coef = a->coef;
  return CUDNN_STATUS_SUCCESS;
}

// ---- convolution descriptors ---------------------------------------------------------------
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* convDesc) {
  if (!convDesc) return CUDNN_STATUS_BAD_PARAM;
  *convDesc = new cudnnConvolutionStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t convDesc) {
  delete convDesc;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t cd, cudnnMathType_t mathType) {
  if (!cd || mathType < CUDNN_DEFAULT_MATH || mathType > CUDNN_FMA_MATH) return CUDNN_STATUS_BAD_PARAM;
  cd->math = mathType;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionMathType(cudnnConvolutionDescriptor_t cd, cudnnMathType_t* mathType) {
  if (!cd || !mathType) return CUDNN_STATUS_BAD_PARAM;
  *mathType = cd->math;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t cd, int groupCount) {
  if (!cd || groupCount < 1) return CUDNN_STATUS_BAD_PARAM;
  cd->groups = groupCount;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionGroupCount(cudnnConvolutionDescriptor_t cd, int* groupCount) {
  if (!cd || !groupCount) return CUDNN_STATUS_BAD_PARAM;
  *groupCount = cd->groups;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t cd, int pad_h, int pad_w, int u, int v,
                                              int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType) {
  if (!cd || pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0)
    return CUDNN_STATUS_BAD_PARAM;
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) return CUDNN_STATUS_BAD_PARAM;
  if (computeType < CUDNN_DATA_FLOAT || computeType > CUDNN_DATA_COMPLEX_FP64) return CUDNN_STATUS_BAD_PARAM;
  cd->set = true;
  cd->pad_h = pad_h, cd->pad_w = pad_w, cd->u = u, cd->v = v, cd->dil_h = dilation_h, cd->dil_w = dilation_w;
  cd->mode = mode;
  cd->compute = computeType;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dDescriptor(const cudnnConvolutionDescriptor_t cd, int* pad_h, int* pad_w, int* u,
                                              int* v, int* dilation_h, int* dilation_w, cudnnConvolutionMode_t* mode,
                                              cudnnDataType_t* computeType) {
  if (!cd || !cd->set || !pad_h || !pad_w || !u || !v || !dilation_h || !dilation_w || !mode || !computeType)
    return CUDNN_STATUS_BAD_PARAM;
  *pad_h = cd->pad_h, *pad_w = cd->pad_w, *u = cd->u, *v = cd->v, *dilation_h = cd->dil_h, *dilation_w = cd->dil_w;
  *mode = cd->mode, *computeType = cd->compute;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t cd,
                                                    const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t f,
                                                    int* n, int* c, int* h, int* w) {
  if (!cd || !x || !f || !cd->set || !x->set || !f->set || !n || !c || !h || !w) return CUDNN_STATUS_BAD_PARAM;
  // Grouped: the filter holds C / groups input channels, and groups divides the output channels.
  if (x->dim[1] != f->dim[1] * cd->groups || f->dim[0] % cd->groups != 0) return CUDNN_STATUS_BAD_PARAM;
  const int64_t ho = kern::conv2d_output_size(x->dim[2], f->dim[2], cd->u, cd->pad_h, cd->dil_h);
  const int64_t wo = kern::conv2d_output_size(x->dim[3], f->dim[3], cd->v, cd->pad_w, cd->dil_w);
  // A dilated kernel larger than the padded input: (in + 2p - extent) < 0 (C++ division
  // rounds toward zero, so test the numerator, not the quotient).
  if (x->dim[2] + 2 * cd->pad_h - cd->dil_h * (f->dim[2] - 1) - 1 < 0 ||
      x->dim[3] + 2 * cd->pad_w - cd->dil_w * (f->dim[3] - 1) - 1 < 0 || ho <= 0 || wo <= 0)
    return CUDNN_STATUS_BAD_PARAM;
  *n = x->dim[0], *c = f->dim[0], *h = static_cast<int>(ho), *w = static_cast<int>(wo);
  return CUDNN_STATUS_SUCCESS;
}

// ---- tensor ops ----------------------------------------------------------------------------
namespace {
template <typename T>
void add_tensor(const Layout& a, const void* A, double alpha, const Layout& c, void* C, double beta) {
  const std::vector<T> av = gather<T>(a, A);
  std::vector<T> r(static_cast<size_t>(c.count()));
  int64_t i = 0;  // broadcast: a dimension of size 1 in A repeats along C's
  for (int64_t n = 0; n < c.dim[0]; ++n)
    for (int64_t ch = 0; ch < c.dim[1]; ++ch)
      for (int64_t h = 0; h < c.dim[2]; ++h)
        for (int64_t w = 0; w < c.dim[3]; ++w) {
          const int64_t an = a.dim[0] == 1 ? 0 : n, ac = a.dim[1] == 1 ? 0 : ch;
          const int64_t ah = a.dim[2] == 1 ? 0 : h, aw = a.dim[3] == 1 ? 0 : w;
          r[i++] = av[((an * a.dim[1] + ac) * a.dim[2] + ah) * a.dim[3] + aw];
        }
  blend<T>(c, C, r, static_cast<T>(alpha), static_cast<T>(beta));
}

template <typename T>
void backward_bias(const Layout& dy, const void* DY, double alpha, const Layout& db, void* DB, double beta) {
  const std::vector<T> g = gather<T>(dy, DY);
  const int64_t N = dy.dim[0], K = dy.dim[1], HW = dy.dim[2] * dy.dim[3];
  std::vector<T> s(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    double acc = 0;  // fixed order: deterministic, as cuDNN's bias gradient is
    for (int64_t n = 0; n < N; ++n)
      for (int64_t p = 0; p < HW; ++p) acc += g[(n * K + k) * HW + p];
    s[k] = static_cast<T>(acc);
  }
  blend<T>(db, DB, s, static_cast<T>(alpha), static_cast<T>(beta));
}
}  // namespace

cudnnStatus_t cudnnAddTensor(cudnnHandle_t handle, const void* alpha, const cudnnTensorDescriptor_t aDesc,
                             const void* A, const void* beta, const cudnnTensorDescriptor_t cDesc, void* C) {
  if (!handle || !alpha || !beta || !aDesc || !cDesc || !aDesc->set || !cDesc->set || !A || !C)
    return CUDNN_STATUS_BAD_PARAM;
  if (aDesc->dt != cDesc->dt) return CUDNN_STATUS_BAD_PARAM;
  if (!computable(cDesc->dt)) return CUDNN_STATUS_NOT_SUPPORTED;
  for (int i = 0; i < 4; ++i)
    if (aDesc->dim[i] != 1 && aDesc->dim[i] != cDesc->dim[i]) return CUDNN_STATUS_BAD_PARAM;
  const double a = scalar(cDesc->dt, alpha), b = scalar(cDesc->dt, beta);
  const Layout al = layout(*aDesc), cl = layout(*cDesc);
  emu::enqueue(handle->stream, [=] {
    if (cl.dt == CUDNN_DATA_DOUBLE)
      add_tensor<double>(al, A, a, cl, C, b);
    else
      add_tensor<float>(al, A, a, cl, C, b);
  });
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t handle, const void* alpha,
                                           const cudnnTensorDescriptor_t dyDesc, const void* dy, const void* beta,
                                           const cudnnTensorDescriptor_t dbDesc, void* db) {
  if (!handle || !alpha || !beta || !dyDesc || !dbDesc || !dyDesc->set || !dbDesc->set || !dy || !db)
    return CUDNN_STATUS_BAD_PARAM;
  if (dyDesc->dt != dbDesc->dt) return CUDNN_STATUS_BAD_PARAM;
  if (!computable(dyDesc->dt)) return CUDNN_STATUS_NOT_SUPPORTED;
  if (dbDesc->dim[0] != 1 || dbDesc->dim[1] != dyDesc->dim[1] || dbDesc->dim[2] != 1 || dbDesc->dim[3] != 1)
    return CUDNN_STATUS_BAD_PARAM;
  const double a = scalar(dyDesc->dt, alpha), b = scalar(dyDesc->dt, beta);
  const Layout yl = layout(*dyDesc), bl = layout(*dbDesc);
  emu::enqueue(handle->stream, [=] {
    if (yl.dt == CUDNN_DATA_DOUBLE)
      backward_bias<double>(yl, dy, a, bl, db, b);
    else
      backward_bias<float>(yl, dy, a, bl, db, b);
  });
  return CUDNN_STATUS_SUCCESS;
}
