// GPTQ rounding (lib/quant/gptq.ts, lib/quant/hessian.ts) on the thread pool, bit for bit: the
// TypeScript stays the reference and the fallback without the addon, and
// tests/91.quant-gptq.test.ts holds the two to the same bytes. In V8 those float64 loops run at
// ~0.6e9 multiply-adds per second, which limited GPTQ to layers of about 1024 -> 4096.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mlpkit::quant {

// x: [rows x k] the layer's calibration inputs (input scales applied). u: [k x k], set to
// hessian.ts inverseFactor(gramUpper(x)): upper triangular with U^T U = (X^T X + lambda I)^-1.
// false where that is null (every input zero, a sum not finite, or no damping factors it).
bool gptq_inverse_factor(const float* x, std::size_t rows, std::size_t k, double* u);

// gptq.ts roundInt8 / roundInt4 of w [n x k] (input scales applied, every value finite) with u
// from gptq_inverse_factor. int8 (group 0): codes [n x k] int8, scales [n]. int4 (group 32, 64
// or 128): codes [n x kp / 2] packed nibbles, scales [n x groups], zeros [n x groups] or null
// (symmetric). false where gptq.ts gives null (an error pushed past float64); the outputs are
// then partly written and meaningless.
bool gptq_round(const float* w, std::size_t k, std::size_t n, std::size_t group, const double* u, std::uint8_t* codes,
                float* scales, std::uint8_t* zeros);

}  // namespace mlpkit::quant
