// cuda-emu: a CPU stand-in for CUDA's <mma.h> (namespace nvcuda::wmma), the warp-level
// matrix multiply-accumulate API, for the shapes this project uses:
//   m16n16k8  with precision::tf32 operands (element_type float) and a float accumulator;
//   m16n16k16 with __nv_bfloat16 operands and a float accumulator.
//
// Model (what a kernel may rely on, as on a GPU, and what it may not):
// - A fragment is a per-thread object: each of the 32 lanes of a warp holds num_elements of
//   the fragment's matrix (A: 16 x K, B: K x 16, accumulator: 16 x 16) in x[0 .. num_elements).
// - WHICH matrix element a lane holds in x[i] is unspecified in CUDA. Here it is a fixed
//   pseudo-random permutation per fragment type (different for A/B/accumulator, for each
//   layout and precision): a kernel that reads or writes x[i] assuming a lane mapping gets a
//   wrong answer, while operations applied uniformly to every x[i] (scaling, conversion,
//   fill_fragment) stay valid, as they are on a GPU.
// - load_matrix_sync, store_matrix_sync and mma_sync are warp-collective: all 32 lanes of the
//   warp must reach the same call with the same arguments. A lane that has exited, a warp with
//   fewer than 32 threads, lanes meeting in different wmma calls or with different pointers /
//   ldm are reported (and a lane that never arrives is reported as a deadlock by the runtime).
// - load/store: mptr must be 256-bit (32-byte) aligned, and ldm (in elements) a multiple of
//   16 bytes (4 floats, 8 bf16): the CUDA C++ Programming Guide's rules. A violation aborts
//   with a message naming the call and the thread.
// - Fragments start filled with 0xFF bytes (NaN), so one used before it is loaded or filled
//   poisons the result.
// - mma_sync with tf32: each A and B element is TRUNCATED to tf32 (the low 13 mantissa bits
//   dropped), as the tensor cores ignore those bits; __float_to_tf32 rounds to nearest (ties
//   away from zero, cvt.rna.tf32.f32). So a kernel that forgets to convert sees the larger
//   truncation error it would see on a GPU. bf16 operands are exact in float. Products are
//   exact in float (11 x 11 or 8 x 8 significant bits) and are accumulated in float, k in
//   increasing order, onto C. Real tensor cores order and round the sum differently (within
//   the same float-accumulation error bound); the tests' tolerances must allow for that.
// What it cannot check: speed, register pressure, bank conflicts, the hardware's exact
// rounding of the float accumulation.
#pragma once
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <typeinfo>

#include "cuda_bf16.h"  // __nv_bfloat16 (the real <mma.h> includes it too)
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

// cvt.rna.tf32.f32: round to 10 explicit mantissa bits, to nearest, ties away from zero;
// the result is a float whose low 13 bits are zero. NaN and infinity pass unchanged.
inline float __float_to_tf32(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&f, &u, 4);
  return f;
}

namespace detail {

// The matrix a fragment type holds, and its element type; only the supported combinations
// are defined (anything else fails to compile, as on a GPU).
template <typename Use, int M, int N, int K, typename T>
struct traits;
template <>
struct traits<matrix_a, 16, 16, 8, precision::tf32> {
  using element_type = float;
  static constexpr int rows = 16, cols = 8;
};
template <>
struct traits<matrix_b, 16, 16, 8, precision::tf32> {
  using element_type = float;
  static constexpr int rows = 8, cols = 16;
};
template <>
struct traits<accumulator, 16, 16, 8, float> {
  using element_type = float;
  static constexpr int rows = 16, cols = 16;
};
template <>
struct traits<matrix_a, 16, 16, 16, __nv_bfloat16> {
  using element_type = __nv_bfloat16;
  static constexpr int rows = 16, cols = 16;
};
template <>
struct traits<matrix_b, 16, 16, 16, __nv_bfloat16> {
  using element_type = __nv_bfloat16;
  static constexpr int rows = 16, cols = 16;
};
template <>
struct traits<accumulator, 16, 16, 16, float> {
  using element_type = float;
  static constexpr int rows = 16, cols = 16;
};

// The scrambled lane mapping of one fragment type: slot (lane, i) holds matrix element
// elem[lane * E + i] (= r * cols + c), and element e lives in slot slot[e]. A permutation
// seeded by the type's name, so that it is the same on every run.
template <int Count>
struct LaneMap {
  int elem[Count];
  int slot[Count];
};
template <typename Frag>
const LaneMap<Frag::rows_ * Frag::cols_>& lane_map() {
  static const LaneMap<Frag::rows_ * Frag::cols_> map = [] {
    constexpr int n = Frag::rows_ * Frag::cols_;
    LaneMap<n> m;
    uint64_t seed = 1469598103934665603ull;  // FNV-1a of the type's name
    for (const char* p = typeid(Frag).name(); *p; ++p) seed = (seed ^ uint64_t(uint8_t(*p))) * 1099511628211ull;
    std::mt19937_64 rng(seed);
    for (int e = 0; e < n; ++e) m.elem[e] = e;
    for (int e = n - 1; e > 0; --e) std::swap(m.elem[e], m.elem[rng() % uint64_t(e + 1)]);
    for (int s = 0; s < n; ++s) m.slot[m.elem[s]] = s;
    return m;
  }();
  return map;
}

// What a lane posts to a warp-collective call: every lane must post the same op and args.
struct Posted {
  const char* op;
  const void* ptr;
  unsigned ldm;
  int layout;
  const void* frags[3];  // this lane's fragments (mma_sync: a, b, c)
};

// Meets the other 31 lanes of the warp in `op`; returns what each lane posted. Reports a
// lane that has exited, a warp with missing lanes, and lanes disagreeing on the op or args.
inline void meet(const Posted& mine, const Posted* all[32], bool uniform_args) {
  const uint32_t taking = ::emu::detail::warp_gather(0xffffffffu, reinterpret_cast<uint64_t>(&mine),
                                                     reinterpret_cast<uint64_t*>(all), mine.op);
  if (taking != 0xffffffffu) {
    int missing = 0;
    while ((taking >> missing) & 1u) ++missing;
    ::emu::detail::kernel_fatal(std::string(mine.op) + " must be reached by all 32 lanes of the warp; lane " +
                                std::to_string(missing) + " has exited or does not exist");
  }
  for (int l = 0; l < 32; ++l) {
    if (std::strcmp(all[l]->op, mine.op) != 0)
      ::emu::detail::kernel_fatal(std::string("wmma: lanes of one warp meet in different calls (") + mine.op +
                                  " and " + all[l]->op + ")");
    if (uniform_args && (all[l]->ptr != mine.ptr || all[l]->ldm != mine.ldm || all[l]->layout != mine.layout))
      ::emu::detail::kernel_fatal(std::string(mine.op) +
                                  ": the lanes of the warp pass different pointers, ldm or layouts");
  }
}

template <typename T>
void check_memory_args(const char* op, const T* p, unsigned ldm) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
    ::emu::detail::kernel_fatal(std::string(op) + ": mptr must be 256-bit (32-byte) aligned");
  if ((uint64_t(ldm) * sizeof(T)) % 16 != 0)
    ::emu::detail::kernel_fatal(std::string(op) + ": ldm = " + std::to_string(ldm) +
                                " elements is not a multiple of 16 bytes (" + std::to_string(16 / sizeof(T)) +
                                " elements of " + std::to_string(sizeof(T)) + " bytes)");
}

template <typename L>
constexpr int layout_id() {
  return std::is_same<L, row_major>::value ? mem_row_major : mem_col_major;
}

}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
  using Tr = detail::traits<Use, M, N, K, T>;
  static_assert(std::is_same<Use, accumulator>::value ? std::is_void<Layout>::value
                                                      : (std::is_same<Layout, row_major>::value ||
                                                         std::is_same<Layout, col_major>::value),
                "wmma::fragment: matrix_a / matrix_b need row_major or col_major, an accumulator no layout");

 public:
  using element_type = typename Tr::element_type;
  static constexpr int rows_ = Tr::rows, cols_ = Tr::cols;
  static constexpr int num_elements = Tr::rows * Tr::cols / 32;
  element_type x[num_elements];
  fragment() { std::memset(static_cast<void*>(x), 0xFF, sizeof x); }  // poison: NaN
};

template <typename Use, int M, int N, int K, typename T, typename L, typename V>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, const V& v) {
  using E = typename fragment<Use, M, N, K, T, L>::element_type;
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = static_cast<E>(v);
}

// matrix_a / matrix_b: the layout is the fragment's; element (r, c) of the fragment's matrix
// is mptr[r * ldm + c] (row_major) or mptr[c * ldm + r] (col_major).
template <typename Use, int M, int N, int K, typename T, typename L, typename P>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const P* mptr, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, L>;
  static_assert(!std::is_same<Use, accumulator>::value, "wmma::load_matrix_sync: an accumulator needs a layout_t");
  static_assert(std::is_same<P, typename F::element_type>::value, "wmma::load_matrix_sync: wrong pointer type");
  detail::check_memory_args("wmma::load_matrix_sync", mptr, ldm);
  const detail::Posted mine{"wmma::load_matrix_sync", mptr, ldm, detail::layout_id<L>(), {}};
  const detail::Posted* all[32];
  detail::meet(mine, all, true);
  const auto& map = detail::lane_map<F>();
  const int lane = ::emu::detail::lane();
  for (int i = 0; i < F::num_elements; ++i) {
    const int e = map.elem[lane * F::num_elements + i], r = e / F::cols_, c = e % F::cols_;
    f.x[i] = std::is_same<L, row_major>::value ? mptr[size_t(r) * ldm + c] : mptr[size_t(c) * ldm + r];
  }
  ::emu::detail::syncwarp(0xffffffffu, "wmma::load_matrix_sync");
}

template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* mptr, unsigned ldm, layout_t layout) {
  using F = fragment<accumulator, M, N, K, T>;
  detail::check_memory_args("wmma::load_matrix_sync", mptr, ldm);
  const detail::Posted mine{"wmma::load_matrix_sync", mptr, ldm, int(layout), {}};
  const detail::Posted* all[32];
  detail::meet(mine, all, true);
  const auto& map = detail::lane_map<F>();
  const int lane = ::emu::detail::lane();
  for (int i = 0; i < F::num_elements; ++i) {
    const int e = map.elem[lane * F::num_elements + i], r = e / F::cols_, c = e % F::cols_;
    f.x[i] = layout == mem_row_major ? mptr[size_t(r) * ldm + c] : mptr[size_t(c) * ldm + r];
  }
  ::emu::detail::syncwarp(0xffffffffu, "wmma::load_matrix_sync");
}

template <int M, int N, int K, typename T>
void store_matrix_sync(T* mptr, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
  using F = fragment<accumulator, M, N, K, T>;
  detail::check_memory_args("wmma::store_matrix_sync", mptr, ldm);
  const detail::Posted mine{"wmma::store_matrix_sync", mptr, ldm, int(layout), {}};
  const detail::Posted* all[32];
  detail::meet(mine, all, true);
  const auto& map = detail::lane_map<F>();
  const int lane = ::emu::detail::lane();
  for (int i = 0; i < F::num_elements; ++i) {
    const int e = map.elem[lane * F::num_elements + i], r = e / F::cols_, c = e % F::cols_;
    (layout == mem_row_major ? mptr[size_t(r) * ldm + c] : mptr[size_t(c) * ldm + r]) = f.x[i];
  }
  ::emu::detail::syncwarp(0xffffffffu, "wmma::store_matrix_sync");
}

namespace detail {
inline float operand(float v, precision::tf32*) {  // what the tensor core reads: low 13 bits dropped
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u &= 0xffffe000u;
  std::memcpy(&v, &u, 4);
  return v;
}
inline float operand(__nv_bfloat16 v, __nv_bfloat16*) { return __bfloat162float(v); }  // exact
}  // namespace detail

// d = a b + c (d may be c). Every lane reads the whole of a, b and c from the others'
// fragments through its own lane mapping, then writes its own share of d after every lane
// has read (so d aliasing c is safe).
template <int M, int N, int K, typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  using FA = fragment<matrix_a, M, N, K, T, LA>;
  using FB = fragment<matrix_b, M, N, K, T, LB>;
  using FC = fragment<accumulator, M, N, K, float>;
  const detail::Posted mine{"wmma::mma_sync", nullptr, 0, 0, {&a, &b, &c}};
  const detail::Posted* all[32];
  detail::meet(mine, all, true);
  const auto& ma = detail::lane_map<FA>();
  const auto& mb = detail::lane_map<FB>();
  const auto& mc = detail::lane_map<FC>();
  auto elem_a = [&](int r, int k) {
    const int s = ma.slot[r * FA::cols_ + k];
    return detail::operand(static_cast<const FA*>(all[s / FA::num_elements]->frags[0])->x[s % FA::num_elements],
                           static_cast<T*>(nullptr));
  };
  auto elem_b = [&](int k, int col) {
    const int s = mb.slot[k * FB::cols_ + col];
    return detail::operand(static_cast<const FB*>(all[s / FB::num_elements]->frags[1])->x[s % FB::num_elements],
                           static_cast<T*>(nullptr));
  };
  const int lane = ::emu::detail::lane();
  float out[FC::num_elements];
  for (int i = 0; i < FC::num_elements; ++i) {
    const int e = mc.elem[lane * FC::num_elements + i], r = e / FC::cols_, col = e % FC::cols_;
    float acc = c.x[i];  // this lane's slot i holds element e of c too (one mapping per type)
    for (int k = 0; k < K; ++k) acc += elem_a(r, k) * elem_b(k, col);
    out[i] = acc;
  }
  ::emu::detail::syncwarp(0xffffffffu, "wmma::mma_sync");  // every lane has read a, b and c
  for (int i = 0; i < FC::num_elements; ++i) d.x[i] = out[i];
}

}  // namespace wmma
}  // namespace nvcuda
