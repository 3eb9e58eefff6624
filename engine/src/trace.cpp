// Op tracing (engine/trace.h): SSA values over TensorImpl identity.
#include "engine/trace.h"

#include "engine/error.h"

namespace eng::trace {

namespace {
thread_local Recorder* t_active = nullptr;
}

const AttrValue& Op::attr(const std::string& name) const {
  for (const Attr& a : attrs)
    if (a.name == name) return a.value;
  ENGINE_FAIL("traced op '", kind, "' has no attribute '", name, "'");
}
int64_t Op::attr_int(const std::string& name) const {
  const AttrValue& v = attr(name);
  ENGINE_CHECK(std::holds_alternative<int64_t>(v), "traced op '", kind, "': attribute '", name, "' is not an int");
  return std::get<int64_t>(v);
}
double Op::attr_float(const std::string& name) const {
  const AttrValue& v = attr(name);
  if (std::holds_alternative<int64_t>(v)) return static_cast<double>(std::get<int64_t>(v));
  ENGINE_CHECK(std::holds_alternative<double>(v), "traced op '", kind, "': attribute '", name, "' is not a number");
  return std::get<double>(v);
}
const std::vector<int64_t>& Op::attr_ints(const std::string& name) const {
  const AttrValue& v = attr(name);
  ENGINE_CHECK(std::holds_alternative<std::vector<int64_t>>(v), "traced op '", kind, "': attribute '", name,
               "' is not an int list");
  return std::get<std::vector<int64_t>>(v);
}

int Recorder::value_of(const Tensor& t) {
  if (!t.defined()) return -1;
  auto it = current_.find(t.impl().get());
  if (it != current_.end()) return it->second;
  const int id = static_cast<int>(values_.size());
  values_.push_back(t);
  producer_.push_back(-1);
  current_[t.impl().get()] = id;
  return id;
}

void Recorder::record(std::string kind, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                      std::vector<Attr> attrs) {
  Op op;
  op.kind = std::move(kind);
  op.attrs = std::move(attrs);
  for (const Tensor& t : inputs) op.inputs.push_back(value_of(t));
  const int index = static_cast<int>(ops_.size());
  for (const Tensor& t : outputs) {
    ENGINE_CHECK(t.defined(), "traced op '", op.kind, "': undefined output");
    const int id = static_cast<int>(values_.size());
    values_.push_back(t);
    producer_.push_back(index);
    current_[t.impl().get()] = id;
    op.outputs.push_back(id);
  }
  ops_.push_back(std::move(op));
}

Scope::Scope(Recorder& r) {
  ENGINE_CHECK(t_active == nullptr, "trace::Scope: a recorder is already active on this thread");
  t_active = &r;
}
Scope::~Scope() { t_active = nullptr; }

Recorder* active() { return t_active; }

}  // namespace eng::trace
