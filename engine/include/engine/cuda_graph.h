// CUDA graphs: record the work a function queues on the compute stream once, replay it
// with one launch (engine/src/cuda/cuda_graph.cpp).
//
//   cuda::Graph g;
//   run_step();                  // warm-up: fills the allocator's cache, picks cuDNN algorithms
//   g.capture([&] { run_step(); });  // records; nothing runs
//   copy new data into the static inputs (same addresses), then g.replay();  // runs it
//
// What a captured function may do: queue kernels, cuBLAS / cuDNN calls, memsets and copies
// between device memory or from / to pinned host memory on the compute stream. What it may
// not do (the capture fails with a one-line error, and the stream is left usable): wait on
// the host (.item(), .cpu(), cuda::synchronize, Event::synchronize / query), copy from / to
// pageable host memory, or make the caching allocator reach the driver (an allocation of a
// size the warm-up did not leave in the cache). Host code inside the function runs once,
// at capture: a replay repeats only the device work, with the same addresses, shapes and
// scalars (a value computed on the host at capture is frozen into the graph).
// Memory: blocks allocated during the capture form the graph's private pool (allocator.h,
// rules 4 and 5), kept alive with the Graph; tensors created before the capture that the
// graph reads (static inputs, weights) must be kept alive by the caller.
// The capture uses cudaStreamCaptureModeThreadLocal: other threads may keep allocating
// (a loader pinning host memory), but only this thread may use the compute stream.
#pragma once
#include <functional>
#include <memory>

#include "engine/allocator.h"

namespace eng::cuda {

class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(Graph&& other) noexcept;
  Graph& operator=(Graph&& other) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Records what fn queues on the compute stream (fn runs once, its device work does not)
  // and instantiates it. Throws eng::Error if fn throws or does something illegal in a
  // capture; the Graph is then empty and the stream usable. A second capture replaces the
  // first.
  void capture(const std::function<void()>& fn);
  // Queues the recorded work on the compute stream (asynchronous, like a kernel launch).
  void replay();
  bool captured() const { return exec_ != nullptr; }
  void reset();  // waits for the compute stream, then frees the graph and its pool

 private:
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
  std::shared_ptr<alloc::GraphPool> pool_;
};

}  // namespace eng::cuda
