// The mpi backend of eng::dist::Communicator (engine/dist/communicator.h).
//
// Threads. Each communicator owns one communication thread that makes every MPI call on its
// MPI communicator (a duplicate of MPI_COMM_WORLD), one job at a time, in the order the jobs
// were submitted. Blocking calls are asynchronous calls waited for at once, so blocking and
// asynchronous collectives keep the order they were issued in. CUDA work (copies to and from
// pinned host buffers) stays on the calling thread.
//
// Every collective starts with a header exchange: each rank all-gathers {collective, dtype,
// element count, argument, shape hash}. Ranks that disagree (a different collective, shape,
// dtype, root or scale) all see the same headers and all throw the same eng::Error, and the
// communicator stays usable. The barrier is the header exchange alone.
//
// Timeouts. MPI calls are nonblocking (MPI_Iallgather, MPI_Ialltoallv, MPI_Ibcast, ...) and
// polled with MPI_Test (yield, then sleeps of 20 us, then 500 us) against the timeout the
// caller had when it issued the call. A request that times out cannot be cancelled
// (collectives cannot be): it is kept with its buffers (MPI may still write them), the
// communicator is marked failed, and every later call on it throws at once.
#ifdef ENGINE_HAVE_MPI
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <limits>
#include <thread>
#include <type_traits>

#include "comm_thread.h"
#include "dist_env.h"
#include "engine/cuda_context.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "engine/tensor.h"
#include "kernels/copy.h"

namespace eng::dist {
namespace {

enum class Op : int64_t { all_reduce = 1, broadcast, all_gather, barrier, all_gather_bytes, join };

const char* op_name(int64_t op) {
  switch (static_cast<Op>(op)) {
    case Op::all_reduce: return "all_reduce";
    case Op::broadcast: return "broadcast";
    case Op::all_gather: return "all_gather";
    case Op::barrier: return "barrier";
    case Op::all_gather_bytes: return "all_gather_bytes";
    case Op::join: return "init";
  }
  return "an unknown collective";
}

// What each rank says of the collective it is in (all-gathered before the data moves).
struct Header {
  int64_t op = 0;
  int64_t dtype = 0;
  int64_t numel = 0;       // elements; bytes for all_gather_bytes
  int64_t arg = 0;         // all_reduce: the bits of scale; broadcast: the root
  int64_t shape_hash = 0;  // all_gather: FNV-1a of the sizes
};
constexpr int kHeaderWords = sizeof(Header) / sizeof(int64_t);

// Buffers an MPI request reads or writes; a timed-out request keeps them alive for good.
struct Keep {
  Tensor tensor, out;
  Header mine;
  std::vector<Header> headers;
  std::vector<uint8_t> send, recv;
  std::vector<int> counts, displs, rcounts, rdispls;  // MPI reads them until completion
};

// Elements of one all_reduce round: MPI counts are int, and the scratch stays bounded.
constexpr int64_t kPieceElems = int64_t(1) << 24;
constexpr int64_t kMaxBytesPerCall = 0x7fffffff;  // MPI's int counts, in bytes

int64_t shape_hash(const Shape& s) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * 1099511628211ull;
  };
  mix(s.size());
  for (const int64_t d : s) mix(static_cast<uint64_t>(d));
  return static_cast<int64_t>(h);
}

int64_t bits_of(double v) {
  int64_t b = 0;
  std::memcpy(&b, &v, sizeof b);
  return b;
}
double double_of(int64_t b) {
  double v = 0;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

template <typename T> MPI_Datatype mpi_type();
template <> MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <> MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }
template <> MPI_Datatype mpi_type<int32_t>() { return MPI_INT32_T; }
template <> MPI_Datatype mpi_type<int64_t>() { return MPI_INT64_T; }

size_t nbytes_of(const Tensor& t) { return static_cast<size_t>(t.numel()) * dtype_size(t.dtype()); }

// CUDA tensors travel through pinned host memory. to_host waits for the compute stream (the
// copy is queued on it, then synchronised); to_device queues the copy back on the compute
// stream (the pinned allocator keeps the host block until the stream has passed it).
Tensor to_host(const Tensor& t) {
  if (!t.is_cuda()) return t;
  Tensor host = empty_pinned(t.sizes(), t.dtype());
#ifdef ENGINE_WITH_CUDA
  if (nbytes_of(t) > 0) kern::cuda::memcpy_d2h(host.raw_data(), t.raw_data(), nbytes_of(t), cuda::stream());
#endif
  return host;
}
void to_device(const Tensor& host, const Tensor& dev) {
#ifdef ENGINE_WITH_CUDA
  if (nbytes_of(dev) > 0) kern::cuda::memcpy_h2d_async(dev.raw_data(), host.raw_data(), nbytes_of(dev), cuda::stream());
#else
  (void)host;
  (void)dev;
#endif
}

// A host buffer for a (maybe CUDA) tensor's contents without copying them down.
Tensor host_buffer(const Tensor& t) { return t.is_cuda() ? empty_pinned(t.sizes(), t.dtype()) : t; }

class MpiWork final : public Work {
 public:
  MpiWork(std::future<void> done, std::shared_ptr<void> keep, std::function<void()> finish)
      : done_(std::move(done)), keep_(std::move(keep)), finish_(std::move(finish)) {}
  // Dropped without wait(): waits all the same (the job writes the tensor), errors dropped.
  ~MpiWork() override {
    try {
      wait();
    } catch (...) {
    }
  }
  void wait() override {
    if (waited_) return;
    waited_ = true;
    done_.get();  // rethrows the job's error (timeout, mismatch)
    if (finish_) finish_();
  }

 private:
  std::future<void> done_;
  std::shared_ptr<void> keep_;  // the job's buffers, released here (the caller's thread)
  std::function<void()> finish_;
  bool waited_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, double timeout) : comm_(comm) {
    timeout_s_ = timeout;
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    thread_ = std::make_unique<detail::CommThread>();
  }
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string backend() const override { return "mpi"; }

  // The first collective: finds the local rank (ranks before this one on the same host).
  void join();

  void all_reduce(Tensor& t, double scale) override { all_reduce_async(t, scale)->wait(); }
  std::unique_ptr<Work> all_reduce_async(Tensor& t, double scale) override;
  void broadcast(Tensor& t, int root) override;
  Tensor all_gather(const Tensor& t) override;
  void barrier() override;
  std::vector<std::vector<uint8_t>> all_gather_bytes(const std::vector<uint8_t>& mine) override;

 private:
  std::future<void> submit(const char* what, std::function<void()> job);

  // ---- on the communication thread only ----
  [[noreturn]] void fail(const std::string& message);
  void check(int rc, const char* what, const char* call);
  void wait_for(MPI_Request& req, const char* what, double timeout, const std::shared_ptr<Keep>& keep);
  void exchange_headers(const std::shared_ptr<Keep>& keep, const char* what, double timeout);
  template <typename T> void reduce(const std::shared_ptr<Keep>& keep, double scale, double timeout);
  template <typename T> void scale_integers(T* data, int64_t n, double scale);

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1, local_rank_ = 0;

  std::unique_ptr<detail::CommThread> thread_;

  std::string failure_;  // the first timeout's message; the communicator is unusable after it
  std::vector<std::pair<MPI_Request, std::shared_ptr<Keep>>> abandoned_;
};

// ---- the communication thread -------------------------------------------------------------

std::future<void> MpiCommunicator::submit(const char* what, std::function<void()> job) {
  return thread_->submit([this, what, job = std::move(job)] {
    ENGINE_CHECK(failure_.empty(), "rank ", rank_, ": ", what, ": the communicator failed earlier (", failure_, ")");
    job();
  });
}

MpiCommunicator::~MpiCommunicator() {
  thread_.reset();  // runs what is queued, then joins
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  // A timed-out request may still complete (the late rank came after all): poll it for a
  // moment. If it does not, its buffers and the MPI communicator are left as they are.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  bool settled = true;
  for (auto& [req, keep] : abandoned_) {
    int done = 0;
    while (MPI_Test(&req, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && !done &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    settled = settled && done;
  }
  if (!failure_.empty() && settled) detail::g_unsettled_communicators.fetch_sub(1);
  if (settled) {
    MPI_Comm_free(&comm_);
  } else {
    for (auto& entry : abandoned_) new std::shared_ptr<Keep>(entry.second);  // leaked on purpose: MPI may write them
  }
}

void MpiCommunicator::fail(const std::string& message) {
  if (failure_.empty()) {
    failure_ = message;
    detail::g_unsettled_communicators.fetch_add(1);
  }
  throw Error(message);
}

void MpiCommunicator::check(int rc, const char* what, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  ENGINE_FAIL("rank ", rank_, ": ", what, ": ", call, " failed: ", std::string(text, static_cast<size_t>(len)));
}

void MpiCommunicator::wait_for(MPI_Request& req, const char* what, double timeout, const std::shared_ptr<Keep>& keep) {
  const auto start = std::chrono::steady_clock::now();
  for (int polls = 0;; ++polls) {
    int done = 0;
    check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what, "MPI_Test");
    if (done) return;
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > timeout) {
      abandoned_.emplace_back(req, keep);
      fail(eng::detail::concat("rank ", rank_, ": ", what, " waited ", timeout,
                               " s for the other ranks (one of them died or hangs)"));
    }
    // Spin briefly (a collective of ranks that are in step completes in microseconds),
    // then sleep: the CPU is the other ranks' too.
    if (polls < 100) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(polls < 2000 ? 20 : 500));
  }
}

void MpiCommunicator::exchange_headers(const std::shared_ptr<Keep>& hold, const char* what, double timeout) {
  Keep& keep = *hold;
  keep.headers.assign(static_cast<size_t>(size_), Header{});
  MPI_Request req;
  check(MPI_Iallgather(&keep.mine, kHeaderWords, MPI_INT64_T, keep.headers.data(), kHeaderWords, MPI_INT64_T, comm_,
                       &req),
        what, "MPI_Iallgather");
  wait_for(req, what, timeout, hold);
  for (int r = 0; r < size_; ++r) {
    const Header& h = keep.headers[static_cast<size_t>(r)];
    ENGINE_CHECK(h.op == keep.headers[0].op, "rank ", rank_, ": ", what, ": rank 0 calls ",
                 op_name(keep.headers[0].op), " but rank ", r, " calls ", op_name(h.op),
                 " (every rank must call the same collectives in the same order)");
  }
}

// ---- collectives --------------------------------------------------------------------------

// Sum with the same bits on every rank: the element range is cut into one chunk per rank;
// an all-to-all gives rank j every rank's copy of chunk j; rank j adds them in rank order
// (rank 0 + rank 1 + ...), scales, and an all-gather hands the finished chunks to all.
// Each rank sends and receives about 2 (P-1)/P of the tensor (as a ring all-reduce does)
// and holds one more tensor-sized scratch buffer (per piece of 2^24 elements). Integers are
// summed modulo 2^bits (no overflow trap), then scaled on every rank (round to nearest).
template <typename T>
void MpiCommunicator::reduce(const std::shared_ptr<Keep>& keep, double scale, double timeout) {
  T* data = static_cast<T*>(keep->tensor.raw_data());
  const int64_t n = keep->tensor.numel();
  const int P = size_;
  std::vector<int>& counts = keep->counts;
  std::vector<int>& displs = keep->displs;
  std::vector<int>& rcounts = keep->rcounts;
  std::vector<int>& rdispls = keep->rdispls;
  counts.assign(P, 0);
  displs.assign(P, 0);
  rcounts.assign(P, 0);
  rdispls.assign(P, 0);
  for (int64_t off = 0; off < n; off += kPieceElems) {
    const int64_t len = std::min(kPieceElems, n - off);
    int at = 0;
    for (int j = 0; j < P; ++j) {
      counts[j] = static_cast<int>(len / P + (j < len % P ? 1 : 0));
      displs[j] = at;
      at += counts[j];
    }
    const int mine = counts[rank_];
    for (int i = 0; i < P; ++i) {
      rcounts[i] = mine;
      rdispls[i] = i * mine;
    }
    keep->recv.resize(static_cast<size_t>(mine) * static_cast<size_t>(P) * sizeof(T));
    T* gathered = reinterpret_cast<T*>(keep->recv.data());
    MPI_Request req;
    check(MPI_Ialltoallv(data + off, counts.data(), displs.data(), mpi_type<T>(), gathered, rcounts.data(),
                         rdispls.data(), mpi_type<T>(), comm_, &req),
          "all_reduce", "MPI_Ialltoallv");
    wait_for(req, "all_reduce", timeout, keep);
    T* out = data + off + displs[rank_];
    std::copy(gathered, gathered + mine, out);
    for (int i = 1; i < P; ++i) {
      const T* row = gathered + static_cast<size_t>(i) * static_cast<size_t>(mine);
      if constexpr (std::is_floating_point_v<T>) {
        for (int k = 0; k < mine; ++k) out[k] += row[k];
      } else {
        using U = std::make_unsigned_t<T>;
        for (int k = 0; k < mine; ++k) out[k] = static_cast<T>(static_cast<U>(out[k]) + static_cast<U>(row[k]));
      }
    }
    if constexpr (std::is_floating_point_v<T>) {
      if (scale != 1.0) {
        const T s = static_cast<T>(scale);
        for (int k = 0; k < mine; ++k) out[k] *= s;
      }
    }
    check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data + off, counts.data(), displs.data(), mpi_type<T>(),
                          comm_, &req),
          "all_reduce", "MPI_Iallgatherv");
    wait_for(req, "all_reduce", timeout, keep);
  }
  if constexpr (!std::is_floating_point_v<T>) {
    if (scale != 1.0) scale_integers(data, n, scale);
  }
}

// Every rank holds the same sums here, so a value out of range fails on every rank alike.
template <typename T>
void MpiCommunicator::scale_integers(T* data, int64_t n, double scale) {
  const double lo = static_cast<double>(std::numeric_limits<T>::min());
  const double hi = -lo;  // 2^31 or 2^63, exactly representable
  for (int64_t i = 0; i < n; ++i) {
    const double v = std::nearbyint(static_cast<double>(data[i]) * scale);
    ENGINE_CHECK(v >= lo && v < hi, "rank ", rank_, ": all_reduce: the sum ", data[i], " times scale ", scale,
                 " does not fit in ", dtype_name(dtype_of<T>::value));
  }
  for (int64_t i = 0; i < n; ++i) data[i] = static_cast<T>(std::nearbyint(static_cast<double>(data[i]) * scale));
}

std::unique_ptr<Work> MpiCommunicator::all_reduce_async(Tensor& t, double scale) {
  ENGINE_CHECK(t.defined(), "all_reduce: the tensor is undefined");
  const DType dt = t.dtype();
  ENGINE_CHECK(t.is_contiguous() && (dt == DType::f32 || dt == DType::f64 || dt == DType::i32 || dt == DType::i64),
               "all_reduce (mpi): expected a contiguous f32, f64, i32 or i64 tensor, got ",
               t.is_contiguous() ? "" : "a non-contiguous ", dtype_name(dt), " ", shape_str(t.sizes()));
  ENGINE_CHECK(std::isfinite(scale), "all_reduce: the scale must be finite, got ", scale);
  const double timeout = timeout_s_;
  auto keep = std::make_shared<Keep>();
  keep->tensor = to_host(t);  // CUDA: waits for the compute stream, copies down
  keep->mine = Header{static_cast<int64_t>(Op::all_reduce), static_cast<int64_t>(dt), t.numel(), bits_of(scale), 0};
  std::future<void> done = submit("all_reduce", [this, keep, scale, timeout] {
    exchange_headers(keep, "all_reduce", timeout);
    for (int r = 0; r < size_; ++r) {
      const Header& h = keep->headers[static_cast<size_t>(r)];
      const Header& h0 = keep->headers[0];
      ENGINE_CHECK(h.dtype == h0.dtype && h.numel == h0.numel, "rank ", rank_, ": all_reduce: rank 0 has ", h0.numel,
                   " ", dtype_name(static_cast<DType>(h0.dtype)), " elements but rank ", r, " has ", h.numel, " ",
                   dtype_name(static_cast<DType>(h.dtype)), " (every rank must pass the same shape and dtype)");
      ENGINE_CHECK(h.arg == h0.arg, "rank ", rank_, ": all_reduce: rank 0 scales by ", double_of(h0.arg),
                   " but rank ", r, " by ", double_of(h.arg));
    }
    switch (keep->tensor.dtype()) {
      case DType::f32: reduce<float>(keep, scale, timeout); break;
      case DType::f64: reduce<double>(keep, scale, timeout); break;
      case DType::i32: reduce<int32_t>(keep, scale, timeout); break;
      default: reduce<int64_t>(keep, scale, timeout); break;
    }
  });
  std::function<void()> finish;
  if (t.is_cuda()) finish = [host = keep->tensor, dev = t] { to_device(host, dev); };
  return std::make_unique<MpiWork>(std::move(done), keep, std::move(finish));
}

void MpiCommunicator::broadcast(Tensor& t, int root) {
  ENGINE_CHECK(t.defined(), "broadcast: the tensor is undefined");
  ENGINE_CHECK(t.is_contiguous(), "broadcast: expected a contiguous tensor, got a non-contiguous ",
               dtype_name(t.dtype()), " ", shape_str(t.sizes()));
  ENGINE_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " is not a rank in [0, ", size_, ")");
  const double timeout = timeout_s_;
  auto keep = std::make_shared<Keep>();
  keep->tensor = rank_ == root ? to_host(t) : host_buffer(t);
  keep->mine = Header{static_cast<int64_t>(Op::broadcast), static_cast<int64_t>(t.dtype()), t.numel(), root, 0};
  submit("broadcast", [this, keep, root, timeout] {
    exchange_headers(keep, "broadcast", timeout);
    for (int r = 0; r < size_; ++r) {
      const Header& h = keep->headers[static_cast<size_t>(r)];
      const Header& h0 = keep->headers[0];
      ENGINE_CHECK(h.dtype == h0.dtype && h.numel == h0.numel, "rank ", rank_, ": broadcast: rank 0 has ", h0.numel,
                   " ", dtype_name(static_cast<DType>(h0.dtype)), " elements but rank ", r, " has ", h.numel, " ",
                   dtype_name(static_cast<DType>(h.dtype)), " (every rank must pass the same shape and dtype)");
      ENGINE_CHECK(h.arg == h0.arg, "rank ", rank_, ": broadcast: rank 0 broadcasts from root ", h0.arg,
                   " but rank ", r, " from root ", h.arg);
    }
    auto* bytes = static_cast<uint8_t*>(keep->tensor.raw_data());
    const int64_t total = static_cast<int64_t>(nbytes_of(keep->tensor));
    for (int64_t off = 0; off < total; off += int64_t(1) << 30) {
      const int len = static_cast<int>(std::min<int64_t>(int64_t(1) << 30, total - off));
      MPI_Request req;
      check(MPI_Ibcast(bytes + off, len, MPI_BYTE, root, comm_, &req), "broadcast", "MPI_Ibcast");
      wait_for(req, "broadcast", timeout, keep);
    }
  }).get();
  if (t.is_cuda() && rank_ != root) to_device(keep->tensor, t);
}

Tensor MpiCommunicator::all_gather(const Tensor& t) {
  ENGINE_CHECK(t.defined(), "all_gather: the tensor is undefined");
  ENGINE_CHECK(t.is_contiguous(), "all_gather: expected a contiguous tensor, got a non-contiguous ",
               dtype_name(t.dtype()), " ", shape_str(t.sizes()));
  ENGINE_CHECK(static_cast<int64_t>(nbytes_of(t)) * size_ <= kMaxBytesPerCall, "all_gather: ", shape_str(t.sizes()),
               " ", dtype_name(t.dtype()), " from ", size_, " ranks exceeds 2 GiB (MPI's count limit)");
  const double timeout = timeout_s_;
  Shape out_shape{size_};
  out_shape.insert(out_shape.end(), t.sizes().begin(), t.sizes().end());
  auto keep = std::make_shared<Keep>();
  keep->tensor = to_host(t);
  Tensor out = t.is_cuda() ? empty_pinned(out_shape, t.dtype()) : empty(out_shape, TensorOptions(t.dtype()));
  keep->mine = Header{static_cast<int64_t>(Op::all_gather), static_cast<int64_t>(t.dtype()), t.numel(), 0,
                      shape_hash(t.sizes())};
  keep->out = out;
  submit("all_gather", [this, keep, timeout] {
    exchange_headers(keep, "all_gather", timeout);
    for (int r = 0; r < size_; ++r) {
      const Header& h = keep->headers[static_cast<size_t>(r)];
      const Header& h0 = keep->headers[0];
      ENGINE_CHECK(h.dtype == h0.dtype && h.numel == h0.numel && h.shape_hash == h0.shape_hash, "rank ", rank_,
                   ": all_gather: rank 0 has ", h0.numel, " ", dtype_name(static_cast<DType>(h0.dtype)),
                   " elements but rank ", r, " has ", h.numel, " ", dtype_name(static_cast<DType>(h.dtype)),
                   h.numel == h0.numel ? " in another shape" : "",
                   " (every rank must pass the same shape and dtype)");
    }
    const int len = static_cast<int>(nbytes_of(keep->tensor));
    MPI_Request req;
    check(MPI_Iallgather(keep->tensor.raw_data(), len, MPI_BYTE, keep->out.raw_data(), len, MPI_BYTE, comm_, &req),
          "all_gather", "MPI_Iallgather");
    wait_for(req, "all_gather", timeout, keep);
  }).get();
  if (!t.is_cuda()) return out;
  Tensor dev = empty(out_shape, TensorOptions(t.dtype()).device(t.device()));
  to_device(out, dev);
  return dev;
}

void MpiCommunicator::barrier() {
  const double timeout = timeout_s_;
  auto keep = std::make_shared<Keep>();
  keep->mine = Header{static_cast<int64_t>(Op::barrier), 0, 0, 0, 0};
  // An all-gather completes on no rank before every rank has entered it: a barrier.
  submit("barrier", [this, keep, timeout] { exchange_headers(keep, "barrier", timeout); }).get();
}

std::vector<std::vector<uint8_t>> MpiCommunicator::all_gather_bytes(const std::vector<uint8_t>& mine) {
  ENGINE_CHECK(static_cast<int64_t>(mine.size()) <= kMaxBytesPerCall, "all_gather_bytes: ", mine.size(),
               " bytes exceed 2 GiB (MPI's count limit)");
  const double timeout = timeout_s_;
  auto keep = std::make_shared<Keep>();
  keep->send = mine;  // MPI may read it after a timeout: the keep owns the copy
  keep->mine = Header{static_cast<int64_t>(Op::all_gather_bytes), 0, static_cast<int64_t>(mine.size()), 0, 0};
  submit("all_gather_bytes", [this, keep, timeout] {
    exchange_headers(keep, "all_gather_bytes", timeout);
    std::vector<int>& counts = keep->counts;
    std::vector<int>& displs = keep->displs;
    counts.assign(static_cast<size_t>(size_), 0);
    displs.assign(static_cast<size_t>(size_), 0);
    int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      counts[r] = static_cast<int>(keep->headers[static_cast<size_t>(r)].numel);
      displs[r] = static_cast<int>(total);
      total += counts[r];
      ENGINE_CHECK(total <= kMaxBytesPerCall, "rank ", rank_,
                   ": all_gather_bytes: the ranks' bytes together exceed 2 GiB (MPI's count limit)");
    }
    keep->recv.resize(static_cast<size_t>(total));
    MPI_Request req;
    check(MPI_Iallgatherv(keep->send.data(), counts[rank_], MPI_BYTE, keep->recv.data(), counts.data(), displs.data(),
                          MPI_BYTE, comm_, &req),
          "all_gather_bytes", "MPI_Iallgatherv");
    wait_for(req, "all_gather_bytes", timeout, keep);
  }).get();
  std::vector<std::vector<uint8_t>> out(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) {
    const auto* p = keep->recv.data() + keep->displs[r];
    out[r].assign(p, p + keep->counts[r]);
  }
  return out;
}

// Each rank's host name, all-gathered: the local rank is the number of lower ranks on the
// same host (the order Open MPI's OMPI_COMM_WORLD_LOCAL_RANK follows).
void MpiCommunicator::join() {
  const double timeout = timeout_s_;
  auto keep = std::make_shared<Keep>();
  keep->mine = Header{static_cast<int64_t>(Op::join), 0, 0, 0, 0};
  int local = 0;
  submit("init", [this, keep, &local, timeout] {
    exchange_headers(keep, "init", timeout);
    constexpr int kName = MPI_MAX_PROCESSOR_NAME;
    keep->send.assign(kName, 0);
    int len = 0;
    MPI_Get_processor_name(reinterpret_cast<char*>(keep->send.data()), &len);
    keep->recv.assign(static_cast<size_t>(kName) * static_cast<size_t>(size_), 0);
    MPI_Request req;
    check(MPI_Iallgather(keep->send.data(), kName, MPI_BYTE, keep->recv.data(), kName, MPI_BYTE, comm_, &req), "init",
          "MPI_Iallgather");
    wait_for(req, "init", timeout, keep);
    for (int r = 0; r < rank_; ++r) {
      local += std::memcmp(keep->recv.data() + static_cast<size_t>(r) * kName, keep->send.data(), kName) == 0;
    }
  }).get();
  local_rank_ = local;
}

}  // namespace

namespace detail {

std::unique_ptr<Communicator> make_mpi_world() {
  const double timeout = timeout_from_env();
  const LaunchInfo launch = detect_launch();
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Request req;
  ENGINE_CHECK(MPI_Comm_idup(MPI_COMM_WORLD, &comm, &req) == MPI_SUCCESS, "dist::init: MPI_Comm_idup failed");
  const auto start = std::chrono::steady_clock::now();
  for (int done = 0; !done;) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) break;
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > timeout) {
      g_unsettled_communicators.fetch_add(1);  // the pending MPI_Comm_idup: no MPI_Finalize
      int rank = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      ENGINE_FAIL("rank ", rank, ": init waited ", timeout, " s for the other ranks (one of them died or hangs)");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  auto c = std::make_unique<MpiCommunicator>(comm, timeout);
  c->join();
  // A launcher that announces N ranks while MPI started another number (a torchrun-style
  // environment without mpirun, say) would train independent copies: refuse.
  if (launch.launcher != "none" && launch.launcher != "pmix") {
    ENGINE_CHECK(launch.rank == c->rank() && launch.size == c->size(), "dist::init: the environment (", launch.launcher,
                 ") says rank ", launch.rank, " of ", launch.size, " but MPI started rank ", c->rank(), " of ",
                 c->size(), ": start the job with mpirun or srun");
  }
  return c;
}

}  // namespace detail
}  // namespace eng::dist

#endif  // ENGINE_HAVE_MPI
