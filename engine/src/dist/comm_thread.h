// Private to engine/src/dist: one thread that runs jobs one at a time, in the order they
// were submitted (the mpi backend makes every MPI call of a communicator on it).
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

namespace eng::dist::detail {

class CommThread {
 public:
  CommThread();
  // Runs the jobs still queued, then joins.
  ~CommThread();
  CommThread(const CommThread&) = delete;
  CommThread& operator=(const CommThread&) = delete;

  // The future is ready when the job has returned (or holds what it threw). The job object
  // (and what it captured) is destroyed on the thread BEFORE the future becomes ready, so a
  // caller that holds the same buffers releases them last, on its own thread (a pinned
  // block's release records a CUDA event: no CUDA call happens on this thread).
  std::future<void> submit(std::function<void()> job);

 private:
  struct Job {
    std::function<void()> run;
    std::promise<void> done;
  };
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace eng::dist::detail
