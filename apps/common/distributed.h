// ssd_train's side of data-parallel training (issue 13, docs/distributed.md): how a process
// learns its place in the run, picks its GPU, agrees with the other ranks that they were all
// started alike, and stops the whole job with one line when something goes wrong.
//
// Start-up (start_distributed):
//   --dist none, or no launcher in the environment: world size 1, MPI is never started, the
//     run is exactly the single-process one.
//   --dist auto under mpirun / srun / torchrun-style variables with more than one rank: MPI
//     starts; every rank checks what it can locally (its GPU for --device cuda, NCCL in this
//     build); the ranks exchange those results and their configurations (all-gather), and when
//     any rank failed or differs from rank 0, rank 0 prints one line and every rank exits 1.
//   The backend: --dist-backend auto is nccl for --device cuda (an error when this build has
//     no NCCL: ask for mpi explicitly) and mpi for --device cpu.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/dist/communicator.h"

namespace app {

struct DistOptions {
  std::string mode = "auto";     // --dist auto | none
  std::string backend = "auto";  // --dist-backend auto | nccl | mpi
  double timeout_s = 300;        // --dist-timeout: the longest wait for the other ranks
};

class Distributed {
 public:
  // World size 1, no communicator.
  Distributed() = default;
  int rank() const { return comm_ ? comm_->rank() : 0; }
  int size() const { return comm_ ? comm_->size() : 1; }
  int local_rank() const { return launch_.local_rank; }
  bool root() const { return rank() == 0; }
  bool active() const { return size() > 1; }
  std::string backend() const { return comm_ ? comm_->backend() : "none"; }
  const std::string& launcher() const { return launch_.launcher; }
  eng::dist::Communicator* comm() const { return comm_.get(); }

  // "rank R: " in a several-rank run, "" otherwise (prefix of error lines).
  std::string who() const;

 private:
  friend Distributed start_distributed(const DistOptions&, const std::string&, const std::vector<std::string>&);
  std::unique_ptr<eng::dist::Communicator> comm_;
  eng::dist::LaunchInfo launch_;
};

// See the header comment. `device` is "cpu" or "cuda"; `config_lines` are "key=value" lines of
// every argument that must be equal on all ranks (compared field by field with rank 0's).
// Throws eng::Error on rank 0 with the first problem of any rank; the other ranks throw an
// error marked as already reported (reported_elsewhere()), so that only rank 0 prints it.
Distributed start_distributed(const DistOptions& options, const std::string& device,
                              const std::vector<std::string>& config_lines);

// Errors that rank 0 has already printed for the whole job (start-up agreement).
bool reported_elsewhere(const std::exception& e);

// Tests only: ENGINE_TEST_DIST_FAULT="<kind>:<rank>:<iteration>" makes rank <rank> fail at
// training iteration <iteration> (1-based), to test that the other ranks stop: kind is kill
// (SIGKILL itself after the step), hang (SIGSTOP itself), nan (its loss becomes NaN in that
// step) or throw (an eng::Error). Unset: no fault. A malformed value is an error.
struct FaultInjection {
  std::string kind;  // "" none
  int rank = -1;
  int64_t iteration = -1;
  bool hits(int r, int64_t it, const char* k) const { return kind == k && rank == r && iteration == it; }
};
FaultInjection fault_from_env();

// Sets the CUDA device of this process from its local rank (before any CUDA call); throws
// "rank R: local rank L has no GPU (this machine shows N)" when there is none.
void select_local_gpu(int rank, int local_rank);

}  // namespace app
