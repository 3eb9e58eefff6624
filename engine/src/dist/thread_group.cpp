// The "threads" backend (tests only): `size` communicators in one process, one per thread.
//
// Every call of a rank gets the next sequence number of that rank; call k of every rank
// meets in slot k of the shared group. A call deposits a host snapshot of its input in the
// slot and returns at once (asynchronous calls) or waits (blocking calls = async + wait).
// The last rank to arrive computes every rank's result under the group's lock (sums in
// rank order 0, 1, ..., so every rank gets the same bits); Work::wait() then copies the
// result into the caller's tensor in the caller's own thread. Since every rank issues its
// calls in order, slot k is complete before slot k + 1: calls complete in issue order.
//
// A mismatch between ranks (collective, dtype, shape, root, scale) completes the slot with
// an error that every rank throws. A wait past timeout_seconds() throws and marks the group
// failed: every later call of any rank throws at once instead of waiting again.
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>

#include "engine/autograd.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"

namespace eng::dist {
namespace {

enum class Op { all_reduce, broadcast, all_gather, barrier, all_gather_bytes };

const char* op_name(Op op) {
  switch (op) {
    case Op::all_reduce: return "all_reduce";
    case Op::broadcast: return "broadcast";
    case Op::all_gather: return "all_gather";
    case Op::barrier: return "barrier";
    case Op::all_gather_bytes: return "all_gather_bytes";
  }
  return "?";
}

struct Slot {
  explicit Slot(int n) : in(n), scale(n, 1.0), root(n, 0), bytes(n), out(n) {}
  bool has_op = false;
  Op op = Op::barrier;
  int first_rank = 0;
  int arrived = 0;
  int taken = 0;
  bool done = false;
  std::string error;  // set when the ranks' calls do not match
  std::vector<Tensor> in;  // host snapshots, contiguous
  std::vector<double> scale;
  std::vector<int> root;
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<Tensor> out;  // per-rank host results
};

struct Group {
  explicit Group(int n) : size(n) {}
  const int size;
  std::mutex mu;
  std::condition_variable cv;
  std::map<uint64_t, Slot> slots;
  std::string failed;  // the first timeout's message; later calls throw it
};

// dst = sum over ranks in rank order, then * scale.
template <typename T>
void sum_in_rank_order(const std::vector<Tensor>& in, double scale, Tensor& dst) {
  const int64_t n = dst.numel();
  T* d = dst.data<T>();
  std::memcpy(d, in[0].data<T>(), sizeof(T) * static_cast<size_t>(n));
  for (size_t r = 1; r < in.size(); ++r) {
    const T* s = in[r].data<T>();
    for (int64_t i = 0; i < n; ++i) d[i] += s[i];
  }
  if (scale == 1.0) return;
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_floating_point<T>::value)
      d[i] = static_cast<T>(static_cast<double>(d[i]) * scale);
    else
      d[i] = static_cast<T>(std::llround(static_cast<double>(d[i]) * scale));
  }
}

// Fills slot.out (or slot.error) once every rank arrived. Called under the group's lock.
void complete(Slot& s, int size) {
  auto fail = [&](int r, const std::string& what) {
    s.error = detail::concat(what, " (rank ", r, " against rank 0)");
  };
  if (s.op == Op::all_reduce || s.op == Op::broadcast || s.op == Op::all_gather) {
    for (int r = 1; r < size; ++r) {
      if (s.in[r].dtype() != s.in[0].dtype())
        return fail(r, detail::concat("dtype ", dtype_name(s.in[r].dtype()), " differs from ",
                                      dtype_name(s.in[0].dtype())));
      if (s.in[r].sizes() != s.in[0].sizes())
        return fail(r, detail::concat("shape ", shape_str(s.in[r].sizes()), " differs from ",
                                      shape_str(s.in[0].sizes())));
    }
  }
  switch (s.op) {
    case Op::all_reduce: {
      for (int r = 1; r < size; ++r)
        if (s.scale[r] != s.scale[0])
          return fail(r, detail::concat("scale ", s.scale[r], " differs from ", s.scale[0]));
      Tensor sum = empty(s.in[0].sizes(), s.in[0].dtype());
      switch (sum.dtype()) {
        case DType::f32: sum_in_rank_order<float>(s.in, s.scale[0], sum); break;
        case DType::f64: sum_in_rank_order<double>(s.in, s.scale[0], sum); break;
        case DType::i32: sum_in_rank_order<int32_t>(s.in, s.scale[0], sum); break;
        case DType::i64: sum_in_rank_order<int64_t>(s.in, s.scale[0], sum); break;
        default: s.error = detail::concat("dtype ", dtype_name(sum.dtype()), " cannot be summed"); return;
      }
      for (int r = 0; r < size; ++r) s.out[r] = sum;  // read-only: wait() copies it out
      break;
    }
    case Op::broadcast:
      for (int r = 1; r < size; ++r)
        if (s.root[r] != s.root[0])
          return fail(r, detail::concat("root ", s.root[r], " differs from ", s.root[0]));
      for (int r = 0; r < size; ++r) s.out[r] = s.in[s.root[0]];
      break;
    case Op::all_gather: {
      Shape shape{static_cast<int64_t>(size)};
      shape.insert(shape.end(), s.in[0].sizes().begin(), s.in[0].sizes().end());
      for (int q = 0; q < size; ++q) {  // every rank its own tensor
        Tensor g = empty(shape, s.in[0].dtype());
        const size_t row = static_cast<size_t>(s.in[0].numel()) * dtype_size(g.dtype());
        for (int r = 0; r < size; ++r)
          if (row) std::memcpy(static_cast<char*>(g.raw_data()) + r * row, s.in[r].raw_data(), row);
        s.out[q] = g;
      }
      break;
    }
    case Op::barrier:
    case Op::all_gather_bytes: break;  // bytes: every rank reads s.bytes
  }
}

class ThreadCommunicator;

class ThreadWork : public Work {
 public:
  ThreadWork(ThreadCommunicator* comm, uint64_t seq, Op op, Tensor target)
      : comm_(comm), seq_(seq), op_(op), target_(std::move(target)) {}
  void wait() override;

 private:
  ThreadCommunicator* comm_;
  uint64_t seq_;
  Op op_;
  Tensor target_;
  bool waited_ = false;
};

class ThreadCommunicator : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<Group> g, int rank) : group_(std::move(g)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_->size; }
  int local_rank() const override { return rank_; }
  std::string backend() const override { return "threads"; }

  void all_reduce(Tensor& t, double scale) override { all_reduce_async(t, scale)->wait(); }

  std::unique_ptr<Work> all_reduce_async(Tensor& t, double scale) override {
    check_tensor(Op::all_reduce, t, true);
    ENGINE_CHECK(std::isfinite(scale), "rank ", rank_, ": all_reduce: scale ", scale, " is not finite");
    const uint64_t seq = deposit(Op::all_reduce, snapshot(t), scale, 0, {});
    return std::make_unique<ThreadWork>(this, seq, Op::all_reduce, t);
  }

  void broadcast(Tensor& t, int root) override {
    check_tensor(Op::broadcast, t, true);
    ENGINE_CHECK(root >= 0 && root < size(), "rank ", rank_, ": broadcast: root ", root, " is not a rank of 0..",
                 size() - 1);
    ThreadWork(this, deposit(Op::broadcast, snapshot(t), 1.0, root, {}), Op::broadcast, t).wait();
  }

  Tensor all_gather(const Tensor& t) override {
    check_tensor(Op::all_gather, t, false);
    const Tensor g = take(deposit(Op::all_gather, snapshot(t), 1.0, 0, {}), Op::all_gather).out;
    return t.is_cuda() ? g.to(t.device()) : g;
  }

  void barrier() override { take(deposit(Op::barrier, Tensor(), 1.0, 0, {}), Op::barrier); }

  std::vector<std::vector<uint8_t>> all_gather_bytes(const std::vector<uint8_t>& mine) override {
    return take(deposit(Op::all_gather_bytes, Tensor(), 1.0, 0, mine), Op::all_gather_bytes).bytes;
  }

  struct Result {
    Tensor out;
    std::vector<std::vector<uint8_t>> bytes;
  };

  // Waits for slot `seq` to complete and takes this rank's result (throws on error/timeout).
  Result take(uint64_t seq, Op op) {
    std::unique_lock<std::mutex> lock(group_->mu);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds());
    Slot* s = &group_->slots.at(seq);
    while (!s->done) {
      ENGINE_CHECK(group_->failed.empty(), "rank ", rank_, ": ", op_name(op), ": the group failed earlier: ",
                   group_->failed);
      if (group_->cv.wait_until(lock, deadline) == std::cv_status::timeout && !s->done) {
        group_->failed = detail::concat("rank ", rank_, ": ", op_name(op), " waited ", timeout_seconds(),
                                        " s for the other ranks (one of them died or hangs)");
        group_->cv.notify_all();
        throw Error(group_->failed);
      }
    }
    Result r;
    const bool err = !s->error.empty();
    const std::string error = s->error;
    if (!err) {
      r.out = s->out[rank_];
      if (op == Op::all_gather_bytes) r.bytes = s->bytes;
    }
    if (++s->taken == group_->size) group_->slots.erase(seq);
    ENGINE_CHECK(!err, "rank ", rank_, ": ", op_name(op), ": ", error);
    return r;
  }

 private:
  void check_tensor(Op op, const Tensor& t, bool in_place) const {
    ENGINE_CHECK(t.defined(), "rank ", rank_, ": ", op_name(op), ": undefined tensor");
    ENGINE_CHECK(!in_place || t.is_contiguous(), "rank ", rank_, ": ", op_name(op),
                 ": the tensor must be contiguous, got shape ", shape_str(t.sizes()), " strides ",
                 shape_str(t.strides()));
    const DType dt = t.dtype();
    ENGINE_CHECK(dt == DType::f32 || dt == DType::f64 || dt == DType::i64 || dt == DType::i32, "rank ", rank_, ": ",
                 op_name(op), ": dtype ", dtype_name(dt), " is not supported by the threads backend (f32, f64, i64, i32)");
  }

  // A host copy that nothing else holds (the caller may reuse its tensor after wait()).
  static Tensor snapshot(const Tensor& t) {
    NoGradGuard guard;
    return t.detach().cpu().contiguous().clone();
  }

  uint64_t deposit(Op op, Tensor t, double scale, int root, std::vector<uint8_t> bytes) {
    std::lock_guard<std::mutex> lock(group_->mu);
    ENGINE_CHECK(group_->failed.empty(), "rank ", rank_, ": ", op_name(op), ": the group failed earlier: ",
                 group_->failed);
    const uint64_t seq = next_seq_++;
    Slot& s = group_->slots.try_emplace(seq, group_->size).first->second;
    if (!s.has_op) {
      s.has_op = true;
      s.op = op;
      s.first_rank = rank_;
    } else if (s.op != op && s.error.empty()) {
      s.error = detail::concat("call ", seq, " is ", op_name(op), " on rank ", rank_, " but ", op_name(s.op),
                               " on rank ", s.first_rank);
    }
    s.in[rank_] = std::move(t);
    s.scale[rank_] = scale;
    s.root[rank_] = root;
    s.bytes[rank_] = std::move(bytes);
    if (++s.arrived == group_->size) {
      if (s.error.empty()) complete(s, group_->size);
      s.in.assign(s.in.size(), Tensor());
      s.done = true;
      group_->cv.notify_all();
    }
    return seq;
  }

  std::shared_ptr<Group> group_;
  const int rank_;
  uint64_t next_seq_ = 0;
};

void ThreadWork::wait() {
  if (waited_) return;
  waited_ = true;
  const Tensor result = comm_->take(seq_, op_).out;
  NoGradGuard guard;  // like the real backends, which write the memory directly
  target_.copy_(result);
}

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_thread_group(int size) {
  ENGINE_CHECK(size >= 1 && size <= 1024, "make_thread_group: size ", size, " must be in 1..1024");
  auto group = std::make_shared<Group>(size);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < size; ++r) comms.push_back(std::make_unique<ThreadCommunicator>(group, r));
  return comms;
}

}  // namespace eng::dist
