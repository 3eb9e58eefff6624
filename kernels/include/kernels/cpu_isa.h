// Runtime choice of the instruction set the CPU kernels' hot loops run with.
//
// kern_cpu is compiled for x86-64-v2 (SSE4.2, no AVX), so the library runs on any x86-64 CPU
// since about 2009. The loops listed in docs/kernels.md ("CPU instruction-set paths") are
// compiled three times, for that baseline, for AVX2 and for AVX-512 (F/BW/DQ/VL), and each
// call picks one by the active level below. The three copies are the same C++ compiled with
// contraction off (no FMA), so they give bit-identical results; tests run every level the
// CPU has and compare.
//
// The active level is the highest the CPU and the OS support (cpuid + xgetbv, through
// __builtin_cpu_supports), capped by the environment variable ENGINE_CPU_ISA (read once):
//   ENGINE_CPU_ISA=baseline | avx2 | avx512   (a ceiling: asking for more than the CPU has
//                                              gives what it has; unset = the best there is)
// Any other value makes the first kernel call throw std::runtime_error naming the value.
#pragma once

namespace kern::cpu {

enum class Isa : int { Baseline = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
// What this CPU (and OS) can run.
Isa isa_detected();
// The level the kernels use now: min(detected, ENGINE_CPU_ISA, the cap set by set_isa_cap).
Isa isa_active();
// Tests and benchmarks: cap the active level (clamped to the detected one); returns the
// previous cap. Not meant to be called while kernels run on other threads.
Isa set_isa_cap(Isa cap);
// ENGINE_CPU_ISA's parser: "baseline" / "avx2" / "avx512" -> that level, null or "" -> Avx512
// (no ceiling); anything else throws std::runtime_error naming the value.
Isa isa_cap_from_string(const char* value);

}  // namespace kern::cpu
