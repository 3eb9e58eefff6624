// Helpers for op front-ends (engine/src/ops/*.cpp). Not part of the user-facing API.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/tensor.h"
#include "kernels/common.h"
#include "kernels/conv2d.h"

namespace eng::detail {

inline kern::ElemType elem_type(DType dt) { return static_cast<kern::ElemType>(dt); }

// Wraps a negative dim and checks the range; `op` names the caller in the message.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// Checks that every defined tensor is on the same device and has the same dtype as the
// first; the message names `op`.
void check_same_device_dtype(const char* op, const std::vector<Tensor>& ts);
void check_dim(const char* op, const Tensor& t, int64_t ndim, const char* what);
void check_floating(const char* op, const Tensor& t);

// Fresh contiguous output like `ref` (dtype, device) with `shape`.
inline Tensor new_empty(const Shape& shape, const Tensor& ref) {
  return empty(shape, TensorOptions(ref.dtype()).device(ref.device()));
}

// Test hook: when set, conv2d and conv2d_relu call it with each convolution's dims and dtype
// before running it (the cuDNN tests collect every conv shape of a model this way). Not
// thread-safe; an empty function removes it.
using Conv2dObserver = std::function<void(const kern::Conv2dDims&, DType)>;
void set_conv2d_observer(Conv2dObserver f);

}  // namespace eng::detail
