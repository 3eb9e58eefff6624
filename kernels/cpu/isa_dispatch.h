// Private to kernels/cpu: one loop body compiled for each instruction-set level of
// kernels/cpu_isa.h, and a parallel split of a flat range into chunks.
//
// A kernel K is a struct with a static, always-inline member template run(args...): the
// body. run_isa<K, Args...>(isa) returns a plain function pointer to K::run compiled for the
// baseline (the library's x86-64-v2), for AVX2, or for AVX-512 (F/BW/DQ/VL). The body is
// the same C++ each time; only the vector width the compiler may use differs. The files
// that use this are compiled with -ffp-contract=off (kernels/CMakeLists.txt) so that no
// copy fuses a*b+c into an FMA: the three give bit-identical results.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/cpu_isa.h"

#define KERN_CPU_INLINE inline __attribute__((always_inline))

namespace kern::cpu::isa_detail {

#if defined(__x86_64__) && defined(__GNUC__)
#define KERN_TARGET_AVX2 __attribute__((target("avx2")))
#define KERN_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#else
#define KERN_TARGET_AVX2
#define KERN_TARGET_AVX512
#endif

template <class K, class... A>
void on_baseline(A... a) {
  K::run(a...);
}
template <class K, class... A>
KERN_TARGET_AVX2 void on_avx2(A... a) {
  K::run(a...);
}
template <class K, class... A>
KERN_TARGET_AVX512 void on_avx512(A... a) {
  K::run(a...);
}

}  // namespace kern::cpu::isa_detail

namespace kern::cpu {

template <class K, class... A>
auto run_isa(Isa isa) -> void (*)(A...) {
  switch (isa) {
    case Isa::Avx512: return &isa_detail::on_avx512<K, A...>;
    case Isa::Avx2: return &isa_detail::on_avx2<K, A...>;
    case Isa::Baseline: break;
  }
  return &isa_detail::on_baseline<K, A...>;
}

// f(begin, end) over [0, n) in chunks of `chunk`, the chunks spread over the OpenMP threads
// when n > min_parallel (one call f(0, n) otherwise).
template <class F>
void parallel_ranges(int64_t n, int64_t min_parallel, int64_t chunk, F&& f) {
  if (n <= 0) return;
  if (n <= min_parallel) {
    f(int64_t(0), n);
    return;
  }
  const int64_t chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) f(c * chunk, std::min(n, (c + 1) * chunk));
}

}  // namespace kern::cpu
