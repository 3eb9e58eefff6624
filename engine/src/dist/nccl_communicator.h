// The nccl backend of eng::dist::Communicator (engine/dist/communicator.h), private to the
// engine: init("nccl") builds it from the MPI world communicator.
#pragma once
#include <memory>

#include "engine/dist/communicator.h"

namespace eng::dist {

// A communicator whose CUDA-tensor collectives go through NCCL, built collectively by every
// rank of `host` (the MPI communicator: rank 0's ncclUniqueId reaches the others through
// host->all_gather_bytes). Host data (bytes, CPU tensors) and the barrier go through `host`
// after the NCCL stream has been synchronised. The current CUDA device must be chosen first.
// Throws eng::Error (one line) when this build has no NCCL, there is no CUDA device, or
// ncclCommInitRank fails. The result's timeout is host's.
std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host, int local_rank);

}  // namespace eng::dist
