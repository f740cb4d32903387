// A process-wide pool of worker threads for the CPU kernels.
//
// Work is split into tasks whose boundaries depend only on the problem (never on how many
// threads run them), and each task writes its own outputs; so results are bitwise identical
// whatever the thread count. The calling thread always takes part. When the pool is already
// busy (another model, another libuv worker) the caller runs its tasks alone instead of
// waiting: concurrent calls never deadlock and never oversubscribe the cores.
#pragma once

#include <cstddef>
#include <functional>

namespace mlpkit {

// Threads one call may use, the calling thread included. Default: the hardware concurrency,
// or MLPKIT_THREADS when set.
int thread_count();

// Sets it (clamped to [1, 256]). Takes effect for calls that start afterwards.
void set_thread_count(int n);

// Runs task(i) for every i in [0, count), spread over the pool when count > 1 and the pool is
// free. If tasks throw, the first exception is rethrown here after every task has finished or
// been skipped.
void parallel_for(std::size_t count, const std::function<void(std::size_t)>& task);

}  // namespace mlpkit
