// The mpi backend of eng::dist::Communicator, run under mpirun (tests/CMakeLists.txt
// registers `mpirun -np 2` and `-np 3`): every rank runs every test case in the same order,
// each test case on a communicator of its own, so a failure on one rank makes the others
// fail with a timeout in that test case only, not hang.
//   mpirun --allow-run-as-root --oversubscribe -np 2 build/tests/test_dist_mpi '~[cuda]~[abort]~[bench]~[kill]'
#define CATCH_CONFIG_RUNNER
#include "test_helpers.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "engine/cuda_context.h"
#include "engine/dist/communicator.h"

using Catch::Matchers::Contains;
using eng::DType;
using eng::Tensor;

namespace {

std::unique_ptr<eng::dist::Communicator> world(double timeout = 60) {
  auto c = eng::dist::init("mpi");
  c->set_timeout(timeout);
  return c;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// t[i] = (rank + 1) * (i + 1) in dtype dt.
Tensor ramp(int64_t n, int rank, DType dt) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = double(rank + 1) * double(i + 1);
  return eng::from_vector(v, {n}, eng::TensorOptions(dt));
}

}  // namespace

TEST_CASE("mpi: rank, size and local rank agree with the launcher", "[dist][mpi]") {
  auto comm = world();
  const auto launch = eng::dist::detect_launch();
  CHECK(comm->backend() == "mpi");
  CHECK(comm->timeout_seconds() == 60);
  if (launch.launcher != "openmpi") {
    // Started without mpirun: an MPI singleton (which sets PMIX_RANK once MPI runs).
    CHECK(comm->size() == 1);
    CHECK(comm->rank() == 0);
    return;
  }
  CHECK(comm->rank() == launch.rank);
  CHECK(comm->size() == launch.size);
  CHECK(comm->local_rank() == launch.local_rank);  // one host: the same order as Open MPI's
}

TEST_CASE("mpi: all_reduce sums, then scales, for f32, f64, i32 and i64", "[dist][mpi]") {
  auto comm = world();
  const int P = comm->size();
  const double ranks_sum = P * (P + 1) / 2.0;  // sum over ranks of (rank + 1)
  for (DType dt : {DType::f32, DType::f64, DType::i32, DType::i64}) {
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(2), int64_t(7), int64_t(1003)}) {  // fewer and more than P
      INFO(eng::dtype_name(dt) << " n=" << n);
      Tensor t = ramp(n, comm->rank(), dt);
      comm->all_reduce(t);
      CHECK(t.dtype() == dt);
      const auto got = t.to_vector<double>();
      for (int64_t i = 0; i < n; ++i) REQUIRE(got[size_t(i)] == ranks_sum * double(i + 1));
      // scale 2 / P: floats exactly when P is a power of two; integers round to nearest
      Tensor u = ramp(n, comm->rank(), dt);
      comm->all_reduce(u, 2.0 / P);
      const auto scaled = u.to_vector<double>();
      for (int64_t i = 0; i < n; ++i) {
        const double want = ranks_sum * double(i + 1) * 2.0 / P;
        if (eng::is_floating(dt)) REQUIRE(scaled[size_t(i)] == Approx(want).epsilon(1e-6));
        else REQUIRE(scaled[size_t(i)] == std::nearbyint(want));
      }
    }
  }
  // A 2-D tensor (contiguous) is reduced as its elements.
  Tensor m = eng::full({3, 4}, comm->rank() + 1.0);
  comm->all_reduce(m, 1.0 / P);
  for (float v : m.to_vector<float>()) CHECK(v == Approx(ranks_sum / P));
}

TEST_CASE("mpi: float sums have the same bits on every rank, added in rank order", "[dist][mpi]") {
  auto comm = world();
  const int P = comm->size();
  eng::Generator gen(1234 + uint64_t(comm->rank()));
  for (DType dt : {DType::f32, DType::f64}) {
    // Values of mixed magnitude, so that the order of the additions shows in the bits.
    Tensor x = eng::mul(eng::randn({40009}, gen, dt), eng::exp(eng::randn({40009}, gen, dt) * 4.0));
    Tensor inputs = comm->all_gather(x);  // [P, n]: every rank's input
    Tensor sum = x.clone();
    comm->all_reduce(sum, 0.25);
    // Every rank holds the same bits.
    Tensor all = comm->all_gather(sum);
    const size_t bytes = size_t(sum.numel()) * eng::dtype_size(dt);
    const auto* rows = static_cast<const uint8_t*>(all.raw_data());
    for (int r = 1; r < P; ++r) REQUIRE(std::memcmp(rows, rows + size_t(r) * bytes, bytes) == 0);
    // ... and they are (rank 0 + rank 1 + ...) * 0.25 in the tensor's type.
    eng::dispatch_float(dt, "test", [&](auto tag) {
      using T = decltype(tag);
      const T* in = inputs.data<T>();
      const T* got = sum.data<T>();
      const int64_t n = sum.numel();
      for (int64_t i = 0; i < n; ++i) {
        T acc = in[i];
        for (int r = 1; r < P; ++r) acc += in[int64_t(r) * n + i];
        acc *= T(0.25);
        REQUIRE(std::memcmp(&acc, &got[i], sizeof(T)) == 0);
      }
    });
  }
}

TEST_CASE("mpi: all_reduce_async completes in issue order and does not block the caller", "[dist][mpi]") {
  auto comm = world();
  const int P = comm->size();
  const double ranks_sum = P * (P + 1) / 2.0;
  // Different sizes: a reordering would be reported as a size mismatch.
  Tensor a = ramp(5, comm->rank(), DType::f32), b = ramp(1000, comm->rank(), DType::f64),
         c = ramp(3, comm->rank(), DType::i64);
  // Rank 0 issues late: the other ranks' calls must return at once and their wait() then
  // wait for rank 0.
  if (comm->rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(400));
  const auto t0 = std::chrono::steady_clock::now();
  auto wa = comm->all_reduce_async(a);
  auto wb = comm->all_reduce_async(b, 0.5);
  const double issue_s = seconds_since(t0);
  comm->all_reduce(c);  // a blocking call queued after them
  wb->wait();
  wa->wait();
  wa->wait();  // a second wait does nothing
  const double total_s = seconds_since(t0);
  if (comm->rank() != 0) {
    CHECK(issue_s < 0.2);
    CHECK(total_s > 0.25);
  }
  for (int64_t i = 0; i < 5; ++i) CHECK(a.to_vector<double>()[size_t(i)] == ranks_sum * double(i + 1));
  for (int64_t i = 0; i < 1000; ++i) REQUIRE(b.to_vector<double>()[size_t(i)] == 0.5 * ranks_sum * double(i + 1));
  for (int64_t i = 0; i < 3; ++i) CHECK(c.to_vector<double>()[size_t(i)] == ranks_sum * double(i + 1));
  // A Work dropped without wait() still completes before its destructor returns.
  Tensor d = ramp(4, comm->rank(), DType::i32);
  comm->all_reduce_async(d).reset();
  CHECK(d.to_vector<double>()[3] == ranks_sum * 4);
}

TEST_CASE("mpi: broadcast from rank 0 and from rank 1", "[dist][mpi]") {
  auto comm = world();
  const int P = comm->size();
  for (int root = 0; root < std::min(P, 2); ++root) {
    Tensor f = eng::full({2, 3}, 10.0 * comm->rank() + 0.5);
    Tensor i = ramp(4, comm->rank(), DType::i64);
    Tensor w = eng::full({3}, double(comm->rank())).set_requires_grad(true);  // a parameter
    comm->broadcast(f, root);
    comm->broadcast(i, root);
    comm->broadcast(w, root);
    for (float v : f.to_vector<float>()) CHECK(v == 10.0f * root + 0.5f);
    CHECK(i.to_vector<int64_t>() == ramp(4, root, DType::i64).to_vector<int64_t>());
    for (float v : w.to_vector<float>()) CHECK(v == float(root));
  }
  Tensor t = eng::zeros({1});
  CHECK_THROWS_WITH(comm->broadcast(t, P), Contains("broadcast: root") && Contains("is not a rank"));
}

TEST_CASE("mpi: all_gather stacks every rank's tensor", "[dist][mpi]") {
  auto comm = world();
  const int P = comm->size();
  for (DType dt : {DType::f32, DType::i32, DType::u8}) {
    std::vector<double> vals(6);
    for (int k = 0; k < 6; ++k) vals[size_t(k)] = 10.0 * comm->rank() + k;
    Tensor t = eng::from_vector(vals, {2, 3}, eng::TensorOptions(dt));
    Tensor g = comm->all_gather(t);
    REQUIRE(g.sizes() == eng::Shape{P, 2, 3});
    CHECK(g.dtype() == dt);
    const auto v = g.to_vector<double>();
    for (int r = 0; r < P; ++r)
      for (int k = 0; k < 6; ++k) CHECK(v[size_t(r * 6 + k)] == 10.0 * r + k);
  }
  Tensor s = eng::scalar_tensor(comm->rank() + 1.0);  // 0-d: [P]
  CHECK(comm->all_gather(s).sizes() == eng::Shape{P});
}

TEST_CASE("mpi: barrier waits for the last rank", "[dist][mpi]") {
  auto comm = world();
  if (comm->size() < 2) return;
  if (comm->rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = std::chrono::steady_clock::now();
  comm->barrier();
  if (comm->rank() != 1) CHECK(seconds_since(t0) > 0.2);
}

TEST_CASE("mpi: all_gather_bytes with a different length on every rank", "[dist][mpi]") {
  auto comm = world();
  const int P = comm->size();
  // rank r sends 3r bytes of value r + 1 (rank 0: none)
  std::vector<uint8_t> mine(size_t(3 * comm->rank()), uint8_t(comm->rank() + 1));
  auto all = comm->all_gather_bytes(mine);
  REQUIRE(all.size() == size_t(P));
  for (int r = 0; r < P; ++r) CHECK(all[size_t(r)] == std::vector<uint8_t>(size_t(3 * r), uint8_t(r + 1)));
  auto none = comm->all_gather_bytes({});
  for (const auto& v : none) CHECK(v.empty());
}

TEST_CASE("mpi: ranks that disagree get an error on every rank, and the communicator goes on", "[dist][mpi]") {
  auto comm = world();
  if (comm->size() < 2) return;
  const bool first = comm->rank() == 0;
  Tensor t = eng::zeros({first ? 5 : 6});
  CHECK_THROWS_WITH(comm->all_reduce(t), Contains("all_reduce: rank 0 has 5 f32 elements but rank 1 has 6 f32"));
  Tensor u = eng::zeros({4}, first ? DType::f32 : DType::f64);
  CHECK_THROWS_WITH(comm->all_reduce(u), Contains("f32 elements but rank 1 has 4 f64"));
  Tensor v = eng::zeros({4});
  CHECK_THROWS_WITH(comm->all_reduce(v, first ? 1.0 : 0.5), Contains("rank 0 scales by 1 but rank 1 by 0.5"));
  CHECK_THROWS_WITH(comm->broadcast(v, first ? 0 : 1), Contains("broadcasts from root 0 but rank 1 from root 1"));
  Tensor w = eng::zeros(first ? eng::Shape{2, 3} : eng::Shape{3, 2});
  CHECK_THROWS_WITH(comm->all_gather(w), Contains("all_gather") && Contains("in another shape"));
  if (first) CHECK_THROWS_WITH(comm->barrier(), Contains("rank 0 calls barrier but rank 1 calls all_reduce"));
  else CHECK_THROWS_WITH(comm->all_reduce(v), Contains("rank 0 calls barrier but rank 1 calls all_reduce"));
  // Local refusals (no communication).
  Tensor nc = eng::zeros({3, 4}).transpose(0, 1);
  CHECK_THROWS_WITH(comm->all_reduce(nc), Contains("non-contiguous"));
  Tensor bytes = eng::zeros({3}, DType::u8);
  CHECK_THROWS_WITH(comm->all_reduce(bytes), Contains("all_reduce (mpi)") && Contains("u8"));
  CHECK_THROWS_WITH(comm->all_reduce(v, std::nan("")), Contains("scale must be finite"));
  // Still in step.
  Tensor ok = eng::ones({3});
  comm->all_reduce(ok);
  CHECK(ok.to_vector<float>() == std::vector<float>(3, float(comm->size())));
}

TEST_CASE("mpi: a rank that never comes makes the others fail after the timeout", "[dist][mpi]") {
  auto comm = world(2.0);
  if (comm->size() < 2) return;
  if (comm->rank() == 0) {
    Tensor t = eng::ones({8});
    const auto t0 = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH(comm->all_reduce(t),
                      "rank 0: all_reduce waited 2 s for the other ranks (one of them died or hangs)");
    const double waited = seconds_since(t0);
    CHECK(waited >= 2.0);
    CHECK(waited < 10.0);
    // The communicator is spent: later calls fail at once.
    CHECK_THROWS_WITH(comm->barrier(), Contains("rank 0: barrier: the communicator failed earlier"));
  }
  // A second communicator (its creation is collective: the other ranks wait here until rank 0
  // has timed out). The late ranks then enter the first communicator's next collective,
  // which meets rank 0's timed-out all_reduce: they see the mismatch, and rank 0's request
  // completes, so that no request is left over at MPI_Finalize (the test's main would
  // otherwise skip it and mpirun fail the job).
  auto after = world();
  if (comm->rank() != 0) {
    CHECK_THROWS_WITH(comm->barrier(), Contains("rank 0 calls all_reduce but rank") && Contains("calls barrier"));
  }
  after->barrier();
  comm.reset();
  after->barrier();
}

TEST_CASE("mpi: ENGINE_DIST_TIMEOUT sets the default timeout, and a bad value is refused", "[dist][mpi]") {
  ::setenv("ENGINE_DIST_TIMEOUT", "2.5", 1);
  CHECK(eng::dist::init("mpi")->timeout_seconds() == 2.5);
  ::setenv("ENGINE_DIST_TIMEOUT", "soon", 1);
  CHECK_THROWS_WITH(eng::dist::init("mpi"), Contains("ENGINE_DIST_TIMEOUT='soon'"));
  ::unsetenv("ENGINE_DIST_TIMEOUT");
}

TEST_CASE("mpi: CUDA tensors go through pinned host buffers", "[dist][mpi][cuda]") {
  REQUIRE_CUDA_OR_SKIP();
  auto comm = world();
  const int P = comm->size();
  const double ranks_sum = P * (P + 1) / 2.0;
  Tensor x = ramp(37, comm->rank(), DType::f32).cuda();
  Tensor y = x * 2.0;  // queued on the compute stream before the reduction
  comm->all_reduce(y, 0.5);
  auto wy = y.cpu().to_vector<float>();
  for (int i = 0; i < 37; ++i) CHECK(wy[size_t(i)] == float(ranks_sum * (i + 1)));
  Tensor z = ramp(1000, comm->rank(), DType::f64).cuda();
  auto work = comm->all_reduce_async(z);
  work->wait();
  Tensor z_plus = z + 1.0;  // an op after wait() sees the reduced values
  auto wz = z_plus.cpu().to_vector<double>();
  for (int i = 0; i < 1000; ++i) REQUIRE(wz[size_t(i)] == ranks_sum * (i + 1) + 1);
  const int root = P > 1 ? 1 : 0;
  Tensor w = eng::full({5}, double(comm->rank()), eng::TensorOptions(eng::Device::cuda())).set_requires_grad(true);
  comm->broadcast(w, root);
  for (float v : w.cpu().to_vector<float>()) CHECK(v == float(root));
  Tensor g = comm->all_gather(eng::full({2}, double(comm->rank()), eng::TensorOptions(eng::Device::cuda())));
  CHECK(g.is_cuda());
  REQUIRE(g.sizes() == eng::Shape{P, 2});
  const auto gv = g.cpu().to_vector<float>();
  for (int r = 0; r < P; ++r) CHECK(gv[size_t(2 * r + 1)] == float(r));
}

// A measurement, not a test ([.]): time of all_reduce on a 25 MB f32 bucket (DDP's bucket
// size) and on a small tensor, as docs/_pending/dist-mpi.md quotes.
//   mpirun --allow-run-as-root --oversubscribe -np 2 build/tests/test_dist_mpi '[bench]'
TEST_CASE("mpi: all_reduce time for a 25 MB bucket", "[.][bench]") {
  auto comm = world();
  for (int64_t n : {int64_t(256), int64_t(25) << 18}) {  // 1 KB, 25 MB of f32
    Tensor t = eng::ones({n});
    comm->all_reduce(t);  // warm-up
    const int reps = n > 1000 ? 10 : 1000;
    comm->barrier();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) comm->all_reduce(t, 1.0 / comm->size());
    const double s = seconds_since(t0) / reps;
    if (comm->rank() == 0) {
      std::printf("all_reduce f32 x %lld on %d ranks: %.3f ms (%.0f MB/s of tensor)\n", static_cast<long long>(n),
                  comm->size(), s * 1e3, double(n) * 4 / s / 1e6);
    }
  }
}

// Not in the normal runs ([.]): tests/CMakeLists.txt runs it alone and expects mpirun to
// report rank 1's abort with code 3 while rank 0 waits in a barrier.
TEST_CASE("mpi: abort_job ends every rank", "[.][abort]") {
  auto comm = world();
  if (comm->rank() == 1) eng::dist::abort_job(3);
  comm->barrier();
  FAIL("rank " << comm->rank() << " passed the barrier although rank 1 aborted");
}

// Not in the normal runs ([.]): rank 1 is killed (SIGKILL) while rank 0 waits in an
// all_reduce; mpirun must end rank 0 and exit non-zero (tests/CMakeLists.txt).
TEST_CASE("mpi: a killed rank ends the job", "[.][kill]") {
  auto comm = world();
  if (comm->rank() == 1) ::raise(SIGKILL);
  Tensor t = eng::ones({4});
  comm->all_reduce(t);
  FAIL("rank " << comm->rank() << " finished an all_reduce although rank 1 was killed");
}

int main(int argc, char** argv) {
  int rc = 1;
  {
    auto comm = eng::dist::init("mpi");  // starts MPI once for the whole program
    rc = Catch::Session().run(argc, argv);
  }
  eng::dist::finalize();
  return rc;
}
