// A quantised Linear layer as the kernels read it (the file format is lib/quant/format.ts; this
// is the layout it is repacked into once, when a model is created).
//
// Outputs sit in SIMD lanes: weights are stored in blocks of 16 outputs, and within a block in
// steps of 4 inputs (int8: 16 outputs x 4 bytes = 64 bytes) or 8 inputs (int4: 16 outputs x 4
// bytes, the low nibble of byte (o, i) holding input 8s + i and the high nibble input 8s + 4 + i).
// One 64-byte load then feeds one integer dot-product instruction (vpdpbusd) for 16 outputs at
// once, with the activations broadcast, and no horizontal sums are ever needed; the per-group
// scales and zero points are stored by block, then group, then the block's 16 outputs, so they
// load as vectors too and a block's walk over its groups reads them as one stream (stored
// [group][output], consecutive groups were a whole row apart: a cache miss and a TLB miss per
// group, which made int4 g32 half as fast on Zen 4).
//
// Weight-only models (float activations) use an input-major variant, `input_major`: per block,
// the 16 outputs' bytes for one input (int8) or one pair of inputs (int4: low nibble input 2t,
// high nibble 2t + 1, as in the file) are 16 consecutive bytes, which widen to 16 int32 lanes
// in one instruction (vpmovsxbd / vpmovzxbd) on the shuffle port, leaving the arithmetic ports
// to the conversions and FMAs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/activation.h"
#include "core/aligned.h"

namespace mlpkit::quant {

enum class Format : int { Int8 = 0, Int4 = 1 };
// Index into QUANT_ACTIVATIONS (lib/quant/format.ts).
enum class ActMode : int { Float = 0, Int8 = 1 };

constexpr std::size_t kLanes = 16;  // outputs per block

// What a caller hands over: the file layout of lib/quant/format.ts, checked by the caller.
struct QuantLayerSource {
  std::size_t inputs = 0, outputs = 0;
  Format format = Format::Int8;
  std::size_t group = 0;  // int8: == inputs
  bool symmetric = true;
  const std::uint8_t* weights = nullptr;  // int8: n * k bytes (as int8); int4: n * kPadded / 2
  const float* scales = nullptr;          // n * groups
  const std::uint8_t* zeros = nullptr;    // n * groups, asymmetric int4 only
  const float* bias = nullptr;            // n, or null
  const float* input_scales = nullptr;    // k, or null: the layer reads f32(x_p * input_scales[p])
  Activation activation = Activation::None;
  float alpha = 0;
};

struct QuantLayer {
  std::size_t k = 0, n = 0;          // inputs, outputs
  Format format = Format::Int8;
  bool input_major = false;          // the weight-only layout (see above)
  std::size_t group = 0;             // inputs per group (int8: kq, one group)
  std::size_t groups = 0;            // per output
  std::size_t kq = 0;                // inputs as stored: a multiple of 4 (int8) or of the group (int4)
  std::size_t blocks = 0;            // ceil(n / 16)
  bool symmetric = true;             // int4: every zero point is 8 (the kernels may fold it)
  // Blocks of 16 outputs (see above). Not zero-filled when allocated: each block is cleared and
  // written by the thread that packs it, so a large layer's page faults are shared by the threads.
  UninitVector<std::uint8_t> w;
  AlignedVector<float> scales;       // [blocks][groups][16] (at(b, g)), 0 past n; empty if bf16_scales
  // int4 layers in the W8A8 layout whose every scale is a bfloat16 value (the high 16 bits of
  // its float32, the low 16 zero), which is what lib/quant/quantize.ts makes, keep those 16 bits
  // in scales16 instead (same layout): exact, and a g32 layer then reads 18 bytes per 32
  // weights, not 20 (batch 1 is bound by those bytes). Other layers, such as files written
  // before the quantiser rounded its scales, keep float32.
  bool bf16_scales = false;
  AlignedVector<std::uint16_t> scales16;
  AlignedVector<std::int32_t> zeros; // the same layout: int4 zero points (8 when symmetric)
  AlignedVector<std::int32_t> wsum;  // int8 W8A8 layout: [blocks * 16] sum of each output's weights; else empty
  AlignedVector<float> bias;         // [blocks * 16], 0 when absent
  // [k] or empty: each input p is multiplied by input_scales[p] (one float32 multiply) before
  // the layer reads it (lib/quant/format.ts, "input scales").
  AlignedVector<float> input_scales;
  Activation activation = Activation::None;
  float alpha = 0;

  // Where block b's 16 scales (and zero points) of group g start.
  std::size_t at(std::size_t b, std::size_t g) const { return (b * groups + g) * kLanes; }

  // Scale i of the layout as a float, from whichever array holds it.
  float scale(std::size_t i) const;

  // Bytes the repacked layer holds.
  std::size_t bytes() const {
    return w.size() + scales.size() * 4 + scales16.size() * 2 +
           (zeros.size() + wsum.size() + bias.size() + input_scales.size()) * 4;
  }
};

// Throws std::invalid_argument for a source the format does not allow.
QuantLayer repack(const QuantLayerSource& src, bool input_major);

// Hands a freed layer's buffers (packed weights, scales, zero points) back for the next repack
// to reuse; QuantModel's destructor does. A model made and freed per call (qmatmul) otherwise
// takes fresh memory each time, and the C library, which trims its heap after a large free, may
// have handed the last call's pages back to the kernel: 256 page faults per MB, 2.5 ms for a
// 1024 x 1024 int8 layer on a cloud VM where another process's identical call took 135 us. Per
// buffer type at most kRecycledBuffers buffers of up to kRecycledBytes each are kept, and
// kRecycledTotalBytes over all types (about what glibc may keep unreturned on its own); a
// repack takes the smallest that fits and is at most twice the size it needs, so a kept buffer
// never makes a small layer hold much more than it uses.
void recycle_layer(QuantLayer&& l);
constexpr std::size_t kRecycledBuffers = 4;
constexpr std::size_t kRecycledBytes = std::size_t(16) << 20;
constexpr std::size_t kRecycledTotalBytes = std::size_t(64) << 20;
// Capacity of the buffers kept now, in bytes, over every pool (for tests).
std::size_t recycled_bytes();

}  // namespace mlpkit::quant
