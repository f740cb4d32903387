// The dense kernels a layer needs, as a table of function pointers chosen once per process.
// Each ISA implements the table in its own translation unit, compiled with its own flags, so
// no wide-vector instruction can leak into code that runs before the CPU has been checked.
//
// All matrices are dense row-major with no padding. A Linear layer with weight W [n x k]
// (torch.nn.Linear layout) maps a batch A [m x k] to Z [m x n].
#pragma once

#include <cstddef>

namespace mlpkit::cpu {

struct Kernels {
  const char* isa;

  // Z[m x n] = A[m x k] . W[n x k]^T (+ bias[n] when bias is not null). The forward GEMM.
  void (*linear_forward)(std::size_t m, std::size_t n, std::size_t k, const float* a, const float* w,
                         const float* bias, float* z);

  // z[n] = W[n x k] . a[k] (+ bias). The batch-1 forward; must equal linear_forward with m = 1
  // bit for bit, so a row's output never depends on the batch it came in.
  void (*gemv)(std::size_t n, std::size_t k, const float* w, const float* a, const float* bias, float* z);

  // dW[n x k] = dZ[m x n]^T . A[m x k] and db[n] = column sums of dZ (when db is not null).
  // Overwrites dW and db.
  void (*linear_backward_weights)(std::size_t m, std::size_t n, std::size_t k, const float* dz, const float* a,
                                  float* dw, float* db);

  // dA[m x k] = dZ[m x n] . W[n x k]. Overwrites dA.
  void (*linear_backward_input)(std::size_t m, std::size_t n, std::size_t k, const float* dz, const float* w,
                                float* da);
};

// Per-ISA tables. Only the scalar one exists so far; SIMD tables slot in beside it.
const Kernels& scalar_kernels();

// The table for this CPU, chosen on first use and fixed for the life of the process.
const Kernels& kernels();

}  // namespace mlpkit::cpu
