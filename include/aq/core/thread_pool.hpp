// A tiny persistent thread pool with a blocking parallel_for over an index range. The CPU
// backend splits GEMMs and row-wise kernels with it (Eigen itself is single-threaded without
// OpenMP). Chunks are fixed by the range and thread count, so results do not depend on timing.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace aq {

class thread_pool {
 public:
  explicit thread_pool(unsigned threads = std::max(1u, std::thread::hardware_concurrency())) { resize(threads); }
  ~thread_pool() { stop(); }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  unsigned size() const { return static_cast<unsigned>(workers_.size()) + 1; }

  // Number of threads (including the caller); 0 means all hardware threads.
  void resize(unsigned threads) {
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    stop();
    stopping_ = false;
    for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  // Calls fn(begin, end) on disjoint chunks covering [0, n), at least `grain` items each.
  // Nested calls from inside a chunk run serially on the calling thread.
  void parallel_for(std::int64_t n, std::int64_t grain, const std::function<void(std::int64_t, std::int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<std::int64_t>(grain, 1);
    const std::int64_t chunks = std::min<std::int64_t>((n + grain - 1) / grain, size());
    if (chunks <= 1 || inside_) {
      fn(0, n);
      return;
    }
    std::lock_guard call_lock(call_mutex_);  // one parallel region at a time
    job current{&fn, n, chunks};
    {
      std::lock_guard guard(mutex_);
      job_ = &current;
      ++generation_;
    }
    wake_.notify_all();
    run(current);
    std::unique_lock lock(mutex_);
    // Workers attach to a job only under the lock while job_ points to it, so once none is
    // attached and every chunk is done, `current` may go out of scope.
    done_.wait(lock, [&] { return current.done == current.chunks && attached_ == 0; });
    job_ = nullptr;
  }

 private:
  struct job {
    const std::function<void(std::int64_t, std::int64_t)>* fn;
    std::int64_t n;
    std::int64_t chunks;
    std::atomic<std::int64_t> next{0};
    std::int64_t done = 0;  // guarded by mutex_
  };

  void run(job& j) {
    inside_ = true;
    for (;;) {
      const std::int64_t c = j.next.fetch_add(1);
      if (c >= j.chunks) break;
      (*j.fn)(j.n * c / j.chunks, j.n * (c + 1) / j.chunks);
      std::lock_guard guard(mutex_);
      if (++j.done == j.chunks) done_.notify_all();
    }
    inside_ = false;
  }

  void work() {
    std::uint64_t seen = 0;
    for (;;) {
      job* j = nullptr;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || (job_ != nullptr && generation_ != seen); });
        if (stopping_) return;
        seen = generation_;
        j = job_;
        ++attached_;
      }
      run(*j);
      std::lock_guard guard(mutex_);
      if (--attached_ == 0) done_.notify_all();
    }
  }

  void stop() {
    {
      std::lock_guard guard(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex call_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  job* job_ = nullptr;
  int attached_ = 0;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
  static inline thread_local bool inside_ = false;
};

// The pool the CPU backend uses; resize it (e.g. to 1) for single-thread measurements.
inline thread_pool& default_thread_pool() {
  static thread_pool pool;
  return pool;
}

}  // namespace aq
