// Scanning float arrays for NaN and Infinity, which training rejects before it starts.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mlpkit {

// Index of the first element of data[0, n) that is NaN or +-Infinity, or -1 when all are finite.
std::int64_t first_non_finite(const float* data, std::size_t n);

}  // namespace mlpkit
