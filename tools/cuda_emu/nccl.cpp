// cuda-emu NCCL: communicators, unique ids, AllReduce / Broadcast / AllGather and group calls
// over MPI between the processes that `mpirun` starts (the behaviour is listed in
// include/nccl.h). A collective is checked when it is called, queued on its emulated stream
// and run, with MPI, when the stream runs: the NCCL code of the engine runs unchanged, with
// its streams and events, on machines without a GPU.
//
// Every wait for the other ranks polls a non-blocking MPI request against a deadline
// (CUDA_EMU_NCCL_TIMEOUT seconds, default 300) and the comm's abort flag, so a dead or absent
// peer gives ncclRemoteError instead of a hang. Reductions gather every rank's data and
// combine it in rank order: bit-identical results on every rank.
#include "nccl.h"

#include <mpi.h>

#include "nccl_internal.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {
using namespace emu::nccl_detail;

// The first bytes of every id ncclGetUniqueId makes (the rest is random).
constexpr char kIdMagic[16] = "cuda_emu:ncclid";

struct CommState {
  MPI_Comm mpi = MPI_COMM_NULL;
  int rank = 0;
  int nranks = 1;
  uint64_t issued = 0;  // collectives queued so far (the header's sequence number)
  std::atomic<int> async_error{ncclSuccess};
  std::atomic<bool> aborted{false};
  ~CommState() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && mpi != MPI_COMM_NULL) MPI_Comm_free(&mpi);  // legal with requests pending
  }
};

}  // namespace

// The handle. Destroyed or aborted handles are kept (not freed), so a stale pointer is never
// reused for a new communicator and is always recognised.
struct ncclComm {
  std::shared_ptr<CommState> state;
  std::map<cudaStream_t, cudaEvent_t> tails;  // per stream: after the last collective queued
};

namespace {

std::mutex& registry_mu() {
  static auto* m = new std::mutex();
  return *m;
}
std::set<ncclComm*>& live_comms() {
  static auto* s = new std::set<ncclComm*>();
  return *s;
}
std::mutex& error_mu() {
  static auto* m = new std::mutex();
  return *m;
}
std::string& last_error() {
  static auto* s = new std::string();
  return *s;
}

template <typename... A>
ncclResult_t fail(ncclResult_t code, const char* fmt, A... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  std::lock_guard<std::mutex> lock(error_mu());
  last_error() = buf;
  return code;
}
// Sets `code` as the comm's asynchronous error (the first one stays) and the last error.
template <typename... A>
void fail_async(CommState& st, ncclResult_t code, const char* fmt, A... args) {
  fail(code, fmt, args...);
  int expected = ncclSuccess;
  st.async_error.compare_exchange_strong(expected, code);
}

double timeout_seconds() {
  const char* s = std::getenv("CUDA_EMU_NCCL_TIMEOUT");
  if (!s || !*s) return 300;
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  if (*end != '\0' || !(v > 0) || v > 1e6) {
    std::fprintf(stderr, "cuda_emu nccl: CUDA_EMU_NCCL_TIMEOUT=%s is not a number of seconds in (0, 1e6]; using 300\n", s);
    return 300;
  }
  return v;
}

// Waits for `req`: ncclSuccess when it completed; ncclRemoteError after the deadline;
// ncclInvalidUsage when `st` was aborted meanwhile; ncclSystemError when MPI failed.
ncclResult_t wait_request(MPI_Request& req, CommState* st, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds());
  for (int polls = 0;; ++polls) {
    int done = 0;
    if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      return fail(ncclSystemError, "%s: MPI failed while waiting for the other ranks", what);
    if (done) return ncclSuccess;
    if (st && st->aborted.load()) return fail(ncclInvalidUsage, "%s: the communicator was aborted", what);
    if (std::chrono::steady_clock::now() > deadline)
      return fail(ncclRemoteError, "%s: waited %g s for the other ranks (CUDA_EMU_NCCL_TIMEOUT); one died or did not call it",
                  what, timeout_seconds());
    if (polls < 1000) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// ---- collectives ------------------------------------------------------------------------------
enum Coll : int32_t { kAllReduce = 1, kBroadcast = 2, kAllGather = 3 };
const char* coll_name(int c) {
  return c == kAllReduce ? "ncclAllReduce" : c == kBroadcast ? "ncclBroadcast" : c == kAllGather ? "ncclAllGather" : "?";
}

// What every rank must agree on; exchanged before the data.
struct Header {
  uint64_t seq = 0;
  uint64_t count = 0;
  int32_t coll = 0, datatype = 0, op = 0, root = 0;
};
struct Call {
  Header h;
  const void* send = nullptr;
  void* recv = nullptr;
};

void run_collective(CommState& st, const Call& c) {
  if (st.aborted.load() || st.async_error.load() != ncclSuccess) return;  // a broken comm runs nothing
  const char* name = coll_name(c.h.coll);
  std::vector<Header> all(static_cast<size_t>(st.nranks));
  MPI_Request req;
  if (MPI_Iallgather(&c.h, sizeof(Header), MPI_BYTE, all.data(), sizeof(Header), MPI_BYTE, st.mpi, &req) != MPI_SUCCESS)
    return fail_async(st, ncclSystemError, "%s: MPI_Iallgather failed", name);
  if (ncclResult_t r = wait_request(req, &st, name)) {
    if (!st.aborted.load()) st.async_error.store(r);
    return;
  }
  for (int r = 0; r < st.nranks; ++r) {
    const Header& o = all[static_cast<size_t>(r)];
    if (std::memcmp(&o, &c.h, sizeof(Header)) != 0) {
      fail_async(st, ncclInvalidUsage,
                 "collective #%llu: rank %d called %s(count %llu, %s, %s, root %d) but rank %d called "
                 "%s(count %llu, %s, %s, root %d)",
                 static_cast<unsigned long long>(c.h.seq), st.rank, name, static_cast<unsigned long long>(c.h.count),
                 type_name(c.h.datatype), op_name(c.h.op), c.h.root, r, coll_name(o.coll),
                 static_cast<unsigned long long>(o.count), type_name(o.datatype), op_name(o.op), o.root);
      return;
    }
  }
  const auto dt = static_cast<ncclDataType_t>(c.h.datatype);
  const size_t bytes = c.h.count * type_size(dt);
  const int n = static_cast<int>(bytes);  // checked <= INT_MAX when called
  std::vector<char> gathered;
  int rc;
  if (c.h.coll == kAllReduce) {
    gathered.resize(bytes * static_cast<size_t>(st.nranks));
    rc = MPI_Iallgather(c.send, n, MPI_BYTE, gathered.data(), n, MPI_BYTE, st.mpi, &req);
  } else if (c.h.coll == kBroadcast) {
    if (st.rank == c.h.root && c.send != c.recv) std::memmove(c.recv, c.send, bytes);
    rc = MPI_Ibcast(c.recv, n, MPI_BYTE, c.h.root, st.mpi, &req);
  } else {
    const bool in_place = c.send == static_cast<char*>(c.recv) + bytes * static_cast<size_t>(st.rank);
    rc = MPI_Iallgather(in_place ? MPI_IN_PLACE : c.send, n, MPI_BYTE, c.recv, n, MPI_BYTE, st.mpi, &req);
  }
  if (rc != MPI_SUCCESS) return fail_async(st, ncclSystemError, "%s: MPI failed to start the transfer", name);
  if (ncclResult_t r = wait_request(req, &st, name)) {
    if (!st.aborted.load()) st.async_error.store(r);
    return;
  }
  if (c.h.coll == kAllReduce) reduce(c.recv, gathered.data(), c.h.count, st.nranks, dt, static_cast<ncclRedOp_t>(c.h.op));
}

// A live comm's state, or the error a call on `comm` gets.
// With `async` false a pending asynchronous error is not reported (queries of the comm).
ncclResult_t check_comm(ncclComm_t comm, const char* fn, std::shared_ptr<CommState>* out, bool async = true) {
  if (!comm) return fail(ncclInvalidArgument, "%s: comm is NULL", fn);
  {
    std::lock_guard<std::mutex> lock(registry_mu());
    if (!live_comms().count(comm))
      return fail(ncclInvalidArgument, "%s: comm is not a live communicator (never initialised, destroyed or aborted)", fn);
  }
  *out = comm->state;
  if (int e = (*out)->async_error.load(); e && async)
    return fail(static_cast<ncclResult_t>(e), "%s: the communicator has an asynchronous error (%s)", fn,
                ncclGetErrorString(static_cast<ncclResult_t>(e)));
  return ncclSuccess;
}
ncclResult_t check_type_op(ncclDataType_t t, int op, const char* fn) {
  if (static_cast<int>(t) < 0 || static_cast<int>(t) >= ncclNumTypes)
    return fail(ncclInvalidArgument, "%s: invalid data type %d", fn, static_cast<int>(t));
  if (type_size(t) == 0) return fail(ncclInvalidArgument, "%s: %s is not emulated", fn, type_name(t));
  if (op < 0 || op >= ncclNumOps) return fail(ncclInvalidArgument, "%s: invalid reduction operation %d", fn, op);
  return ncclSuccess;
}
ncclResult_t check_buffer(const void* p, size_t bytes, const char* fn, const char* which) {
  if (!p) return fail(ncclInvalidArgument, "%s: %s is NULL", fn, which);
  if (!emu::is_device_range(p, bytes))
    return fail(ncclInvalidArgument, "%s: %s (%p, %zu bytes) is not inside one device allocation (cudaMalloc)", fn,
                which, p, bytes);
  return ncclSuccess;
}
ncclResult_t check_stream(cudaStream_t stream, const char* fn) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (stream && cudaStreamIsCapturing(stream, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone)
    return fail(ncclInvalidUsage, "%s: capturing NCCL calls in a CUDA graph is not emulated", fn);
  return ncclSuccess;
}

// Queues a checked call on its stream (or keeps it for ncclGroupEnd).
struct Pending {
  ncclComm_t comm;
  Call call;
  cudaStream_t stream;
};
thread_local int g_group_depth = 0;
thread_local std::vector<Pending> g_group;

void enqueue(ncclComm_t comm, Call c, cudaStream_t stream) {
  std::shared_ptr<CommState> st = comm->state;
  c.h.seq = ++st->issued;
  emu::enqueue(stream, [st, c] { run_collective(*st, c); });
  cudaEvent_t& tail = comm->tails[stream];
  if (!tail) cudaEventCreateWithFlags(&tail, cudaEventDisableTiming);
  cudaEventRecord(tail, stream);
}
ncclResult_t submit(ncclComm_t comm, const Call& c, cudaStream_t stream) {
  if (g_group_depth > 0) g_group.push_back(Pending{comm, c, stream});
  else enqueue(comm, c, stream);
  return ncclSuccess;
}

}  // namespace

// ---- the API ------------------------------------------------------------------------------------
extern "C" {

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

const char* ncclGetLastError(ncclComm_t) {
  thread_local std::string copy;
  std::lock_guard<std::mutex> lock(error_mu());
  copy = last_error();
  return copy.c_str();
}

ncclResult_t ncclGetVersion(int* version) {
  if (!version) return fail(ncclInvalidArgument, "ncclGetVersion: version is NULL");
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (!id) return fail(ncclInvalidArgument, "ncclGetUniqueId: uniqueId is NULL");
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, kIdMagic, sizeof kIdMagic);
  std::random_device rd;
  std::seed_seq seq{rd(), rd(), rd(), rd(), static_cast<unsigned>(getpid()),
                    static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count())};
  std::mt19937_64 gen(seq);
  for (size_t i = sizeof kIdMagic; i + 8 <= sizeof id->internal; i += 8) {
    const uint64_t v = gen();
    std::memcpy(id->internal + i, &v, 8);
  }
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  const char* fn = "ncclCommInitRank";
  if (!comm) return fail(ncclInvalidArgument, "%s: comm is NULL", fn);
  *comm = nullptr;
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (!inited || finalized)
    return fail(ncclInvalidUsage, "%s: MPI is not running (the emulator's NCCL works over MPI: MPI_Init_thread first)", fn);
  int provided = 0;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_MULTIPLE)
    return fail(ncclInvalidUsage, "%s: MPI was initialised without MPI_THREAD_MULTIPLE", fn);

  // Every process of the world says what it asked for, even a caller with bad arguments, so
  // that the others fail at once instead of waiting.
  struct Entry {
    char id[NCCL_UNIQUE_ID_BYTES];
    int32_t rank, nranks, bad;
  };
  Entry mine{};
  std::memcpy(mine.id, id.internal, sizeof mine.id);
  mine.rank = rank;
  mine.nranks = nranks;
  const bool bad_id = std::memcmp(id.internal, kIdMagic, sizeof kIdMagic) != 0;
  mine.bad = nranks < 1 || rank < 0 || rank >= nranks || bad_id;
  int world_size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  MPI_Comm world;
  MPI_Comm_dup(MPI_COMM_WORLD, &world);
  std::vector<Entry> all(static_cast<size_t>(world_size));
  MPI_Request req;
  MPI_Iallgather(&mine, sizeof(Entry), MPI_BYTE, all.data(), sizeof(Entry), MPI_BYTE, world, &req);
  if (ncclResult_t r = wait_request(req, nullptr, fn)) return r;

  ncclResult_t verdict = ncclSuccess;
  int color = MPI_UNDEFINED;
  if (mine.bad) {
    verdict = bad_id ? fail(ncclInvalidArgument, "%s: the unique id was not made by ncclGetUniqueId", fn)
                     : fail(ncclInvalidArgument, "%s: rank %d is not in [0, nranks %d)", fn, rank, nranks);
  } else {
    std::vector<int> seen(static_cast<size_t>(nranks), -1);
    int members = 0;
    for (int w = 0; w < world_size && verdict == ncclSuccess; ++w) {
      const Entry& e = all[static_cast<size_t>(w)];
      if (std::memcmp(e.id, mine.id, sizeof e.id) != 0) continue;
      if (color == MPI_UNDEFINED) color = w;  // the group's first world rank names it
      ++members;
      if (e.bad) verdict = fail(ncclInvalidUsage, "%s: world rank %d passed this id with a bad rank or nranks", fn, w);
      else if (e.nranks != nranks)
        verdict = fail(ncclInvalidUsage, "%s: nranks %d here but %d on world rank %d (same id)", fn, nranks, e.nranks, w);
      else if (seen[static_cast<size_t>(e.rank)] >= 0)
        verdict = fail(ncclInvalidUsage, "%s: rank %d passed by world ranks %d and %d (same id)", fn, e.rank,
                       seen[static_cast<size_t>(e.rank)], w);
      else seen[static_cast<size_t>(e.rank)] = w;
    }
    if (verdict == ncclSuccess && members != nranks)
      verdict = fail(ncclInvalidUsage, "%s: %d processes passed this id but nranks is %d", fn, members, nranks);
    if (verdict != ncclSuccess) color = MPI_UNDEFINED;
  }
  MPI_Comm sub = MPI_COMM_NULL;
  MPI_Comm_split(world, color, rank, &sub);  // all processes have seen the same table
  MPI_Comm_free(&world);
  if (verdict != ncclSuccess) return verdict;
  MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN);
  auto* handle = new ncclComm();
  handle->state = std::make_shared<CommState>();
  handle->state->mpi = sub;
  handle->state->rank = rank;
  handle->state->nranks = nranks;
  std::lock_guard<std::mutex> lock(registry_mu());
  live_comms().insert(handle);
  *comm = handle;
  return ncclSuccess;
}

namespace {
// Takes `comm` out of the live set; false when it was not live.
bool retire(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(registry_mu());
  return live_comms().erase(comm) == 1;
}
}  // namespace

// Finishes the collectives queued on comm (their streams run up to them), then frees it.
ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (!comm) return ncclSuccess;
  if (!retire(comm))
    return fail(ncclInvalidArgument, "ncclCommDestroy: comm is not a live communicator (never initialised, destroyed or aborted)");
  for (auto& [stream, tail] : comm->tails) {
    cudaEventSynchronize(tail);
    cudaEventDestroy(tail);
  }
  comm->tails.clear();
  comm->state.reset();  // the MPI communicator goes with the last queued call that holds it
  return ncclSuccess;
}

// Stops the comm now: a collective waiting for peers returns, queued ones will do nothing.
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (!comm) return ncclSuccess;
  if (!retire(comm))
    return fail(ncclInvalidArgument, "ncclCommAbort: comm is not a live communicator (never initialised, destroyed or aborted)");
  comm->state->aborted.store(true);
  for (auto& [stream, tail] : comm->tails) cudaEventDestroy(tail);
  comm->tails.clear();
  comm->state.reset();
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
  if (!asyncError) return fail(ncclInvalidArgument, "ncclCommGetAsyncError: asyncError is NULL");
  std::shared_ptr<CommState> st;
  if (ncclResult_t r = check_comm(comm, "ncclCommGetAsyncError", &st, false)) return r;
  *asyncError = static_cast<ncclResult_t>(comm->state->async_error.load());
  return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  if (!count) return fail(ncclInvalidArgument, "ncclCommCount: count is NULL");
  std::shared_ptr<CommState> st;
  if (ncclResult_t r = check_comm(comm, "ncclCommCount", &st, false)) return r;
  *count = comm->state->nranks;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  if (!rank) return fail(ncclInvalidArgument, "ncclCommUserRank: rank is NULL");
  std::shared_ptr<CommState> st;
  if (ncclResult_t r = check_comm(comm, "ncclCommUserRank", &st, false)) return r;
  *rank = comm->state->rank;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  const char* fn = "ncclAllReduce";
  std::shared_ptr<CommState> st;
  if (ncclResult_t r = check_comm(comm, fn, &st)) return r;
  if (ncclResult_t r = check_type_op(datatype, op, fn)) return r;
  if (count == 0) return ncclSuccess;
  const size_t es = type_size(datatype);
  if (count > static_cast<size_t>(INT_MAX) / es / static_cast<size_t>(st->nranks))
    return fail(ncclInvalidArgument, "%s: count %zu is over the emulator's limit (INT_MAX bytes gathered)", fn, count);
  if (ncclResult_t r = check_buffer(sendbuff, count * es, fn, "sendbuff")) return r;
  if (ncclResult_t r = check_buffer(recvbuff, count * es, fn, "recvbuff")) return r;
  if (ncclResult_t r = check_stream(stream, fn)) return r;
  Call c;
  c.h.count = count;
  c.h.coll = kAllReduce;
  c.h.datatype = datatype;
  c.h.op = op;
  c.send = sendbuff;
  c.recv = recvbuff;
  return submit(comm, c, stream);
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream) {
  const char* fn = "ncclBroadcast";
  std::shared_ptr<CommState> st;
  if (ncclResult_t r = check_comm(comm, fn, &st)) return r;
  if (ncclResult_t r = check_type_op(datatype, ncclSum, fn)) return r;
  if (root < 0 || root >= st->nranks) return fail(ncclInvalidArgument, "%s: root %d is not in [0, %d)", fn, root, st->nranks);
  if (count == 0) return ncclSuccess;
  const size_t es = type_size(datatype);
  if (count > static_cast<size_t>(INT_MAX) / es)
    return fail(ncclInvalidArgument, "%s: count %zu is over the emulator's limit (INT_MAX bytes)", fn, count);
  if (st->rank == root)  // the other ranks' sendbuff is not read
    if (ncclResult_t r = check_buffer(sendbuff, count * es, fn, "sendbuff")) return r;
  if (ncclResult_t r = check_buffer(recvbuff, count * es, fn, "recvbuff")) return r;
  if (ncclResult_t r = check_stream(stream, fn)) return r;
  Call c;
  c.h.count = count;
  c.h.coll = kBroadcast;
  c.h.datatype = datatype;
  c.h.root = root;
  c.send = sendbuff;
  c.recv = recvbuff;
  return submit(comm, c, stream);
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t stream) {
  const char* fn = "ncclAllGather";
  std::shared_ptr<CommState> st;
  if (ncclResult_t r = check_comm(comm, fn, &st)) return r;
  if (ncclResult_t r = check_type_op(datatype, ncclSum, fn)) return r;
  if (sendcount == 0) return ncclSuccess;
  const size_t es = type_size(datatype);
  if (sendcount > static_cast<size_t>(INT_MAX) / es / static_cast<size_t>(st->nranks))
    return fail(ncclInvalidArgument, "%s: sendcount %zu is over the emulator's limit (INT_MAX bytes gathered)", fn, sendcount);
  if (ncclResult_t r = check_buffer(sendbuff, sendcount * es, fn, "sendbuff")) return r;
  if (ncclResult_t r = check_buffer(recvbuff, sendcount * es * static_cast<size_t>(st->nranks), fn, "recvbuff")) return r;
  if (ncclResult_t r = check_stream(stream, fn)) return r;
  Call c;
  c.h.count = sendcount;
  c.h.coll = kAllGather;
  c.h.datatype = datatype;
  c.send = sendbuff;
  c.recv = recvbuff;
  return submit(comm, c, stream);
}

ncclResult_t ncclGroupStart() {
  ++g_group_depth;
  return ncclSuccess;
}

// The outermost end queues the calls made since the outermost start, in call order.
ncclResult_t ncclGroupEnd() {
  if (g_group_depth == 0) return fail(ncclInvalidUsage, "ncclGroupEnd: no ncclGroupStart before it");
  if (--g_group_depth > 0) return ncclSuccess;
  std::vector<Pending> calls;
  calls.swap(g_group);
  ncclResult_t result = ncclSuccess;
  for (Pending& p : calls) {
    bool live;
    {
      std::lock_guard<std::mutex> lock(registry_mu());
      live = live_comms().count(p.comm) == 1;
    }
    if (!live) {
      result = fail(ncclInvalidUsage, "ncclGroupEnd: a communicator of the group was destroyed before ncclGroupEnd");
      continue;
    }
    enqueue(p.comm, p.call, p.stream);
  }
  return result;
}

}  // extern "C"
