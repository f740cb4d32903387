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

// A job's tasks are claimed one at a time from `next_`, which holds the job's number in its high
// 32 bits and the next task index in its low 32 bits. The caller waits only for tasks that were
// claimed, never for helpers: a helper that wakes late (its core busy with another process, or
// the scheduler queueing it behind the caller) finds every task taken and goes back to sleep,
// while the caller has already run them all and returned. Waiting for every invited helper to
// check in, as this pool first did, made a 2-thread call 3-6x slower than a 1-thread one
// whenever the helper could not run at once (512 -> 2048 layer at batch 1, onnxruntime's pool
// in the same process: 105 us instead of 30, where 1 thread took 55).
class Pool {
 public:
  int threads() const { return wanted_.load(std::memory_order_relaxed); }
  void set_threads(int n) { wanted_.store(std::clamp(n, 1, 256), std::memory_order_relaxed); }

  void run(std::size_t count, const std::function<void(std::size_t)>& task) {
    const int want = threads();
    std::unique_lock<std::mutex> busy(job_mutex_, std::try_to_lock);
    if (count <= 1 || want <= 1 || !busy.owns_lock() || count > kMaxTasks) {
      run_inline(count, task);
      return;
    }
    const int helpers = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(want), count)) - 1;
    grow(helpers);
    const std::uint64_t job = ++job_;
    {
      std::lock_guard<std::mutex> lock(state_mutex_);
      error_ = nullptr;
      task_.store(&task, std::memory_order_relaxed);
      count_.store(count, std::memory_order_relaxed);
      pending_.store(count, std::memory_order_relaxed);
      invited_.store(helpers, std::memory_order_relaxed);
      // Publishes the fields above to every helper that reads this job number.
      next_.store(job << 32, std::memory_order_release);
      generation_.store(job, std::memory_order_release);
    }
    wake_.notify_all();
    drain(job);
    // Only tasks a helper claimed are left; they end at about the same time as the caller's:
    // spin briefly before sleeping.
    for (int i = 0; i < kSpins && pending_.load(std::memory_order_acquire) != 0; ++i) relax();
    std::unique_lock<std::mutex> lock(state_mutex_);
    done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Task indices share next_ with the job number (see above).
  static constexpr std::size_t kMaxTasks = 0xffffffffu;

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

  // Claims and runs tasks of `job` until none are left (or a newer job replaced it). Runs on the
  // caller and on each invited helper. A task is only run after its claim succeeded on a value
  // still carrying `job`, so task_ and count_ as read before the claim belong to this job, which
  // cannot end (nor its task function go out of scope) before the claimed task is done.
  void drain(std::uint64_t job) {
    std::uint64_t seen = next_.load(std::memory_order_acquire);
    for (;;) {
      if ((seen >> 32) != (job & 0xffffffffu)) return;
      const std::size_t i = static_cast<std::size_t>(seen & 0xffffffffu);
      if (i >= count_.load(std::memory_order_relaxed)) return;
      const std::function<void(std::size_t)>* task = task_.load(std::memory_order_relaxed);
      if (!next_.compare_exchange_weak(seen, seen + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      try {
        (*task)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(state_mutex_);
        if (!error_) error_ = std::current_exception();
      }
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(state_mutex_);
        done_.notify_one();
      }
      seen = next_.load(std::memory_order_acquire);
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
        if (id >= invited_.load(std::memory_order_relaxed)) continue;
      }
      drain(seen);
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
  std::uint64_t job_ = 0;    // guarded by job_mutex_
  std::atomic<std::uint64_t> generation_{0};  // the newest job's number
  std::atomic<std::uint64_t> next_{0};        // job << 32 | next task index
  std::atomic<const std::function<void(std::size_t)>*> task_{nullptr};
  std::atomic<std::size_t> count_{0};
  std::atomic<std::size_t> pending_{0};  // tasks of the current job not yet finished
  std::atomic<int> invited_{0};
  std::exception_ptr error_;  // guarded by state_mutex_
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
