// The communication thread of engine/src/dist (see comm_thread.h).
#include "comm_thread.h"

#include <exception>
#include <utility>

namespace eng::dist::detail {

CommThread::CommThread() : thread_([this] { loop(); }) {}

CommThread::~CommThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

std::future<void> CommThread::submit(std::function<void()> job) {
  Job entry;
  entry.run = std::move(job);
  std::future<void> done = entry.done.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(entry));
  }
  wake_.notify_one();
  return done;
}

void CommThread::loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and every job has run
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    std::exception_ptr error;
    try {
      job.run();
    } catch (...) {
      error = std::current_exception();
    }
    job.run = nullptr;  // drop the job's references first (see comm_thread.h)
    if (error) job.done.set_exception(error);
    else job.done.set_value();
  }
}

}  // namespace eng::dist::detail
