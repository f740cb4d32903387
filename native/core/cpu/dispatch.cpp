#include "core/cpu/kernels.h"

namespace mlpkit::cpu {
namespace {

const Kernels& choose() {
  // Later ISAs are tried here from the widest down, each after cpuid + xgetbv say the CPU and
  // the OS support it, with MLPKIT_ISA able to force a lower one for tests. Scalar runs anywhere.
  return scalar_kernels();
}

}  // namespace

const Kernels& kernels() {
  // A function-local static: initialised once, thread-safe, and immutable afterwards, so it is
  // safe to share across worker_threads environments.
  static const Kernels& chosen = choose();
  return chosen;
}

}  // namespace mlpkit::cpu
