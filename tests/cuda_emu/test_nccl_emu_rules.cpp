// Self-tests of the NCCL stand-in's rules (tools/cuda_emu/nccl.cpp): every wrong call gets
// NCCL's error code, at the call or as the comm's asynchronous error, and none hangs: bad
// comms, buffers, types, ops and roots; collectives that differ between ranks; a peer that
// never joins; bad ncclCommInitRank arguments; MPI not started. Run under `mpirun -np 2`.
#define CATCH_CONFIG_RUNNER
#include "cuda_emu/nccl_emu_util.h"

#include <chrono>
#include <cstdlib>
#include <string>

using namespace nccl_emu_test;

namespace {
ncclResult_t g_init_before_mpi = ncclSuccess;

ncclResult_t async_error(ncclComm_t comm) {
  ncclResult_t e = ncclInternalError;
  REQUIRE(ncclCommGetAsyncError(comm, &e) == ncclSuccess);
  return e;
}
std::string last_error() { return ncclGetLastError(nullptr); }
}  // namespace

TEST_CASE("cuda_emu: ncclCommInitRank without MPI running is invalid usage", "[cuda_emu]") {
  CHECK(g_init_before_mpi == ncclInvalidUsage);
}

TEST_CASE("cuda_emu: nccl calls on a null, unknown, destroyed or aborted comm are invalid arguments", "[cuda_emu]") {
  float* x = device_copy(std::vector<float>(4, 1.0f));
  Stream s;
  int n = 0;
  CHECK(ncclAllReduce(x, x, 4, ncclFloat32, ncclSum, nullptr, s.s) == ncclInvalidArgument);
  CHECK(ncclCommCount(nullptr, &n) == ncclInvalidArgument);
  int junk[16] = {};
  CHECK(ncclAllReduce(x, x, 4, ncclFloat32, ncclSum, reinterpret_cast<ncclComm_t>(junk), s.s) == ncclInvalidArgument);
  CHECK(last_error().find("not a live communicator") != std::string::npos);

  ncclComm_t comm = make_comm();
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  CHECK(ncclAllReduce(x, x, 4, ncclFloat32, ncclSum, comm, s.s) == ncclInvalidArgument);
  CHECK(ncclBroadcast(x, x, 4, ncclFloat32, 0, comm, s.s) == ncclInvalidArgument);
  CHECK(ncclCommDestroy(comm) == ncclInvalidArgument);  // twice

  comm = make_comm();
  REQUIRE(ncclAllReduce(x, x, 4, ncclFloat32, ncclSum, comm, s.s) == ncclSuccess);
  REQUIRE(ncclCommAbort(comm) == ncclSuccess);  // the queued all-reduce will do nothing
  CHECK(ncclAllGather(x, x, 1, ncclFloat32, comm, s.s) == ncclInvalidArgument);
  REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
  CHECK(host_copy(x, 4) == std::vector<float>(4, 1.0f));
  CHECK(ncclCommAbort(nullptr) == ncclSuccess);
  CHECK(ncclCommDestroy(nullptr) == ncclSuccess);
  cudaFree(x);
}

TEST_CASE("cuda_emu: nccl refuses null, host and too-short buffers", "[cuda_emu]") {
  ncclComm_t comm = make_comm();
  Stream s;
  float* dev = device_copy(std::vector<float>(8, 0.0f));
  std::vector<float> host(8, 0.0f);
  CHECK(ncclAllReduce(nullptr, dev, 8, ncclFloat32, ncclSum, comm, s.s) == ncclInvalidArgument);
  CHECK(ncclAllReduce(dev, nullptr, 8, ncclFloat32, ncclSum, comm, s.s) == ncclInvalidArgument);
  CHECK(ncclAllReduce(host.data(), dev, 8, ncclFloat32, ncclSum, comm, s.s) == ncclInvalidArgument);
  CHECK(last_error().find("not inside one device allocation") != std::string::npos);
  CHECK(ncclAllReduce(dev, dev, 9, ncclFloat32, ncclSum, comm, s.s) == ncclInvalidArgument);   // past the end
  CHECK(ncclAllReduce(dev + 4, dev, 8, ncclFloat32, ncclSum, comm, s.s) == ncclInvalidArgument);
  CHECK(ncclAllGather(dev, dev, 8, ncclFloat32, comm, s.s) == ncclInvalidArgument);  // recv needs 8 * nranks
  CHECK(ncclBroadcast(dev, host.data(), 8, ncclFloat32, 0, comm, s.s) == ncclInvalidArgument);
  // Broadcast reads sendbuff on the root only.
  const int root = world_size() - 1;
  if (world_rank() != root) CHECK(ncclBroadcast(nullptr, dev, 8, ncclFloat32, root, comm, s.s) == ncclSuccess);
  else CHECK(ncclBroadcast(dev, dev, 8, ncclFloat32, root, comm, s.s) == ncclSuccess);
  REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
  CHECK(async_error(comm) == ncclSuccess);
  CHECK(emu::pending(s.s) == 0);  // the refused calls queued nothing
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  cudaFree(dev);
}

TEST_CASE("cuda_emu: nccl refuses unknown and not emulated types, unknown ops and roots out of range", "[cuda_emu]") {
  ncclComm_t comm = make_comm();
  Stream s;
  float* dev = device_copy(std::vector<float>(8, 0.0f));
  CHECK(ncclAllReduce(dev, dev, 2, static_cast<ncclDataType_t>(99), ncclSum, comm, s.s) == ncclInvalidArgument);
  CHECK(ncclAllReduce(dev, dev, 2, static_cast<ncclDataType_t>(-1), ncclSum, comm, s.s) == ncclInvalidArgument);
  CHECK(ncclAllReduce(dev, dev, 2, ncclFloat16, ncclSum, comm, s.s) == ncclInvalidArgument);
  CHECK(last_error().find("not emulated") != std::string::npos);
  CHECK(ncclAllReduce(dev, dev, 2, ncclFloat32, static_cast<ncclRedOp_t>(7), comm, s.s) == ncclInvalidArgument);
  CHECK(ncclBroadcast(dev, dev, 2, ncclFloat32, world_size(), comm, s.s) == ncclInvalidArgument);
  CHECK(ncclBroadcast(dev, dev, 2, ncclFloat32, -1, comm, s.s) == ncclInvalidArgument);
  CHECK(emu::pending(s.s) == 0);
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  cudaFree(dev);
}

TEST_CASE("cuda_emu: nccl collectives that differ between ranks fail on every rank without writing", "[cuda_emu]") {
  REQUIRE(world_size() >= 2);
  const int me = world_rank();
  Stream s;
  float* x = device_copy(std::vector<float>(8, 2.0f));
  SECTION("counts differ") {
    ncclComm_t comm = make_comm();
    REQUIRE(ncclAllReduce(x, x, me == 0 ? 8 : 4, ncclFloat32, ncclSum, comm, s.s) == ncclSuccess);
    REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
    CHECK(async_error(comm) == ncclInvalidUsage);
    CHECK(last_error().find("count") != std::string::npos);
    CHECK(host_copy(x, 8) == std::vector<float>(8, 2.0f));
    // A broken comm refuses what comes next with its error.
    CHECK(ncclAllReduce(x, x, 8, ncclFloat32, ncclSum, comm, s.s) == ncclInvalidUsage);
    REQUIRE(ncclCommAbort(comm) == ncclSuccess);
  }
  SECTION("collectives differ") {
    ncclComm_t comm = make_comm();
    if (me == 0) REQUIRE(ncclAllReduce(x, x, 8, ncclFloat32, ncclSum, comm, s.s) == ncclSuccess);
    else REQUIRE(ncclBroadcast(x, x, 8, ncclFloat32, 0, comm, s.s) == ncclSuccess);
    REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
    CHECK(async_error(comm) == ncclInvalidUsage);
    CHECK(host_copy(x, 8) == std::vector<float>(8, 2.0f));
    REQUIRE(ncclCommAbort(comm) == ncclSuccess);
  }
  SECTION("types differ") {
    ncclComm_t comm = make_comm();
    REQUIRE(ncclAllReduce(x, x, 2, me == 0 ? ncclFloat32 : ncclInt32, ncclSum, comm, s.s) == ncclSuccess);
    REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
    CHECK(async_error(comm) == ncclInvalidUsage);
    REQUIRE(ncclCommAbort(comm) == ncclSuccess);
  }
  cudaFree(x);
}

TEST_CASE("cuda_emu: ncclCommInitRank checks ranks, nranks and the id on every rank", "[cuda_emu]") {
  if (world_size() != 2) {
    WARN("written for 2 ranks; skipped with " << world_size());
    return;
  }
  const int me = world_rank();
  ncclUniqueId id;
  if (me == 0) REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
  ncclComm_t comm = reinterpret_cast<ncclComm_t>(&id);  // overwritten with NULL on failure
  SECTION("a rank out of range") {
    const ncclResult_t r = ncclCommInitRank(&comm, 2, id, me == 0 ? 0 : 2);
    CHECK(r == (me == 0 ? ncclInvalidUsage : ncclInvalidArgument));
    CHECK(comm == nullptr);
  }
  SECTION("the same rank twice") {
    CHECK(ncclCommInitRank(&comm, 2, id, 0) == ncclInvalidUsage);
    CHECK(last_error().find("rank 0 passed by world ranks 0 and 1") != std::string::npos);
    CHECK(comm == nullptr);
  }
  SECTION("nranks differ") {
    CHECK(ncclCommInitRank(&comm, me == 0 ? 2 : 3, id, me) == ncclInvalidUsage);
  }
  SECTION("fewer processes than nranks") {
    ncclUniqueId own;  // each rank its own id: one member each, nranks 2
    REQUIRE(ncclGetUniqueId(&own) == ncclSuccess);
    CHECK(ncclCommInitRank(&comm, 2, own, me) == ncclInvalidUsage);
    CHECK(last_error().find("1 processes passed this id but nranks is 2") != std::string::npos);
  }
  SECTION("an id not made by ncclGetUniqueId") {
    ncclUniqueId junk;
    std::memset(&junk, 7, sizeof junk);
    CHECK(ncclCommInitRank(&comm, 2, junk, me) == ncclInvalidArgument);
  }
  SECTION("a rank per process, two comms split by id") {
    ncclUniqueId own;
    REQUIRE(ncclGetUniqueId(&own) == ncclSuccess);
    REQUIRE(ncclCommInitRank(&comm, 1, own, 0) == ncclSuccess);
    int n = 0;
    REQUIRE(ncclCommCount(comm, &n) == ncclSuccess);
    CHECK(n == 1);
    REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  }
  CHECK(ncclCommInitRank(nullptr, 2, id, me) == ncclInvalidArgument);
}

TEST_CASE("cuda_emu: a nccl peer that never joins gives ncclRemoteError after CUDA_EMU_NCCL_TIMEOUT", "[cuda_emu]") {
  REQUIRE(world_size() >= 2);
  ncclComm_t comm = make_comm();
  Stream s;
  float* x = device_copy(std::vector<float>(4, 1.0f));
  setenv("CUDA_EMU_NCCL_TIMEOUT", "1", 1);
  if (world_rank() == 0) {
    REQUIRE(ncclAllReduce(x, x, 4, ncclFloat32, ncclSum, comm, s.s) == ncclSuccess);
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);  // returns: the comm has the error
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(waited >= 0.9);
    CHECK(waited < 30);
    CHECK(async_error(comm) == ncclRemoteError);
    CHECK(last_error().find("waited 1 s for the other ranks") != std::string::npos);
    CHECK(host_copy(x, 4) == std::vector<float>(4, 1.0f));
  }
  unsetenv("CUDA_EMU_NCCL_TIMEOUT");
  REQUIRE(ncclCommAbort(comm) == ncclSuccess);
  MPI_Barrier(MPI_COMM_WORLD);
  cudaFree(x);
}

int main(int argc, char** argv) {
  return run_main(argc, argv, [] {
    ncclUniqueId id;
    ncclGetUniqueId(&id);
    ncclComm_t comm = nullptr;
    g_init_before_mpi = ncclCommInitRank(&comm, 1, id, 0);
  });
}
