// Tensor metadata, views, copies and host access.
#include "engine/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"
#include "kernels/copy.h"

namespace eng {

using detail::elem_type;
using detail::wrap_dim;

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t v : s) n *= v;
  return n;
}

Shape contiguous_strides(const Shape& sizes) {
  Shape st(sizes.size());
  int64_t acc = 1;
  for (int64_t i = static_cast<int64_t>(sizes.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(sizes[i], 1);
  }
  return st;
}

namespace detail {

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t n = std::max<int64_t>(ndim, 1);
  int64_t d = dim < 0 ? dim + n : dim;
  ENGINE_CHECK(d >= 0 && d < n, op, ": dim ", dim, " out of range for a ", ndim, "-d tensor");
  return d;
}

void check_same_device_dtype(const char* op, const std::vector<Tensor>& ts) {
  const Tensor* first = nullptr;
  for (const Tensor& t : ts) {
    if (!t.defined()) continue;
    if (!first) {
      first = &t;
      continue;
    }
    ENGINE_CHECK(t.device() == first->device(), op, ": tensors on different devices (", first->device().str(),
                 " and ", t.device().str(), ")");
    ENGINE_CHECK(t.dtype() == first->dtype(), op, ": dtype mismatch (", dtype_name(first->dtype()), " and ",
                 dtype_name(t.dtype()), ")");
  }
}

void check_dim(const char* op, const Tensor& t, int64_t ndim, const char* what) {
  ENGINE_CHECK(t.defined(), op, ": ", what, " is undefined");
  ENGINE_CHECK(t.dim() == ndim, op, ": ", what, " must be ", ndim, "-d, got shape ", shape_str(t.sizes()));
}

void check_floating(const char* op, const Tensor& t) {
  const DType dt = t.dtype();
  ENGINE_CHECK(dt == DType::f32 || dt == DType::f64, op, ": expected a f32 or f64 tensor, got ", dtype_name(dt),
               " of shape ", shape_str(t.sizes()), " (no ", dtype_name(dt), " kernel)");
}

void check_floating_or_bf16(const char* op, const Tensor& t) {
  const DType dt = t.dtype();
  ENGINE_CHECK(is_floating(dt), op, ": expected a f32, f64 or bf16 tensor, got ", dtype_name(dt),
               " of shape ", shape_str(t.sizes()), " (no ", dtype_name(dt), " kernel)");
}

}  // namespace detail

namespace {

const TensorImpl& checked(const std::shared_ptr<TensorImpl>& p) {
  ENGINE_CHECK(p != nullptr, "operation on an undefined tensor");
  return *p;
}

// A new impl sharing `base`'s storage with the given geometry (no autograd).
Tensor make_view(const Tensor& base, Shape sizes, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->offset = offset;
  impl->sizes = std::move(sizes);
  impl->strides = std::move(strides);
  impl->dtype = base.dtype();
  return Tensor(impl);
}

kern::CopyDims copy_dims(const Shape& sizes, const Shape& src_strides, const Shape& dst_strides) {
  ENGINE_CHECK(static_cast<int>(sizes.size()) <= kern::kMaxDims, "tensors of more than ", kern::kMaxDims,
               " dims are not supported (shape ", shape_str(sizes), ")");
  kern::CopyDims d;
  d.ndim = static_cast<int>(sizes.size());
  for (int i = 0; i < d.ndim; ++i) {
    d.sizes[i] = sizes[i];
    d.src_strides[i] = src_strides[i];
    d.dst_strides[i] = dst_strides[i];
  }
  return d;
}

// Strided elementwise copy between two tensors of the same shape (any dtypes); handles
// every device pair by staging through a contiguous buffer when devices differ.
void copy_strided(const Tensor& src, const Tensor& dst) {
  if (src.numel() == 0) return;
  if (src.device() == dst.device()) {
    auto d = copy_dims(dst.sizes(), src.strides(), dst.strides());
    if (src.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::strided_copy(d, src.raw_data(), elem_type(src.dtype()), dst.raw_data(),
                                              elem_type(dst.dtype()), cuda::stream()));
    } else {
      kern::cpu::strided_copy(d, src.raw_data(), elem_type(src.dtype()), dst.raw_data(), elem_type(dst.dtype()));
    }
    return;
  }
  // Pinned, contiguous host source of the same dtype into a contiguous device tensor: one
  // asynchronous copy on the compute stream (the pinned allocator keeps the host block from
  // being reused before the stream has passed it).
  if (dst.is_cuda() && src.storage()->pinned() && src.is_contiguous() && dst.is_contiguous() &&
      src.dtype() == dst.dtype()) {
    const size_t n = static_cast<size_t>(src.numel()) * dtype_size(src.dtype());
    (void)n;
    ENGINE_IF_CUDA(kern::cuda::memcpy_h2d_async(dst.raw_data(), src.raw_data(), n, cuda::stream()));
    return;
  }
  // Cross-device: make the source contiguous in the destination dtype on its own device,
  // move the bytes, then scatter into dst's layout on dst's device.
  Tensor s = empty(src.sizes(), TensorOptions(dst.dtype()).device(src.device()));
  copy_strided(src, s);
  // A contiguous destination takes the bytes directly; otherwise stage them.
  Tensor moved = dst.is_contiguous() ? dst : empty(src.sizes(), TensorOptions(dst.dtype()).device(dst.device()));
  const size_t nbytes = static_cast<size_t>(s.numel()) * dtype_size(s.dtype());
  (void)nbytes;  // unused in a CPU-only build, where this branch cannot be reached
  if (dst.is_cuda()) {
    ENGINE_IF_CUDA(kern::cuda::memcpy_h2d(moved.raw_data(), s.raw_data(), nbytes, cuda::stream()));
  } else {
    ENGINE_IF_CUDA(kern::cuda::memcpy_d2h(moved.raw_data(), s.raw_data(), nbytes, cuda::stream()));
  }
  if (!moved.same(dst)) copy_strided(moved, dst);
}

// ---- backward nodes of views and copies ----

struct ViewBackward : Node {  // reshape / view / squeeze / unsqueeze / flatten
  Shape in_sizes;
  explicit ViewBackward(Shape s) : Node("ViewBackward"), in_sizes(std::move(s)) {}
  std::vector<Tensor> apply(const Tensor& g) override { return {g.reshape(in_sizes)}; }
};

struct PermuteBackward : Node {
  Shape inverse;
  explicit PermuteBackward(Shape inv) : Node("PermuteBackward"), inverse(std::move(inv)) {}
  std::vector<Tensor> apply(const Tensor& g) override { return {g.permute(inverse)}; }
};

struct SliceBackward : Node {
  Shape in_sizes;
  int64_t dim, start, end, step;
  SliceBackward(Shape s, int64_t d, int64_t b, int64_t e, int64_t st)
      : Node("SliceBackward"), in_sizes(std::move(s)), dim(d), start(b), end(e), step(st) {}
  std::vector<Tensor> apply(const Tensor& g) override {
    Tensor out = zeros(in_sizes, TensorOptions(g.dtype()).device(g.device()));
    out.slice(dim, start, end, step).copy_(g);
    return {out};
  }
};

struct ExpandBackward : Node {
  Shape in_sizes;
  explicit ExpandBackward(Shape s) : Node("ExpandBackward"), in_sizes(std::move(s)) {}
  std::vector<Tensor> apply(const Tensor& g) override { return {sum_to(g, in_sizes)}; }
};

struct IdentityBackward : Node {  // contiguous / clone
  explicit IdentityBackward(const char* n) : Node(n) {}
  std::vector<Tensor> apply(const Tensor& g) override { return {g}; }
};

struct ToDeviceBackward : Node {
  Device in_device;
  explicit ToDeviceBackward(Device d) : Node("ToDeviceBackward"), in_device(d) {}
  std::vector<Tensor> apply(const Tensor& g) override { return {g.to(in_device)}; }
};

struct ToDTypeBackward : Node {
  DType in_dtype;
  explicit ToDTypeBackward(DType d) : Node("ToDTypeBackward"), in_dtype(d) {}
  std::vector<Tensor> apply(const Tensor& g) override { return {g.to(in_dtype)}; }
};

// Returns contiguous-compatible strides for viewing `t` as `shape`, or an empty vector
// when the layout does not allow it without a copy.
std::vector<int64_t> view_strides(const Tensor& t, const Shape& shape) {
  if (t.is_contiguous()) return contiguous_strides(shape);
  return {};
}

Shape infer_shape(Shape shape, int64_t numel, const char* op) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      ENGINE_CHECK(infer < 0, op, ": only one dimension can be -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      ENGINE_CHECK(shape[i] >= 0, op, ": negative size in ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    ENGINE_CHECK(known > 0 && numel % known == 0, op, ": cannot infer -1 in ", shape_str(shape), " for ", numel,
                 " elements");
    shape[infer] = numel / known;
  }
  ENGINE_CHECK(shape_numel(shape) == numel, op, ": shape ", shape_str(shape), " is invalid for ", numel,
               " elements");
  return shape;
}

}  // namespace

// ---- metadata ----
const Shape& Tensor::sizes() const { return checked(impl_).sizes; }
const Shape& Tensor::strides() const { return checked(impl_).strides; }
int64_t Tensor::dim() const { return static_cast<int64_t>(sizes().size()); }
int64_t Tensor::size(int64_t d) const { return sizes()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }
int64_t Tensor::numel() const { return shape_numel(sizes()); }
DType Tensor::dtype() const { return checked(impl_).dtype; }
Device Tensor::device() const { return checked(impl_).storage->device(); }
int64_t Tensor::storage_offset() const { return checked(impl_).offset; }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked(impl_).storage; }

bool Tensor::is_contiguous() const {
  const auto& s = sizes();
  const auto& st = strides();
  int64_t expected = 1;
  for (int64_t i = static_cast<int64_t>(s.size()) - 1; i >= 0; --i) {
    if (s[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= s[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  const auto& im = checked(impl_);
  return static_cast<char*>(im.storage->data()) + im.offset * static_cast<int64_t>(dtype_size(im.dtype));
}

template <typename T>
T* Tensor::data() const {
  ENGINE_CHECK(dtype() == dtype_of<T>::value, "data<T>(): tensor is ", dtype_name(dtype()), ", asked for ",
               dtype_name(dtype_of<T>::value));
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int32_t* Tensor::data<int32_t>() const;
template int64_t* Tensor::data<int64_t>() const;
template uint8_t* Tensor::data<uint8_t>() const;
template bool* Tensor::data<bool>() const;
template kern::bf16* Tensor::data<kern::bf16>() const;

// ---- views ----
Tensor Tensor::view(Shape shape) const {
  shape = infer_shape(std::move(shape), numel(), "view");
  auto st = view_strides(*this, shape);
  ENGINE_CHECK(!st.empty() || shape.empty(), "view: tensor of shape ", shape_str(sizes()),
               " is not contiguous; use reshape()");
  Tensor out = make_view(*this, shape, st.empty() ? Shape{} : st, storage_offset());
  if (any_requires_grad({*this})) attach(out, std::make_shared<ViewBackward>(sizes()), {*this});
  if (auto* r = trace::active()) r->record("reshape", {*this}, {out}, {{"shape", out.sizes()}});
  return out;
}

Tensor Tensor::reshape(Shape shape) const {
  shape = infer_shape(std::move(shape), numel(), "reshape");
  if (is_contiguous()) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  start = wrap_dim(start, dim(), "flatten");
  end = wrap_dim(end, dim(), "flatten");
  Shape s(sizes().begin(), sizes().begin() + start);
  int64_t m = 1;
  for (int64_t i = start; i <= end; ++i) m *= sizes()[i];
  s.push_back(m);
  s.insert(s.end(), sizes().begin() + end + 1, sizes().end());
  return reshape(s);
}

Tensor Tensor::permute(Shape dims) const {
  ENGINE_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: got ", dims.size(), " dims for a ", dim(),
               "-d tensor");
  Shape s(dim()), st(dim()), inverse(dim());
  std::vector<bool> seen(dim(), false);
  for (int64_t i = 0; i < dim(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    ENGINE_CHECK(!seen[d], "permute: dim ", d, " repeated in ", shape_str(dims));
    seen[d] = true;
    s[i] = sizes()[d];
    st[i] = strides()[d];
    inverse[d] = i;
  }
  Tensor out = make_view(*this, s, st, storage_offset());
  if (any_requires_grad({*this})) attach(out, std::make_shared<PermuteBackward>(inverse), {*this});
  if (auto* r = trace::active()) {
    Shape perm(dim());
    for (int64_t i = 0; i < dim(); ++i) perm[inverse[i]] = i;
    r->record("permute", {*this}, {out}, {{"dims", perm}});
  }
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  Shape p(dim());
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[wrap_dim(d0, dim(), "transpose")], p[wrap_dim(d1, dim(), "transpose")]);
  return permute(p);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  ENGINE_CHECK(step > 0, "slice: step must be positive, got ", step);
  const int64_t n = sizes()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = sizes(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] = strides()[d] * step;
  Tensor out = make_view(*this, s, st, storage_offset() + start * strides()[d]);
  if (any_requires_grad({*this})) attach(out, std::make_shared<SliceBackward>(sizes(), d, start, end, step), {*this});
  if (auto* r = trace::active())
    r->record("slice", {*this}, {out}, {{"dim", d}, {"start", start}, {"end", end}, {"step", step}});
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  ENGINE_CHECK(start >= 0 && length >= 0 && start + length <= sizes()[d], "narrow: [", start, ", ", start + length,
               ") out of range for dim ", d, " of size ", sizes()[d]);
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  if (index < 0) index += sizes()[d];
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t v : sizes())
    if (v != 1) s.push_back(v);
  return reshape(s);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (sizes()[d] != 1) return *this;
  Shape s = sizes(), st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = make_view(*this, s, st, storage_offset());
  if (any_requires_grad({*this})) attach(out, std::make_shared<ViewBackward>(sizes()), {*this});
  if (auto* r = trace::active()) r->record("reshape", {*this}, {out}, {{"shape", out.sizes()}});
  return out;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = sizes(), st = strides();
  int64_t stride = d < dim() ? strides()[d] * sizes()[d] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  Tensor out = make_view(*this, s, st, storage_offset());
  if (any_requires_grad({*this})) attach(out, std::make_shared<ViewBackward>(sizes()), {*this});
  if (auto* r = trace::active()) r->record("reshape", {*this}, {out}, {{"shape", out.sizes()}});
  return out;
}

Tensor Tensor::expand(Shape shape) const {
  ENGINE_CHECK(static_cast<int64_t>(shape.size()) >= dim(), "expand: cannot expand ", shape_str(sizes()), " to ",
               shape_str(shape));
  const int64_t lead = static_cast<int64_t>(shape.size()) - dim();
  Shape st(shape.size(), 0);
  for (int64_t i = 0; i < static_cast<int64_t>(shape.size()); ++i) {
    if (i < lead) {
      ENGINE_CHECK(shape[i] >= 0, "expand: new leading dims need a size, got ", shape_str(shape));
      continue;
    }
    int64_t own = sizes()[i - lead];
    if (shape[i] == -1) shape[i] = own;
    if (own == shape[i]) {
      st[i] = strides()[i - lead];
    } else {
      ENGINE_CHECK(own == 1, "expand: cannot expand ", shape_str(sizes()), " to ", shape_str(shape));
      st[i] = 0;
    }
  }
  Tensor out = make_view(*this, shape, st, storage_offset());
  if (any_requires_grad({*this})) attach(out, std::make_shared<ExpandBackward>(sizes()), {*this});
  if (auto* r = trace::active()) r->record("expand", {*this}, {out}, {{"shape", out.sizes()}});
  return out;
}

// ---- copies ----
Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(sizes(), TensorOptions(dtype()).device(device()));
  copy_strided(*this, out);
  if (any_requires_grad({*this})) attach(out, std::make_shared<IdentityBackward>("CloneBackward"), {*this});
  if (auto* r = trace::active()) r->record("identity", {*this}, {out}, {});
  return out;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor out = empty(sizes(), TensorOptions(dtype()).device(d));
  copy_strided(*this, out);
  if (any_requires_grad({*this})) attach(out, std::make_shared<ToDeviceBackward>(device()), {*this});
  if (auto* r = trace::active()) r->record("identity", {*this}, {out}, {});
  return out;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = empty(sizes(), TensorOptions(dt).device(device()));
  copy_strided(*this, out);
  if (is_floating(dt) && any_requires_grad({*this}))
    attach(out, std::make_shared<ToDTypeBackward>(dtype()), {*this});
  if (auto* r = trace::active()) r->record("cast", {*this}, {out}, {{"dtype", std::string(dtype_name(dt))}});
  return out;
}

Tensor Tensor::detach() const {
  return make_view(*this, sizes(), strides(), storage_offset());
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = empty(sizes(), TensorOptions(dtype_of<T>::value));
  copy_strided(*this, host);
  const T* p = host.data<T>();
  return std::vector<T>(p, p + host.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<kern::bf16> Tensor::to_vector<kern::bf16>() const;  // the bits

double Tensor::item() const {
  ENGINE_CHECK(numel() == 1, "item(): tensor has ", numel(), " elements (shape ", shape_str(sizes()), ")");
  return to_vector<double>()[0];
}

// ---- in-place ----
static void check_inplace(const Tensor& t, const char* op) {
  ENGINE_CHECK(!(grad_enabled() && t.requires_grad()), op,
               ": in-place change of a tensor that requires grad; use NoGradGuard or detach()");
}

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  if (numel() == 0) return *this;
  storage()->bump_version();
  if (is_contiguous()) {
    if (is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::fill(raw_data(), elem_type(dtype()), numel(), value, cuda::stream()));
    } else {
      kern::cpu::fill(raw_data(), elem_type(dtype()), numel(), value);
    }
    return *this;
  }
  Tensor v = full({1}, value, TensorOptions(dtype()).device(device()));
  return copy_(v);
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  ENGINE_CHECK(src.defined(), "copy_: source is undefined");
  Tensor s = src.detach();
  if (s.sizes() != sizes()) s = s.expand(sizes());
  copy_strided(s, *this);
  storage()->bump_version();
  return *this;
}

// ---- autograd accessors ----
bool Tensor::requires_grad() const { return checked(impl_).requires_grad; }

Tensor& Tensor::set_requires_grad(bool r) {
  ENGINE_CHECK(is_leaf(), "set_requires_grad: only leaf tensors can be changed (this one has a grad_fn)");
  ENGINE_CHECK(!r || is_floating(dtype()), "set_requires_grad: only float tensors can require grad, got ",
               dtype_name(dtype()));
  impl_->requires_grad = r;
  return *this;
}

bool Tensor::is_leaf() const { return checked(impl_).grad_fn == nullptr; }
Tensor Tensor::grad() const { return checked(impl_).grad; }
void Tensor::set_grad(const Tensor& g) { checked(impl_), impl_->grad = g; }
void Tensor::zero_grad() { checked(impl_), impl_->grad = Tensor(); }
const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked(impl_).grad_fn; }

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  ENGINE_CHECK(requires_grad(), "backward: tensor does not require grad (no graph to run)");
  Tensor seed = gradient;
  if (!seed.defined()) {
    ENGINE_CHECK(numel() == 1, "backward: a gradient must be given for a non-scalar output of shape ",
                 shape_str(sizes()));
    seed = ones(sizes(), TensorOptions(dtype()).device(device()));
  }
  ENGINE_CHECK(seed.sizes() == sizes(), "backward: gradient shape ", shape_str(seed.sizes()), " differs from ",
               shape_str(sizes()));
  run_backward({*this}, {seed}, retain_graph);
}

// ---- factories ----
Tensor empty(const Shape& shape, TensorOptions opts) {
  for (int64_t v : shape) ENGINE_CHECK(v >= 0, "empty: negative size in ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(opts.dtype_),
                                            opts.device_);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = opts.dtype_;
  Tensor t(impl);
  if (opts.requires_grad_) t.set_requires_grad(true);
  return t;
}

Tensor full(const Shape& shape, double value, TensorOptions opts) {
  bool rg = opts.requires_grad_;
  Tensor t = empty(shape, opts.requires_grad(false));
  t.fill_(value);
  if (rg) t.set_requires_grad(true);
  return t;
}
Tensor empty_pinned(const Shape& shape, DType dtype) {
  for (int64_t v : shape) ENGINE_CHECK(v >= 0, "empty_pinned: negative size in ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), Device::cpu(),
                                            /*pinned=*/true);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor zeros(const Shape& shape, TensorOptions opts) { return full(shape, 0.0, opts); }
Tensor ones(const Shape& shape, TensorOptions opts) { return full(shape, 1.0, opts); }
Tensor empty_like(const Tensor& t) { return empty(t.sizes(), TensorOptions(t.dtype()).device(t.device())); }
Tensor zeros_like(const Tensor& t) { return zeros(t.sizes(), TensorOptions(t.dtype()).device(t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.sizes(), TensorOptions(t.dtype()).device(t.device())); }
Tensor scalar_tensor(double value, TensorOptions opts) { return full({}, value, opts); }

Tensor arange(int64_t n, TensorOptions opts) { return arange(0.0, static_cast<double>(n), 1.0, opts); }

Tensor arange(double start, double end, double step, TensorOptions opts) {
  ENGINE_CHECK(step != 0.0, "arange: step must be non-zero");
  int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((end - start) / step)));
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i) * step;
  return from_vector(v, {n}, opts);
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions opts) {
  ENGINE_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
               " values for shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(values.size() * sizeof(T), Device::cpu());
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype_of<T>::value;
  if (!values.empty()) std::memcpy(impl->storage->data(), values.data(), values.size() * sizeof(T));
  Tensor host(impl);
  Tensor out = host.to(opts.dtype_).to(opts.device_);
  if (out.same(host) && opts.device_.is_cpu()) out = host;
  if (opts.requires_grad_) out.set_requires_grad(true);
  return out;
}
template Tensor from_vector(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<double>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<int32_t>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<int64_t>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<uint8_t>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<kern::bf16>&, const Shape&, TensorOptions);

}  // namespace eng
