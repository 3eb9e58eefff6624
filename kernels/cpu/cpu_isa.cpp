#include "kernels/cpu_isa.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace kern::cpu {

namespace {

Isa detect() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // The AVX-512 path is compiled for F + BW + DQ + VL (Skylake-SP and later); all four must be present.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2")) return Isa::Avx2;
#endif
  return Isa::Baseline;
}

std::atomic<int> g_cap{static_cast<int>(Isa::Avx512)};

}  // namespace

// ENGINE_CPU_ISA as a ceiling; unset or empty = no ceiling.
Isa isa_cap_from_string(const char* v) {
  if (v == nullptr || *v == '\0') return Isa::Avx512;
  const std::string s(v);
  if (s == "baseline") return Isa::Baseline;
  if (s == "avx2") return Isa::Avx2;
  if (s == "avx512") return Isa::Avx512;
  throw std::runtime_error("ENGINE_CPU_ISA: '" + s.substr(0, 40) + "' is not one of baseline, avx2, avx512");
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Baseline: return "baseline";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

Isa isa_detected() {
  static const Isa d = detect();
  return d;
}

Isa isa_active() {
  static const Isa from_env = std::min(isa_detected(), isa_cap_from_string(std::getenv("ENGINE_CPU_ISA")));  // throws on a bad value (each call until fixed)
  return std::min(from_env, static_cast<Isa>(g_cap.load(std::memory_order_relaxed)));
}

Isa set_isa_cap(Isa cap) {
  return static_cast<Isa>(g_cap.exchange(static_cast<int>(cap)));
}

}  // namespace kern::cpu
