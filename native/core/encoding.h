// Input encodings applied before the first layer. The feature order is ABI (see ModelConfig in
// lib/backend/types.ts): [x] if include_input, then per octave k: sin(2^k pi x_i) for every
// input i, then cos(2^k pi x_i) for every input i.
#pragma once

#include <cstddef>

namespace mlpkit {

// Codes are ABI: they index ENCODINGS in lib/backend/types.ts.
enum class Encoding : int { Identity = 0, Frequency };
constexpr int kEncodingCount = 2;

struct EncodingSpec {
  Encoding type = Encoding::Identity;
  std::size_t inputs = 0;
  std::size_t octaves = 0;
  bool include_input = false;

  // Width of one encoded row, the first layer's input width.
  std::size_t width() const;
};

// enc[batch x width] from x[batch x inputs].
void encode_forward(const EncodingSpec& spec, const float* x, std::size_t batch, float* enc);

// grad_x[batch x inputs] from grad_enc[batch x width]: the chain rule through the encoding.
void encode_backward(const EncodingSpec& spec, const float* x, std::size_t batch, const float* grad_enc,
                     float* grad_x);

}  // namespace mlpkit
