// Float32 weights to int8 / int4 codes and scales: lib/quant/quantize.ts's rules, bit for bit,
// on the thread pool. The TypeScript functions stay the reference (and the fallback without the
// addon); tests/91.quant-quantize.test.ts holds the two to the same bytes. The TypeScript loops
// spend ~15 (int8) to ~60 (asymmetric int4) ns per weight, which for a 4096 -> 16384 layer held
// net.quantize for 1.1-5.5 s.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mlpkit::quant {

// w: [n x k] row-major (nn.Linear's layout), every value finite. codes: [n x k], one int8 code
// per weight; scales: [n], one per output.
void quantize_int8_weights(const float* w, std::size_t k, std::size_t n, std::int8_t* codes, float* scales);

// group: 32, 64 or 128. With kp = k rounded up to a multiple of group and groups = kp / group:
// packed: [n x kp / 2], two nibbles per byte (position 2i low, 2i + 1 high; padding codes the
// weight 0); scales: [n x groups], bfloat16 values; zeros: [n x groups] for an asymmetric layer,
// null for a symmetric one (whose zero point is 8).
void quantize_int4_weights(const float* w, std::size_t k, std::size_t n, std::size_t group, std::uint8_t* packed,
                           float* scales, std::uint8_t* zeros);

// out: [k], the largest |w| of each input column (lib/quant/quantize.ts equalizationScales' first
// pass). A NaN never wins a comparison, so it is passed over, as there; w need not be finite.
void column_abs_max(const float* w, std::size_t k, std::size_t n, float* out);

// quantize.ts symmetricScale / asymmetricScale over row[p0, p1), bfloat16 values (the second's
// zero point in [0, 15]): the int4 scale searches, which gptq.cpp runs on its pushed values too.
double int4_symmetric_scale(const float* row, std::size_t p0, std::size_t p1);
void int4_asymmetric_scale(const float* row, std::size_t p0, std::size_t p1, double* scale, double* zero);

}  // namespace mlpkit::quant
