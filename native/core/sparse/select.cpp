#include "core/sparse/select.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

namespace mlpkit::sparse {
namespace {

// A float's order as an unsigned integer, from its bits: negative values flipped, -0 ranked as
// +0, NaN mapped above +Inf. Written without branches (selects and masks): the signs of real
// scores are random, and a branch on them mispredicted half the time.
inline std::uint32_t order_of(std::uint32_t b) {
  const bool nan = (b & 0x7FFFFFFFu) > 0x7F800000u;
  b = b == 0x80000000u ? 0u : b;
  const std::uint32_t flip = (0u - (b >> 31)) | 0x80000000u;  // ~0 for negatives, the sign bit otherwise
  return nan ? 0xFFFFFFFFu : b ^ flip;
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
  // Each unit ranks by a 64-bit key: the value's order above, the complemented index below, so
  // the k largest keys are the k largest values with ties going to the lower index. A
  // histogram of the keys' top bits finds the bucket the k-th largest falls in; only that
  // bucket's units are ranked (nth_element over all n took 30% of a batch-16 predict), and a
  // last pass in index order lists the kept units already sorted.
  constexpr int kShift = 20;  // 4096 buckets: sign, exponent and 3 mantissa bits
  // The units' order bits go in idx for the first two passes; the last pass overwrites them in
  // place with the kept indices (it writes idx[count] after reading idx[j], count <= j).
  // Neighbouring scores often share a bucket: four histograms, summed after, so consecutive
  // increments do not wait on each other.
  constexpr std::size_t kBuckets = std::size_t(1) << (32 - kShift);
  std::uint32_t parts[4][kBuckets] = {};
  const std::uint32_t keep_sign = magnitude ? 0x7FFFFFFFu : 0xFFFFFFFFu;
  // The order bits first, in a loop of its own that the compiler can vectorise, then the
  // histograms from them.
  for (std::size_t j = 0; j < n; ++j) {
    std::uint32_t b;
    std::memcpy(&b, key + j, sizeof b);
    idx[j] = order_of(b & keep_sign);
  }
  std::size_t j0 = 0;
  for (; j0 + 4 <= n; j0 += 4) {
    for (std::size_t q = 0; q < 4; ++q) ++parts[q][idx[j0 + q] >> kShift];
  }
  for (; j0 < n; ++j0) ++parts[0][idx[j0] >> kShift];
  std::uint32_t* hist = parts[0];
  for (std::size_t i = 0; i < kBuckets; ++i) hist[i] += parts[1][i] + parts[2][i] + parts[3][i];
  auto key_of = [](std::uint32_t bits, std::size_t j) {
    return (std::uint64_t(bits) << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(j));
  };
  std::size_t above = 0;
  std::uint32_t edge = static_cast<std::uint32_t>(kBuckets - 1);
  while (above + hist[edge] < k) above += hist[edge--];
  // The edge bucket's units: their indices first (4 bytes each, written branch-free into the
  // upper half of scratch), then their 64-bit keys into the lower half. Writing key i
  // overwrites only indices below i, already read.
  std::uint32_t* cand = reinterpret_cast<std::uint32_t*>(scratch) + n;
  std::size_t candidates = 0;
  for (std::size_t j = 0; j < n; ++j) {
    cand[candidates] = static_cast<std::uint32_t>(j);
    candidates += (idx[j] >> kShift) == edge;
  }
  for (std::size_t c = 0; c < candidates; ++c) scratch[c] = key_of(idx[cand[c]], cand[c]);
  const std::size_t need = k - above;
  std::nth_element(scratch, scratch + (need - 1), scratch + candidates, std::greater<std::uint64_t>());
  // The smallest key kept, as order bits and index: a unit is kept when its bits are larger,
  // or equal with an index no larger (the complemented index broke ties toward low indices).
  const std::uint64_t least = scratch[need - 1];
  const std::uint32_t least_bits = static_cast<std::uint32_t>(least >> 32);
  const std::size_t least_index = 0xFFFFFFFFu - static_cast<std::uint32_t>(least);
  std::size_t count = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const std::uint32_t bits = idx[j];
    const bool keep = (bits > least_bits) | ((bits == least_bits) & (j <= least_index));
    idx[count] = static_cast<std::uint32_t>(j);
    count += keep;
  }
  return count;
}

void keep_only(float* h, std::size_t n, const std::uint32_t* idx, std::size_t count, float* scratch) {
  // Gather, clear, scatter: no branch on which units are kept (a walk comparing each unit with
  // the next kept index mispredicted about twice per kept unit).
  for (std::size_t i = 0; i < count; ++i) scratch[i] = h[idx[i]];
  std::fill(h, h + n, 0.0f);
  for (std::size_t i = 0; i < count; ++i) h[idx[i]] = scratch[i];
}

bool predictor_keys(Activation a, float alpha, float* scores, std::size_t n) {
  switch (a) {
    case Activation::Relu:
    case Activation::Sigmoid:
    case Activation::Softplus:
      return false;
    case Activation::None:
    case Activation::Tanh:
      return true;
    default:
      activation_forward(a, alpha, scores, scores, n);
      return true;
  }
}

}  // namespace mlpkit::sparse
