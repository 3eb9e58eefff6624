// The nccl communicator (engine/src/dist/nccl_communicator.cpp) on CUDA tensors: each call
// of engine/dist/communicator.h, results equal on every rank to the bit, asynchronous calls
// in issue order, host calls, bad input and a peer that never comes. Run by CTest as
// `mpirun -np 2` (in the emulated build, through the emulator's NCCL stand-in over MPI).
//
// Its host communicator is a small MPI one written here (HostMpi): the engine's mpi backend
// lives on another branch; this one implements only what the nccl communicator delegates.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <mpi.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "dist/nccl_communicator.h"
#include "engine/cuda_context.h"
#include "kernels/counters.h"
#include "test_helpers.h"

using eng::Tensor;
using eng::dist::Communicator;

namespace {

// Host communicator for the tests: bytes, barrier and f32 CPU all-reduce over MPI.
class HostMpi final : public Communicator {
 public:
  HostMpi() { MPI_Comm_dup(MPI_COMM_WORLD, &comm_); }
  ~HostMpi() override { MPI_Comm_free(&comm_); }
  int rank() const override {
    int r = 0;
    MPI_Comm_rank(comm_, &r);
    return r;
  }
  int size() const override {
    int s = 0;
    MPI_Comm_size(comm_, &s);
    return s;
  }
  int local_rank() const override { return rank(); }
  std::string backend() const override { return "test-mpi"; }
  void all_reduce(Tensor& t, double scale) override {
    REQUIRE(t.dtype() == eng::DType::f32);
    ++cpu_calls;
    std::vector<float> sum(static_cast<size_t>(t.numel()));
    MPI_Allreduce(t.data<float>(), sum.data(), static_cast<int>(sum.size()), MPI_FLOAT, MPI_SUM, comm_);
    for (size_t i = 0; i < sum.size(); ++i) t.data<float>()[i] = static_cast<float>(sum[i] * scale);
  }
  std::unique_ptr<eng::dist::Work> all_reduce_async(Tensor&, double) override { FAIL("not in HostMpi"); return nullptr; }
  void broadcast(Tensor&, int) override { FAIL("not in HostMpi"); }
  Tensor all_gather(const Tensor&) override { FAIL("not in HostMpi"); return {}; }
  void barrier() override {
    ++barriers;
    MPI_Barrier(comm_);
  }
  std::vector<std::vector<uint8_t>> all_gather_bytes(const std::vector<uint8_t>& mine) override {
    const int n = size();
    int len = static_cast<int>(mine.size());
    std::vector<int> lens(static_cast<size_t>(n)), offs(static_cast<size_t>(n));
    MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, comm_);
    int total = 0;
    for (int r = 0; r < n; ++r) offs[static_cast<size_t>(r)] = total, total += lens[static_cast<size_t>(r)];
    std::vector<uint8_t> all(static_cast<size_t>(total));
    MPI_Allgatherv(mine.data(), len, MPI_BYTE, all.data(), lens.data(), offs.data(), MPI_BYTE, comm_);
    std::vector<std::vector<uint8_t>> out;
    for (int r = 0; r < n; ++r)
      out.emplace_back(all.begin() + offs[static_cast<size_t>(r)], all.begin() + offs[static_cast<size_t>(r)] + lens[static_cast<size_t>(r)]);
    return out;
  }
  int cpu_calls = 0, barriers = 0;

 private:
  MPI_Comm comm_;
};

struct Setup {
  HostMpi* host = nullptr;  // owned by comm
  std::unique_ptr<Communicator> comm;
  Setup() {
    auto h = std::make_unique<HostMpi>();
    host = h.get();
    comm = eng::dist::make_nccl_communicator(std::move(h), 0);
  }
};

eng::TensorOptions on_cuda(eng::DType dt) { return eng::TensorOptions(dt).device(eng::Device::cuda()); }

// Rank r's values: their float sum depends on the order of addition from 3 ranks on (rank 0
// +big, rank 1 -big, the others small values that vanish when added to big first).
std::vector<float> values(int r, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    const float big = 1e8f * (1.0f + 0.01f * static_cast<float>(i));
    v[i] = r == 0 ? big : r == 1 ? -big : 1.0f + 0.37f * static_cast<float>(r) + 0.001f * static_cast<float>(i);
  }
  return v;
}

// True when every rank holds the same bytes as this one.
bool same_on_every_rank(Communicator& comm, const Tensor& cpu) {
  const auto* p = static_cast<const uint8_t*>(cpu.raw_data());
  const std::vector<uint8_t> mine(p, p + cpu.numel() * static_cast<int64_t>(eng::dtype_size(cpu.dtype())));
  for (const auto& other : comm.all_gather_bytes(mine))
    if (other != mine) return false;
  return true;
}

}  // namespace

TEST_CASE("dist nccl: the communicator's rank, size and backend", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Setup s;
  int r = 0, n = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  CHECK(s.comm->rank() == r);
  CHECK(s.comm->size() == n);
  CHECK(s.comm->backend() == "nccl");
  CHECK(eng::dist::nccl_available());
}

TEST_CASE("dist nccl: all_reduce sums f32 in rank order, the same bits on every rank", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Setup s;
  const int me = s.comm->rank(), n = s.comm->size();
  const size_t count = 777;
  Tensor t = eng::from_vector(values(me, count), {7, 111}).to(eng::Device::cuda());
  s.comm->all_reduce(t);
  const Tensor got = t.cpu();
  const std::vector<float> g = got.to_vector<float>();
  for (size_t i = 0; i < count; ++i) {
    float e = values(0, count)[i];
    for (int r = 1; r < n; ++r) e += values(r, count)[i];
    REQUIRE(std::memcmp(&g[i], &e, 4) == 0);
  }
  CHECK(same_on_every_rank(*s.comm, got));
}

TEST_CASE("dist nccl: all_reduce then scale gives the mean", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Setup s;
  const int me = s.comm->rank(), n = s.comm->size();
  Tensor t = eng::full({5}, 2.0 * (me + 1), on_cuda(eng::DType::f32));
  s.comm->all_reduce(t, 1.0 / n);
  const double mean = 2.0 * (n + 1) / 2.0;  // 2 * (1 + ... + n) / n
  CHECK(t.cpu().to_vector<float>() == std::vector<float>(5, static_cast<float>(mean)));
  CHECK(same_on_every_rank(*s.comm, t.cpu()));
}

TEST_CASE("dist nccl: all_reduce of f64, i32, i64 and bf16", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Setup s;
  const int me = s.comm->rank(), n = s.comm->size();
  for (eng::DType dt : {eng::DType::f64, eng::DType::i32, eng::DType::i64, eng::DType::bf16}) {
    Tensor t = eng::full({3, 2}, me + 1, on_cuda(dt));
    s.comm->all_reduce(t);
    CHECK(t.cpu().to_vector<double>() == std::vector<double>(6, n * (n + 1) / 2.0));
  }
  Tensor ints = eng::full({2}, 3, on_cuda(eng::DType::i64));
  CHECK_THROWS_WITH(s.comm->all_reduce(ints, 0.5), Catch::Contains("integers are summed only"));
}

TEST_CASE("dist nccl: asynchronous all_reduces complete in issue order, after the work before them", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Setup s;
  const int n = s.comm->size();
  // The compute stream writes t, then NCCL reads it: the events order them.
  Tensor t = eng::zeros({4}, on_cuda(eng::DType::f32));
  t.copy_(eng::full({4}, 1.0, on_cuda(eng::DType::f32)));
  Tensor u = eng::full({4}, 1.0, on_cuda(eng::DType::f32));
  auto w1 = s.comm->all_reduce_async(t);
  auto w2 = s.comm->all_reduce_async(t);  // sums the result of the first: n * n
  auto w3 = s.comm->all_reduce_async(u, 0.5);
  const uint64_t syncs = kern::counters::read().host_syncs;
  w1->wait();
  w2->wait();
  w3->wait();
  w3->wait();  // twice is harmless
  CHECK(kern::counters::read().host_syncs == syncs);
#ifdef ENGINE_TEST_NCCL_EMULATED
  // The emulator's device memory is host memory, and its streams run lazily: nothing has run
  // yet, so neither the calls nor wait() made the host wait for the device.
  CHECK(static_cast<const float*>(t.raw_data())[0] != static_cast<float>(n * n));
#endif
  CHECK(t.cpu().to_vector<float>() == std::vector<float>(4, static_cast<float>(n * n)));
  CHECK(u.cpu().to_vector<float>() == std::vector<float>(4, static_cast<float>(n) * 0.5f));
}

TEST_CASE("dist nccl: broadcast from each root", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Setup s;
  const int me = s.comm->rank(), n = s.comm->size();
  for (int root = 0; root < n; ++root) {
    Tensor t = eng::from_vector(values(me, 6), {2, 3}).to(eng::Device::cuda());
    s.comm->broadcast(t, root);
    CHECK(t.cpu().to_vector<float>() == values(root, 6));
  }
  Tensor t = eng::zeros({2}, on_cuda(eng::DType::f32));
  CHECK_THROWS_WITH(s.comm->broadcast(t, n), Catch::Contains("broadcast: root"));
}

TEST_CASE("dist nccl: all_gather stacks every rank's tensor", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Setup s;
  const int me = s.comm->rank(), n = s.comm->size();
  Tensor t = eng::from_vector(std::vector<int64_t>{me * 10 + 1, me * 10 + 2, me * 10 + 3}, {3}).to(eng::Device::cuda());
  const Tensor all = s.comm->all_gather(t);
  REQUIRE(all.is_cuda());
  REQUIRE(all.sizes() == eng::Shape{n, 3});
  std::vector<int64_t> expect;
  for (int r = 0; r < n; ++r)
    for (int k = 1; k <= 3; ++k) expect.push_back(r * 10 + k);
  CHECK(all.cpu().to_vector<int64_t>() == expect);
  CHECK(same_on_every_rank(*s.comm, all.cpu()));
}

// engine/allocator.h, rule 2: the block of a tensor dropped while NCCL may still write it is
// not handed to the compute stream before NCCL is done (the NCCL stream runs here only at the
// barrier, after z was filled: without the rule, the all-reduce would overwrite z).
TEST_CASE("dist nccl: a tensor dropped before its all_reduce ran is not reused too early", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Setup s;
  {
    Tensor t = eng::full({1024}, 1.0, on_cuda(eng::DType::f32));
    auto w = s.comm->all_reduce_async(t);
  }  // t and w dropped, never waited for
  Tensor z = eng::full({1024}, 7.0, on_cuda(eng::DType::f32));
  CHECK(z.cpu().to_vector<float>() == std::vector<float>(1024, 7.0f));
  s.comm->barrier();
  CHECK(z.cpu().to_vector<float>() == std::vector<float>(1024, 7.0f));
}

TEST_CASE("dist nccl: barrier, bytes and CPU tensors go through the host communicator", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Setup s;
  const int me = s.comm->rank(), n = s.comm->size();
  Tensor t = eng::full({3}, 1.0, on_cuda(eng::DType::f32));
  auto pending = s.comm->all_reduce_async(t);  // the barrier waits for it on the host first
  s.comm->barrier();
  CHECK(s.host->barriers == 1);
  pending->wait();
  const std::vector<uint8_t> mine(static_cast<size_t>(me + 1), static_cast<uint8_t>(me + 40));
  const auto all = s.comm->all_gather_bytes(mine);
  REQUIRE(all.size() == static_cast<size_t>(n));
  for (int r = 0; r < n; ++r)
    CHECK(all[static_cast<size_t>(r)] == std::vector<uint8_t>(static_cast<size_t>(r + 1), static_cast<uint8_t>(r + 40)));
  Tensor cpu = eng::full({2}, 1.0);
  s.comm->all_reduce(cpu);
  CHECK(s.host->cpu_calls == 1);
  CHECK(cpu.to_vector<float>() == std::vector<float>(2, static_cast<float>(n)));
  CHECK(t.cpu().to_vector<float>() == std::vector<float>(3, static_cast<float>(n)));
}

TEST_CASE("dist nccl: bad tensors are one-line errors", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Setup s;
  Tensor bytes = eng::zeros({4}, on_cuda(eng::DType::u8));
  CHECK_THROWS_WITH(s.comm->all_reduce(bytes), Catch::Contains("all_reduce: u8 tensor"));
  Tensor m = eng::zeros({3, 4}, on_cuda(eng::DType::f32)).transpose(0, 1);
  CHECK_THROWS_WITH(s.comm->all_gather(m), Catch::Contains("not contiguous"));
  Tensor undefined;
  CHECK_THROWS_WITH(s.comm->broadcast(undefined, 0), Catch::Contains("undefined tensor"));
  s.comm->barrier();  // still usable: nothing was queued
}

// Only the emulator's NCCL detects it (a real NCCL hangs or reads past the shorter buffer).
TEST_CASE("dist nccl: shapes that differ between ranks are an error on every rank, not a hang", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
#ifndef ENGINE_TEST_NCCL_EMULATED
  WARN("not run: only the emulator's NCCL detects shapes that differ between ranks");
  return;
#endif
  Setup s;
  const int me = s.comm->rank();
  Tensor t = eng::ones({me == 0 ? 4 : 5}, on_cuda(eng::DType::f32));
  s.comm->all_reduce(t);  // queued: the emulated NCCL finds the mismatch when it runs
  CHECK_THROWS_WITH(s.comm->barrier(), Catch::Contains("rank " + std::to_string(me) + ": barrier: NCCL failed"));
  CHECK_THROWS_WITH(s.comm->all_reduce(t), Catch::Contains("aborted after an earlier error"));
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_CASE("dist nccl: a rank that never comes makes the others throw after the timeout", "[cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  Setup s;
  const int me = s.comm->rank();
  // The emulated NCCL gives up after 3 s; the communicator's own timeout is 1 s.
  setenv("CUDA_EMU_NCCL_TIMEOUT", "3", 1);
  s.comm->set_timeout(1);
  if (me == 0) {
    Tensor t = eng::ones({4}, on_cuda(eng::DType::f32));
    s.comm->all_reduce(t);
    CHECK_THROWS_WITH(s.comm->all_gather_bytes({1, 2}),
                      Catch::Contains("rank 0: all_gather_bytes waited") && Catch::Contains("for the other ranks"));
  }
  unsetenv("CUDA_EMU_NCCL_TIMEOUT");
  MPI_Barrier(MPI_COMM_WORLD);
}

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rc = Catch::Session().run(argc, argv);
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
