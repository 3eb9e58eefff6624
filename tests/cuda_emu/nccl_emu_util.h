// Helpers of the NCCL stand-in's self-tests (test_nccl_emu*.cpp): programs run by CTest under
// `mpirun -np 2`, with their own main (MPI_Init_thread before Catch2 runs; every rank runs
// the same test cases in the same order, so their collectives match).
#pragma once
#include <catch2/catch.hpp>
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <cstring>
#include <vector>

namespace nccl_emu_test {

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  int s = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// A comm over the whole world: rank 0 makes the id, MPI broadcasts it.
inline ncclComm_t make_comm() {
  ncclUniqueId id;
  if (world_rank() == 0) REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
  ncclComm_t comm = nullptr;
  REQUIRE(ncclCommInitRank(&comm, world_size(), id, world_rank()) == ncclSuccess);
  REQUIRE(comm != nullptr);
  return comm;
}

template <typename T>
T* device_copy(const std::vector<T>& host) {
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, host.size() * sizeof(T)) == cudaSuccess);
  REQUIRE(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  return static_cast<T*>(p);
}
template <typename T>
std::vector<T> host_copy(const T* dev, size_t n) {
  std::vector<T> out(n);
  REQUIRE(cudaMemcpy(out.data(), dev, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
  return out;
}

// Every rank's bytes, gathered with plain MPI (to compare results between ranks).
inline std::vector<std::vector<unsigned char>> gather_bytes(const void* p, size_t bytes) {
  const int n = world_size();
  std::vector<unsigned char> all(bytes * static_cast<size_t>(n));
  MPI_Allgather(p, static_cast<int>(bytes), MPI_BYTE, all.data(), static_cast<int>(bytes), MPI_BYTE, MPI_COMM_WORLD);
  std::vector<std::vector<unsigned char>> out;
  for (int r = 0; r < n; ++r) out.emplace_back(all.begin() + r * bytes, all.begin() + (r + 1) * bytes);
  return out;
}

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess); }
  ~Stream() { cudaStreamDestroy(s); }
};

// Runs Catch2 under MPI. `before_mpi` runs before MPI_Init_thread. The exit code is the worst
// of all ranks, so that CTest sees a failure on any rank.
template <typename F>
int run_main(int argc, char** argv, F before_mpi) {
  before_mpi();
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rc = Catch::Session().run(argc, argv);
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}

}  // namespace nccl_emu_test
