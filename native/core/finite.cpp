#include "core/finite.h"

#include <cstring>

namespace mlpkit {

std::int64_t first_non_finite(const float* data, std::size_t n) {
  // A float is NaN or infinite exactly when its exponent bits are all ones. Blocks are scanned
  // branch-free (the compiler vectorises this loop with the baseline SIMD), and only a block
  // that holds one is searched element by element.
  constexpr std::uint32_t kExponent = 0x7f800000u;
  constexpr std::size_t kBlock = 256;
  for (std::size_t b = 0; b < n; b += kBlock) {
    const std::size_t end = b + kBlock < n ? b + kBlock : n;
    std::uint32_t any = 0;
    for (std::size_t i = b; i < end; ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, data + i, sizeof bits);
      any |= static_cast<std::uint32_t>((bits & kExponent) == kExponent);
    }
    if (!any) continue;
    for (std::size_t i = b; i < end; ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, data + i, sizeof bits);
      if ((bits & kExponent) == kExponent) return static_cast<std::int64_t>(i);
    }
  }
  return -1;
}

}  // namespace mlpkit
