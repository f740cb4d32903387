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

// A job's tasks are split into one contiguous range per participant (the caller, then each
// invited helper), and each participant claims its own range's tasks first, one at a time,
// then the others' in turn. Memory-bound kernels read the same weights at every call: with the
// same share going to the same thread each time, each core's caches (and, where cores have
// their own L3, as the two of this project's VM do, that L3) keep their share between calls. A
// 67 MB read by 2 threads on that VM: 73 GB/s with fixed halves, 52-55 GB/s with the halves
// swapped at every call; the ranges keep the first when helpers keep up, and fall back to the
// second when they do not (the caller takes what is left).
//
// Each range's counter holds the job's number in its high 32 bits and the range's next task
// in its low 32 bits. The caller waits only for tasks that were claimed, never for helpers: a
// helper that wakes late (its core busy with another process, or the scheduler queueing it
// behind the caller) finds every task taken and goes back to sleep, while the caller has
// already run them all and returned. Waiting for every invited helper to check in, as this
// pool first did, made a 2-thread call 3-6x slower than a 1-thread one whenever the helper
// could not run at once (512 -> 2048 layer at batch 1, onnxruntime's pool in the same
// process: 105 us instead of 30, where 1 thread took 55).
class Pool {
 public:
  int threads() const { return wanted_.load(std::memory_order_relaxed); }
  void set_threads(int n) { wanted_.store(std::clamp(n, 1, kMaxThreads), std::memory_order_relaxed); }

  void run(std::size_t count, const std::function<void(std::size_t)>& task) {
    const int want = threads();
    // A task that calls parallel_for again runs it inline: on a helper, try_lock finds the
    // caller's lock taken; on the caller, which owns it, try_lock would be undefined.
    if (count <= 1 || want <= 1 || t_in_job || count > kMaxTasks) {
      run_inline(count, task);
      return;
    }
    std::unique_lock<std::mutex> busy(job_mutex_, std::try_to_lock);
    if (!busy.owns_lock()) {
      run_inline(count, task);
      return;
    }
    InJob in_job;
    const int helpers = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(want), count)) - 1;
    grow(helpers);
    stamped_ = std::max(stamped_, helpers + 1);
    const std::uint64_t job = ++job_;
    {
      std::lock_guard<std::mutex> lock(state_mutex_);
      error_ = nullptr;
      Job& j = jobs_[job & 1];
      j.task.store(&task, std::memory_order_relaxed);
      j.count.store(count, std::memory_order_relaxed);
      j.parts.store(helpers + 1, std::memory_order_relaxed);
      pending_.store(count, std::memory_order_relaxed);
      invited_.store(helpers, std::memory_order_relaxed);
      // Publishes the fields above to every helper that reads this job number. Every counter a
      // job ever used is stamped, those beyond this job's ranges as exhausted: a counter left
      // with an older job's number would let a helper still draining that job (with more
      // parts, before set_threads lowered the count) claim tasks against this job's count.
      for (int q = 0; q < stamped_; ++q) {
        const std::uint64_t first = q <= helpers ? range_begin(count, helpers + 1, q) : kExhausted;
        next_[q].value.store(tag(job) | first, std::memory_order_release);
      }
      generation_.store(job, std::memory_order_release);
    }
    wake_.notify_all();
    drain(job, 0);
    // Only tasks a helper claimed are left; they end at about the same time as the caller's:
    // spin briefly before sleeping.
    for (int i = 0; i < kSpins && pending_.load(std::memory_order_acquire) != 0; ++i) relax();
    std::unique_lock<std::mutex> lock(state_mutex_);
    done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Task indices share a counter with the job number (see above).
  static constexpr std::size_t kMaxTasks = 0xffffffffu;
  static constexpr int kMaxThreads = 256;

  // A counter's index past every range (count <= kMaxTasks): nothing can be claimed from it.
  static constexpr std::uint64_t kExhausted = 0xffffffffu;

  // Set while this thread runs a job as its caller (see run).
  static thread_local bool t_in_job;
  struct InJob {
    InJob() { t_in_job = true; }
    ~InJob() { t_in_job = false; }
  };

  static std::uint64_t tag(std::uint64_t job) { return (job & 0xffffffffu) << 32; }
  static std::size_t range_begin(std::size_t count, int parts, int q) {
    return count * static_cast<std::size_t>(q) / static_cast<std::size_t>(parts);
  }

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

  // Claims and runs tasks of `job` until none are left (or a newer job replaced it), its own
  // range first: `self` is 0 on the caller, 1 + id on helper `id`. A task is only run after its
  // claim succeeded on a counter still carrying `job`. Then the next job has not finished
  // setting its counters, so the one after it, the next to write the job's slot of jobs_, has
  // not started: the task, count and parts read before the claim were this job's, and the job
  // cannot end (nor its task function go out of scope) before the claimed task is done. A
  // finished job's counters all stand at their range's end, so a helper that wakes after it
  // ended claims nothing.
  void drain(std::uint64_t job, int self) {
    const Job& j = jobs_[job & 1];
    const int parts = std::clamp(j.parts.load(std::memory_order_relaxed), 1, kMaxThreads);
    for (int step = 0; step < parts; ++step) {
      const int q = (self + step) % parts;
      std::atomic<std::uint64_t>& next = next_[q].value;
      std::uint64_t seen = next.load(std::memory_order_acquire);
      for (;;) {
        if ((seen & ~std::uint64_t{0xffffffffu}) != tag(job)) return;
        const std::size_t count = j.count.load(std::memory_order_relaxed);
        const std::size_t i = static_cast<std::size_t>(seen & 0xffffffffu);
        if (i >= range_begin(count, parts, q + 1)) break;
        const std::function<void(std::size_t)>* task = j.task.load(std::memory_order_relaxed);
        if (!next.compare_exchange_weak(seen, seen + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
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
        seen = next.load(std::memory_order_acquire);
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
        if (id >= invited_.load(std::memory_order_relaxed)) continue;
      }
      drain(seen, id + 1);
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
  int stamped_ = 0;          // guarded by job_mutex_: the most ranges any job has had
  std::atomic<std::uint64_t> generation_{0};  // the newest job's number
  // A job's task, task count and ranges, in the slot of its number's parity (see drain).
  struct Job {
    std::atomic<const std::function<void(std::size_t)>*> task{nullptr};
    std::atomic<std::size_t> count{0};
    std::atomic<int> parts{1};
  };
  Job jobs_[2];
  // Range q's counter: job << 32 | its next task index. A cache line each, as each thread
  // claims from its own.
  struct alignas(64) Counter {
    std::atomic<std::uint64_t> value{0};
  };
  Counter next_[kMaxThreads];
  std::atomic<std::size_t> pending_{0};  // tasks of the current job not yet finished
  std::atomic<int> invited_{0};
  std::exception_ptr error_;  // guarded by state_mutex_
};

thread_local bool Pool::t_in_job = false;

Pool& pool() {
  static Pool* p = new Pool();  // deliberately never destroyed (see grow)
  return *p;
}

}  // namespace

int thread_count() { return pool().threads(); }
void set_thread_count(int n) { pool().set_threads(n); }
void parallel_for(std::size_t count, const std::function<void(std::size_t)>& task) { pool().run(count, task); }

}  // namespace mlpkit
