// GraphBuilder (onnx_builder.h).
#include "export/onnx_builder.h"

#include "engine/error.h"

namespace onnx_export {

void GraphBuilder::reserve(const std::string& name) { used_.insert(name); }

std::string GraphBuilder::fresh(const std::string& hint) {
  std::string name = hint;
  for (int i = 1; used_.count(name) != 0; ++i) name = hint + "_" + std::to_string(i);
  used_.insert(name);
  return name;
}

onnx::NodeProto* GraphBuilder::node(const std::string& op, const std::vector<std::string>& inputs,
                                    const std::vector<std::string>& outputs) {
  onnx::NodeProto* n = g_->add_node();
  n->set_op_type(op);
  n->set_name(fresh("node_" + op));
  for (const auto& s : inputs) n->add_input(s);
  for (const auto& s : outputs) n->add_output(s);
  return n;
}

std::string GraphBuilder::op(const std::string& op_type, const std::vector<std::string>& inputs,
                             const std::string& hint) {
  const std::string out = fresh(hint);
  node(op_type, inputs, {out});
  return out;
}

std::string GraphBuilder::tensor_initializer(const std::string& name, const eng::Tensor& t, const eng::Shape& shape) {
  ENGINE_CHECK(used_.insert(name).second, "ONNX initializer '", name, "' defined twice");
  onnx::TensorProto* p = g_->add_initializer();
  p->set_name(name);
  const eng::Shape& dims = shape.empty() ? t.sizes() : shape;
  int64_t n = 1;
  for (int64_t d : dims) {
    p->add_dims(d);
    n *= d;
  }
  ENGINE_CHECK(n == t.numel(), "ONNX initializer '", name, "': shape override has ", n, " elements, the tensor ",
               t.numel());
  if (t.dtype() == eng::DType::i64) {
    p->set_data_type(onnx::TensorProto_DataType_INT64);
    const std::vector<int64_t> v = t.to_vector<int64_t>();
    p->set_raw_data(v.data(), v.size() * sizeof(int64_t));
  } else {
    ENGINE_CHECK(eng::is_floating(t.dtype()), "ONNX initializer '", name, "': unsupported dtype ",
                 eng::dtype_name(t.dtype()));
    p->set_data_type(onnx::TensorProto_DataType_FLOAT);
    const std::vector<float> v = t.to_vector<float>();
    p->set_raw_data(v.data(), v.size() * sizeof(float));
  }
  return name;
}

std::string GraphBuilder::tensor_constant(const std::string& hint, const eng::Tensor& t) {
  std::string name = hint;
  for (int i = 1; used_.count(name) != 0; ++i) name = hint + "_" + std::to_string(i);
  return tensor_initializer(name, t);
}

namespace {
template <typename T>
void fill_const(onnx::TensorProto* p, const std::vector<T>& values, const eng::Shape& shape, int32_t type) {
  p->set_data_type(type);
  if (shape.size() == 1 && shape[0] == -1) {
    p->add_dims(static_cast<int64_t>(values.size()));
  } else {
    int64_t n = 1;
    for (int64_t d : shape) {
      p->add_dims(d);
      n *= d;
    }
    ENGINE_CHECK(n == static_cast<int64_t>(values.size()), "ONNX constant: ", values.size(), " values for ", n,
                 " elements");
  }
  p->set_raw_data(values.data(), values.size() * sizeof(T));
}
}  // namespace

std::string GraphBuilder::const_i64(const std::vector<int64_t>& values, const eng::Shape& shape, const std::string& hint) {
  const std::string name = fresh(hint);
  onnx::TensorProto* p = g_->add_initializer();
  p->set_name(name);
  fill_const(p, values, shape, onnx::TensorProto_DataType_INT64);
  return name;
}

std::string GraphBuilder::const_f32(const std::vector<float>& values, const eng::Shape& shape, const std::string& hint) {
  const std::string name = fresh(hint);
  onnx::TensorProto* p = g_->add_initializer();
  p->set_name(name);
  fill_const(p, values, shape, onnx::TensorProto_DataType_FLOAT);
  return name;
}

void set_attr(onnx::NodeProto* n, const std::string& name, int64_t v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INT);
  a->set_i(v);
}
void set_attr(onnx::NodeProto* n, const std::string& name, float v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_FLOAT);
  a->set_f(v);
}
void set_attr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INTS);
  for (int64_t x : v) a->add_ints(x);
}
void set_attr(onnx::NodeProto* n, const std::string& name, const std::string& v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_STRING);
  a->set_s(v);
}

void add_value_info(google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>* where, const std::string& name,
                    int32_t elem_type, const std::vector<int64_t>& dims, const std::vector<std::string>& dim_names) {
  onnx::ValueInfoProto* v = where->Add();
  v->set_name(name);
  onnx::TypeProto_Tensor* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type);
  onnx::TensorShapeProto* shape = tt->mutable_shape();
  for (size_t i = 0; i < dims.size(); ++i) {
    onnx::TensorShapeProto_Dimension* d = shape->add_dim();
    if (dims[i] >= 0)
      d->set_dim_value(dims[i]);
    else
      d->set_dim_param(i < dim_names.size() && !dim_names[i].empty() ? dim_names[i] : "d" + std::to_string(i));
  }
}

}  // namespace onnx_export
