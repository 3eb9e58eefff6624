// A thin helper over ONNX's protobuf classes (Debian libonnx-dev): nodes with attributes,
// initializers from engine tensors, small constants, and unique value names. The graph it
// fills is a plain onnx::GraphProto; the exporter (onnx_export.h) owns the ModelProto.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include <onnx/onnx_pb.h>

#include "engine/tensor.h"

namespace onnx_export {

class GraphBuilder {
 public:
  GraphBuilder(onnx::GraphProto* graph, int64_t opset) : g_(graph), opset_(opset) {}
  int64_t opset() const { return opset_; }
  onnx::GraphProto* graph() { return g_; }

  // Marks a name as taken (graph inputs).
  void reserve(const std::string& name);
  // A name not used before: hint, hint_1, hint_2, ...
  std::string fresh(const std::string& hint);
  // Adds a node; empty input names are ONNX's "absent optional input".
  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs);
  // A node with one output named fresh(hint); returns that name.
  std::string op(const std::string& op_type, const std::vector<std::string>& inputs, const std::string& hint);

  // Initializers. `t` is copied (f32, f64 -> f32, i64; any device); `shape` overrides the
  // tensor's shape when not empty (same element count).
  std::string tensor_initializer(const std::string& name, const eng::Tensor& t, const eng::Shape& shape = {});
  // The same under fresh(hint).
  std::string tensor_constant(const std::string& hint, const eng::Tensor& t);
  // Constants as initializers under fresh names. An empty shape with one value is a scalar;
  // shape {-1} (the default) is a 1-D vector of the values.
  std::string const_i64(const std::vector<int64_t>& values, const eng::Shape& shape = {-1}, const std::string& hint = "c");
  std::string const_f32(const std::vector<float>& values, const eng::Shape& shape = {-1}, const std::string& hint = "c");
  std::string scalar_f32(float v, const std::string& hint = "c") { return const_f32({v}, {}, hint); }
  std::string scalar_i64(int64_t v, const std::string& hint = "c") { return const_i64({v}, {}, hint); }

 private:
  onnx::GraphProto* g_;
  int64_t opset_;
  std::unordered_set<std::string> used_;
};

void set_attr(onnx::NodeProto* n, const std::string& name, int64_t v);
void set_attr(onnx::NodeProto* n, const std::string& name, float v);
void set_attr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v);
void set_attr(onnx::NodeProto* n, const std::string& name, const std::string& v);

// A graph input or output: element type (onnx::TensorProto_DataType) and dims; a dim < 0 is
// symbolic, named by `dim_names` at that position ("batch", "detections").
void add_value_info(google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>* where, const std::string& name,
                    int32_t elem_type, const std::vector<int64_t>& dims, const std::vector<std::string>& dim_names = {});

}  // namespace onnx_export
