// Self-tests of the emulator's NCCL stand-in (tools/cuda_emu/nccl.cpp): its collectives give
// NCCL's results, bit-identical on every rank, run when their stream runs, and group calls
// queue in order at ncclGroupEnd. Run under `mpirun -np 2` (tests/CMakeLists.txt).
#define CATCH_CONFIG_RUNNER
#include "cuda_emu/nccl_emu_util.h"

#include <cmath>
#include <cstdint>

using namespace nccl_emu_test;

namespace {

// Rank r's value i: floats whose sum depends on the order of addition from 3 ranks on: rank 0
// holds +big, rank 1 -big, the others small values that vanish when added to big first.
float value_f32(int r, size_t i) {
  const float big = 1e8f * (1.0f + 0.01f * static_cast<float>(i));
  return r == 0 ? big : r == 1 ? -big : 1.0f + 0.37f * static_cast<float>(r) + 0.001f * static_cast<float>(i);
}

}  // namespace

TEST_CASE("cuda_emu: nccl version, count and rank", "[cuda_emu]") {
  int v = 0;
  REQUIRE(ncclGetVersion(&v) == ncclSuccess);
  CHECK(v == NCCL_VERSION_CODE);
  ncclComm_t comm = make_comm();
  int n = 0, r = -1;
  REQUIRE(ncclCommCount(comm, &n) == ncclSuccess);
  REQUIRE(ncclCommUserRank(comm, &r) == ncclSuccess);
  CHECK(n == world_size());
  CHECK(r == world_rank());
  ncclResult_t async = ncclInternalError;
  REQUIRE(ncclCommGetAsyncError(comm, &async) == ncclSuccess);
  CHECK(async == ncclSuccess);
  CHECK(std::string(ncclGetErrorString(ncclInvalidUsage)).find("invalid usage") != std::string::npos);
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
}

// With 2 ranks the order of one addition cannot show (a + b == b + a); from 3 ranks on the
// values make a different order give different bits (run by hand: mpirun -np 3).
TEST_CASE("cuda_emu: nccl all-reduce sums f32 in rank order, the same bits on every rank", "[cuda_emu]") {
  REQUIRE(world_size() >= 2);
  const int me = world_rank(), n = world_size();
  const size_t count = 1000;
  std::vector<float> mine(count);
  for (size_t i = 0; i < count; ++i) mine[i] = value_f32(me, i);
  float* send = device_copy(mine);
  float* recv = device_copy(std::vector<float>(count, -1.0f));
  ncclComm_t comm = make_comm();
  Stream s;
  REQUIRE(ncclAllReduce(send, recv, count, ncclFloat32, ncclSum, comm, s.s) == ncclSuccess);
  // Queued, not run: the stream runs it.
  CHECK(emu::pending(s.s) >= 1);
  CHECK(host_copy(recv, count)[0] == -1.0f);
  REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
  const std::vector<float> got = host_copy(recv, count);
  for (size_t i = 0; i < count; ++i) {
    float expect = value_f32(0, i);
    for (int r = 1; r < n; ++r) expect += value_f32(r, i);  // rank order
    REQUIRE(std::memcmp(&got[i], &expect, 4) == 0);
  }
  const auto all = gather_bytes(got.data(), count * 4);
  for (int r = 1; r < n; ++r) CHECK(all[static_cast<size_t>(r)] == all[0]);

  // In place (sendbuff == recvbuff).
  REQUIRE(ncclAllReduce(send, send, count, ncclFloat32, ncclSum, comm, s.s) == ncclSuccess);
  REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
  CHECK(host_copy(send, count) == got);
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  cudaFree(send);
  cudaFree(recv);
}

TEMPLATE_TEST_CASE("cuda_emu: nccl all-reduce of integer and f64 types", "[cuda_emu]", int32_t, int64_t, double) {
  const int me = world_rank(), n = world_size();
  const ncclDataType_t dt = std::is_same<TestType, int32_t>::value   ? ncclInt32
                            : std::is_same<TestType, int64_t>::value ? ncclInt64
                                                                     : ncclFloat64;
  std::vector<TestType> mine = {TestType(me + 1), TestType(-3 * me), TestType(7), TestType(me * 10 + 2)};
  TestType* buf = device_copy(mine);
  TestType* out = device_copy(mine);
  ncclComm_t comm = make_comm();
  Stream s;
  const ncclRedOp_t ops[] = {ncclSum, ncclProd, ncclMax, ncclMin, ncclAvg};
  for (ncclRedOp_t op : ops) {
    REQUIRE(ncclAllReduce(buf, out, mine.size(), dt, op, comm, s.s) == ncclSuccess);
    REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
    const std::vector<TestType> got = host_copy(out, mine.size());
    for (size_t i = 0; i < mine.size(); ++i) {
      auto v = [&](int r) {
        const TestType row[] = {TestType(r + 1), TestType(-3 * r), TestType(7), TestType(r * 10 + 2)};
        return row[i];
      };
      TestType e = v(0);
      for (int r = 1; r < n; ++r)
        e = op == ncclProd ? TestType(e * v(r)) : op == ncclMax ? std::max(e, v(r)) : op == ncclMin ? std::min(e, v(r)) : TestType(e + v(r));
      if (op == ncclAvg) e = TestType(e / TestType(n));
      CHECK(got[i] == e);
    }
  }
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  cudaFree(buf);
  cudaFree(out);
}

TEST_CASE("cuda_emu: nccl all-reduce of bf16 rounds after each addition", "[cuda_emu]") {
  // bf16 has 8 significant bits: 256 + 1 rounds (to even) to 256. Rank 0 holds 256, the
  // others 1: rounded after each addition the sum stays 256 (rounded once at the end, it
  // would be 256 + nranks - 1 from 3 ranks on). 0x4380 = 256, 0x3f80 = 1, 0x4000 = 2.
  const uint16_t mine = world_rank() == 0 ? 0x4380 : 0x3f80;
  std::vector<uint16_t> host = {mine, 0x4000};
  uint16_t* buf = device_copy(host);
  ncclComm_t comm = make_comm();
  Stream s;
  REQUIRE(ncclAllReduce(buf, buf, 2, ncclBfloat16, ncclSum, comm, s.s) == ncclSuccess);
  REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
  const std::vector<uint16_t> got = host_copy(buf, 2);
  CHECK(got[0] == 0x4380);  // 256 + 1 rounds to even: 256
  uint32_t bits;  // 2 * nranks, exact in bf16 for small nranks
  const float twice_n = 2.0f * static_cast<float>(world_size());
  std::memcpy(&bits, &twice_n, 4);
  CHECK(got[1] == static_cast<uint16_t>(bits >> 16));
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  cudaFree(buf);
}

TEST_CASE("cuda_emu: nccl broadcast from each root, in place and not", "[cuda_emu]") {
  const int me = world_rank(), n = world_size();
  ncclComm_t comm = make_comm();
  Stream s;
  for (int root = 0; root < n; ++root) {
    std::vector<double> mine = {1.5 * me, 2.0 + me, -7.0};
    double* send = device_copy(mine);
    double* recv = device_copy(std::vector<double>(3, 0.0));
    REQUIRE(ncclBroadcast(send, recv, 3, ncclFloat64, root, comm, s.s) == ncclSuccess);
    REQUIRE(ncclBroadcast(send, send, 3, ncclFloat64, root, comm, s.s) == ncclSuccess);
    REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
    const std::vector<double> expect = {1.5 * root, 2.0 + root, -7.0};
    CHECK(host_copy(recv, 3) == expect);
    CHECK(host_copy(send, 3) == expect);
    cudaFree(send);
    cudaFree(recv);
  }
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
}

TEST_CASE("cuda_emu: nccl all-gather puts rank r's data in block r", "[cuda_emu]") {
  const int me = world_rank(), n = world_size();
  ncclComm_t comm = make_comm();
  Stream s;
  std::vector<int64_t> mine = {me * 100 + 1, me * 100 + 2, me * 100 + 3};
  int64_t* send = device_copy(mine);
  int64_t* recv = device_copy(std::vector<int64_t>(3 * static_cast<size_t>(n), -1));
  REQUIRE(ncclAllGather(send, recv, 3, ncclInt64, comm, s.s) == ncclSuccess);
  REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
  std::vector<int64_t> expect;
  for (int r = 0; r < n; ++r)
    for (int64_t k = 1; k <= 3; ++k) expect.push_back(r * 100 + k);
  CHECK(host_copy(recv, expect.size()) == expect);
  // In place: sendbuff is this rank's block of recvbuff.
  int64_t* inplace = device_copy(std::vector<int64_t>(3 * static_cast<size_t>(n), -1));
  REQUIRE(cudaMemcpy(inplace + 3 * me, mine.data(), 3 * sizeof(int64_t), cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(ncclAllGather(inplace + 3 * me, inplace, 3, ncclInt64, comm, s.s) == ncclSuccess);
  REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
  CHECK(host_copy(inplace, expect.size()) == expect);
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  cudaFree(send);
  cudaFree(recv);
  cudaFree(inplace);
}

TEST_CASE("cuda_emu: nccl runs in stream order after the work before it", "[cuda_emu]") {
  // A copy queued on the stream before the all-reduce is what the all-reduce reads; an event
  // on another stream orders a consumer after it.
  const int n = world_size();
  ncclComm_t comm = make_comm();
  Stream s, other;
  float* buf = device_copy(std::vector<float>(4, 0.0f));
  const std::vector<float> ones(4, 1.0f);
  REQUIRE(cudaMemcpyAsync(buf, ones.data(), 16, cudaMemcpyHostToDevice, s.s) == cudaSuccess);
  REQUIRE(ncclAllReduce(buf, buf, 4, ncclFloat32, ncclSum, comm, s.s) == ncclSuccess);
  cudaEvent_t done;
  REQUIRE(cudaEventCreateWithFlags(&done, cudaEventDisableTiming) == cudaSuccess);
  REQUIRE(cudaEventRecord(done, s.s) == cudaSuccess);
  float* copy = device_copy(std::vector<float>(4, 0.0f));
  REQUIRE(cudaStreamWaitEvent(other.s, done, 0) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(copy, buf, 16, cudaMemcpyDeviceToDevice, other.s) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(other.s) == cudaSuccess);  // runs s up to the event first
  CHECK(host_copy(copy, 4) == std::vector<float>(4, static_cast<float>(n)));
  cudaEventDestroy(done);
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  cudaFree(buf);
  cudaFree(copy);
}

TEST_CASE("cuda_emu: nccl group calls are queued at ncclGroupEnd, in call order", "[cuda_emu]") {
  const int me = world_rank(), n = world_size();
  ncclComm_t comm = make_comm();
  Stream s;
  float* a = device_copy(std::vector<float>{1.0f});
  float* b = device_copy(std::vector<float>{static_cast<float>(me)});
  REQUIRE(ncclGroupStart() == ncclSuccess);
  REQUIRE(ncclGroupStart() == ncclSuccess);  // nests
  REQUIRE(ncclAllReduce(a, a, 1, ncclFloat32, ncclSum, comm, s.s) == ncclSuccess);
  REQUIRE(ncclGroupEnd() == ncclSuccess);
  REQUIRE(ncclBroadcast(a, b, 1, ncclFloat32, n - 1, comm, s.s) == ncclSuccess);  // reads a after the sum
  CHECK(emu::pending(s.s) == 0);  // nothing queued inside the group
  REQUIRE(ncclGroupEnd() == ncclSuccess);
  CHECK(emu::pending(s.s) >= 2);
  REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
  CHECK(host_copy(a, 1)[0] == static_cast<float>(n));
  CHECK(host_copy(b, 1)[0] == static_cast<float>(n));
  CHECK(ncclGroupEnd() == ncclInvalidUsage);  // no group open
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  cudaFree(a);
  cudaFree(b);
}

TEST_CASE("cuda_emu: nccl on the legacy stream runs at once", "[cuda_emu]") {
  const int n = world_size();
  ncclComm_t comm = make_comm();
  int32_t* x = device_copy(std::vector<int32_t>{3});
  REQUIRE(ncclAllReduce(x, x, 1, ncclInt32, ncclSum, comm, nullptr) == ncclSuccess);
  CHECK(host_copy(x, 1)[0] == 3 * n);
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  cudaFree(x);
}

TEST_CASE("cuda_emu: nccl destroy finishes the queued collectives first", "[cuda_emu]") {
  const int n = world_size();
  ncclComm_t comm = make_comm();
  Stream s;
  int32_t* x = device_copy(std::vector<int32_t>{5});
  REQUIRE(ncclAllReduce(x, x, 1, ncclInt32, ncclSum, comm, s.s) == ncclSuccess);
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  CHECK(emu::pending(s.s) == 0);
  CHECK(host_copy(x, 1)[0] == 5 * n);
  cudaFree(x);
}

int main(int argc, char** argv) {
  return run_main(argc, argv, [] {});
}
