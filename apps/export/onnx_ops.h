// Traced ops -> ONNX nodes: the exporter's table (one entry per kind that engine/trace.h
// lists). emit_trace walks back from the requested outputs, keeps only the ops they need, and
// emits them in recording order. External values become the graph input, initializers named
// like the module's state_dict (parameters and buffers), or constants; an external value with
// a grad_fn was made by an op that is not traced, and the export stops naming it.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/trace.h"
#include "export/onnx_builder.h"

namespace onnx_export {

struct TraceInputs {
  int input_value = -1;            // value id of the traced graph's input
  std::string input_name = "images";
  // Parameters and buffers by TensorImpl: their ONNX initializer names.
  std::unordered_map<const eng::TensorImpl*, std::string> named;
  // Batch (dim 0) symbolic: reshapes keep dim 0 of their input (ONNX Reshape's 0).
  bool dynamic_batch = true;
};

// Emits what `outputs` (value ids) need and returns their ONNX names, in order.
// Throws eng::Error naming the op kind and the layer (the last parameter read before it) for
// a kind without an emitter, an op the tracer did not see, or an attribute ONNX cannot express.
std::vector<std::string> emit_trace(GraphBuilder& b, const eng::trace::Recorder& rec, const TraceInputs& in,
                                    const std::vector<int>& outputs);

// The traced kinds with an ONNX emitter (for tests and docs).
std::vector<std::string> exportable_kinds();

}  // namespace onnx_export
