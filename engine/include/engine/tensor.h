// Tensor: a cheap handle (shared_ptr) to a TensorImpl {Storage, offset, sizes, strides,
// dtype, requires_grad, grad, grad_fn}. Copying a Tensor copies the handle, not the data.
//
// Views (view/reshape of contiguous data, permute, transpose, narrow/slice, squeeze,
// unsqueeze, expand) share the Storage and only change offset/sizes/strides. Kernels want
// contiguous input; op front-ends call contiguous(), which copies only when it must.
// View ops are differentiable: each attaches a Node that maps the gradient back.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/storage.h"

namespace eng {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& sizes);

class Node;
struct TensorImpl;
struct LeafHooks;  // engine/autograd.h

struct TensorOptions {
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu();
  bool requires_grad_ = false;
  TensorOptions() = default;
  TensorOptions(DType d) : dtype_(d) {}          // NOLINT: implicit on purpose
  TensorOptions(Device d) : device_(d) {}        // NOLINT
  TensorOptions dtype(DType d) const { auto o = *this; o.dtype_ = d; return o; }
  TensorOptions device(Device d) const { auto o = *this; o.device_ = d; return o; }
  TensorOptions requires_grad(bool r = true) const { auto o = *this; o.requires_grad_ = r; return o; }
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- metadata ----
  const Shape& sizes() const;
  const Shape& shape() const { return sizes(); }
  const Shape& strides() const;
  int64_t size(int64_t d) const;     // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t dim() const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_cuda() const { return device().is_cuda(); }
  int64_t storage_offset() const;
  const std::shared_ptr<Storage>& storage() const;
  bool is_contiguous() const;

  // Pointer to element [0,...,0]. data<T>() checks that T matches dtype().
  void* raw_data() const;
  template <typename T> T* data() const;

  // ---- views (share storage, differentiable) ----
  Tensor view(Shape shape) const;      // needs compatible (contiguous) layout; one -1 allowed
  Tensor reshape(Shape shape) const;   // view when possible, else a contiguous copy
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor permute(Shape dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // narrow + squeeze
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor expand(Shape shape) const;    // -1 keeps a size; new leading dims allowed

  // ---- copies ----
  Tensor contiguous() const;           // self when already contiguous
  Tensor clone() const;                // always a fresh contiguous copy (differentiable)
  Tensor to(Device device) const;      // differentiable
  Tensor to(DType dtype) const;        // differentiable between float types
  Tensor cpu() const { return to(Device::cpu()); }
  Tensor cuda() const { return to(Device::cuda()); }
  Tensor detach() const;               // shares storage, no grad_fn, requires_grad false

  // Host copies, for tests and I/O.
  template <typename T> std::vector<T> to_vector() const;   // converts from any dtype
  double item() const;                                      // one-element tensor
  template <typename T> T item() const { return static_cast<T>(item()); }

  // ---- in-place (refused on tensors that need grad while grad mode is on) ----
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);    // broadcasts src to this shape, casts dtype, any device

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& set_requires_grad(bool r);   // leaves only
  bool is_leaf() const;
  Tensor grad() const;                 // undefined until backward reaches it
  void set_grad(const Tensor& g);
  void zero_grad();                    // drops the grad (next backward writes it afresh)
  const std::shared_ptr<Node>& grad_fn() const;
  // Seeds with 1 for one-element tensors (or `gradient`), runs the tape backwards and
  // accumulates into leaves' .grad. Saved tensors are freed unless retain_graph.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

  std::string to_string(int64_t max_per_dim = 6) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape sizes;
  Shape strides;       // in elements
  DType dtype = DType::f32;
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;  // null for leaves
  std::shared_ptr<LeafHooks> hooks;  // post-accumulate-grad hooks (engine/autograd.h); null when none
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- factories ----
Tensor empty(const Shape& shape, TensorOptions opts = {});
// A CPU tensor in pinned host memory (engine/allocator.h): its copy to a CUDA device with
// to(Device::cuda()) is asynchronous on the compute stream. Plain CPU memory without CUDA.
Tensor empty_pinned(const Shape& shape, DType dtype);
Tensor zeros(const Shape& shape, TensorOptions opts = {});
Tensor ones(const Shape& shape, TensorOptions opts = {});
Tensor full(const Shape& shape, double value, TensorOptions opts = {});
Tensor arange(int64_t n, TensorOptions opts = {});
Tensor arange(double start, double end, double step, TensorOptions opts = {});
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);

// Copies host data (any arithmetic T) into a new tensor of dtype opts.dtype_ (or T's dtype
// when opts says nothing of dtype: use the overload without opts).
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions opts);
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
  return from_vector(values, shape, TensorOptions(dtype_of<T>::value));
}
Tensor scalar_tensor(double value, TensorOptions opts = {});

// Seeded random numbers (generated on the host, then moved to the device).
class Generator;
Generator& default_generator();
void manual_seed(uint64_t seed);
Tensor rand(const Shape& shape, Generator& gen, TensorOptions opts = {});    // U[0, 1)
Tensor randn(const Shape& shape, Generator& gen, TensorOptions opts = {});   // N(0, 1)
Tensor rand(const Shape& shape, TensorOptions opts = {});
Tensor randn(const Shape& shape, TensorOptions opts = {});

}  // namespace eng
