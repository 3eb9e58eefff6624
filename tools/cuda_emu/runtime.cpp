// cuda-emu runtime: kernel launches on cooperative fibers, and the host API on host memory.
// The model and what it checks are described in include/cuda_runtime.h.
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_runtime.h"

// Under AddressSanitizer the fibers tell it about every stack switch, so that the emulated
// build can run the kernels under ASan (scripts/test_cuda_emu.sh --asan): an out-of-bounds
// access by a kernel is then reported like compute-sanitizer's memcheck would.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_START_SWITCH(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define EMU_FINISH_SWITCH(save, bottom, size) __sanitizer_finish_switch_fiber(save, bottom, size)
#else
#define EMU_START_SWITCH(save, bottom, size) ((void)(save), (void)(bottom), (void)(size))
#define EMU_FINISH_SWITCH(save, bottom, size) ((void)(save), (void)(bottom), (void)(size))
#endif

#if !defined(__x86_64__)
#error "cuda-emu switches fiber stacks with x86-64 code; it is only needed (and built) on CPU-only machines"
#endif

// emu_switch_stack(save, load): saves the callee-saved registers and the floating-point
// control words on the current stack, stores the stack pointer in *save, switches to the
// stack `load` and restores what was saved there. Two orders of magnitude cheaper than
// swapcontext, which makes a system call to save the signal mask on every switch.
extern "C" void emu_switch_stack(void** save, void* load);
asm(R"(
  .text
  .globl emu_switch_stack
  .type emu_switch_stack, @function
emu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch_stack, .-emu_switch_stack
)");

namespace emu {
namespace detail {

// A thread of the running block.
struct Fiber {
  void* sp = nullptr;  // its saved stack pointer while it is not running
  dim3 idx;
  int linear = 0;  // threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)
  bool done = false;
  const char* waiting_at = nullptr;  // what it is blocked in, for the deadlock report
  int waiting_line = 0;
  void* stack = nullptr;
  void* asan_fake_stack = nullptr;
};

// The warp-synchronous state of one warp.
struct Warp {
  uint32_t live = 0;     // lanes that exist and have not returned
  uint32_t arrived = 0;  // lanes waiting in the current warp barrier
  uint32_t mask = 0;     // the mask the first arriver named
  const char* what = nullptr;  // the call the first arriver is in
  uint64_t generation = 0;
  uint64_t slots[32] = {};  // values posted to warp_exchange
};

Fiber* current = nullptr;
dim3 g_block_idx, g_block_dim, g_grid_dim;

namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr uint64_t kPoison = ~0ull;  // a shuffle from a lane that is not taking part

void* scheduler_sp = nullptr;
std::vector<Fiber> fibers;
std::vector<Warp> warps;
std::vector<void*> stacks;  // one per fiber slot, reused across launches
int live_threads = 0;
int block_arrived = 0;
uint64_t block_generation = 0;
const char* block_site_file = nullptr;
int block_site_line = 0;
uint64_t progress = 0;  // changes whenever a thread arrives somewhere or returns
std::vector<unsigned char> dynamic_smem;
void (*g_thread_body)(void*) = nullptr;
void* g_thread_ctx = nullptr;

[[noreturn]] void fatal(const std::string& what) {
  std::fprintf(stderr, "cuda-emu: %s (block %u,%u,%u)\n", what.c_str(), g_block_idx.x, g_block_idx.y,
               g_block_idx.z);
  std::fflush(stderr);
  std::abort();
}

std::string thread_name(const Fiber& f) {
  return "thread (" + std::to_string(f.idx.x) + "," + std::to_string(f.idx.y) + "," + std::to_string(f.idx.z) + ")";
}

void* stack_for(size_t slot) {
  while (stacks.size() <= slot) {
    // A guard page below each stack turns an overflow into a fault at once.
    void* p = mmap(nullptr, kStackBytes + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) fatal("cannot map a fiber stack");
    mprotect(p, 4096, PROT_NONE);
    stacks.push_back(static_cast<char*>(p) + 4096);
  }
  return stacks[slot];
}

const void* scheduler_stack = nullptr;  // for the ASan annotations
size_t scheduler_stack_size = 0;

// Back to the scheduler; returns when the scheduler resumes this fiber.
void yield() {
  Fiber* me = current;
  EMU_START_SWITCH(&me->asan_fake_stack, scheduler_stack, scheduler_stack_size);
  emu_switch_stack(&me->sp, scheduler_sp);
  EMU_FINISH_SWITCH(me->asan_fake_stack, &scheduler_stack, &scheduler_stack_size);
}

void release_block_barrier() {
  block_arrived = 0;
  block_site_file = nullptr;
  ++block_generation;
  ++progress;
}

void release_warp_barrier(Warp& w) {
  w.arrived = 0;
  w.mask = 0;
  ++w.generation;
  ++progress;
}

// The lanes of `w` that a barrier with `mask` waits for: named and still running.
bool warp_barrier_complete(const Warp& w) { return w.arrived != 0 && (w.arrived & w.mask & w.live) == (w.mask & w.live); }

void thread_returned() {
  Fiber& f = *current;
  f.done = true;
  --live_threads;
  ++progress;
  Warp& w = warps[f.linear / 32];
  w.live &= ~(1u << (f.linear % 32));
  // Threads that have returned no longer take part in barriers (as on sm_70 and later).
  if (block_arrived > 0 && block_arrived == live_threads) release_block_barrier();
  if (warp_barrier_complete(w)) release_warp_barrier(w);
}

// The first code a fiber runs (entered by emu_switch_stack's `ret`); it never returns.
[[noreturn]] void fiber_start() {
  EMU_FINISH_SWITCH(nullptr, &scheduler_stack, &scheduler_stack_size);
  g_thread_body(g_thread_ctx);
  thread_returned();
  EMU_START_SWITCH(nullptr, scheduler_stack, scheduler_stack_size);  // this fiber is done
  Fiber* me = current;
  emu_switch_stack(&me->sp, scheduler_sp);
  __builtin_unreachable();
}

// A new fiber's stack, laid out as emu_switch_stack leaves a suspended one: the control
// words, six zeroed registers, then fiber_start as the return address. Its `ret` leaves the
// stack pointer 8 below a 16-byte boundary, as after a call.
void* initial_stack(void* stack_base) {
  auto* top = reinterpret_cast<uint64_t*>((reinterpret_cast<uintptr_t>(stack_base) + kStackBytes) & ~uintptr_t(15));
  top[-1] = 0;  // fiber_start's (never used) return address
  top[-2] = reinterpret_cast<uint64_t>(&fiber_start);
  for (int r = 3; r <= 8; ++r) top[-r] = 0;  // rbp, rbx, r12 .. r15
  top[-9] = 0x1F80u | (uint64_t{0x037F} << 32);  // MXCSR and the x87 control word at reset
  return top - 9;
}

void run_block() {
  const int n = static_cast<int>(g_block_dim.x * g_block_dim.y * g_block_dim.z);
  const int nwarps = (n + 31) / 32;
  fibers.assign(n, Fiber{});
  warps.assign(nwarps, Warp{});
  for (int t = 0; t < n; ++t) warps[t / 32].live |= 1u << (t % 32);
  live_threads = n;
  block_arrived = 0;
  block_site_file = nullptr;
  if (!dynamic_smem.empty()) std::memset(dynamic_smem.data(), 0xFF, dynamic_smem.size());

  for (int t = 0; t < n; ++t) {
    Fiber& f = fibers[t];
    f.linear = t;
    f.idx = dim3(t % g_block_dim.x, (t / g_block_dim.x) % g_block_dim.y, t / (g_block_dim.x * g_block_dim.y));
    f.stack = stack_for(t);
    f.sp = initial_stack(f.stack);
  }
  int remaining = n;
  while (remaining > 0) {
    const uint64_t before = progress;
    for (Fiber& f : fibers) {
      if (f.done) continue;
      current = &f;
      void* fake_stack = nullptr;
      EMU_START_SWITCH(&fake_stack, f.stack, kStackBytes);
      emu_switch_stack(&scheduler_sp, f.sp);
      EMU_FINISH_SWITCH(fake_stack, nullptr, nullptr);
      if (f.done) --remaining;
    }
    current = nullptr;
    if (remaining > 0 && progress == before) {
      std::string msg = "deadlock: no thread of the block can move;";
      int shown = 0;
      for (const Fiber& f : fibers) {
        if (f.done || shown == 4) continue;
        msg += " " + thread_name(f) + " waits in " + (f.waiting_at ? f.waiting_at : "?");
        if (f.waiting_line) msg += " line " + std::to_string(f.waiting_line);
        msg += ";";
        ++shown;
      }
      fatal(msg + " (a barrier or a *_sync call that not every named live thread reaches)");
    }
  }
}

}  // namespace

const dim3& thread_idx() { return current->idx; }
int lane() { return current->linear % 32; }

void syncthreads(const char* file, int line) {
  if (!current) fatal("__syncthreads outside a kernel");
  if (block_arrived == 0) {
    block_site_file = file;
    block_site_line = line;
  } else if (line != block_site_line || std::strcmp(file, block_site_file) != 0) {
    fatal(std::string("divergent __syncthreads: ") + thread_name(*current) + " at " + file +
          ":" + std::to_string(line) + " while others wait at " + block_site_file + ":" +
          std::to_string(block_site_line));
  }
  ++block_arrived;
  ++progress;
  if (block_arrived == live_threads) {
    release_block_barrier();
    return;
  }
  const uint64_t gen = block_generation;
  current->waiting_at = "__syncthreads";
  current->waiting_line = line;
  while (block_generation == gen) yield();
  current->waiting_at = nullptr;
  current->waiting_line = 0;
}

// Waits until every live lane named in `mask` has arrived (the caller must be named).
void warp_barrier(unsigned mask, const char* what) {
  Warp& w = warps[current->linear / 32];
  const uint32_t me = 1u << (current->linear % 32);
  if (!(mask & me)) fatal(std::string(what) + " called by a lane its mask does not name (" + thread_name(*current) + ")");
  if (w.arrived == 0) {
    w.mask = mask;
    w.what = what;
  } else if (w.mask != mask) {
    fatal(std::string(what) + ": lanes of one warp meet with different masks (" + thread_name(*current) + ")");
  } else if ((std::strncmp(what, "wmma::", 6) == 0) != (std::strncmp(w.what, "wmma::", 6) == 0)) {
    // a wmma call posts pointers to its fragments: it cannot pair with a shuffle or a ballot
    fatal(std::string("lanes of one warp meet in different calls: ") + what + " and " + w.what + " (" +
          thread_name(*current) + ")");
  }
  w.arrived |= me;
  ++progress;
  if (warp_barrier_complete(w)) {
    release_warp_barrier(w);
    return;
  }
  const uint64_t gen = w.generation;
  current->waiting_at = what;
  while (w.generation == gen) yield();
  current->waiting_at = nullptr;
}

void syncwarp(unsigned mask, const char* what) {
  if (!current) fatal(std::string(what) + " outside a kernel");
  warp_barrier(mask, what);
}

uint64_t warp_exchange(unsigned mask, uint64_t value, int src, const char* what) {
  if (!current) fatal(std::string(what) + " outside a kernel");
  Warp& w = warps[current->linear / 32];
  w.slots[current->linear % 32] = value;
  warp_barrier(mask, what);  // every taking part has posted
  // The lanes taking part right now (a lane cannot return between the two barriers).
  const uint32_t taking_part = mask & w.live;
  const uint64_t got = (src >= 0 && src < 32 && (taking_part >> src) & 1u) ? w.slots[src] : kPoison;
  warp_barrier(mask, what);  // every taking part has read before the slots are reused
  return got;
}

uint32_t warp_gather(unsigned mask, uint64_t value, uint64_t all[32], const char* what) {
  if (!current) fatal(std::string(what) + " outside a kernel");
  Warp& w = warps[current->linear / 32];
  w.slots[current->linear % 32] = value;
  warp_barrier(mask, what);
  // Lanes that do not exist (a partial last warp) or have returned are not live.
  const uint32_t taking_part = mask & w.live;
  for (int l = 0; l < 32; ++l) all[l] = ((taking_part >> l) & 1u) ? w.slots[l] : kPoison;
  return taking_part;
}

void kernel_fatal(const std::string& what) {
  if (!current) fatal(what);
  fatal(what + " (" + thread_name(*current) + ")");
}

unsigned warp_ballot(unsigned mask, bool pred) {
  if (!current) fatal("__ballot_sync outside a kernel");
  Warp& w = warps[current->linear / 32];
  w.slots[current->linear % 32] = pred ? 1 : 0;
  warp_barrier(mask, "__ballot_sync");
  const uint32_t taking_part = mask & w.live;
  unsigned bits = 0;
  for (int l = 0; l < 32; ++l)
    if (((taking_part >> l) & 1u) && w.slots[l]) bits |= 1u << l;
  warp_barrier(mask, "__ballot_sync");
  return bits;
}

}  // namespace detail

namespace {
std::mutex launch_mutex;  // one kernel at a time, whatever host thread launches it
std::mutex state_mutex;
cudaError_t last_error = cudaSuccess;
std::map<const void*, int> max_dynamic_shared;  // cudaFuncAttributeMaxDynamicSharedMemorySize

constexpr int kDefaultDynamicShared = 48 * 1024;
constexpr int kOptinShared = 227 * 1024;  // sm_90
constexpr int kSmCount = 132;             // an H100 SXM

void set_error(cudaError_t e) {
  std::lock_guard<std::mutex> lock(state_mutex);
  if (last_error == cudaSuccess) last_error = e;
}
}  // namespace

void* dynamic_shared() { return detail::dynamic_smem.data(); }
void set_last_error(cudaError_t e) { set_error(e); }  // for graphs.cpp (capture_hooks.h)

cudaError_t set_max_dynamic_shared(const void* kernel, int bytes) {
  if (bytes < 0 || bytes > kOptinShared) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(state_mutex);
  max_dynamic_shared[kernel] = bytes;
  return cudaSuccess;
}

int occupancy_blocks_per_sm(int block_threads, size_t smem) {
  if (block_threads <= 0) return 0;
  int blocks = std::min(2048 / block_threads, 32);
  if (smem > 0) blocks = std::min<int>(blocks, static_cast<int>((228 * 1024) / (smem + 1024)));
  return std::max(blocks, 0);
}

bool launch_config_ok(const void* kernel, dim3 grid, dim3 block, size_t smem) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u) {
    set_error(cudaErrorInvalidConfiguration);
    return false;
  }
  int smem_limit = kDefaultDynamicShared;
  {
    std::lock_guard<std::mutex> lock(state_mutex);
    auto it = max_dynamic_shared.find(kernel);
    if (it != max_dynamic_shared.end()) smem_limit = std::max(smem_limit, it->second);
  }
  if (smem > static_cast<size_t>(smem_limit)) {  // a real launch fails the same way
    set_error(cudaErrorInvalidValue);
    return false;
  }
  return true;
}

void run_grid(dim3 grid, dim3 block, size_t smem, void (*thread_body)(void*), void* ctx) {
  std::lock_guard<std::mutex> lock(launch_mutex);
  using namespace detail;
  g_thread_body = thread_body;
  g_thread_ctx = ctx;
  g_grid_dim = grid;
  g_block_dim = block;
  dynamic_smem.assign(smem, 0xFF);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        g_block_idx = dim3(x, y, z);
        run_block();
      }
}

}  // namespace emu

// ---- host API ----------------------------------------------------------------------------------

// One emulated device by default; CUDA_EMU_DEVICES=N (1..64) shows N, so that the ranks of an
// emulated data-parallel run on one machine each find "their" GPU (local rank r -> device r).
// The devices share the process's memory: only the device numbering is emulated.
static int emu_device_count() {
  const char* v = std::getenv("CUDA_EMU_DEVICES");
  if (v == nullptr || *v == 0) return 1;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (*end == 0 && n >= 1 && n <= 64) ? static_cast<int>(n) : 1;
}
static thread_local int t_current_device = 0;
cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return emu::set_last_error(cudaErrorInvalidValue), cudaErrorInvalidValue;
  *count = emu_device_count();
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= emu_device_count()) return emu::set_last_error(cudaErrorInvalidDevice), cudaErrorInvalidDevice;
  t_current_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return emu::set_last_error(cudaErrorInvalidValue), cudaErrorInvalidValue;
  *device = t_current_device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device < 0 || device >= emu_device_count()) return cudaErrorInvalidDevice;
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "cuda-emu (CPU emulation)");
  prop->totalGlobalMem = 16ull << 30;
  prop->sharedMemPerBlock = emu::kDefaultDynamicShared;
  prop->sharedMemPerBlockOptin = emu::kOptinShared;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->multiProcessorCount = emu::kSmCount;
  prop->major = 9;
  prop->minor = 0;
  prop->l2CacheSize = 50 << 20;
  prop->memoryClockRate = 2619000;
  prop->memoryBusWidth = 5120;
  prop->clockRate = 1980000;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = emu::kDefaultDynamicShared; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = emu::kSmCount; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = emu::kOptinShared; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}
cudaError_t cudaGetLastError() {
  std::lock_guard<std::mutex> lock(emu::state_mutex);
  const cudaError_t e = emu::last_error;
  emu::last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() {
  std::lock_guard<std::mutex> lock(emu::state_mutex);
  return emu::last_error;
}
const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureMerge: return "operation would result in a merge of separate capture sequences";
    case cudaErrorStreamCaptureUnmatched: return "capture was not initiated in this stream";
    case cudaErrorStreamCaptureUnjoined: return "capturing stream has unjoined work";
    case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorCapturedEvent: return "operation not permitted on an event last recorded in a capturing stream";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
  }
  return "unknown error";
}
// Memory, copies, streams and events: streams.cpp.
