// The traced-op -> ONNX table (onnx_ops.h). Each emitter gets the op (attributes and the
// traced shapes of its values) and the ONNX names of its inputs, and returns the names of its
// outputs. Opsets 13..17: Reduce* take axes as an attribute except ReduceSum (an input since
// 13); Squeeze / Unsqueeze / Split axes are inputs; HardSwish exists from 14.
#include "export/onnx_ops.h"

#include <functional>
#include <map>

#include "engine/autograd.h"
#include "engine/error.h"

namespace onnx_export {

namespace {

using eng::trace::Op;
using In = std::vector<std::string>;

struct Ctx {
  GraphBuilder& b;
  const eng::trace::Recorder& rec;
  const TraceInputs& in;
  const eng::Shape& shape(int value) const { return rec.values().at(static_cast<size_t>(value)).sizes(); }
  // A reshape target for `out_shape` from an input of `in_shape`: dim 0 becomes 0 ("copy the
  // input's") when it is the batch, so the graph takes any batch.
  std::string reshape_target(const eng::Shape& in_shape, const eng::Shape& out_shape) {
    std::vector<int64_t> t(out_shape.begin(), out_shape.end());
    if (in.dynamic_batch && !t.empty() && !in_shape.empty() && t[0] == in_shape[0]) t[0] = 0;
    return b.const_i64(t, {-1}, "shape");
  }
  // A per-channel vector [C] as [C, 1, 1] for broadcasting against [N, C, H, W].
  std::string channel(const std::string& v) { return b.op("Reshape", {v, b.const_i64({-1, 1, 1}, {-1}, "shape")}, "chan"); }
};

using Emitter = std::function<In(Ctx&, const Op&, const In&)>;

In one(Ctx& c, const std::string& type, const In& inputs, const std::string& hint) { return {c.b.op(type, inputs, hint)}; }

In emit_conv(Ctx& c, const Op& op, const In& in) {
  const eng::Shape& w = c.shape(op.inputs[1]);
  const auto& stride = op.attr_ints("stride");
  const auto& pad = op.attr_ints("pad");
  const auto& dil = op.attr_ints("dilation");
  In inputs = {in[0], in[1]};
  if (op.inputs[2] >= 0) inputs.push_back(in[2]);
  const std::string y = c.b.fresh("conv");
  onnx::NodeProto* n = c.b.node("Conv", inputs, {y});
  set_attr(n, "kernel_shape", std::vector<int64_t>{w[2], w[3]});
  set_attr(n, "strides", stride);
  set_attr(n, "pads", std::vector<int64_t>{pad[0], pad[1], pad[0], pad[1]});
  set_attr(n, "dilations", dil);
  set_attr(n, "group", op.attr_int("groups"));
  if (op.kind == "conv2d_relu") return one(c, "Relu", {y}, "relu");
  return {y};
}

// The elementwise unary kinds (engine/src/ops/elementwise.cpp); p0 / p1 are the scalar
// parameters (add_scalar's s, clamp's lo / hi).
In emit_unary(Ctx& c, const Op& op, const In& in) {
  const std::string& k = op.kind;
  const float p0 = static_cast<float>(op.attr_float("p0")), p1 = static_cast<float>(op.attr_float("p1"));
  if (k == "relu") return one(c, "Relu", in, "relu");
  if (k == "sigmoid") return one(c, "Sigmoid", in, "sigmoid");
  if (k == "exp") return one(c, "Exp", in, "exp");
  if (k == "log") return one(c, "Log", in, "log");
  if (k == "sqrt") return one(c, "Sqrt", in, "sqrt");
  if (k == "neg") return one(c, "Neg", in, "neg");
  if (k == "abs") return one(c, "Abs", in, "abs");
  if (k == "square") return one(c, "Mul", {in[0], in[0]}, "square");
  if (k == "relu6") return one(c, "Clip", {in[0], c.b.scalar_f32(0.f), c.b.scalar_f32(6.f)}, "relu6");
  if (k == "clamp") return one(c, "Clip", {in[0], c.b.scalar_f32(p0), c.b.scalar_f32(p1)}, "clamp");
  if (k == "add_scalar") return one(c, "Add", {in[0], c.b.scalar_f32(p0)}, "add");
  if (k == "mul_scalar") return one(c, "Mul", {in[0], c.b.scalar_f32(p0)}, "mul");
  if (k == "rsub_scalar") return one(c, "Sub", {c.b.scalar_f32(p0), in[0]}, "rsub");
  // torch's hardsigmoid: relu6(x + 3) / 6 = HardSigmoid(alpha 1/6, beta 1/2).
  auto hardsigmoid = [&](const std::string& x) {
    const std::string y = c.b.fresh("hardsigmoid");
    onnx::NodeProto* n = c.b.node("HardSigmoid", {x}, {y});
    set_attr(n, "alpha", 1.0f / 6.0f);
    set_attr(n, "beta", 0.5f);
    return y;
  };
  if (k == "hardsigmoid") return {hardsigmoid(in[0])};
  if (k == "hardswish") {
    if (c.b.opset() >= 14) return one(c, "HardSwish", in, "hardswish");
    return one(c, "Mul", {in[0], hardsigmoid(in[0])}, "hardswish");
  }
  ENGINE_FAIL("no ONNX form for unary op '", k, "'");
}

In emit_batch_norm(Ctx& c, const Op& op, const In& in) {
  ENGINE_CHECK(op.attr_int("training") == 0,
               "batch_norm2d in training mode (batch statistics) cannot be exported; export runs the model in eval mode");
  const int64_t C = c.shape(op.inputs[0])[1];
  const std::string w = op.inputs[1] >= 0 ? in[1] : c.b.const_f32(std::vector<float>(C, 1.f), {-1}, "bn_one");
  const std::string bias = op.inputs[2] >= 0 ? in[2] : c.b.const_f32(std::vector<float>(C, 0.f), {-1}, "bn_zero");
  const std::string y = c.b.fresh("bn");
  onnx::NodeProto* n = c.b.node("BatchNormalization", {in[0], w, bias, in[3], in[4]}, {y});
  set_attr(n, "epsilon", static_cast<float>(op.attr_float("eps")));
  return {y};
}

In emit_max_pool(Ctx& c, const Op& op, const In& in) {
  const auto& k = op.attr_ints("kernel");
  const auto& s = op.attr_ints("stride");
  const auto& p = op.attr_ints("pad");
  const bool ceil_mode = op.attr_int("ceil_mode") != 0;
  // ONNX's ceil mode has no "last window starts inside the input" rule: refuse the shapes where
  // PyTorch's (ours) gives one less.
  const eng::Shape& xs = c.shape(op.inputs[0]);
  const eng::Shape& ys = c.shape(op.outputs[0]);
  for (int a = 0; a < 2; ++a) {
    const int64_t span = xs[2 + a] + 2 * p[a] - k[a];
    const int64_t onnx_out = (ceil_mode ? (span + s[a] - 1) / s[a] : span / s[a]) + 1;
    ENGINE_CHECK(onnx_out == ys[2 + a], "max_pool2d with ceil_mode: input ", xs[2 + a], " gives ", ys[2 + a],
                 " outputs here but ", onnx_out, " in ONNX's MaxPool");
  }
  const std::string y = c.b.fresh("maxpool");
  onnx::NodeProto* n = c.b.node("MaxPool", {in[0]}, {y});
  set_attr(n, "kernel_shape", k);
  set_attr(n, "strides", s);
  set_attr(n, "pads", std::vector<int64_t>{p[0], p[1], p[0], p[1]});
  set_attr(n, "ceil_mode", int64_t{ceil_mode});
  return {y};
}

// PyTorch's 'nearest' (src = floor(dst * in / out)) is ONNX Resize nearest / asymmetric /
// floor. The output size is given as sizes = [N, C] of the input + [out_h, out_w].
In emit_upsample(Ctx& c, const Op& op, const In& in) {
  const auto& size = op.attr_ints("size");
  const std::string shape = c.b.op("Shape", {in[0]}, "shape");
  const std::string nc = c.b.op("Slice", {shape, c.b.const_i64({0}), c.b.const_i64({2})}, "nc");
  const std::string sizes = c.b.fresh("sizes");
  onnx::NodeProto* cat = c.b.node("Concat", {nc, c.b.const_i64(size)}, {sizes});
  set_attr(cat, "axis", int64_t{0});
  const std::string y = c.b.fresh("upsample");
  onnx::NodeProto* n = c.b.node("Resize", {in[0], "", "", sizes}, {y});
  set_attr(n, "mode", std::string("nearest"));
  set_attr(n, "coordinate_transformation_mode", std::string("asymmetric"));
  set_attr(n, "nearest_mode", std::string("floor"));
  return {y};
}

In emit_concat(Ctx& c, const Op& op, const In& in) {
  const std::string y = c.b.fresh("concat");
  onnx::NodeProto* n = c.b.node("Concat", in, {y});
  set_attr(n, "axis", op.attr_int("dim"));
  return {y};
}

// levels[l] [B, A_l K, H, W] -> [B, A_l, K, H, W] -> [B, H, W, A_l, K] -> [B, H W A_l, K], concatenated on 1.
In emit_flatten_heads(Ctx& c, const Op& op, const In& in) {
  const int64_t k = op.attr_int("k");
  In parts;
  for (size_t l = 0; l < in.size(); ++l) {
    const eng::Shape& s = c.shape(op.inputs[l]);
    const std::string r5 = c.b.op("Reshape", {in[l], c.b.const_i64({0, s[1] / k, k, s[2], s[3]})}, "heads5");
    const std::string tr = c.b.fresh("heads_t");
    set_attr(c.b.node("Transpose", {r5}, {tr}), "perm", std::vector<int64_t>{0, 3, 4, 1, 2});
    parts.push_back(c.b.op("Reshape", {tr, c.b.const_i64({0, -1, k})}, "heads3"));
  }
  const std::string y = c.b.fresh("heads");
  set_attr(c.b.node("Concat", parts, {y}), "axis", int64_t{1});
  return {y};
}

In emit_softmax(Ctx& c, const Op& op, const In& in) {
  const std::string y = c.b.fresh(op.kind);
  set_attr(c.b.node(op.kind == "softmax" ? "Softmax" : "LogSoftmax", in, {y}), "axis", op.attr_int("dim"));
  return {y};
}

// y = scale[c] x / max(||x[:, :, h, w]||, eps)
In emit_l2norm(Ctx& c, const Op& op, const In& in) {
  const std::string norm = c.b.fresh("l2");
  onnx::NodeProto* n = c.b.node("ReduceL2", {in[0]}, {norm});
  set_attr(n, "axes", std::vector<int64_t>{1});
  set_attr(n, "keepdims", int64_t{1});
  const std::string den = c.b.op("Max", {norm, c.b.scalar_f32(static_cast<float>(op.attr_float("eps")))}, "l2_den");
  const std::string q = c.b.op("Div", {in[0], den}, "l2_unit");
  return one(c, "Mul", {q, c.channel(in[1])}, "l2norm");
}

In emit_linear(Ctx& c, const Op& op, const In& in) {
  if (c.shape(op.inputs[0]).size() == 2) {
    In inputs = {in[0], in[1]};
    if (op.inputs[2] >= 0) inputs.push_back(in[2]);
    const std::string y = c.b.fresh("gemm");
    set_attr(c.b.node("Gemm", inputs, {y}), "transB", int64_t{1});
    return {y};
  }
  const std::string wt = c.b.fresh("wt");
  set_attr(c.b.node("Transpose", {in[1]}, {wt}), "perm", std::vector<int64_t>{1, 0});
  const std::string y = c.b.op("MatMul", {in[0], wt}, "matmul");
  if (op.inputs[2] < 0) return {y};
  return one(c, "Add", {y, in[2]}, "linear");
}

In emit_reduce(Ctx& c, const Op& op, const In& in) {
  const auto& dims = op.attr_ints("dims");
  const int64_t keep = op.attr_int("keepdim");
  const std::string y = c.b.fresh(op.kind);
  if (op.kind == "sum") {
    set_attr(c.b.node("ReduceSum", {in[0], c.b.const_i64(dims)}, {y}), "keepdims", keep);
  } else {
    onnx::NodeProto* n = c.b.node("ReduceMean", {in[0]}, {y});
    set_attr(n, "axes", dims);
    set_attr(n, "keepdims", keep);
  }
  return {y};
}

In emit_slice(Ctx& c, const Op& op, const In& in) {
  return one(c, "Slice",
             {in[0], c.b.const_i64({op.attr_int("start")}), c.b.const_i64({op.attr_int("end")}),
              c.b.const_i64({op.attr_int("dim")}), c.b.const_i64({op.attr_int("step")})},
             "slice");
}

In emit_expand(Ctx& c, const Op& op, const In& in) {
  // Expand broadcasts, so a 1 keeps the input's size: the batch dim stays symbolic.
  std::vector<int64_t> s = op.attr_ints("shape");
  const eng::Shape& xs = c.shape(op.inputs[0]);
  const size_t lead = s.size() - xs.size();
  if (c.in.dynamic_batch && lead == 0 && !s.empty() && s[0] == xs[0]) s[0] = 1;
  return one(c, "Expand", {in[0], c.b.const_i64(s)}, "expand");
}

In emit_cast(Ctx& c, const Op& op, const In& in) {
  const auto& v = op.attr("dtype");
  const std::string dt = std::get<std::string>(v);
  // Exports are float32: casts between float types (autocast) are identities there.
  ENGINE_CHECK(dt == "f32" || dt == "f64" || dt == "bf16", "cast to ", dt, " has no ONNX form in a float32 export");
  return one(c, "Identity", in, "cast");
}

const std::map<std::string, Emitter>& table() {
  static const std::map<std::string, Emitter> t = [] {
    std::map<std::string, Emitter> m;
    m["conv2d"] = emit_conv;
    m["conv2d_relu"] = emit_conv;
    for (const char* k : {"relu", "relu6", "hardsigmoid", "hardswish", "sigmoid", "exp", "log", "sqrt", "neg", "abs",
                          "square", "clamp", "add_scalar", "mul_scalar", "rsub_scalar"})
      m[k] = emit_unary;
    m["add"] = [](Ctx& c, const Op&, const In& in) { return one(c, "Add", in, "add"); };
    m["sub"] = [](Ctx& c, const Op&, const In& in) { return one(c, "Sub", in, "sub"); };
    m["mul"] = [](Ctx& c, const Op&, const In& in) { return one(c, "Mul", in, "mul"); };
    m["div"] = [](Ctx& c, const Op&, const In& in) { return one(c, "Div", in, "div"); };
    m["batch_norm2d"] = emit_batch_norm;
    m["frozen_bn_affine"] = [](Ctx& c, const Op&, const In& in) {
      const std::string y = c.b.op("Mul", {in[0], c.channel(in[1])}, "fbn_scale");
      return one(c, "Add", {y, c.channel(in[2])}, "fbn");
    };
    m["max_pool2d"] = emit_max_pool;
    m["global_avg_pool2d"] = [](Ctx& c, const Op&, const In& in) { return one(c, "GlobalAveragePool", in, "gap"); };
    m["global_max_pool2d"] = [](Ctx& c, const Op&, const In& in) { return one(c, "GlobalMaxPool", in, "gmp"); };
    m["upsample_nearest2d"] = emit_upsample;
    m["concat"] = emit_concat;
    m["flatten_concat_heads"] = emit_flatten_heads;
    m["softmax"] = emit_softmax;
    m["log_softmax"] = emit_softmax;
    m["l2norm"] = emit_l2norm;
    m["linear"] = emit_linear;
    m["matmul"] = [](Ctx& c, const Op&, const In& in) { return one(c, "MatMul", in, "matmul"); };
    m["sum"] = emit_reduce;
    m["mean"] = emit_reduce;
    m["reshape"] = [](Ctx& c, const Op& op, const In& in) {
      return one(c, "Reshape", {in[0], c.reshape_target(c.shape(op.inputs[0]), op.attr_ints("shape"))}, "reshape");
    };
    m["permute"] = [](Ctx& c, const Op& op, const In& in) {
      const std::string y = c.b.fresh("transpose");
      set_attr(c.b.node("Transpose", in, {y}), "perm", op.attr_ints("dims"));
      return In{y};
    };
    m["slice"] = emit_slice;
    m["expand"] = emit_expand;
    m["identity"] = [](Ctx& c, const Op&, const In& in) { return one(c, "Identity", in, "copy"); };
    m["cast"] = emit_cast;
    return m;
  }();
  return t;
}

}  // namespace

std::vector<std::string> exportable_kinds() {
  std::vector<std::string> out;
  for (const auto& [k, e] : table()) out.push_back(k);
  return out;
}

std::vector<std::string> emit_trace(GraphBuilder& b, const eng::trace::Recorder& rec, const TraceInputs& in,
                                    const std::vector<int>& outputs) {
  const auto& ops = rec.ops();
  // Liveness: the ops the outputs depend on.
  std::vector<char> live(ops.size(), 0);
  std::vector<int> stack(outputs.begin(), outputs.end());
  std::vector<char> seen(rec.values().size(), 0);
  while (!stack.empty()) {
    const int v = stack.back();
    stack.pop_back();
    if (v < 0 || seen[static_cast<size_t>(v)]) continue;
    seen[static_cast<size_t>(v)] = 1;
    const int p = rec.producer(v);
    if (p < 0) continue;
    live[static_cast<size_t>(p)] = 1;
    for (int i : ops[static_cast<size_t>(p)].inputs) stack.push_back(i);
  }

  std::vector<std::string> names(rec.values().size());
  // For messages: the layer (last parameter read, in recording order) at each op.
  std::vector<std::string> layer_at(ops.size());
  {
    std::string layer = "(none: before the first layer with weights)";
    for (size_t i = 0; i < ops.size(); ++i) {
      for (int v : ops[i].inputs) {
        if (v < 0 || !rec.is_external(v)) continue;
        auto it = in.named.find(rec.values()[static_cast<size_t>(v)].impl().get());
        if (it != in.named.end()) layer = it->second;
      }
      layer_at[i] = layer;
    }
  }
  std::string last_layer = ops.empty() ? std::string("(none)") : layer_at.back();
  Ctx ctx{b, rec, in};
  // Names an external value: the input, a parameter / buffer, or a constant.
  auto external = [&](int v, const Op& consumer) -> std::string {
    const eng::Tensor& t = rec.values()[static_cast<size_t>(v)];
    if (v == in.input_value) return in.input_name;
    auto it = in.named.find(t.impl().get());
    if (it != in.named.end()) return b.tensor_initializer(it->second, t);
    ENGINE_CHECK(!t.grad_fn(), "ONNX export: '", t.grad_fn() ? t.grad_fn()->name() : std::string(),
                 "' comes from an op that is not traced (no exporter entry); it feeds '", consumer.kind,
                 "' after layer '", last_layer, "'");
    return b.tensor_constant("const", t);
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!live[i]) continue;
    const Op& op = ops[i];
    last_layer = layer_at[i];
    In inputs;
    for (int v : op.inputs) {
      if (v < 0) {
        inputs.emplace_back();
      } else {
        if (names[static_cast<size_t>(v)].empty()) names[static_cast<size_t>(v)] = external(v, op);
        inputs.push_back(names[static_cast<size_t>(v)]);
      }
    }
    auto it = table().find(op.kind);
    ENGINE_CHECK(it != table().end(), "ONNX export: op '", op.kind, "' after layer '", last_layer,
                 "' has no exporter entry (apps/export/onnx_ops.cpp)");
    In out;
    try {
      out = it->second(ctx, op, inputs);
    } catch (const eng::Error& e) {
      ENGINE_FAIL("ONNX export: op '", op.kind, "' after layer '", last_layer, "': ", e.what());
    }
    ENGINE_CHECK(out.size() == op.outputs.size(), "ONNX export: op '", op.kind, "' emitted ", out.size(),
                 " outputs for ", op.outputs.size());
    for (size_t j = 0; j < out.size(); ++j) names[static_cast<size_t>(op.outputs[j])] = out[j];
  }
  std::vector<std::string> result;
  for (int v : outputs) {
    ENGINE_CHECK(v >= 0, "ONNX export: an output is undefined");
    if (names[static_cast<size_t>(v)].empty()) {
      const eng::Tensor& t = rec.values()[static_cast<size_t>(v)];
      ENGINE_CHECK(!t.grad_fn(), "ONNX export: output made by '", t.grad_fn()->name(),
                   "', an op that is not traced (no exporter entry), after layer '", last_layer, "'");
      ENGINE_FAIL("ONNX export: an output does not depend on the input");
    }
    result.push_back(names[static_cast<size_t>(v)]);
  }
  return result;
}

}  // namespace onnx_export
