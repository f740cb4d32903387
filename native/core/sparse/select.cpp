#include "core/sparse/select.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

namespace mlpkit::sparse {
namespace {

// A float's order as an unsigned integer (negative values flipped), NaN mapped above +Inf.
std::uint32_t order_bits(float v) {
  if (std::isnan(v)) return 0xFFFFFFFFu;
  std::uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

}  // namespace

std::size_t select_nonzero(float* h, std::size_t n, std::uint32_t* idx) {
  std::size_t count = 0;
  for (std::size_t j = 0; j < n; ++j) {
    idx[count] = static_cast<std::uint32_t>(j);
    count += h[j] != 0.0f;  // branch-free; NaN != 0
  }
  return count;
}

std::size_t select_threshold(float* h, std::size_t n, float t, std::uint32_t* idx) {
  std::size_t count = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const bool keep = !(std::fabs(h[j]) <= t);  // NaN kept
    idx[count] = static_cast<std::uint32_t>(j);
    count += keep;
    if (!keep) h[j] = 0.0f;
  }
  return count;
}

std::size_t select_top(const float* key, bool magnitude, std::size_t n, std::size_t k, std::uint32_t* idx,
                       std::uint64_t* scratch) {
  if (k >= n) {
    for (std::size_t j = 0; j < n; ++j) idx[j] = static_cast<std::uint32_t>(j);
    return n;
  }
  if (k == 0) return 0;
  // One 64-bit key per unit: the value's order above, the complemented index below, so that
  // the k largest keys are the k largest values with ties going to the lower index.
  for (std::size_t j = 0; j < n; ++j) {
    const float v = (magnitude ? std::fabs(key[j]) : key[j]) + 0.0f;  // -0 ranks as +0
    scratch[j] = (std::uint64_t(order_bits(v)) << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(j));
  }
  std::nth_element(scratch, scratch + (k - 1), scratch + n, std::greater<std::uint64_t>());
  for (std::size_t i = 0; i < k; ++i) idx[i] = 0xFFFFFFFFu - static_cast<std::uint32_t>(scratch[i] & 0xFFFFFFFFu);
  std::sort(idx, idx + k);
  return k;
}

void keep_only(float* h, std::size_t n, const std::uint32_t* idx, std::size_t count) {
  std::size_t next = 0;
  for (std::size_t j = 0; j < n; ++j) {
    if (next < count && idx[next] == j) {
      ++next;
    } else {
      h[j] = 0.0f;
    }
  }
}

std::size_t merge_union(const std::uint32_t* a, std::size_t na, const std::uint32_t* b, std::size_t nb,
                        std::uint32_t* out) {
  std::size_t i = 0, j = 0, n = 0;
  while (i < na && j < nb) {
    if (a[i] < b[j]) {
      out[n++] = a[i++];
    } else if (b[j] < a[i]) {
      out[n++] = b[j++];
    } else {
      out[n++] = a[i++];
      ++j;
    }
  }
  while (i < na) out[n++] = a[i++];
  while (j < nb) out[n++] = b[j++];
  return n;
}

}  // namespace mlpkit::sparse
