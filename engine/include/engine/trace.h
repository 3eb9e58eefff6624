// Op tracing: a record of the ops a forward pass runs, for exporters (ONNX: apps/common/onnx_*).
//
// While a trace::Recorder is active on this thread (trace::Scope), every traced op front-end
// calls trace::record(kind, inputs, outputs, attrs) after it has computed its outputs. The
// recorder turns tensors into SSA values: each output gets a fresh value id and becomes the
// current value of its TensorImpl (so an in-place op such as relu_ gives its tensor a new
// value, and later readers see that one). An input that no recorded op produced is an
// "external" value: the traced graph's input, a parameter or buffer, a constant (anchors,
// FrozenBatchNorm2d's scale and shift), or, when it carries a grad_fn, the output of an op
// that is NOT traced: exporters refuse that case and name the op from its grad_fn.
//
// Front-ends that call other traced front-ends record after them, so the inner ops appear
// first and the outer op re-maps the output tensor: the inner records are dead code that
// an exporter removes by walking back from the graph outputs.
//
// Traced kinds and their attributes (the exporter's table, apps/common/onnx_ops.cpp, must have
// an entry for each): conv2d / conv2d_relu (stride, pad, dilation, groups: int lists [h, w]
// and int), relu, relu6, hardsigmoid, hardswish, sigmoid, exp, log, sqrt, neg, abs, square,
// clamp (lo, hi), add / sub / mul / div, add_scalar / mul_scalar / rsub_scalar (s),
// batch_norm2d (training, eps), frozen_bn_affine, max_pool2d (kernel, stride, pad, ceil_mode),
// global_avg_pool2d, global_max_pool2d, upsample_nearest2d (size), concat (dim),
// flatten_concat_heads (k), softmax / log_softmax (dim), l2norm (eps), linear, matmul,
// reshape (shape), permute (dims), slice (dim, start, end, step), squeeze / unsqueeze (dim),
// expand (shape), identity (contiguous / clone), cast (dtype), sum / mean (dims, keepdim).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "engine/tensor.h"

namespace eng::trace {

using AttrValue = std::variant<int64_t, double, std::vector<int64_t>, std::string>;
struct Attr {
  std::string name;
  AttrValue value;
};

struct Op {
  std::string kind;
  std::vector<int> inputs;   // value ids; -1 for an absent optional input (no bias)
  std::vector<int> outputs;  // value ids
  std::vector<Attr> attrs;
  // The attribute by name; throws naming the op when absent.
  const AttrValue& attr(const std::string& name) const;
  int64_t attr_int(const std::string& name) const;
  double attr_float(const std::string& name) const;
  const std::vector<int64_t>& attr_ints(const std::string& name) const;
};

class Recorder {
 public:
  // Value ids index values(): the tensor as it was when the value was made (a handle: it
  // keeps the storage alive, so no TensorImpl address is reused while recording).
  const std::vector<Tensor>& values() const { return values_; }
  const std::vector<Op>& ops() const { return ops_; }
  // True for values no recorded op produced (inputs, parameters, constants, untraced ops).
  bool is_external(int id) const { return producer_.at(static_cast<size_t>(id)) < 0; }
  // Index into ops() of the op that produced value `id` (-1: external).
  int producer(int id) const { return producer_.at(static_cast<size_t>(id)); }
  // The current value of a tensor: the last recorded output on its TensorImpl, or a new
  // external value. -1 for an undefined tensor.
  int value_of(const Tensor& t);
  void record(std::string kind, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
              std::vector<Attr> attrs);

 private:
  std::vector<Tensor> values_;
  std::vector<int> producer_;
  std::vector<Op> ops_;
  std::unordered_map<const TensorImpl*, int> current_;
};

// Recording is on for this thread while a Scope lives (scopes do not nest).
class Scope {
 public:
  explicit Scope(Recorder& r);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

// The active recorder of this thread, or nullptr (the front-ends' fast check).
Recorder* active();
inline void record(const char* kind, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                   std::vector<Attr> attrs = {}) {
  if (Recorder* r = active()) r->record(kind, inputs, outputs, std::move(attrs));
}

}  // namespace eng::trace
