// W8A8 for arm64 cores with the dotprod extension (Cortex-A55/A76 and later, Neoverse N1 and
// later, Apple M1 and later). This file alone is compiled with -march=armv8.2-a+dotprod, and
// quant_kernels() calls into it only after cpu_has_dotprod() said yes, so it holds nothing but
// the sdot kernels: anything else here could run on a core without them. Weight-only layers
// have no integer dot product to gain; they use qkernels_neon.cpp's kernels.
//
// sdot adds four signed byte products into each int32 lane, exactly. The block layout (qlayer.h)
// gives each output its 4 consecutive weight bytes of a step, so one 16-byte load and one sdot
// cover 4 outputs x 4 inputs with no horizontal sums; both operands are signed, so unlike
// vpdpbusd (u8 x s8) there is no +128 shift and no compensation term. The by-lane form takes the
// 4 activation bytes from a register of 16, so one load of a row serves 4 steps (int8) or 2
// (int4). The float steps after the sums are the scalar kernel's, operation for operation.
#if defined(__aarch64__) || defined(_M_ARM64)
#include "core/quant/qkernels.h"

#if defined(__ARM_FEATURE_DOTPROD)
#include <arm_neon.h>

#include <cstring>
#include <type_traits>

namespace mlpkit::quant {
namespace {

constexpr std::size_t kRows = 4;  // rows per pass over a block's weights: 16 accumulators

#include "core/quant/qkernels_neon_passes.inl"

// acc[r] += one step of int8 weights (64 bytes at w) against bytes 4S..4S+3 of x[r].
template <int S, std::size_t R>
inline void int8_step(int32x4_t (&acc)[R][4], const std::int8_t* w, const int8x16_t (&x)[R]) {
  for (int i = 0; i < 4; ++i) {
    const int8x16_t wv = vld1q_s8(w + 16 * i);
    for (std::size_t r = 0; r < R; ++r) acc[r][i] = vdotq_laneq_s32(acc[r][i], wv, x[r], S);
  }
}

template <std::size_t R>
void w8a8_int8(const QuantLayer& l, std::size_t b, const QuantRow* x, float* y, std::size_t ldy) {
  const std::size_t steps = l.kq / 4;
  const std::int8_t* w = reinterpret_cast<const std::int8_t*>(l.w.data()) + b * steps * 64;
  int32x4_t acc[R][4];
  for (std::size_t r = 0; r < R; ++r)
    for (int i = 0; i < 4; ++i) acc[r][i] = vdupq_n_s32(0);
  int8x16_t xv[R];
  std::size_t t = 0;
  for (; t + 4 <= steps; t += 4) {
    for (std::size_t r = 0; r < R; ++r) xv[r] = vld1q_s8(x[r].xq + 4 * t);
    int8_step<0>(acc, w + t * 64, xv);
    int8_step<1>(acc, w + (t + 1) * 64, xv);
    int8_step<2>(acc, w + (t + 2) * 64, xv);
    int8_step<3>(acc, w + (t + 3) * 64, xv);
  }
  for (; t < steps; ++t) {  // up to 3 last steps: xq ends at kq, so no 16-byte load here
    for (std::size_t r = 0; r < R; ++r) xv[r] = bcast4(x[r].xq + 4 * t);
    int8_step<0>(acc, w + t * 64, xv);
  }
  for (std::size_t r = 0; r < R; ++r) {
    const float32x4_t sx = vdupq_n_f32(x[r].sx);
    for (int i = 0; i < 4; ++i) {
      const float32x4_t s = vmulq_f32(sx, vld1q_f32(l.scales.data() + b * kLanes + 4 * i));
      vst1q_f32(y + r * ldy + 4 * i, vmulq_f32(s, vcvtq_f32_s32(acc[r][i])));
    }
  }
}

// acc[r] += one step of int4 weights (64 bytes at w): the low nibbles against bytes 4S..4S+3 of
// x[r], the high nibbles against the next 4 (qlayer.h: inputs 8t..8t+3, then 8t+4..8t+7). Nibbles
// are at most 15, so as signed bytes they are themselves.
template <int S, std::size_t R>
inline void int4_step(int32x4_t (&acc)[R][4], const std::uint8_t* w, const int8x16_t (&x)[R]) {
  const uint8x16_t nibble = vdupq_n_u8(0x0f);
  for (int i = 0; i < 4; ++i) {
    const uint8x16_t v = vld1q_u8(w + 16 * i);
    const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(v, nibble)), hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
    for (std::size_t r = 0; r < R; ++r) {
      acc[r][i] = vdotq_laneq_s32(acc[r][i], lo, x[r], S);
      acc[r][i] = vdotq_laneq_s32(acc[r][i], hi, x[r], S + 1);
    }
  }
}

template <std::size_t R>
void w8a8_int4(const QuantLayer& l, std::size_t b, const QuantRow* x, float* y, std::size_t ldy) {
  const std::size_t steps = l.kq / 8, per_group = l.group / 8;
  const std::uint8_t* w = l.w.data() + b * steps * 64;
  for (std::size_t g = 0; g < l.groups; ++g) {
    int32x4_t acc[R][4];
    for (std::size_t r = 0; r < R; ++r)
      for (int i = 0; i < 4; ++i) acc[r][i] = vdupq_n_s32(0);
    // A group is 4, 8 or 16 steps: whole pairs, and 16 activation bytes per pair.
    for (std::size_t t = g * per_group; t < (g + 1) * per_group; t += 2) {
      int8x16_t xv[R];
      for (std::size_t r = 0; r < R; ++r) xv[r] = vld1q_s8(x[r].xq + 8 * t);
      int4_step<0>(acc, w + t * 64, xv);
      int4_step<2>(acc, w + (t + 1) * 64, xv);
    }
    for (int i = 0; i < 4; ++i) {
      const std::size_t at = l.at(b, g) + 4 * i;
      const int32x4_t zero = vld1q_s32(l.zeros.data() + at);
      const float32x4_t scale = load_scales4(l, at);
      for (std::size_t r = 0; r < R; ++r) {
        // acc - zero * xsum in int32, exact (|zero * xsum| <= 15 * 127 * 128), as the scalar kernel.
        const int32x4_t exact = vmlsq_s32(acc[r][i], zero, vdupq_n_s32(x[r].xsum[g]));
        const float32x4_t t = vmulq_f32(vmulq_f32(vdupq_n_f32(x[r].sx), scale), vcvtq_f32_s32(exact));
        // The running sum over groups lives in y: 16 more registers per row would not fit.
        float* out = y + r * ldy + 4 * i;
        vst1q_f32(out, g == 0 ? t : vaddq_f32(vld1q_f32(out), t));
      }
    }
  }
}

void w8a8_block(const QuantLayer& l, std::size_t b, const QuantRow* rows, std::size_t count, float* y,
                std::size_t ldy) {
  if (l.format == Format::Int8) {
    in_passes<kRows>(count, [&](std::size_t r, auto n) { w8a8_int8<decltype(n)::value>(l, b, rows + r, y + r * ldy, ldy); });
  } else {
    in_passes<kRows>(count, [&](std::size_t r, auto n) { w8a8_int4<decltype(n)::value>(l, b, rows + r, y + r * ldy, ldy); });
  }
}

}  // namespace

const QuantKernels* quant_neon_dotprod_kernels() {
  static const QuantKernels table = {"neon-dotprod", w8a8_block, quant_neon_kernels().wfloat_block, nullptr,
                                      quant_neon_kernels().quantize_row, nullptr};
  return &table;
}

}  // namespace mlpkit::quant

#else
// Built without +dotprod (a compiler or build that does not pass it): the ARMv8.0 kernels serve.
const mlpkit::quant::QuantKernels* mlpkit::quant::quant_neon_dotprod_kernels() { return nullptr; }
#endif
#endif
