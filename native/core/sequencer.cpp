#include "core/sequencer.h"

namespace mlpkit {

Sequencer::Sequencer() {
  Epoch first;
  first.writer_done = true;  // epoch 0 opens with no write
  epochs_.push_back(first);
}

Sequencer::Ticket Sequencer::issue_locked(Access access) {
  busy_.store(true);  // from now on sync reads queue up behind this ticket
  if (access == Access::Write) epochs_.emplace_back();
  Ticket t;
  t.seq_ = this;
  t.access_ = access;
  t.epoch_ = base_ + epochs_.size() - 1;
  if (access == Access::Read) ++epochs_.back().readers;
  return t;
}

Sequencer::Ticket Sequencer::issue(Access access) {
  std::lock_guard<std::mutex> lock(mutex_);
  return issue_locked(access);
}

bool Sequencer::ready(Access access, std::uint64_t epoch) {
  if (access == Access::Read) return at(epoch).writer_done;
  // A write follows the write before it, every read issued between the two, and the lock-free
  // reads that were running when it was issued.
  const Epoch& previous = at(epoch - 1);
  return previous.writer_done && previous.readers == 0 && fast_readers_.load() == 0;
}

Sequencer::Ticket Sequencer::enter(Access access) {
  if (access == Access::Read) {
    fast_readers_.fetch_add(1);
    if (!busy_.load()) {
      Ticket t;
      t.seq_ = this;
      t.access_ = Access::Read;
      t.started_ = true;
      t.fast_ = true;
      return t;
    }
    retire_fast();  // tickets are queued: take a place behind them instead
  }
  std::unique_lock<std::mutex> lock(mutex_);
  Ticket t = issue_locked(access);
  if (!ready(access, t.epoch_)) {
    ++waiting_;
    turn_.wait(lock, [&] { return ready(access, t.epoch_); });
    --waiting_;
  }
  t.started_ = true;
  return t;
}

void Sequencer::Ticket::wait() {
  if (!seq_ || started_) return;
  std::unique_lock<std::mutex> lock(seq_->mutex_);
  if (!seq_->ready(access_, epoch_)) {
    ++seq_->waiting_;
    seq_->turn_.wait(lock, [&] { return seq_->ready(access_, epoch_); });
    --seq_->waiting_;
  }
  started_ = true;
}

Sequencer::Ticket& Sequencer::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    retire();
    seq_ = other.seq_;
    access_ = other.access_;
    epoch_ = other.epoch_;
    started_ = other.started_;
    fast_ = other.fast_;
    other.seq_ = nullptr;
  }
  return *this;
}

void Sequencer::Ticket::retire() noexcept {
  if (!seq_) return;
  if (fast_) {
    seq_->retire_fast();
  } else {
    seq_->retire(*this);
  }
  seq_ = nullptr;
}

void Sequencer::retire_fast() noexcept {
  // The last lock-free read out wakes a write waiting for it (busy_ is set before a write
  // checks the count, so a write that saw this read running is seen here).
  if (fast_readers_.fetch_sub(1) == 1 && busy_.load()) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (waiting_ > 0) turn_.notify_all();
  }
}

void Sequencer::retire(const Ticket& t) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (t.access_ == Access::Read) {
    --at(t.epoch_).readers;
  } else if (t.started_) {
    at(t.epoch_).writer_done = true;
  } else {
    at(t.epoch_).writer_skipped = true;
  }
  // A skipped write is done as soon as its turn comes; that may free the epochs after it too.
  for (std::size_t i = 1; i < epochs_.size(); ++i) {
    Epoch& e = epochs_[i];
    const Epoch& previous = epochs_[i - 1];
    if (!e.writer_done && e.writer_skipped && previous.writer_done && previous.readers == 0) e.writer_done = true;
  }
  // Forget epochs nobody can ask about any more: finished, and the next one's write is done.
  while (epochs_.size() > 1 && epochs_[0].readers == 0 && epochs_[1].writer_done) {
    epochs_.pop_front();
    ++base_;
  }
  if (epochs_.size() == 1 && epochs_[0].readers == 0) busy_.store(false);  // nothing queued any more
  if (waiting_ > 0) turn_.notify_all();
}

}  // namespace mlpkit
