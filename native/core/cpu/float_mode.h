// Denormal floats (below 1.18e-38) flushed to zero while training runs.
//
// x86 cores take a microcode assist on denormal operands and results, up to ~100x slower per
// operation, and training makes them routinely: Adam's moments of parameters whose gradient is
// zero (dead ReLUs, unused inputs) decay geometrically through the denormal range over
// thousands of steps. Flushing them changes nothing at the scale of the values involved
// (a moment of 1e-39 next to eps = 1e-8), and GPUs train this way by default. Predict keeps
// full IEEE behaviour. The mode is per thread: every task that runs training work sets it.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>  // SSE: part of the x86-64 baseline, safe in any translation unit
#endif

namespace mlpkit::cpu {

class FlushDenormals {
 public:
#if defined(__x86_64__) || defined(_M_X64)
  // FTZ (bit 15): denormal results become 0. DAZ (bit 6): denormal inputs read as 0.
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#elif defined(__aarch64__) && defined(__GNUC__)
  // FPCR.FZ (bit 24) flushes denormal inputs and results of float arithmetic to zero.
  FlushDenormals() {
    __asm__ volatile("mrs %0, fpcr" : "=r"(saved_));
    const unsigned long long flushed = saved_ | (1ull << 24);
    __asm__ volatile("msr fpcr, %0" : : "r"(flushed));
  }
  ~FlushDenormals() { __asm__ volatile("msr fpcr, %0" : : "r"(saved_)); }

 private:
  unsigned long long saved_;
#else
  FlushDenormals() = default;
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;
};

}  // namespace mlpkit::cpu
