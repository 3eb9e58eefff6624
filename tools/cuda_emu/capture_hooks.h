// cuda-emu internal: what streams.cpp asks graphs.cpp while a stream may be capturing
// (the rules are listed in include/cuda_runtime.h, "graphs"). Every hook is called with
// streams.cpp's lock held; graphs.cpp never takes that lock while holding its own.
// A hook returning cudaError_t answers cudaSuccess when the call may go on as usual.
#pragma once
#include <functional>

#include "cuda_runtime.h"

namespace emu {
void set_last_error(cudaError_t e);         // runtime.cpp: the sticky launch error
bool stream_blocking(cudaStream_t stream);  // streams.cpp: created without NonBlocking

namespace capture {
// emu::enqueue: true when the op was taken by a capture (recorded, or dropped with the last
// error set because the capture is invalidated / the legacy stream would wait for it).
bool take(cudaStream_t stream, std::function<void()>& op);
cudaError_t check_stream_sync(cudaStream_t stream);  // cudaStreamSynchronize / Query
cudaError_t check_device_sync();                      // cudaDeviceSynchronize
cudaError_t check_unsafe_call();     // cudaMalloc/Free, cudaHostAlloc/FreeHost, cudaMemcpy/Memset
cudaError_t check_pageable_copy(cudaStream_t stream);  // cudaMemcpyAsync touching pageable memory
// cudaEventRecord: true when `stream` is capturing (the event then marks a point of the
// capture; *err is the answer).
bool record_event(cudaEvent_t event, cudaStream_t stream, cudaError_t* err);
// cudaStreamWaitEvent: true when the capture machinery answered (*err); `recorded_elsewhere`
// says the event was last recorded, outside any capture, on a created stream.
bool wait_event(cudaStream_t stream, cudaEvent_t event, bool recorded_elsewhere, cudaError_t* err);
cudaError_t check_event_use(cudaEvent_t event);  // cudaEventQuery / cudaEventSynchronize
void forget_event(cudaEvent_t event);            // cudaEventDestroy
}  // namespace capture
}  // namespace emu
