// Private to engine/src/dist: what the backends share of the environment and of MPI.
#pragma once
#include <atomic>
#include <memory>

#include "engine/dist/communicator.h"

namespace eng::dist::detail {

// The default timeout of a communicator: ENGINE_DIST_TIMEOUT (seconds, a decimal number in
// (0, 604800], e.g. "300" or "2.5"), else 300. A malformed value is an eng::Error naming it.
double timeout_from_env();

#ifdef ENGINE_HAVE_MPI
// Starts MPI once per process (MPI_Init_thread asking for MPI_THREAD_MULTIPLE; an error if
// the library gives less) unless something else did already (then it checks the thread
// level of that start). Safe to call from several threads.
void start_mpi();

// A communicator of the mpi backend over a duplicate of MPI_COMM_WORLD (start_mpi first;
// init("mpi") does both). Collective over every process of the job.
std::unique_ptr<Communicator> make_mpi_world();

// Communicators whose timed-out requests never completed: while any is counted, finalize()
// skips MPI_Finalize (it would wait for the rank that died or hangs).
extern std::atomic<int> g_unsettled_communicators;

#endif

}  // namespace eng::dist::detail
