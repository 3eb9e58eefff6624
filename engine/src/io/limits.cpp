// The process-wide read limits. See engine/io/limits.h.
#include "engine/io/limits.h"

#include <cstdlib>
#include <mutex>
#include <string>

#include "engine/error.h"
#include "engine/io/read_file.h"

namespace eng::io {

namespace {

std::mutex& limits_mutex() {
  static std::mutex m;
  return m;
}

void from_env(const char* name, uint64_t& field) {
  const char* v = std::getenv(name);
  if (v == nullptr) return;
  uint64_t bytes = 0;
  ENGINE_CHECK(parse_uint64(v, UINT64_MAX, bytes) && bytes >= 1, "environment variable ", name, "='", v,
               "' is not a whole number of bytes >= 1");
  field = bytes;
}

}  // namespace

ReadLimits limits_from_environment() {
  ReadLimits l;
  from_env("ENGINE_MAX_JSON_BYTES", l.json_bytes);
  from_env("ENGINE_MAX_ANNOTATION_BYTES", l.annotation_bytes);
  from_env("ENGINE_MAX_TEXT_FILE_BYTES", l.text_file_bytes);
  from_env("ENGINE_MAX_TEXT_LINE_BYTES", l.text_line_bytes);
  from_env("ENGINE_MAX_SAFETENSORS_HEADER_BYTES", l.safetensors_header_bytes);
  from_env("ENGINE_MAX_TENSOR_BYTES", l.tensor_bytes);
  from_env("ENGINE_MAX_WEIGHTS_FILE_BYTES", l.weights_file_bytes);
  return l;
}

namespace {

// Set once from the environment (a bad variable throws at every call until fixed), or by
// set_read_limits.
struct State {
  bool set = false;
  ReadLimits limits;
};

State& state() {
  static State s;
  return s;
}

}  // namespace

ReadLimits read_limits() {
  std::lock_guard<std::mutex> lock(limits_mutex());
  State& s = state();
  if (!s.set) {
    s.limits = limits_from_environment();
    s.set = true;
  }
  return s.limits;
}

void set_read_limits(const ReadLimits& limits) {
  for (uint64_t v : {limits.json_bytes, limits.annotation_bytes, limits.text_file_bytes, limits.text_line_bytes,
                     limits.safetensors_header_bytes, limits.tensor_bytes, limits.weights_file_bytes})
    ENGINE_CHECK(v >= 1, "set_read_limits: every limit must be at least 1 byte");
  std::lock_guard<std::mutex> lock(limits_mutex());
  state().limits = limits;
  state().set = true;
}

}  // namespace eng::io
