// Elementwise front-ends: broadcasting binary ops, unary ops and scalar variants.
// f32, f64 and bf16 (bf16 storage, float maths, results rounded to nearest even). Backward
// of a broadcast binary op reduces with sum_to (no bf16 reduction yet: a clear error).
#include <algorithm>

#include "engine/autograd.h"
#include "engine/cuda_context.h"
#include "engine/detail/op_utils.h"
#include "engine/ops.h"
#include "engine/trace.h"
#include "kernels/elementwise.h"

namespace eng {
using namespace detail;

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    ENGINE_CHECK(x == y || x == 1 || y == 1, "shapes ", shape_str(a), " and ", shape_str(b),
                 " cannot be broadcast together");
    out[i] = x == 1 ? y : x;
  }
  return out;
}

Tensor sum_to(const Tensor& t, const Shape& shape) {
  if (t.sizes() == shape) return t;
  const int64_t lead = t.dim() - static_cast<int64_t>(shape.size());
  ENGINE_CHECK(lead >= 0, "sum_to: cannot reduce ", shape_str(t.sizes()), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (i < lead) {
      dims.push_back(i);
    } else if (shape[i - lead] == 1 && t.size(i) != 1) {
      dims.push_back(i);
    } else {
      ENGINE_CHECK(shape[i - lead] == t.size(i), "sum_to: cannot reduce ", shape_str(t.sizes()), " to ",
                   shape_str(shape));
    }
  }
  if (dims.empty()) return t.reshape(shape);
  return sum(t, dims, true).reshape(shape);
}

namespace {

kern::BroadcastDims broadcast_dims(const Tensor& a, const Tensor& b, const Shape& out) {
  ENGINE_CHECK(static_cast<int>(out.size()) <= kern::kMaxDims, "broadcast: more than ", kern::kMaxDims, " dims");
  Shape as = a.detach().expand(out).strides(), bs = b.detach().expand(out).strides();
  kern::BroadcastDims d;
  d.ndim = static_cast<int>(out.size());
  for (int i = 0; i < d.ndim; ++i) {
    d.sizes[i] = out[i];
    d.a_strides[i] = as[i];
    d.b_strides[i] = bs[i];
  }
  return d;
}

const char* binary_name(kern::BinaryOp op) {
  switch (op) {
    case kern::BinaryOp::Add: return "add";
    case kern::BinaryOp::Sub: return "sub";
    case kern::BinaryOp::Mul: return "mul";
    case kern::BinaryOp::Div: return "div";
  }
  return "binary";
}

Tensor binary_raw(kern::BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  ENGINE_CHECK(a.defined() && b.defined(), name, ": undefined input");
  check_same_device_dtype(name, {a, b});
  check_floating_or_bf16(name, a);
  Shape out_shape = broadcast_shapes(a.sizes(), b.sizes());
  Tensor out = new_empty(out_shape, a);
  kern::BroadcastDims d = broadcast_dims(a, b, out_shape);
  dispatch_float_or_bf16(a, name, [&](auto tag) {
    using T = decltype(tag);
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    if (a.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::binary_forward<T>(op, d, pa, pb, out.data<T>(), cuda::stream()));
    } else {
      kern::cpu::binary_forward<T>(op, d, pa, pb, out.data<T>());
    }
  });
  return out;
}

struct BinaryBackward : Node {
  kern::BinaryOp op;
  Tensor a, b;  // saved only for mul/div
  Shape a_shape, b_shape;
  BinaryBackward(kern::BinaryOp o, const Tensor& x, const Tensor& y)
      : Node(std::string(binary_name(o)) + "Backward"), op(o), a_shape(x.sizes()), b_shape(y.sizes()) {
    if (op == kern::BinaryOp::Mul || op == kern::BinaryOp::Div) {
      a = x.detach();
      b = y.detach();
    }
  }
  std::vector<Tensor> apply(const Tensor& g) override {
    const bool need_a = next_edges()[0].fn != nullptr, need_b = next_edges()[1].fn != nullptr;
    Tensor ga, gb;
    switch (op) {
      case kern::BinaryOp::Add:
        if (need_a) ga = g;
        if (need_b) gb = g;
        break;
      case kern::BinaryOp::Sub:
        if (need_a) ga = g;
        if (need_b) gb = neg(g);
        break;
      case kern::BinaryOp::Mul:
        if (need_a) ga = mul(g, b);
        if (need_b) gb = mul(g, a);
        break;
      case kern::BinaryOp::Div:
        if (need_a) ga = div(g, b);
        if (need_b) gb = neg(div(mul(g, a), mul(b, b)));
        break;
    }
    if (ga.defined()) ga = sum_to(ga, a_shape);
    if (gb.defined()) gb = sum_to(gb, b_shape);
    return {ga, gb};
  }
  void release_saved() override {
    a = Tensor();
    b = Tensor();
  }
};

Tensor binary(kern::BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(op, a, b);
  if (any_requires_grad({a, b})) attach(out, std::make_shared<BinaryBackward>(op, a, b), {a, b});
  if (auto* r = trace::active()) r->record(binary_name(op), {a, b}, {out}, {});
  return out;
}

// ---- unary ----

const char* unary_name(kern::UnaryOp op) {
  switch (op) {
    case kern::UnaryOp::Neg: return "neg";
    case kern::UnaryOp::AddScalar: return "add_scalar";
    case kern::UnaryOp::MulScalar: return "mul_scalar";
    case kern::UnaryOp::RSubScalar: return "rsub_scalar";
    case kern::UnaryOp::Relu: return "relu";
    case kern::UnaryOp::Sigmoid: return "sigmoid";
    case kern::UnaryOp::Exp: return "exp";
    case kern::UnaryOp::Log: return "log";
    case kern::UnaryOp::Sqrt: return "sqrt";
    case kern::UnaryOp::Square: return "square";
    case kern::UnaryOp::Abs: return "abs";
    case kern::UnaryOp::Clamp: return "clamp";
    case kern::UnaryOp::Relu6: return "relu6";
    case kern::UnaryOp::Hardsigmoid: return "hardsigmoid";
    case kern::UnaryOp::Hardswish: return "hardswish";
  }
  return "unary";
}

// Which of x / y the backward formula reads (kernels/elementwise.h).
// Relu is differentiated from its OUTPUT: f'(x) = [x > 0] = [y > 0] (y = x exactly where
// x > 0, also in bf16), so the input need not be kept and relu_ can overwrite it; the
// backward kernel is handed y in place of x.
bool grad_needs_x(kern::UnaryOp op) {
  using U = kern::UnaryOp;
  return op == U::Log || op == U::Square || op == U::Abs || op == U::Clamp || op == U::Hardsigmoid ||
         op == U::Hardswish;
}
bool grad_needs_y(kern::UnaryOp op) {
  using U = kern::UnaryOp;
  return op == U::Relu || op == U::Relu6 || op == U::Sigmoid || op == U::Exp || op == U::Sqrt;
}

// Version of a saved tensor's Storage (0 when none is saved).
uint64_t storage_version(const Tensor& t) { return t.defined() ? t.storage()->version() : 0; }

struct UnaryBackward : Node {
  kern::UnaryOp op;
  Tensor x, y;
  double p0, p1;
  // The saved tensors' Storage versions at save time: backward refuses to run on values an
  // in-place write (copy_, fill_, relu_) changed since, as torch's version counters do.
  uint64_t x_version, y_version;
  UnaryBackward(kern::UnaryOp o, Tensor xs, Tensor ys, double a, double b)
      : Node(std::string(unary_name(o)) + "Backward"), op(o), x(std::move(xs)), y(std::move(ys)), p0(a), p1(b),
        x_version(storage_version(x)), y_version(storage_version(y)) {}
  std::vector<Tensor> apply(const Tensor& g_in) override {
    ENGINE_CHECK(storage_version(x) == x_version && storage_version(y) == y_version, unary_name(op),
                 " backward: a tensor it saved (its ", x.defined() ? "input" : "output", ", shape ",
                 shape_str((x.defined() ? x : y).sizes()), ") was modified in place after the forward");
    Tensor g = g_in.contiguous();
    Tensor gx = new_empty(g.sizes(), g);
    dispatch_float_or_bf16(g, unary_name(op), [&](auto tag) {
      using T = decltype(tag);
      const T* py = y.defined() ? y.data<T>() : nullptr;
      const T* px = x.defined() ? x.data<T>() : (op == kern::UnaryOp::Relu ? py : nullptr);
      if (g.is_cuda()) {
        ENGINE_IF_CUDA(kern::cuda::unary_backward<T>(op, g.numel(), px, py, g.data<T>(), gx.data<T>(), p0, p1,
                                                     cuda::stream()));
      } else if (op == kern::UnaryOp::Relu && py != nullptr) {
        kern::cpu::relu_backward<T>(g.numel(), py, g.data<T>(), gx.data<T>());  // the tight masked copy
      } else if (op == kern::UnaryOp::Relu6 && py != nullptr) {
        kern::cpu::relu6_backward<T>(g.numel(), py, g.data<T>(), gx.data<T>());
      } else {
        kern::cpu::unary_backward<T>(op, g.numel(), px, py, g.data<T>(), gx.data<T>(), p0, p1);
      }
    });
    return {gx};
  }
  void release_saved() override {
    x = Tensor();
    y = Tensor();
  }
};

Tensor unary(kern::UnaryOp op, const Tensor& x_in, double p0 = 0.0, double p1 = 0.0) {
  const char* name = unary_name(op);
  ENGINE_CHECK(x_in.defined(), name, ": undefined input");
  check_floating_or_bf16(name, x_in);
  Tensor x = x_in.contiguous();
  Tensor y = new_empty(x.sizes(), x);
  dispatch_float_or_bf16(x, name, [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::unary_forward<T>(op, x.numel(), x.data<T>(), y.data<T>(), p0, p1, cuda::stream()));
    } else {
      kern::cpu::unary_forward<T>(op, x.numel(), x.data<T>(), y.data<T>(), p0, p1);
    }
  });
  if (any_requires_grad({x_in})) {
    auto node = std::make_shared<UnaryBackward>(op, grad_needs_x(op) ? x.detach() : Tensor(),
                                                grad_needs_y(op) ? y.detach() : Tensor(), p0, p1);
    attach(y, node, {x_in});
  }
  if (auto* r = trace::active()) r->record(name, {x_in}, {y}, {{"p0", p0}, {"p1", p1}});
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(kern::BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(kern::BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(kern::BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(kern::BinaryOp::Div, a, b); }

Tensor neg(const Tensor& x) { return unary(kern::UnaryOp::Neg, x); }
Tensor add_scalar(const Tensor& x, double s) { return unary(kern::UnaryOp::AddScalar, x, s); }
Tensor sub_scalar(const Tensor& x, double s) { return unary(kern::UnaryOp::AddScalar, x, -s); }
Tensor rsub_scalar(const Tensor& x, double s) { return unary(kern::UnaryOp::RSubScalar, x, s); }
Tensor mul_scalar(const Tensor& x, double s) { return unary(kern::UnaryOp::MulScalar, x, s); }
Tensor div_scalar(const Tensor& x, double s) {
  ENGINE_CHECK(s != 0.0, "div_scalar: division by zero");
  return unary(kern::UnaryOp::MulScalar, x, 1.0 / s);
}
Tensor relu(const Tensor& x) { return unary(kern::UnaryOp::Relu, x); }

namespace {
// In place, for the ops whose backward reads only the output (relu, relu6): refused where
// overwriting x could change a result or a gradient (see ops.h).
Tensor& unary_from_output_(kern::UnaryOp op, Tensor& x) {
  const std::string name = std::string(unary_name(op)) + "_";
  const std::string use = std::string("use ") + unary_name(op) + "()";
  ENGINE_CHECK(x.defined(), name, ": undefined input");
  check_floating_or_bf16(name.c_str(), x);
  ENGINE_CHECK(!(grad_enabled() && x.requires_grad() && !x.grad_fn()), name, ": in-place change of a leaf that ",
               "requires grad (shape ", shape_str(x.sizes()), "); ", use);
  ENGINE_CHECK(x.is_contiguous(), name, ": input of shape ", shape_str(x.sizes()), " is not contiguous; ", use);
  // Any other TensorImpl on this Storage is a view the caller holds or a tensor an op saved
  // for its backward (conv2d's input, sigmoid's or relu's output, ...): overwriting it would
  // change that tensor or that gradient, so in-place is refused. The check is conservative
  // (a view nobody reads again also blocks it).
  ENGINE_CHECK(x.storage().use_count() == 1, name, ": the input (shape ", shape_str(x.sizes()),
               ") shares its memory with another tensor (a view, or a tensor saved for another op's backward); ",
               use);
  x.storage()->bump_version();
  dispatch_float_or_bf16(x, name.c_str(), [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
      ENGINE_IF_CUDA(kern::cuda::unary_inplace<T>(op, x.numel(), x.data<T>(), 0.0, 0.0, cuda::stream()));
    } else {
      kern::cpu::unary_inplace<T>(op, x.numel(), x.data<T>(), 0.0, 0.0);
    }
  });
  if (any_requires_grad({x})) {
    // x's history gains the op: its new node points to x's old grad_fn (attach reads the
    // edges before it replaces grad_fn) and keeps the output, now in x's memory.
    auto node = std::make_shared<UnaryBackward>(op, Tensor(), x.detach(), 0.0, 0.0);
    attach(x, node, {x});
  }
  if (auto* r = trace::active()) r->record(unary_name(op), {x}, {x}, {{"p0", 0.0}, {"p1", 0.0}});
  return x;
}
}  // namespace

Tensor& relu_(Tensor& x) { return unary_from_output_(kern::UnaryOp::Relu, x); }
Tensor relu6(const Tensor& x) { return unary(kern::UnaryOp::Relu6, x); }
Tensor& relu6_(Tensor& x) { return unary_from_output_(kern::UnaryOp::Relu6, x); }
Tensor hardsigmoid(const Tensor& x) { return unary(kern::UnaryOp::Hardsigmoid, x); }
Tensor hardswish(const Tensor& x) { return unary(kern::UnaryOp::Hardswish, x); }

Tensor sigmoid(const Tensor& x) { return unary(kern::UnaryOp::Sigmoid, x); }
Tensor exp(const Tensor& x) { return unary(kern::UnaryOp::Exp, x); }
Tensor log(const Tensor& x) { return unary(kern::UnaryOp::Log, x); }
Tensor sqrt(const Tensor& x) { return unary(kern::UnaryOp::Sqrt, x); }
Tensor square(const Tensor& x) { return unary(kern::UnaryOp::Square, x); }
Tensor abs(const Tensor& x) { return unary(kern::UnaryOp::Abs, x); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  ENGINE_CHECK(lo <= hi, "clamp: lo (", lo, ") > hi (", hi, ")");
  return unary(kern::UnaryOp::Clamp, x, lo, hi);
}

}  // namespace eng
