// Collective communication between the processes of a data-parallel run (issue 13).
//
// A Communicator joins the `size()` ranks of one run. Every collective is called by every
// rank, in the same order, with tensors of the same shape and dtype on every rank (checked
// where it is cheap; a mismatch is an eng::Error, never a hang or a wrong answer).
//
// Backends (engine/src/dist/):
//   mpi     - MPI_COMM_WORLD of the processes `mpirun` (or `srun`) started. CPU tensors
//             directly; CUDA tensors through pinned host buffers (the compute stream is
//             synchronised first). Asynchronous calls run on one communication thread, in the
//             order they were issued, so that they overlap the caller's computation.
//   nccl    - CUDA tensors through NCCL on its own stream, ordered against the compute stream
//             with events (no host wait); host data (bytes, CPU tensors) and the barrier go
//             through the MPI communicator it was built from (the NCCL stream is synchronised
//             first, so every rank sees the same order of calls). The unique id travels by MPI.
//   threads - tests only: `size` ranks as threads of one process (make_thread_group).
//
// Reductions are sums, then a multiplication by `scale` (1 / size() gives the mean). Sums of
// floats are done in a fixed order for a fixed world size (rank 0 + rank 1 + ...), so a
// reduction gives the same bits on every rank and on every run.
//
// Timeouts: a blocking call, or Work::wait(), that has not completed after timeout_seconds()
// (default 300 s; ENGINE_DIST_TIMEOUT or set_timeout) throws eng::Error naming this rank,
// the collective and the wait, e.g. "rank 0: all_reduce waited 300 s for the other ranks
// (one of them died or hangs)". The apps turn that into one line and abort() the job.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace eng::dist {

// Where this process stands in the run, read from the launcher's environment without
// starting MPI: Open MPI (OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK/LOCAL_SIZE), PMIx / Slurm's
// srun (PMIX_RANK, SLURM_PROCID/NTASKS/LOCALID), torchrun-style (RANK, WORLD_SIZE,
// LOCAL_RANK). No launcher: rank 0 of 1. PMIx alone does not give the size: size is then 0
// (known once MPI starts). A malformed value is an eng::Error naming the variable.
struct LaunchInfo {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  std::string launcher = "none";  // "openmpi", "slurm", "pmix", "torchrun", "none"
};
LaunchInfo detect_launch();

// What this build can do (MPI found at configure time; NCCL headers and library, or the
// emulator's stand-in, found at configure time).
bool mpi_available();
bool nccl_available();

// A pending asynchronous collective. wait() blocks until it is done (or throws on timeout);
// for the nccl backend, wait() makes the compute stream wait for it (an event: no host wait).
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;
  virtual std::string backend() const = 0;  // "mpi", "nccl", "threads"

  // In place: t = scale * sum over ranks of t. Contiguous f32, f64, i64 or i32 (bf16 on
  // nccl). CPU or CUDA tensor as the backend allows.
  virtual void all_reduce(Tensor& t, double scale = 1.0) = 0;
  // The same, started now and finished by Work::wait(); `t` must stay alive and untouched
  // until then. Calls complete in the order they were issued.
  virtual std::unique_ptr<Work> all_reduce_async(Tensor& t, double scale = 1.0) = 0;
  // In place: every rank gets root's t.
  virtual void broadcast(Tensor& t, int root = 0) = 0;
  // [size, ...t.shape]: row r is rank r's t (same device as t).
  virtual Tensor all_gather(const Tensor& t) = 0;
  virtual void barrier() = 0;
  // Host bytes of any length per rank; result[r] is rank r's bytes (configuration hashes,
  // serialised detections).
  virtual std::vector<std::vector<uint8_t>> all_gather_bytes(const std::vector<uint8_t>& mine) = 0;

  double timeout_seconds() const { return timeout_s_; }
  void set_timeout(double seconds) { timeout_s_ = seconds; }

 protected:
  double timeout_s_ = 300;
};

// Starts MPI (MPI_Init_thread, MPI_THREAD_MULTIPLE) once per process and returns the world
// communicator of the given backend: "mpi", or "nccl" (needs CUDA, NCCL and MPI; the
// process's CUDA device must be chosen first: eng::cuda::set_device_index). Throws eng::Error with
// one line when the backend is not in this build ("distributed training is unavailable:
// this build has no MPI (install openmpi-bin libopenmpi-dev and rebuild)"). Each call makes a
// new communicator (collective over every process: call it from one thread, in the same
// order on every rank).
std::unique_ptr<Communicator> init(const std::string& backend);
// The nccl communicator over the same ranks as `host` (an mpi communicator from init("mpi")),
// which carries the unique id and every host-side call. The process's CUDA device must be
// chosen first (eng::cuda::set_device_index). Throws when this build has no NCCL.
std::unique_ptr<Communicator> make_nccl(std::unique_ptr<Communicator> host);
// MPI_Finalize when init() started MPI (called at exit of the apps; safe to call twice; init()
// also registers it with atexit). Skipped, with a line on stderr, while a collective that timed
// out is still pending: MPI_Finalize would wait for the rank that died or hangs.
void finalize();
// Ends the whole job now: MPI_Abort(MPI_COMM_WORLD, code) when MPI runs, else std::exit.
[[noreturn]] void abort_job(int code);

// Tests only: `size` communicators joined in this process (one per thread, each used by
// exactly one thread), with the same semantics as the real backends on CPU tensors.
std::vector<std::unique_ptr<Communicator>> make_thread_group(int size);

// The communicator that model code reaches without having it passed down: the losses'
// normaliser (positive count) and SyncBatchNorm reduce through it. Null (the default) or a
// size-1 communicator: nothing is reduced, and the code runs exactly as single-process.
Communicator* current();
void set_current(Communicator* comm);
// Sets current() for a scope (tests with thread groups: one per thread; thread-local).
class CurrentScope {
 public:
  explicit CurrentScope(Communicator* comm);
  ~CurrentScope();
  CurrentScope(const CurrentScope&) = delete;
  CurrentScope& operator=(const CurrentScope&) = delete;

 private:
  Communicator* previous_;
};

// sum over ranks of t through current(), differentiable: the gradient of the result is
// all-reduced (summed) back, as each rank's loss depends on every rank's t. Returns t itself
// when current() is null or of size 1.
Tensor all_reduce_sum(const Tensor& t);

}  // namespace eng::dist
