// Runs the operations on one model in the order they were issued, as if one at a time, while
// letting neighbouring reads overlap. The library promises that calls in flight together
// (predictAsync, trainStepAsync, and sync calls made meanwhile) give the results of the same
// calls made one after another; a plain reader/writer lock does not keep that promise, because
// the libuv pool may start two queued calls in either order.
//
// Each operation takes a ticket when it is issued (on the JS thread, in call order) and waits
// for its turn before it runs: a read waits for every write issued before it, a write for every
// operation issued before it. Reads issued between two writes form one group that runs at once.
//
// No deadlock: an async call's ticket is taken right before the call is queued on the libuv pool,
// which starts queued work first in, first out, so every earlier ticket of the model belongs to
// work already started (or to a sync call in progress, which waits only on earlier tickets).
// A turn must end when the operation's work ends, on the thread that did it (the core calls take
// the ticket by value): an async job is destroyed on the JS thread, and a sync call there may be
// waiting for that very turn. A ticket dropped without running (work cancelled at teardown)
// gives its turn away without waiting for it, so a destructor never blocks.
//
// The common case, a sync read while nothing else is issued on the model (a server's predict),
// takes no lock: it counts itself in fast_readers_ unless busy_ says tickets are queued, and a
// write waits for that count to drain. (Dekker-style: the reader increments then reads busy_,
// the write sets busy_ then reads the count, both sequentially consistent, so at least one of
// them sees the other.)
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>

namespace mlpkit {

class Sequencer {
 public:
  enum class Access { Read, Write };

  // A place in the order. Move-only; retires when destroyed: as done if wait() was called
  // (the operation ran), as skipped otherwise.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept { *this = static_cast<Ticket&&>(other); }
    Ticket& operator=(Ticket&& other) noexcept;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() { retire(); }

    // Blocks until every operation this one must follow has finished. No-op on an empty ticket.
    void wait();
    bool empty() const { return seq_ == nullptr; }

   private:
    friend class Sequencer;
    void retire() noexcept;

    Sequencer* seq_ = nullptr;
    Access access_ = Access::Read;
    std::uint64_t epoch_ = 0;
    bool started_ = false;
    bool fast_ = false;  // a lock-free read, counted in fast_readers_ only
  };

  Sequencer();
  Sequencer(const Sequencer&) = delete;
  Sequencer& operator=(const Sequencer&) = delete;

  // A ticket for an operation issued now. The Sequencer must outlive it.
  Ticket issue(Access access);
  // issue() and wait() in one: the operation is issued now and runs next (sync calls).
  Ticket enter(Access access);

 private:
  // Epoch e starts with write number e (epoch 0 has none) and holds the reads issued after it.
  struct Epoch {
    std::size_t readers = 0;       // reads of this epoch not yet retired
    bool writer_done = false;      // the write that opens it has finished (or was skipped in turn)
    bool writer_skipped = false;   // that write was dropped without running
  };

  Epoch& at(std::uint64_t epoch) { return epochs_[static_cast<std::size_t>(epoch - base_)]; }
  bool ready(Access access, std::uint64_t epoch);
  Ticket issue_locked(Access access);
  void retire(const Ticket& ticket) noexcept;
  void retire_fast() noexcept;

  std::atomic<std::size_t> fast_readers_{0};
  std::atomic<bool> busy_{false};  // some ticket is in epochs_ (guarded writes, read lock-free)
  std::mutex mutex_;
  std::condition_variable turn_;
  std::size_t waiting_ = 0;
  std::deque<Epoch> epochs_;  // epochs base_, base_ + 1, ...; older ones are finished
  std::uint64_t base_ = 0;
};

}  // namespace mlpkit
