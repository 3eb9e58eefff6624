// cuda-emu graphs: stream capture records work instead of running it, a graph replays it.
//
// The model (the rules a program sees are listed in include/cuda_runtime.h, "graphs"):
// - A capture is a list of operations (the closures emu::enqueue receives) in issue order,
//   and the set of streams taking part: the origin (cudaStreamBeginCapture) and every
//   stream forked from it by waiting on an event recorded in the capture. Issue order on
//   one host thread is a valid topological order of CUDA's graph, so the replay runs the
//   list in order on the launch stream (one stream: no concurrency is emulated).
// - Events recorded on a capturing stream are points in the capture (which stream, how many
//   of its operations came before), used for fork / join and to refuse host waits on them.
// - An illegal call marks its capture invalidated; later work on it is dropped with
//   cudaErrorStreamCaptureInvalidated as the last error, and cudaStreamEndCapture fails.
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "capture_hooks.h"
#include "cuda_runtime.h"

using OpList = std::vector<std::function<void()>>;

struct CUgraph_st {
  std::shared_ptr<const OpList> ops;
};
struct CUgraphExec_st {
  std::shared_ptr<const OpList> ops;
};

namespace {

struct Member {
  size_t recorded = 0;  // operations this stream added to the capture
  size_t joined = 0;    // of those, how many another member has waited for (an event)
  bool blocking = true;
};

struct Capture {
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;
  cudaStream_t origin = nullptr;
  bool invalidated = false;
  bool ended = false;
  std::shared_ptr<OpList> ops = std::make_shared<OpList>();
  std::map<cudaStream_t, Member> members;
};

struct CapturedEvent {
  std::weak_ptr<Capture> capture;
  cudaStream_t stream = nullptr;
  size_t position = 0;  // the stream's recorded operations before the event
};

std::mutex& gm() {
  static auto* m = new std::mutex();
  return *m;
}
std::map<cudaStream_t, std::shared_ptr<Capture>>& by_stream() {  // capturing streams
  static auto* m = new std::map<cudaStream_t, std::shared_ptr<Capture>>();
  return *m;
}
std::map<cudaEvent_t, CapturedEvent>& captured_events() {
  static auto* m = new std::map<cudaEvent_t, CapturedEvent>();
  return *m;
}

std::shared_ptr<Capture> capture_of(cudaStream_t s) {
  if (!s) return nullptr;
  auto it = by_stream().find(s);
  return it == by_stream().end() ? nullptr : it->second;
}

// Captures that a blocking legacy-stream operation would have to wait for.
bool invalidate_blocking_captures() {
  bool any = false;
  for (auto& [s, c] : by_stream())
    if (c->members[s].blocking) {
      c->invalidated = true;
      any = true;
    }
  return any;
}

}  // namespace

namespace emu::capture {

bool take(cudaStream_t stream, std::function<void()>& op) {
  std::lock_guard<std::mutex> lock(gm());
  if (!stream) {
    if (!invalidate_blocking_captures()) return false;
    set_last_error(cudaErrorStreamCaptureImplicit);
    return true;
  }
  auto c = capture_of(stream);
  if (!c) return false;
  if (c->invalidated) {
    set_last_error(cudaErrorStreamCaptureInvalidated);
    return true;
  }
  c->ops->push_back(std::move(op));
  ++c->members[stream].recorded;
  return true;
}

cudaError_t check_stream_sync(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(gm());
  if (!stream) return invalidate_blocking_captures() ? cudaErrorStreamCaptureImplicit : cudaSuccess;
  auto c = capture_of(stream);
  if (!c) return cudaSuccess;
  c->invalidated = true;
  return cudaErrorStreamCaptureUnsupported;
}

cudaError_t check_device_sync() {
  std::lock_guard<std::mutex> lock(gm());
  if (by_stream().empty()) return cudaSuccess;
  for (auto& [s, c] : by_stream()) c->invalidated = true;
  return cudaErrorStreamCaptureUnsupported;
}

cudaError_t check_unsafe_call() {
  std::lock_guard<std::mutex> lock(gm());
  bool refused = false;
  for (auto& [s, c] : by_stream()) {
    const bool applies = c->mode == cudaStreamCaptureModeGlobal ||
                         (c->mode == cudaStreamCaptureModeThreadLocal && c->thread == std::this_thread::get_id());
    if (!applies) continue;
    c->invalidated = true;
    refused = true;
  }
  return refused ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}

cudaError_t check_pageable_copy(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(gm());
  auto c = capture_of(stream);
  if (!c) return cudaSuccess;
  c->invalidated = true;
  return cudaErrorStreamCaptureUnsupported;
}

bool record_event(cudaEvent_t event, cudaStream_t stream, cudaError_t* err) {
  std::lock_guard<std::mutex> lock(gm());
  auto c = capture_of(stream);
  if (!c) {
    captured_events().erase(event);  // recorded outside capture again: an ordinary event
    if (!stream && invalidate_blocking_captures()) {
      *err = cudaErrorStreamCaptureImplicit;
      return true;
    }
    return false;
  }
  if (c->invalidated) {
    *err = cudaErrorStreamCaptureInvalidated;
    return true;
  }
  captured_events()[event] = CapturedEvent{c, stream, c->members[stream].recorded};
  *err = cudaSuccess;
  return true;
}

bool wait_event(cudaStream_t stream, cudaEvent_t event, bool recorded_elsewhere, cudaError_t* err) {
  std::lock_guard<std::mutex> lock(gm());
  auto mine = capture_of(stream);
  auto it = captured_events().find(event);
  if (it == captured_events().end()) {
    if (!mine) return false;  // an ordinary wait
    if (mine->invalidated) {
      *err = cudaErrorStreamCaptureInvalidated;
    } else if (recorded_elsewhere) {  // a dependency on work outside the capture
      mine->invalidated = true;
      *err = cudaErrorStreamCaptureIsolation;
    } else {
      *err = cudaSuccess;  // never recorded: nothing to wait for
    }
    return true;
  }
  auto theirs = it->second.capture.lock();
  if (!theirs || theirs->ended) {  // recorded in a capture that is over: no work to wait for
    if (mine) {
      mine->invalidated = true;
      *err = cudaErrorStreamCaptureIsolation;
    } else {
      *err = cudaSuccess;
    }
    return true;
  }
  if (!stream) {  // the legacy stream cannot join a capture
    theirs->invalidated = true;
    *err = cudaErrorStreamCaptureImplicit;
    return true;
  }
  if (mine && mine != theirs) {
    mine->invalidated = theirs->invalidated = true;
    *err = cudaErrorStreamCaptureMerge;
    return true;
  }
  if (theirs->invalidated) {
    *err = cudaErrorStreamCaptureInvalidated;
    return true;
  }
  if (!mine) {  // fork: the stream joins the capture
    by_stream()[stream] = theirs;
    theirs->members[stream].blocking = stream_blocking(stream);
  } else if (stream != it->second.stream) {  // join
    Member& m = theirs->members[it->second.stream];
    m.joined = std::max(m.joined, it->second.position);
  }
  *err = cudaSuccess;
  return true;
}

cudaError_t check_event_use(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(gm());
  auto it = captured_events().find(event);
  if (it == captured_events().end()) return cudaSuccess;
  if (auto c = it->second.capture.lock())
    if (!c->ended) c->invalidated = true;
  return cudaErrorCapturedEvent;
}

void forget_event(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(gm());
  captured_events().erase(event);
}

}  // namespace emu::capture

size_t emu::graph_nodes(cudaGraph_t graph) { return graph ? graph->ops->size() : 0; }

// ---- the API ------------------------------------------------------------------------------
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
      mode != cudaStreamCaptureModeRelaxed)
    return cudaErrorInvalidValue;
  if (!stream) return cudaErrorStreamCaptureUnsupported;  // the legacy stream cannot capture
  const bool blocking = emu::stream_blocking(stream);
  std::lock_guard<std::mutex> lock(gm());
  if (capture_of(stream)) return cudaErrorIllegalState;
  auto c = std::make_shared<Capture>();
  c->mode = mode;
  c->thread = std::this_thread::get_id();
  c->origin = stream;
  c->members[stream].blocking = blocking;
  by_stream()[stream] = c;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (!graph) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(gm());
  *graph = nullptr;
  auto c = capture_of(stream);
  if (!c || c->origin != stream) return cudaErrorStreamCaptureUnmatched;
  if (c->mode == cudaStreamCaptureModeThreadLocal && c->thread != std::this_thread::get_id())
    return cudaErrorStreamCaptureWrongThread;
  bool unjoined = false;
  for (auto& [s, m] : c->members) {
    by_stream().erase(s);
    if (s != stream && m.recorded > m.joined) unjoined = true;
  }
  c->ended = true;
  if (c->invalidated) return cudaErrorStreamCaptureInvalidated;
  if (unjoined) return cudaErrorStreamCaptureUnjoined;
  *graph = new CUgraph_st{c->ops};
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (!status) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(gm());
  auto c = capture_of(stream);
  *status = !c ? cudaStreamCaptureStatusNone
               : (c->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive);
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags) {
  if (!exec || !graph) return cudaErrorInvalidValue;
  (void)flags;  // the emulator's replay does not depend on the instantiation flags
  *exec = new CUgraphExec_st{graph->ops};
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return cudaErrorInvalidValue;
  // Each recorded closure is copied (its captured arguments are shared, read-only), so a
  // graph can be replayed any number of times.
  for (const auto& op : *exec->ops) emu::enqueue(stream, op);
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  if (!exec) return cudaErrorInvalidValue;
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  if (!graph) return cudaErrorInvalidValue;
  delete graph;
  return cudaSuccess;
}
