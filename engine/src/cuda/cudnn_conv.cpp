// cuDNN convolutions: descriptors and algorithms cached per key, workspace from the caching
// allocator. What and why: engine/detail/cudnn_conv.h.
#include "engine/detail/cudnn_conv.h"

#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <tuple>
#include <vector>

#include "engine/allocator.h"
#include "engine/cuda_context.h"
#include "engine/error.h"
#include "kernels/counters.h"

namespace eng::cuda::cudnn {
namespace {

// "x [8, 512, 19, 19] w [1024, 512, 3, 3] stride 1x1 pad 1x1 dilation 1x1 f32": every message
// names the convolution it is about.
std::string describe(const kern::Conv2dDims& d, DType dt) {
  std::ostringstream s;
  const int64_t g = d.groups > 0 ? d.groups : 1;
  s << "x [" << d.N << ", " << d.C << ", " << d.H << ", " << d.W << "] w [" << d.O << ", " << d.C / g << ", " << d.kh
    << ", " << d.kw << "] stride " << d.stride_h << "x" << d.stride_w << " pad " << d.pad_h << "x" << d.pad_w
    << " dilation " << d.dil_h << "x" << d.dil_w;
  if (g != 1) s << " groups " << g;
  s << " " << dtype_name(dt);
  if (dt == DType::f32) s << (tf32_enabled() ? " (tf32)" : " (fp32)");
  return s.str();
}

#define CONV_CUDNN(expr, what)                                                                          \
  do {                                                                                                  \
    cudnnStatus_t st_ = (expr);                                                                         \
    ENGINE_CHECK(st_ == CUDNN_STATUS_SUCCESS, "conv2d (cuDNN ", what, "): ", cudnnGetErrorString(st_), \
                 " for ", describe(d, dt));                                                             \
  } while (0)

cudnnHandle_t handle() {
  static cudnnHandle_t h = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    cudnnStatus_t st = cudnnCreate(&h);
    ENGINE_CHECK(st == CUDNN_STATUS_SUCCESS, "cudnnCreate failed: ", cudnnGetErrorString(st));
    st = cudnnSetStream(h, stream());
    ENGINE_CHECK(st == CUDNN_STATUS_SUCCESS, "cudnnSetStream failed: ", cudnnGetErrorString(st));
  });
  return h;
}

cudnnDataType_t data_type(DType dt) {
  switch (dt) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f64: return CUDNN_DATA_DOUBLE;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default: ENGINE_FAIL("conv2d (cuDNN): no cuDNN convolution for dtype ", dtype_name(dt));
  }
}

// The math a key runs with: FP32 FMA, TF32 tensor cores (f32 with cuda::tf32_enabled()),
// the double FMA path, or BF16 tensor cores.
enum class Math { fp32, tf32, f64, bf16 };
Math math_of(DType dt) {
  if (dt == DType::f64) return Math::f64;
  if (dt == DType::f32) return tf32_enabled() ? Math::tf32 : Math::fp32;
  return Math::bf16;
}

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int, int, bool, int64_t>;
Key key_of(const kern::Conv2dDims& d, DType dt) {
  return Key{d.N, d.C, d.H, d.W, d.O, d.kh, d.kw, d.stride_h, d.stride_w, d.pad_h, d.pad_w, d.dil_h, d.dil_w,
             static_cast<int>(dt), static_cast<int>(math_of(dt)), deterministic(), d.groups};
}

// One key's descriptors and the algorithm found for each direction.
struct Entry {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnActivationDescriptor_t relu = nullptr;
  AlgoChoice choice[3];
  cudnnMathType_t algo_math[3] = {CUDNN_DEFAULT_MATH, CUDNN_DEFAULT_MATH, CUDNN_DEFAULT_MATH};
  ~Entry() {
    if (relu) cudnnDestroyActivationDescriptor(relu);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};

struct Cache {
  std::mutex mu;
  std::map<Key, std::unique_ptr<Entry>> entries;
  size_t find_calls = 0;
  size_t workspace_limit = size_t(1) << 30;
};
Cache& cache() {
  static Cache* c = new Cache();  // lives for the process, like the CUDA context
  return *c;
}

int i32(int64_t v) { return static_cast<int>(v); }

std::unique_ptr<Entry> make_entry(const kern::Conv2dDims& d, DType dt) {
  auto e = std::make_unique<Entry>();
  const cudnnDataType_t t = data_type(dt);
  // The compute type: double for f64, float otherwise (bf16 accumulates in FP32).
  const cudnnDataType_t compute = dt == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  CONV_CUDNN(cudnnCreateTensorDescriptor(&e->x), "descriptor");
  CONV_CUDNN(cudnnCreateTensorDescriptor(&e->y), "descriptor");
  CONV_CUDNN(cudnnCreateTensorDescriptor(&e->bias), "descriptor");
  CONV_CUDNN(cudnnCreateFilterDescriptor(&e->w), "descriptor");
  CONV_CUDNN(cudnnCreateConvolutionDescriptor(&e->conv), "descriptor");
  CONV_CUDNN(cudnnCreateActivationDescriptor(&e->relu), "descriptor");
  CONV_CUDNN(cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NCHW, t, i32(d.N), i32(d.C), i32(d.H), i32(d.W)),
             "input descriptor");
  // A grouped convolution (groups > 1): the filter is [O, C / groups, kh, kw] and the
  // descriptor carries the group count; groups == 1 sets nothing more (today's calls).
  CONV_CUDNN(cudnnSetFilter4dDescriptor(e->w, t, CUDNN_TENSOR_NCHW, i32(d.O), i32(d.C / d.groups), i32(d.kh),
                                        i32(d.kw)),
             "filter descriptor");
  CONV_CUDNN(cudnnSetConvolution2dDescriptor(e->conv, i32(d.pad_h), i32(d.pad_w), i32(d.stride_h), i32(d.stride_w),
                                             i32(d.dil_h), i32(d.dil_w), CUDNN_CROSS_CORRELATION, compute),
             "convolution descriptor");
  if (d.groups != 1) CONV_CUDNN(cudnnSetConvolutionGroupCount(e->conv, i32(d.groups)), "group count");
  int n = 0, c = 0, h = 0, w = 0;
  CONV_CUDNN(cudnnGetConvolution2dForwardOutputDim(e->conv, e->x, e->w, &n, &c, &h, &w), "output size");
  ENGINE_CHECK(n == d.N && c == d.O && h == d.Ho && w == d.Wo, "conv2d (cuDNN): output [", n, ", ", c, ", ", h, ", ",
               w, "] differs from the expected [", d.N, ", ", d.O, ", ", d.Ho, ", ", d.Wo, "] for ",
               describe(d, dt));
  CONV_CUDNN(cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NCHW, t, n, c, h, w), "output descriptor");
  CONV_CUDNN(cudnnSetTensor4dDescriptor(e->bias, CUDNN_TENSOR_NCHW, t, 1, c, 1, 1), "bias descriptor");
  CONV_CUDNN(cudnnSetActivationDescriptor(e->relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0),
             "activation descriptor");
  return e;
}

// The math type Find searches with: FP32 must never use TF32 (FMA only); TF32 and BF16 let
// cuDNN pick tensor-core algorithms.
cudnnMathType_t search_math(Math m) {
  switch (m) {
    case Math::fp32: return CUDNN_FMA_MATH;
    case Math::tf32: return CUDNN_DEFAULT_MATH;
    case Math::f64: return CUDNN_DEFAULT_MATH;
    case Math::bf16: return CUDNN_TENSOR_OP_MATH;
  }
  return CUDNN_DEFAULT_MATH;
}

// A block of the caching allocator that goes back when the call ends.
struct Workspace {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit Workspace(size_t n) : bytes(n) {
    if (n > 0) ptr = alloc::allocate(n);
  }
  ~Workspace() {
    if (ptr) alloc::release(ptr, bytes);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
};

// The workspace for Find: the largest need of any algorithm, capped by the limit. If the
// device cannot give that much, Find runs with what it can (a quarter at a time, down to 0).
std::unique_ptr<Workspace> find_workspace(size_t want) {
  size_t n = std::min(want, cache().workspace_limit);
  while (true) {
    try {
      return std::make_unique<Workspace>(n);
    } catch (const Error&) {
      if (n == 0) throw;
      n = n < (size_t(1) << 20) ? 0 : n / 4;
    }
  }
}

// Picks the first (fastest) successful result, deterministic ones only when asked, with a
// workspace within the limit.
template <typename Perf>
int pick(const Perf* perf, int count, size_t limit) {
  for (int i = 0; i < count; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    if (deterministic() && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
    if (perf[i].memory > limit) continue;
    return i;
  }
  return -1;
}

template <typename Perf>
void record(Entry& e, Direction dir, const Perf& p, Math m) {
  AlgoChoice& c = e.choice[static_cast<int>(dir)];
  c.found = true;
  c.algo = static_cast<int>(p.algo);
  c.workspace = p.memory;
  c.deterministic = p.determinism == CUDNN_DETERMINISTIC;
  // FP32 runs with FMA math whatever Find reported: no TF32 rounding may slip in.
  const cudnnMathType_t math = m == Math::fp32 ? CUDNN_FMA_MATH : p.mathType;
  e.algo_math[static_cast<int>(dir)] = math;
  c.tensor_op = math == CUDNN_TENSOR_OP_MATH || math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION ||
                (math == CUDNN_DEFAULT_MATH && m != Math::fp32 && m != Math::f64);
  c.find_ms = p.time;
}

// What differs between the three directions' algorithm searches. a and b are the call's two
// inputs, out its output (forward: x, w -> y; backward data: w, dy -> dx; backward filter:
// x, dy -> dw).
struct ForwardSearch {
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  static constexpr int kCount = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  static constexpr Direction kDir = Direction::forward;
  static constexpr const char* kWhat = "forward";
  static cudnnStatus_t workspace(const Entry& e, int algo, size_t* n) {
    return cudnnGetConvolutionForwardWorkspaceSize(handle(), e.x, e.w, e.conv, e.y,
                                                   static_cast<cudnnConvolutionFwdAlgo_t>(algo), n);
  }
  static cudnnStatus_t find(const Entry& e, const void* a, const void* b, void* out, int* count, Perf* perf,
                            void* ws, size_t bytes) {
    return cudnnFindConvolutionForwardAlgorithmEx(handle(), e.x, a, e.w, b, e.conv, e.y, out, kCount, count, perf, ws,
                                                  bytes);
  }
};
struct BackwardDataSearch {
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  static constexpr int kCount = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  static constexpr Direction kDir = Direction::backward_data;
  static constexpr const char* kWhat = "backward data";
  static cudnnStatus_t workspace(const Entry& e, int algo, size_t* n) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(handle(), e.w, e.y, e.conv, e.x,
                                                        static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), n);
  }
  static cudnnStatus_t find(const Entry& e, const void* a, const void* b, void* out, int* count, Perf* perf,
                            void* ws, size_t bytes) {
    return cudnnFindConvolutionBackwardDataAlgorithmEx(handle(), e.w, a, e.y, b, e.conv, e.x, out, kCount, count,
                                                       perf, ws, bytes);
  }
};
struct BackwardFilterSearch {
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  static constexpr int kCount = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  static constexpr Direction kDir = Direction::backward_filter;
  static constexpr const char* kWhat = "backward filter";
  static cudnnStatus_t workspace(const Entry& e, int algo, size_t* n) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle(), e.x, e.y, e.conv, e.w,
                                                          static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), n);
  }
  static cudnnStatus_t find(const Entry& e, const void* a, const void* b, void* out, int* count, Perf* perf,
                            void* ws, size_t bytes) {
    return cudnnFindConvolutionBackwardFilterAlgorithmEx(handle(), e.x, a, e.y, b, e.conv, e.w, out, kCount, count,
                                                         perf, ws, bytes);
  }
};

// Finds (once per entry and direction) the algorithm, on the call's own buffers: offers Find
// the largest workspace any algorithm asks for (capped by the limit), keeps the fastest that
// succeeded within it (deterministic ones only when asked).
template <typename Search>
void find_algorithm(Entry& e, const kern::Conv2dDims& d, DType dt, const void* a, const void* b, void* out) {
  const int slot = static_cast<int>(Search::kDir);
  if (e.choice[slot].found) return;
  const Math m = math_of(dt);
  CONV_CUDNN(cudnnSetConvolutionMathType(e.conv, search_math(m)), "math type");
  size_t need = 0;
  for (int algo = 0; algo < Search::kCount; ++algo) {
    size_t n = 0;
    if (Search::workspace(e, algo, &n) == CUDNN_STATUS_SUCCESS) need = std::max(need, n);
  }
  auto ws = find_workspace(need);
  typename Search::Perf perf[Search::kCount];
  int count = 0;
  CONV_CUDNN(Search::find(e, a, b, out, &count, perf, ws->ptr, ws->bytes),
             (std::string(Search::kWhat) + " algorithm search").c_str());
  // Counted as one launch and one host sync: Find runs and times every algorithm and waits.
  kern::counters::add_launches();
  kern::counters::add_host_sync();
  ++cache().find_calls;
  const int i = pick(perf, count, ws->bytes);
  ENGINE_CHECK(i >= 0, "conv2d (cuDNN ", Search::kWhat, "): no ", deterministic() ? "deterministic " : "",
               "algorithm runs within ", ws->bytes, " bytes of workspace for ", describe(d, dt));
  record(e, Search::kDir, perf[i], m);
}

// The key's entry, created on first use. Entries are never removed while the process runs
// (except by clear_cache), so the reference stays valid.
Entry& entry(const kern::Conv2dDims& d, DType dt) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  const Key key = key_of(d, dt);
  auto it = c.entries.find(key);
  if (it != c.entries.end()) return *it->second;
  // make_entry throws (naming the conv) when cuDNN refuses a descriptor: nothing is cached then.
  return *c.entries.emplace(key, make_entry(d, dt)).first->second;
}

// The chosen algorithm's workspace; a device that cannot give it is an error naming the conv.
std::unique_ptr<Workspace> run_workspace(const AlgoChoice& c, const char* what, const kern::Conv2dDims& d, DType dt) {
  try {
    return std::make_unique<Workspace>(c.workspace);
  } catch (const Error& err) {
    ENGINE_FAIL("conv2d (cuDNN ", what, "): algorithm ", c.algo, " needs ", c.workspace,
                " bytes of workspace, more than the device can give, for ", describe(d, dt), " (", err.what(), ")");
  }
}

// alpha = 1, beta = 0 in the type cuDNN reads them as: double for double data, else float.
struct Scalars {
  float f1 = 1.0f, f0 = 0.0f;
  double d1 = 1.0, d0 = 0.0;
  const void* one(DType dt) const { return dt == DType::f64 ? static_cast<const void*>(&d1) : &f1; }
  const void* zero(DType dt) const { return dt == DType::f64 ? static_cast<const void*>(&d0) : &f0; }
};

}  // namespace

void conv_forward(const kern::Conv2dDims& d, DType dt, const void* x, const void* w, const void* bias, void* y,
                  bool relu) {
  Entry& e = entry(d, dt);
  find_algorithm<ForwardSearch>(e, d, dt, x, w, y);
  const AlgoChoice& c = e.choice[0];
  CONV_CUDNN(cudnnSetConvolutionMathType(e.conv, e.algo_math[0]), "math type");
  auto ws = run_workspace(c, "forward", d, dt);
  const Scalars s;
  const auto algo = static_cast<cudnnConvolutionFwdAlgo_t>(c.algo);
  if (relu && bias) {
    // y = relu(conv + bias) in one call. z is y with alpha2 = 0; y is zeroed first so that
    // whatever the block held before (possibly NaN bits) cannot leak in through 0 * z.
    const size_t ybytes = static_cast<size_t>(d.N * d.O * d.Ho * d.Wo) * dtype_size(dt);
    cudaError_t err = cudaMemsetAsync(y, 0, ybytes, stream());
    ENGINE_CHECK(err == cudaSuccess, "conv2d (cuDNN forward): cudaMemsetAsync failed: ", cudaGetErrorString(err));
    CONV_CUDNN(cudnnConvolutionBiasActivationForward(handle(), s.one(dt), e.x, x, e.w, w, e.conv, algo, ws->ptr,
                                                     ws->bytes, s.zero(dt), e.y, y, e.bias, bias, e.relu, e.y, y),
               "fused forward + bias + ReLU");
    kern::counters::add_launches();  // each cuDNN compute call counts as one launch
    return;
  }
  CONV_CUDNN(cudnnConvolutionForward(handle(), s.one(dt), e.x, x, e.w, w, e.conv, algo, ws->ptr, ws->bytes,
                                     s.zero(dt), e.y, y),
             "forward");
  kern::counters::add_launches();
  if (bias) {
    CONV_CUDNN(cudnnAddTensor(handle(), s.one(dt), e.bias, bias, s.one(dt), e.y, y), "bias add");
    kern::counters::add_launches();
  }
  ENGINE_CHECK(!relu, "conv2d (cuDNN forward): a fused ReLU needs a bias (the front-end applies relu itself)");
}

void conv_backward_data(const kern::Conv2dDims& d, DType dt, const void* w, const void* dy, void* dx) {
  Entry& e = entry(d, dt);
  find_algorithm<BackwardDataSearch>(e, d, dt, w, dy, dx);
  const AlgoChoice& c = e.choice[1];
  CONV_CUDNN(cudnnSetConvolutionMathType(e.conv, e.algo_math[1]), "math type");
  auto ws = run_workspace(c, "backward data", d, dt);
  const Scalars s;
  CONV_CUDNN(cudnnConvolutionBackwardData(handle(), s.one(dt), e.w, w, e.y, dy, e.conv,
                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), ws->ptr, ws->bytes,
                                          s.zero(dt), e.x, dx),
             "backward data");
  kern::counters::add_launches();
}

void conv_backward_filter(const kern::Conv2dDims& d, DType dt, const void* x, const void* dy, void* dw) {
  Entry& e = entry(d, dt);
  find_algorithm<BackwardFilterSearch>(e, d, dt, x, dy, dw);
  const AlgoChoice& c = e.choice[2];
  CONV_CUDNN(cudnnSetConvolutionMathType(e.conv, e.algo_math[2]), "math type");
  auto ws = run_workspace(c, "backward filter", d, dt);
  const Scalars s;
  CONV_CUDNN(cudnnConvolutionBackwardFilter(handle(), s.one(dt), e.x, x, e.y, dy, e.conv,
                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), ws->ptr, ws->bytes,
                                            s.zero(dt), e.w, dw),
             "backward filter");
  kern::counters::add_launches();
}

void conv_backward_bias(const kern::Conv2dDims& d, DType dt, const void* dy, void* db) {
  Entry& e = entry(d, dt);
  const Scalars s;
  CONV_CUDNN(cudnnConvolutionBackwardBias(handle(), s.one(dt), e.y, dy, s.zero(dt), e.bias, db), "backward bias");
  kern::counters::add_launches();
}

AlgoChoice chosen(const kern::Conv2dDims& d, DType dt, Direction dir) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.entries.find(key_of(d, dt));
  return it == c.entries.end() ? AlgoChoice{} : it->second->choice[static_cast<int>(dir)];
}

std::string algo_name(Direction dir, int algo) {
  static const char* fwd[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM",     "DIRECT",
                              "FFT",           "FFT_TILING",            "WINOGRAD", "WINOGRAD_NONFUSED"};
  static const char* bwd_data[] = {"ALGO_0", "ALGO_1", "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
  static const char* bwd_filter[] = {"ALGO_0",   "ALGO_1", "FFT", "ALGO_3", "WINOGRAD", "WINOGRAD_NONFUSED",
                                     "FFT_TILING"};
  switch (dir) {
    case Direction::forward: return algo >= 0 && algo < 8 ? fwd[algo] : "?";
    case Direction::backward_data: return algo >= 0 && algo < 6 ? bwd_data[algo] : "?";
    case Direction::backward_filter: return algo >= 0 && algo < 7 ? bwd_filter[algo] : "?";
  }
  return "?";
}

CacheStats cache_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return CacheStats{c.entries.size(), c.find_calls};
}

void clear_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.entries.clear();
}

size_t workspace_limit() { return cache().workspace_limit; }
void set_workspace_limit(size_t bytes) { cache().workspace_limit = bytes; }

}  // namespace eng::cuda::cudnn
