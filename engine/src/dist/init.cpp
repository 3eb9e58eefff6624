// The process side of distributed runs: init(backend) starts MPI once and hands out world
// communicators; finalize() and abort_job() end it. Compiled in every build: without MPI
// (ENGINE_HAVE_MPI unset) init() refuses with one line and abort_job() is std::exit.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "dist_env.h"
#include "nccl_communicator.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"

#ifdef ENGINE_HAVE_MPI
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace eng::dist {

#ifdef ENGINE_HAVE_MPI
namespace {

std::mutex g_mutex;
bool g_started_here = false;  // MPI_Init_thread was ours: finalize() ends it

void finalize_at_exit() { finalize(); }

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
    default: return "an unknown level";
  }
}

}  // namespace

namespace detail {

std::atomic<int> g_unsettled_communicators{0};

void start_mpi() {
  std::lock_guard<std::mutex> lock(g_mutex);
  int finalized = 0;
  MPI_Finalized(&finalized);
  ENGINE_CHECK(!finalized, "dist::init: MPI was finalized already in this process (finalize() is final)");
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    ENGINE_CHECK(rc == MPI_SUCCESS, "dist::init: MPI_Init_thread failed with code ", rc);
    g_started_here = true;
    std::atexit(finalize_at_exit);  // a process that started MPI must end it, or mpirun fails the job
  } else {
    MPI_Query_thread(&provided);
  }
  ENGINE_CHECK(provided >= MPI_THREAD_MULTIPLE, "dist::init: the MPI library gives ", thread_level_name(provided),
               ", the mpi backend needs MPI_THREAD_MULTIPLE (its communication thread calls MPI beside the caller)");
}

}  // namespace detail
#endif  // ENGINE_HAVE_MPI

std::unique_ptr<Communicator> init(const std::string& backend) {
  ENGINE_CHECK(backend == "mpi" || backend == "nccl", "dist::init: unknown backend '", backend,
               "' (expected mpi or nccl)");
#ifndef ENGINE_HAVE_MPI
  ENGINE_FAIL("distributed training is unavailable: this build has no MPI (install openmpi-bin libopenmpi-dev "
              "and rebuild)");
#else
  detail::start_mpi();
  if (backend == "mpi") return detail::make_mpi_world();
  // The nccl backend plugs in here: it is built on a world communicator of the mpi backend
  // (host data, the barrier and the unique id travel through it).
#ifdef ENGINE_HAVE_NCCL
  std::unique_ptr<Communicator> host = detail::make_mpi_world();
  const int local_rank = host->local_rank();
  return make_nccl_communicator(std::move(host), local_rank);
#else
  ENGINE_FAIL("dist::init: the nccl backend is not in this build (NCCL was not found at configure time)");
#endif
#endif
}

std::unique_ptr<Communicator> make_nccl(std::unique_ptr<Communicator> host) {
  ENGINE_CHECK(host != nullptr && host->backend() == "mpi", "dist::make_nccl: needs an mpi communicator to build on");
  const int local_rank = host->local_rank();
  return make_nccl_communicator(std::move(host), local_rank);  // throws without NCCL
}

void finalize() {
#ifdef ENGINE_HAVE_MPI
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_started_here) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (detail::g_unsettled_communicators.load() > 0) {
    // MPI_Finalize synchronises with every process; a rank that died or hangs would keep us
    // here forever. Leaving without it makes mpirun report the job as failed, which it is.
    std::fprintf(stderr, "dist::finalize: MPI_Finalize skipped: a collective of this process never completed "
                         "(another rank died or hangs)\n");
    return;
  }
  MPI_Finalize();
#endif
}

void abort_job(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
#ifdef ENGINE_HAVE_MPI
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    MPI_Abort(MPI_COMM_WORLD, code);  // ends every rank; mpirun exits with `code`
    std::_Exit(code);                 // not reached
  }
#endif
  std::exit(code);
}

}  // namespace eng::dist
