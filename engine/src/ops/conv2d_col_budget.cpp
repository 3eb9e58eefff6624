// The CPU convolution's col-workspace budget (engine/detail/conv2d_col_budget.h).
#include "engine/detail/conv2d_col_budget.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "engine/error.h"

namespace eng::detail {
namespace {

constexpr long kMaxMb = 4096;
constexpr size_t kUnset = ~size_t(0);
std::atomic<size_t> g_override{kUnset};

// ENGINE_CPU_CONV_CHUNK_MB: digits only, 0 .. kMaxMb (checked before any conversion).
size_t from_env() {
  const char* s = std::getenv("ENGINE_CPU_CONV_CHUNK_MB");
  if (!s) return kDefaultConvColBudget;
  const std::string v(s);
  bool ok = !v.empty() && v.size() <= 4;
  for (char ch : v) ok = ok && ch >= '0' && ch <= '9';
  ENGINE_CHECK(ok && std::stol(v) <= kMaxMb, "ENGINE_CPU_CONV_CHUNK_MB: expected an integer 0 .. ", kMaxMb,
               " (MiB; 0 = whole-image im2col reference), got '", v, "'");
  return size_t(std::stol(v)) << 20;
}

}  // namespace

size_t conv_col_budget() {
  const size_t o = g_override.load();
  if (o != kUnset) return o;
  static const size_t env = from_env();
  return env;
}
void set_conv_col_budget(size_t bytes) { g_override.store(bytes == kUnset ? bytes - 1 : bytes); }
void reset_conv_col_budget() { g_override.store(kUnset); }

}  // namespace eng::detail
