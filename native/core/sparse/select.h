// Which hidden units a sparse model keeps for one row (lib/sparse/select.ts is the same rule in
// TypeScript; the two must choose the same units). Every rule lists the kept units in
// increasing order into idx and zeroes the others in h, so the next layer sees exactly the
// kept values; NaN always counts as kept, so a NaN is never hidden by sparsification.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/activation.h"

namespace mlpkit::sparse {

// Codes are ABI: they index SPARSE_MODES in lib/sparse/options.ts.
enum class Mode : int { Dense = 0, Exact = 1, Threshold = 2, TopK = 3, Predictor = 4 };
constexpr int kModeCount = 5;

// Exact: the nonzero units (after ReLU, those that fired).
std::size_t select_nonzero(float* h, std::size_t n, std::uint32_t* idx);

// Threshold: the units with |h| > t.
std::size_t select_threshold(float* h, std::size_t n, float t, std::uint32_t* idx);

// The k units with the largest key (|h| for top-k, the predictor's score for predictor mode),
// ties to the lower index, NaN above everything. scratch: room for n 64-bit keys.
std::size_t select_top(const float* key, bool magnitude, std::size_t n, std::size_t k, std::uint32_t* idx,
                       std::uint64_t* scratch);

// Turns a predictor's scores (its estimates of the pre-activations) into the keys select_top
// ranks for a layer with activation a, in place, and returns select_top's magnitude flag. What
// should rank first is the largest predicted |act(z)|: for relu, sigmoid and softplus (rising,
// never negative) that is the largest score, and the score itself also orders the units that
// would come out at zero; for none and tanh (odd, rising) the largest |score|; for leaky relu,
// gelu and silu the activation is applied first. lib/sparse/select.ts: predictorKeys.
bool predictor_keys(Activation a, float alpha, float* scores, std::size_t n);

// Zeroes h[j] for every j not in idx[0, count) (increasing). scratch: room for count floats.
void keep_only(float* h, std::size_t n, const std::uint32_t* idx, std::size_t count, float* scratch);

}  // namespace mlpkit::sparse
