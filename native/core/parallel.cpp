#include "core/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>  // _mm_pause (SSE2, baseline)
#endif

namespace mlpkit {
namespace {

int default_threads() {
  if (const char* env = std::getenv("MLPKIT_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return std::min(n, 256);
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min(hw, 256u));
}

class Pool {
 public:
  int threads() const { return wanted_.load(std::memory_order_relaxed); }
  void set_threads(int n) { wanted_.store(std::clamp(n, 1, 256), std::memory_order_relaxed); }

  void run(std::size_t count, const std::function<void(std::size_t)>& task) {
    const int want = threads();
    std::unique_lock<std::mutex> busy(job_mutex_, std::try_to_lock);
    if (count <= 1 || want <= 1 || !busy.owns_lock()) {
      run_inline(count, task);
      return;
    }
    const int helpers = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(want), count)) - 1;
    grow(helpers);
    {
      std::lock_guard<std::mutex> lock(state_mutex_);
      task_ = &task;
      count_ = count;
      next_.store(0, std::memory_order_relaxed);
      error_ = nullptr;
      invited_ = helpers;
      running_.store(helpers, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    drain();
    // The helpers finish at about the same time as the caller: spin briefly before sleeping.
    for (int i = 0; i < kSpins && running_.load(std::memory_order_acquire) != 0; ++i) relax();
    std::unique_lock<std::mutex> lock(state_mutex_);
    done_.wait(lock, [&] { return running_.load(std::memory_order_acquire) == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static void run_inline(std::size_t count, const std::function<void(std::size_t)>& task) {
    std::exception_ptr first;
    for (std::size_t i = 0; i < count; ++i) {
      try {
        task(i);
      } catch (...) {
        if (!first) first = std::current_exception();
      }
    }
    if (first) std::rethrow_exception(first);
  }

  // Takes task indices until none are left. Runs on the caller and on each invited worker.
  void drain() {
    for (;;) {
      const std::size_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= count_) return;
      try {
        (*task_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(state_mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }

  void grow(int n) {
    // Workers are started on demand and never stopped: the pool lives as long as the process
    // (it is never destroyed, so exit does not wait on, or tear down, a sleeping worker).
    while (static_cast<int>(workers_) < n) {
      const int id = static_cast<int>(workers_++);
      std::thread([this, id] { worker(id); }).detach();
    }
  }

  void worker(int id) {
    std::uint64_t seen = 0;
    for (;;) {
      // Spin a little before sleeping: a layer-by-layer caller (predict_by_columns) posts jobs
      // microseconds apart, and a futex wake-up costs more than the work of a small layer.
      for (int i = 0; i < kSpins && generation_.load(std::memory_order_acquire) == seen; ++i) relax();
      {
        std::unique_lock<std::mutex> lock(state_mutex_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
        seen = generation_.load(std::memory_order_relaxed);
        if (id >= invited_) continue;
      }
      drain();
      std::lock_guard<std::mutex> lock(state_mutex_);
      if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.notify_one();
    }
  }

  static void relax() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
  }
  // ~10-50 us of polling, depending on the CPU's pause latency.
  static constexpr int kSpins = 1000;

  std::atomic<int> wanted_{default_threads()};
  std::mutex job_mutex_;  // one parallel job at a time
  std::mutex state_mutex_;
  std::condition_variable wake_, done_;
  std::size_t workers_ = 0;  // guarded by job_mutex_
  std::atomic<std::uint64_t> generation_{0};
  int invited_ = 0;
  std::atomic<int> running_{0};
  const std::function<void(std::size_t)>* task_ = nullptr;
  std::size_t count_ = 0;
  std::atomic<std::size_t> next_{0};
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool* p = new Pool();  // deliberately never destroyed (see grow)
  return *p;
}

}  // namespace

int thread_count() { return pool().threads(); }
void set_thread_count(int n) { pool().set_threads(n); }
void parallel_for(std::size_t count, const std::function<void(std::size_t)>& task) { pool().run(count, task); }

}  // namespace mlpkit
