// Quantised kernels for arm64 with the ARMv8.0 Advanced SIMD that every core has (Cortex-A53,
// A72, Graviton 1, ...), compiled with the baseline flags. Cores with the dotprod extension run
// W8A8 through sdot instead (qkernels_neon_dotprod.cpp); the weight-only kernels here serve both.
//
// W8A8 without sdot: vmull_s8 multiplies 8 byte pairs into int16 lanes and vpadalq_s16 adds
// adjacent int16 lanes into int32 ones. No step can overflow for the operands the format allows:
// int8 codes and activations lie in [-127, 127] (repack rejects -128, quantisation clamps), so a
// product is at most 16129 and the two that vmlal_s8 adds before widening at most 32258 < 32767;
// int4 nibbles (<= 15) times activations are at most 1905, and the four added here 7620.
//
// In the block layout (qlayer.h) a 16-byte load holds 4 outputs x 4 inputs. vmull_s8 on one half
// gives 2 outputs x 4 products; vpadalq_s16 folds them to 2 outputs x 2 half sums, and those stay
// apart until the end, where one vpaddq_s32 per 4 outputs adds the halves. The integer sums are
// therefore exact, and the float steps after them are the scalar kernel's, operation for operation.
#if defined(__aarch64__) || defined(_M_ARM64)
#include <arm_neon.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/quant/qkernels.h"

namespace mlpkit::quant {
namespace {

#include "core/quant/qkernels_neon_passes.inl"
#include "core/quant/qkernels_quantize_row.inl"

// The exact sums of 4 outputs from their two half-sum accumulators.
inline int32x4_t halves(int32x4_t a, int32x4_t b) { return vpaddq_s32(a, b); }

// acc += the products of two steps' weights (wa, wb) with their activations (xa, xb): per output
// lane, one vmlal_s8 sums two products in int16 before the one widening add.
template <std::size_t R>
inline void w8a8_int8_steps(int32x4_t (&acc)[R][8], const std::int8_t* wa_at, const std::int8_t* wb_at,
                            const int8x16_t (&xa)[R], const int8x16_t (&xb)[R]) {
  for (int i = 0; i < 4; ++i) {
    const int8x16_t wa = vld1q_s8(wa_at + 16 * i);
    const int8x16_t wb = wb_at ? vld1q_s8(wb_at + 16 * i) : vdupq_n_s8(0);
    for (std::size_t r = 0; r < R; ++r) {
      int16x8_t lo = vmull_s8(vget_low_s8(wa), vget_low_s8(xa[r]));
      lo = vmlal_s8(lo, vget_low_s8(wb), vget_low_s8(xb[r]));
      int16x8_t hi = vmull_high_s8(wa, xa[r]);
      hi = vmlal_high_s8(hi, wb, xb[r]);
      acc[r][2 * i] = vpadalq_s16(acc[r][2 * i], lo);
      acc[r][2 * i + 1] = vpadalq_s16(acc[r][2 * i + 1], hi);
    }
  }
}

template <std::size_t R>
void w8a8_int8(const QuantLayer& l, std::size_t b, const QuantRow* x, float* y, std::size_t ldy) {
  const std::size_t steps = l.kq / 4;
  const std::int8_t* w = reinterpret_cast<const std::int8_t*>(l.w.data()) + b * steps * 64;
  int32x4_t acc[R][8];
  for (std::size_t r = 0; r < R; ++r)
    for (int i = 0; i < 8; ++i) acc[r][i] = vdupq_n_s32(0);
  int8x16_t xa[R], xb[R];
  std::size_t t = 0;
  for (; t + 2 <= steps; t += 2) {
    for (std::size_t r = 0; r < R; ++r) {
      xa[r] = bcast4(x[r].xq + 4 * t);
      xb[r] = bcast4(x[r].xq + 4 * t + 4);
    }
    w8a8_int8_steps(acc, w + t * 64, w + (t + 1) * 64, xa, xb);
  }
  if (t < steps) {  // an odd last step, paired with zeros (which add nothing)
    for (std::size_t r = 0; r < R; ++r) {
      xa[r] = bcast4(x[r].xq + 4 * t);
      xb[r] = vdupq_n_s8(0);
    }
    w8a8_int8_steps(acc, w + t * 64, nullptr, xa, xb);
  }
  for (std::size_t r = 0; r < R; ++r) {
    const float32x4_t sx = vdupq_n_f32(x[r].sx);
    for (int i = 0; i < 4; ++i) {
      const float32x4_t s = vmulq_f32(sx, vld1q_f32(l.scales.data() + b * kLanes + 4 * i));
      const int32x4_t exact = halves(acc[r][2 * i], acc[r][2 * i + 1]);
      vst1q_f32(y + r * ldy + 4 * i, vmulq_f32(s, vcvtq_f32_s32(exact)));
    }
  }
}

// One row at a time: two rows' accumulators and activations would not fit the 32 registers.
void w8a8_int4(const QuantLayer& l, std::size_t b, const QuantRow& x, float* y) {
  const std::size_t steps = l.kq / 8, per_group = l.group / 8;
  const std::uint8_t* w = l.w.data() + b * steps * 64;
  const uint8x16_t nibble = vdupq_n_u8(0x0f);
  for (std::size_t g = 0; g < l.groups; ++g) {
    int32x4_t acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = vdupq_n_s32(0);
    // A group is 4, 8 or 16 steps: always whole pairs. Step t's low nibbles are inputs
    // 8t..8t+3, its high nibbles 8t+4..8t+7.
    for (std::size_t t = g * per_group; t < (g + 1) * per_group; t += 2) {
      const int8x16_t x0 = bcast4(x.xq + 8 * t), x1 = bcast4(x.xq + 8 * t + 4);
      const int8x16_t x2 = bcast4(x.xq + 8 * t + 8), x3 = bcast4(x.xq + 8 * t + 12);
      for (int i = 0; i < 4; ++i) {
        const uint8x16_t va = vld1q_u8(w + t * 64 + 16 * i), vb = vld1q_u8(w + (t + 1) * 64 + 16 * i);
        const int8x16_t lo_a = vreinterpretq_s8_u8(vandq_u8(va, nibble)), hi_a = vreinterpretq_s8_u8(vshrq_n_u8(va, 4));
        const int8x16_t lo_b = vreinterpretq_s8_u8(vandq_u8(vb, nibble)), hi_b = vreinterpretq_s8_u8(vshrq_n_u8(vb, 4));
        int16x8_t lo = vmull_s8(vget_low_s8(lo_a), vget_low_s8(x0));
        lo = vmlal_s8(lo, vget_low_s8(hi_a), vget_low_s8(x1));
        lo = vmlal_s8(lo, vget_low_s8(lo_b), vget_low_s8(x2));
        lo = vmlal_s8(lo, vget_low_s8(hi_b), vget_low_s8(x3));
        int16x8_t hi = vmull_high_s8(lo_a, x0);
        hi = vmlal_high_s8(hi, hi_a, x1);
        hi = vmlal_high_s8(hi, lo_b, x2);
        hi = vmlal_high_s8(hi, hi_b, x3);
        acc[2 * i] = vpadalq_s16(acc[2 * i], lo);
        acc[2 * i + 1] = vpadalq_s16(acc[2 * i + 1], hi);
      }
    }
    // acc - zero * xsum in int32, exact (|zero * xsum| <= 15 * 127 * 128), as the scalar kernel.
    const int32x4_t xsum = vdupq_n_s32(x.xsum[g]);
    const float32x4_t sx = vdupq_n_f32(x.sx);
    for (int i = 0; i < 4; ++i) {
      const int32x4_t zero = vld1q_s32(l.zeros.data() + l.at(b, g) + 4 * i);
      const int32x4_t exact = vmlsq_s32(halves(acc[2 * i], acc[2 * i + 1]), zero, xsum);
      const float32x4_t s = vmulq_f32(sx, load_scales4(l, l.at(b, g) + 4 * i));
      const float32x4_t t = vmulq_f32(s, vcvtq_f32_s32(exact));
      // The running sum lives in y: a group is at least 32 inputs, so the reload is cheap.
      vst1q_f32(y + 4 * i, g == 0 ? t : vaddq_f32(vld1q_f32(y + 4 * i), t));
    }
  }
}

// ---- weight-only: the input-major layout (qlayer.h), 16 bytes per input or pair of inputs ----

// The 16 int8 weights of one input as 4 float vectors (exact: small integers).
inline void widen_s8(int8x16_t v, float32x4_t (&f)[4]) {
  const int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_high_s8(v);
  f[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
  f[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
  f[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
  f[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
}

inline void widen_u8(uint8x16_t v, float32x4_t (&f)[4]) {
  const uint16x8_t lo = vmovl_u8(vget_low_u8(v)), hi = vmovl_high_u8(v);
  f[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)));
  f[1] = vcvtq_f32_u32(vmovl_high_u16(lo));
  f[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi)));
  f[3] = vcvtq_f32_u32(vmovl_high_u16(hi));
}

// acc[r] += x[r][lane S] * w: the lane is an immediate, hence the template.
template <int S, std::size_t R>
inline void fma_lane(float32x4_t (&acc)[R][4], const float32x4_t (&w)[4], const float32x4_t (&x)[R]) {
  for (std::size_t r = 0; r < R; ++r)
    for (int i = 0; i < 4; ++i) acc[r][i] = vfmaq_laneq_f32(acc[r][i], w[i], x[r], S);
}

template <int S, std::size_t R>
inline void wfloat_int8_input(float32x4_t (&acc)[R][4], const std::int8_t* w, const float32x4_t (&x)[R]) {
  float32x4_t wv[4];
  widen_s8(vld1q_s8(w), wv);
  fma_lane<S>(acc, wv, x);
}

template <std::size_t R>
void wfloat_int8(const QuantLayer& l, std::size_t b, const float* const* x, float* y, std::size_t ldy) {
  const std::int8_t* w = reinterpret_cast<const std::int8_t*>(l.w.data()) + b * l.kq * kLanes;
  float32x4_t acc[R][4];
  for (std::size_t r = 0; r < R; ++r)
    for (int i = 0; i < 4; ++i) acc[r][i] = vdupq_n_f32(0);
  // kq is a multiple of 4 and the caller pads x to kq: one load brings 4 inputs of a row.
  for (std::size_t p = 0; p < l.kq; p += 4) {
    float32x4_t xv[R];
    for (std::size_t r = 0; r < R; ++r) xv[r] = vld1q_f32(x[r] + p);
    wfloat_int8_input<0>(acc, w + p * kLanes, xv);
    wfloat_int8_input<1>(acc, w + (p + 1) * kLanes, xv);
    wfloat_int8_input<2>(acc, w + (p + 2) * kLanes, xv);
    wfloat_int8_input<3>(acc, w + (p + 3) * kLanes, xv);
  }
  for (int i = 0; i < 4; ++i) {
    const float32x4_t scale = vld1q_f32(l.scales.data() + b * kLanes + 4 * i);
    for (std::size_t r = 0; r < R; ++r) vst1q_f32(y + r * ldy + 4 * i, vmulq_f32(scale, acc[r][i]));
  }
}

// One byte-row of int4: inputs 2t (low nibbles, lane S) and 2t + 1 (high nibbles, lane S + 1).
template <int S, std::size_t R>
inline void wfloat_int4_pair(float32x4_t (&acc)[R][4], const std::uint8_t* w, const float32x4_t (&zero)[4],
                             const float32x4_t (&x)[R]) {
  const uint8x16_t v = vld1q_u8(w);
  float32x4_t lo[4], hi[4];
  widen_u8(vandq_u8(v, vdupq_n_u8(0x0f)), lo);
  widen_u8(vshrq_n_u8(v, 4), hi);
  for (int i = 0; i < 4; ++i) {
    lo[i] = vsubq_f32(lo[i], zero[i]);  // exact: integers in [-15, 15]
    hi[i] = vsubq_f32(hi[i], zero[i]);
  }
  fma_lane<S>(acc, lo, x);
  fma_lane<S + 1>(acc, hi, x);
}

template <std::size_t R>
void wfloat_int4(const QuantLayer& l, std::size_t b, const float* const* x, float* y, std::size_t ldy) {
  const std::size_t pairs = l.group / 2;
  const std::uint8_t* w = l.w.data() + b * (l.kq / 2) * kLanes;
  for (std::size_t g = 0; g < l.groups; ++g) {
    float32x4_t zero[4];
    for (int i = 0; i < 4; ++i) zero[i] = vcvtq_f32_s32(vld1q_s32(l.zeros.data() + l.at(b, g) + 4 * i));
    float32x4_t part[R][4];
    for (std::size_t r = 0; r < R; ++r)
      for (int i = 0; i < 4; ++i) part[r][i] = vdupq_n_f32(0);
    // A group has 16, 32 or 64 byte-rows: two per step, one load of 4 inputs per row.
    for (std::size_t t = g * pairs; t < (g + 1) * pairs; t += 2) {
      float32x4_t xv[R];
      for (std::size_t r = 0; r < R; ++r) xv[r] = vld1q_f32(x[r] + 2 * t);
      wfloat_int4_pair<0>(part, w + t * kLanes, zero, xv);
      wfloat_int4_pair<2>(part, w + (t + 1) * kLanes, zero, xv);
    }
    for (int i = 0; i < 4; ++i) {
      const float32x4_t scale = vld1q_f32(l.scales.data() + l.at(b, g) + 4 * i);
      for (std::size_t r = 0; r < R; ++r) {
        float* out = y + r * ldy + 4 * i;
        vst1q_f32(out, g == 0 ? vmulq_f32(scale, part[r][i]) : vfmaq_f32(vld1q_f32(out), scale, part[r][i]));
      }
    }
  }
}

void w8a8_block(const QuantLayer& l, std::size_t b, const QuantRow* rows, std::size_t count, float* y,
                std::size_t ldy) {
  if (l.format == Format::Int8) {
    in_passes<2>(count, [&](std::size_t r, auto n) { w8a8_int8<decltype(n)::value>(l, b, rows + r, y + r * ldy, ldy); });
  } else {
    for (std::size_t r = 0; r < count; ++r) w8a8_int4(l, b, rows[r], y + r * ldy);
  }
}

void wfloat_block(const QuantLayer& l, std::size_t b, const float* const* x, std::size_t count, float* y,
                  std::size_t ldy) {
  if (l.format == Format::Int8) {
    in_passes<4>(count, [&](std::size_t r, auto n) { wfloat_int8<decltype(n)::value>(l, b, x + r, y + r * ldy, ldy); });
  } else {
    in_passes<2>(count, [&](std::size_t r, auto n) { wfloat_int4<decltype(n)::value>(l, b, x + r, y + r * ldy, ldy); });
  }
}

constexpr QuantKernels kNeon = {"neon", w8a8_block, wfloat_block, nullptr, quantize_row, nullptr};

}  // namespace

const QuantKernels& quant_neon_kernels() { return kNeon; }

}  // namespace mlpkit::quant
#endif
