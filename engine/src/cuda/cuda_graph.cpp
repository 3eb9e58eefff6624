// cuda::Graph: stream capture of the compute stream into a graph with a private memory pool.
#include "engine/cuda_graph.h"

#include <cuda_runtime.h>

#include <exception>
#include <string>
#include <utility>

#include "engine/cuda_context.h"
#include "engine/error.h"
#include "kernels/counters.h"

namespace eng::cuda {

Graph::~Graph() { reset(); }

Graph::Graph(Graph&& other) noexcept
    : graph_(std::exchange(other.graph_, nullptr)),
      exec_(std::exchange(other.exec_, nullptr)),
      pool_(std::move(other.pool_)) {}

Graph& Graph::operator=(Graph&& other) noexcept {
  if (this != &other) {
    reset();
    graph_ = std::exchange(other.graph_, nullptr);
    exec_ = std::exchange(other.exec_, nullptr);
    pool_ = std::move(other.pool_);
  }
  return *this;
}

void Graph::reset() {
  if (exec_ || graph_) {
    // A replay may still be queued: its blocks go back to the general lists only after it.
    cudaStreamSynchronize(stream());
    if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
  }
  exec_ = graph_ = nullptr;
  pool_.reset();
}

void Graph::capture(const std::function<void()>& fn) {
  ENGINE_CHECK(available(), "Graph::capture: no CUDA device is available");
  reset();
  const cudaStream_t s = stream();
  const cudaError_t pending = cudaGetLastError();  // not this capture's: report, do not hide
  ENGINE_CHECK(pending == cudaSuccess, "Graph::capture: a CUDA error from earlier work is pending: ",
               cudaGetErrorString(pending));
  std::shared_ptr<alloc::GraphPool> pool = alloc::begin_capture(s);
  cudaError_t err = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) {
    alloc::end_capture();
    ENGINE_FAIL("Graph::capture: cudaStreamBeginCapture failed: ", cudaGetErrorString(err));
  }
  std::exception_ptr thrown;
  try {
    fn();
  } catch (...) {
    thrown = std::current_exception();
  }
  cudaGraph_t graph = nullptr;
  err = cudaStreamEndCapture(s, &graph);  // always: the stream must leave capture mode
  alloc::end_capture();
  const cudaError_t launch_err = cudaGetLastError();  // e.g. a launch into a broken capture
  if (thrown || err != cudaSuccess || launch_err != cudaSuccess) {
    if (graph) cudaGraphDestroy(graph);
    pool.reset();
    if (thrown) {
      try {
        std::rethrow_exception(thrown);
      } catch (const std::exception& e) {
        ENGINE_FAIL("Graph::capture: the captured function failed: ", e.what());
      }
    }
    const cudaError_t e = err != cudaSuccess ? err : launch_err;
    ENGINE_FAIL("Graph::capture: the capture failed (", cudaGetErrorString(e),
                "): the captured function waited on the host, copied pageable memory or allocated from the driver");
  }
  cudaGraphExec_t exec = nullptr;
  err = cudaGraphInstantiate(&exec, graph, 0);
  if (err != cudaSuccess) {
    cudaGraphDestroy(graph);
    ENGINE_FAIL("Graph::capture: cudaGraphInstantiate failed: ", cudaGetErrorString(err));
  }
  graph_ = graph;
  exec_ = exec;
  pool_ = std::move(pool);
}

void Graph::replay() {
  ENGINE_CHECK(exec_, "Graph::replay: nothing was captured");
  const cudaError_t err = cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), stream());
  ENGINE_CHECK(err == cudaSuccess, "Graph::replay: cudaGraphLaunch failed: ", cudaGetErrorString(err));
  // One launch in the device counters (engine/counters.h): the kernels inside were counted
  // once, at capture, where their launch calls ran.
  kern::counters::add_launches(1);
}

}  // namespace eng::cuda
