// Portable quantised kernels over the block layout of qlayer.h: the baseline every CPU runs and
// the exact statement of the W8A8 arithmetic of lib/quant/format.ts that the SIMD kernels match.
#include <algorithm>
#include <cstring>
#include <limits>

#include "core/quant/qkernels.h"

namespace mlpkit::quant {
namespace {

#include "core/quant/qkernels_quantize_row.inl"

// Weight of output o of block b at input p, as an integer: int8 q, or int4 nibble u (unsigned).
inline int weight_at(const QuantLayer& l, std::size_t b, std::size_t o, std::size_t p) {
  if (l.input_major) {
    if (l.format == Format::Int8) return static_cast<std::int8_t>(l.w[(b * l.kq + p) * kLanes + o]);
    const std::uint8_t byte = l.w[(b * (l.kq / 2) + p / 2) * kLanes + o];
    return p % 2 == 0 ? (byte & 0x0f) : (byte >> 4);
  }
  if (l.format == Format::Int8) {
    const std::size_t steps = l.kq / 4;
    return static_cast<std::int8_t>(l.w[((b * steps + p / 4) * kLanes + o) * 4 + p % 4]);
  }
  const std::size_t steps = l.kq / 8;
  const std::size_t i = p % 8;
  const std::uint8_t byte = l.w[((b * steps + p / 8) * kLanes + o) * 4 + i % 4];
  return i < 4 ? (byte & 0x0f) : (byte >> 4);
}

void w8a8_block(const QuantLayer& l, std::size_t b, const QuantRow* rows, std::size_t count, float* y,
                std::size_t ldy) {
  for (std::size_t r = 0; r < count; ++r) {
    const QuantRow& x = rows[r];
    for (std::size_t o = 0; o < kLanes; ++o) {
      float sum = 0;
      for (std::size_t g = 0; g < l.groups; ++g) {
        std::int32_t acc = 0;
        for (std::size_t p = g * l.group; p < (g + 1) * l.group; ++p) acc += x.xq[p] * weight_at(l, b, o, p);
        if (l.format == Format::Int4) acc -= l.zeros[l.at(b, g) + o] * x.xsum[g];
        const float t = (x.sx * l.scale(l.at(b, g) + o)) * static_cast<float>(acc);
        sum = g == 0 ? t : sum + t;
      }
      y[r * ldy + o] = sum;
    }
  }
}

void wfloat_block(const QuantLayer& l, std::size_t b, const float* const* x, std::size_t count, float* y,
                  std::size_t ldy) {
  for (std::size_t r = 0; r < count; ++r) {
    for (std::size_t o = 0; o < kLanes; ++o) {
      float sum = 0;
      for (std::size_t g = 0; g < l.groups; ++g) {
        const int z = l.format == Format::Int4 ? l.zeros[l.at(b, g) + o] : 0;
        float part = 0;
        for (std::size_t p = g * l.group; p < (g + 1) * l.group; ++p) {
          part += x[r][p] * static_cast<float>(weight_at(l, b, o, p) - z);
        }
        sum += l.scale(l.at(b, g) + o) * part;
      }
      y[r * ldy + o] = sum;
    }
  }
}

constexpr QuantKernels kScalar = {"scalar", w8a8_block, wfloat_block, nullptr, quantize_row, nullptr};

}  // namespace

const QuantKernels& quant_scalar_kernels() { return kScalar; }

}  // namespace mlpkit::quant
