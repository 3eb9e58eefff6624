// cuda-emu: a CPU stand-in for the parts of the CUDA runtime this project uses, so that the
// [cuda] tests can run the project's own CUDA kernels on a machine without a GPU.
//
// Used only by the emulated test build (cmake -DENGINE_CUDA_EMULATOR=ON, see
// scripts/test_cuda_emu.sh and docs/testing.md). The kernels/cuda/*.cu files are compiled as
// C++ after tools/cuda_emu/translate.pl rewrites their two CUDA-only constructs
// (kernel<<<grid, block, smem, stream>>>(args) and extern __shared__ arrays).
//
// Execution model: one kernel launch at a time; the blocks of a grid run one after another;
// the threads of a block run as cooperative fibers that switch only at __syncthreads and the
// warp-synchronous intrinsics (shuffles, ballot, __syncwarp). So every barrier really
// separates the code before it from the code after it, a missing barrier shows up as a read
// of data not yet written, and a barrier that not every live thread reaches is reported as a
// deadlock instead of hanging. Memory is host memory. It checks correctness, not speed or
// races between blocks.
//
// Streams are real in-order queues run lazily (tools/cuda_emu/streams.cpp has the exact
// policy): work on a created stream runs only when something needs it (a synchronisation of
// its stream, of an event recorded after it or of the device, a cudaEventQuery /
// cudaStreamQuery, a cudaStreamWaitEvent reached by another stream, cudaFree, a copy into
// pageable host memory), newest stream first, so two streams without an event between them
// run in the order that exposes it. The legacy default stream (0) is eager and waits only
// for blocking streams; cudaEventQuery answers cudaErrorNotReady while its work is deferred.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
// libstdc++'s <math.h> also brings std::'s float overloads (exp, log, isnan, ...) into the
// global namespace, as CUDA's device headers do: ::exp(float) must stay float.
#include <math.h>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- CUDA keywords -------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// A block's shared variables: function statics, one copy shared by every fiber of the block
// (blocks run one at a time). Dynamic `extern __shared__` arrays are rewritten by translate.pl
// into a pointer to ::emu::dynamic_shared().
#define __shared__ static

// ---- types -----------------------------------------------------------------------------------
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};
using uint3 = dim3;

// Vector types (by value; the alignment matters for the vector loads they stand for).
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
  // Stream capture (tools/cuda_emu/graphs.cpp).
  cudaErrorStreamCaptureUnsupported = 900,  // the call is not allowed while capturing
  cudaErrorStreamCaptureInvalidated = 901,  // an earlier illegal call broke this capture
  cudaErrorStreamCaptureMerge = 902,
  cudaErrorStreamCaptureUnmatched = 903,    // EndCapture on a stream that is not capturing
  cudaErrorStreamCaptureUnjoined = 904,     // a forked stream did not join back
  cudaErrorStreamCaptureIsolation = 905,    // a dependency on work outside the capture
  cudaErrorStreamCaptureImplicit = 906,     // the legacy stream would wait for a capture
  cudaErrorCapturedEvent = 907,             // query / sync of an event recorded in capture
  cudaErrorStreamCaptureWrongThread = 908,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

struct CUstream_st;
struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
typedef CUgraph_st* cudaGraph_t;
typedef CUgraphExec_st* cudaGraphExec_t;

enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};

constexpr unsigned int cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned int cudaEventDefault = 0, cudaEventDisableTiming = 2;
constexpr unsigned int cudaHostAllocDefault = 0;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int warpSize;
  int maxThreadsPerBlock;
  int multiProcessorCount;
  int major, minor;
  int l2CacheSize;
  int memoryClockRate;  // kHz
  int memoryBusWidth;   // bits
  int clockRate;        // kHz
};

// ---- host API (tools/cuda_emu/runtime.cpp) --------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t err);

cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int flags);
cudaError_t cudaMallocHost(void** ptr, size_t bytes);
cudaError_t cudaFreeHost(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);

cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);

// ---- graphs (tools/cuda_emu/graphs.cpp) ----------------------------------------------------
// Stream capture records, in issue order, everything that goes through emu::enqueue on a
// capturing stream (kernels, cudaMemcpyAsync / cudaMemsetAsync, cuBLAS / cuDNN / cub calls)
// instead of running it; a stream that waits on an event recorded in the capture joins it
// (fork) and must be joined back before cudaStreamEndCapture. cudaGraphLaunch queues the
// recorded work, in that order, on its stream. While capturing, an illegal call fails with
// CUDA's error and invalidates the capture (EndCapture then fails with
// cudaErrorStreamCaptureInvalidated and returns no graph):
//   cudaStreamSynchronize / cudaStreamQuery of a capturing stream  -> ...CaptureUnsupported
//   cudaDeviceSynchronize (any mode)                               -> ...CaptureUnsupported
//   cudaEventSynchronize / cudaEventQuery of an event recorded in
//   the capture                                                    -> cudaErrorCapturedEvent
//   cudaMemcpyAsync from / to pageable host memory on it           -> ...CaptureUnsupported
//   cudaMalloc, cudaFree, cudaHostAlloc, cudaMallocHost,
//   cudaFreeHost, cudaMemcpy, cudaMemset (while a Global capture
//   runs, or a ThreadLocal one on this thread; Relaxed allows them) -> ...CaptureUnsupported
//   cudaStreamWaitEvent on an event recorded outside the capture    -> ...CaptureIsolation
//   legacy-stream work while a blocking stream captures             -> ...CaptureImplicit
// Work enqueued on an invalidated capture is dropped and sets the last error to
// cudaErrorStreamCaptureInvalidated.
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

namespace emu {
// Queues `op` on `stream` (tools/cuda_emu/streams.cpp): the legacy stream (nullptr) runs it
// at once; a created stream runs it in stream order when something needs it. The emulated
// libraries (cuBLAS, cuDNN, cub) enqueue their work with it on their handle's stream.
void enqueue(cudaStream_t stream, std::function<void()> op);
size_t pending(cudaStream_t stream);  // operations queued on `stream` and not yet run
bool is_pinned_host(const void* p);   // inside a cudaHostAlloc / cudaMallocHost block
bool is_device_range(const void* p, size_t bytes);  // [p, p+bytes) inside one cudaMalloc block
size_t graph_nodes(cudaGraph_t graph);  // operations recorded in a captured graph
// Per-kernel attributes and occupancy, keyed by the kernel's address.
cudaError_t set_max_dynamic_shared(const void* kernel, int bytes);
int occupancy_blocks_per_sm(int block_threads, size_t dynamic_smem);
}  // namespace emu

template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  return emu::set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), value);
}
template <typename Kernel>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, Kernel*, int block_threads, size_t smem) {
  *blocks = emu::occupancy_blocks_per_sm(block_threads, smem);
  return cudaSuccess;
}

// ---- device side: built-in variables, barriers, warp intrinsics -----------------------------
namespace emu {
namespace detail {
struct Fiber;
extern Fiber* current;        // the fiber running now
extern dim3 g_block_idx, g_block_dim, g_grid_dim;
const dim3& thread_idx();
int lane();
void syncthreads(const char* file, int line);
void syncwarp(unsigned mask, const char* what);
// Every lane named in `mask` (and still running) posts `value`; returns the value posted by
// lane `src` (a poison value when `src` is not taking part).
uint64_t warp_exchange(unsigned mask, uint64_t value, int src, const char* what);
unsigned warp_ballot(unsigned mask, bool pred);
// Every lane named in `mask` (and still running) posts `value`; all[l] receives lane l's
// value (poison when lane l is not taking part). Returns the lanes taking part. Unlike
// warp_exchange it does not wait again before returning: the caller must __syncwarp before
// anything it posted (or points to) may change. Used by the wmma stand-in (<mma.h>).
uint32_t warp_gather(unsigned mask, uint64_t value, uint64_t all[32], const char* what);
// Stops the kernel with a message naming the calling thread and its block.
[[noreturn]] void kernel_fatal(const std::string& what);
}  // namespace detail

// The block's dynamic shared memory (the third launch parameter), poisoned with 0xFF bytes.
void* dynamic_shared();

// A launch: checked when it is issued (a bad configuration sets the sticky error, as a
// real launch does), then queued on its stream; run_grid runs the whole grid.
bool launch_config_ok(const void* kernel, dim3 grid, dim3 block, size_t smem);
void run_grid(dim3 grid, dim3 block, size_t smem, void (*thread_body)(void*), void* ctx);

template <typename... P>
struct Launch {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;

  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    // Converted once to the parameter types, as a real launch does; every thread then gets
    // its own copy (kernel parameters are per-thread values).
    struct Ctx {
      void (*kernel)(P...);
      std::tuple<std::decay_t<P>...> params;
    };
    auto ctx = std::make_shared<Ctx>(
        Ctx{kernel, std::tuple<std::decay_t<P>...>(static_cast<std::decay_t<P>>(std::forward<A>(args))...)});
    if (!launch_config_ok(reinterpret_cast<const void*>(kernel), grid, block, smem)) return;
    const dim3 g = grid, b = block;
    const size_t sm = smem;
    enqueue(stream, [ctx, g, b, sm] {
      run_grid(g, b, sm,
               [](void* c) {
                 auto* x = static_cast<Ctx*>(c);
                 std::apply(x->kernel, x->params);
               },
               ctx.get());
    });
  }
};

template <typename... P>
Launch<P...> launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem = 0, cudaStream_t stream = nullptr) {
  return Launch<P...>{kernel, grid, block, smem, stream};
}
}  // namespace emu

#define threadIdx (::emu::detail::thread_idx())
#define blockIdx (static_cast<const dim3&>(::emu::detail::g_block_idx))
#define blockDim (static_cast<const dim3&>(::emu::detail::g_block_dim))
#define gridDim (static_cast<const dim3&>(::emu::detail::g_grid_dim))
constexpr int warpSize = 32;

#define __syncthreads() ::emu::detail::syncthreads(__FILE__, __LINE__)
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::emu::detail::syncwarp(mask, "__syncwarp"); }

namespace emu::detail {
template <typename T>
uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of an unsupported type");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof v);
  return u;
}
template <typename T>
T from_bits(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
// Source lane of a shuffle inside its width-sized section, or -1 for "keep my own value".
inline int section_base(int width) { return lane() & ~(width - 1); }
}  // namespace emu::detail

template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  using namespace emu::detail;
  const int from = section_base(width) + (src & (width - 1));
  return from_bits<T>(warp_exchange(mask, to_bits(v), from, "__shfl_sync"));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  using namespace emu::detail;
  int from = lane() ^ lane_mask;
  if (from >= section_base(width) + width) from = lane();
  return from_bits<T>(warp_exchange(mask, to_bits(v), from, "__shfl_xor_sync"));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  using namespace emu::detail;
  int from = lane() + static_cast<int>(delta);
  if (from >= section_base(width) + width) from = lane();
  return from_bits<T>(warp_exchange(mask, to_bits(v), from, "__shfl_down_sync"));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  using namespace emu::detail;
  int from = lane() - static_cast<int>(delta);
  if (from < section_base(width)) from = lane();
  return from_bits<T>(warp_exchange(mask, to_bits(v), from, "__shfl_up_sync"));
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return emu::detail::warp_ballot(mask, pred != 0); }
inline int __any_sync(unsigned mask, int pred) { return emu::detail::warp_ballot(mask, pred != 0) != 0; }
inline int __all_sync(unsigned mask, int pred) {
  return emu::detail::warp_ballot(mask, pred == 0) == 0;
}

// ---- atomics: fibers switch only at barriers, so a plain read-modify-write is atomic --------
template <typename T, typename U>
T atomicAdd(T* p, U v) {
  const T old = *p;
  *p = static_cast<T>(old + static_cast<T>(v));
  return old;
}
template <typename T, typename U>
T atomicMax(T* p, U v) {
  const T old = *p;
  if (old < static_cast<T>(v)) *p = static_cast<T>(v);
  return old;
}
template <typename T, typename U>
T atomicMin(T* p, U v) {
  const T old = *p;
  if (static_cast<T>(v) < old) *p = static_cast<T>(v);
  return old;
}
template <typename T, typename U>
T atomicExch(T* p, U v) {
  const T old = *p;
  *p = static_cast<T>(v);
  return old;
}
template <typename T, typename U, typename V>
T atomicCAS(T* p, U compare, V v) {
  const T old = *p;
  if (old == static_cast<T>(compare)) *p = static_cast<T>(v);
  return old;
}
template <typename T, typename U>
T atomicOr(T* p, U v) {
  const T old = *p;
  *p = static_cast<T>(old | static_cast<T>(v));
  return old;
}

// ---- device intrinsics and CUDA's global min / max overloads --------------------------------
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
inline unsigned int __float_as_uint(float f) { return emu::detail::from_bits<unsigned int>(emu::detail::to_bits(f)); }
inline float __uint_as_float(unsigned int u) { return emu::detail::from_bits<float>(u); }
inline int __float_as_int(float f) { return emu::detail::from_bits<int>(emu::detail::to_bits(f)); }
inline float __int_as_float(int i) { return emu::detail::from_bits<float>(static_cast<uint32_t>(i)); }
inline long long __double_as_longlong(double d) { return emu::detail::from_bits<long long>(emu::detail::to_bits(d)); }
inline double __longlong_as_double(long long v) { return emu::detail::from_bits<double>(static_cast<uint64_t>(v)); }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }

// CUDA declares min / max for every arithmetic type in the global namespace; floating-point
// ones follow fminf / fmaxf (a NaN operand yields the other operand).
template <typename A, typename B, typename = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> max(A a, B b) {
  using R = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<R>) return std::fmax(static_cast<R>(a), static_cast<R>(b));
  else return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(b) : static_cast<R>(a);
}
template <typename A, typename B, typename = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> min(A a, B b) {
  using R = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<R>) return std::fmin(static_cast<R>(a), static_cast<R>(b));
  else return static_cast<R>(b) < static_cast<R>(a) ? static_cast<R>(b) : static_cast<R>(a);
}
