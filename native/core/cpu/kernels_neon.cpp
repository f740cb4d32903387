// NEON kernels for arm64 (every ARMv8-A core has Advanced SIMD and fused multiply-add).
#if defined(__aarch64__) || defined(_M_ARM64)
#include <arm_neon.h>

#include <cstddef>
#include <utility>

#include "core/cpu/kernels.h"

namespace mlpkit::cpu {
namespace {

struct V {
  using T = float32x4_t;
  static constexpr std::size_t W = 4;
  // 32 q registers: 6 x 4 accumulators + 4 B vectors + 1 broadcast.
  static constexpr int MR = 6;
  static constexpr int NV = 4;
  static void pin(T& x) { __asm__("" : "+w"(x)); }
  static void prefetch(const float* p) { __builtin_prefetch(p); }
  static T zero() { return vdupq_n_f32(0.0f); }
  static T set1(float x) { return vdupq_n_f32(x); }
  static T load(const float* p) { return vld1q_f32(p); }
  // No masked loads on NEON: go through a small buffer so nothing past p[n-1] is read.
  static T load_part(const float* p, std::size_t n) {
    float t[4] = {0, 0, 0, 0};
    for (std::size_t i = 0; i < n; ++i) t[i] = p[i];
    return vld1q_f32(t);
  }
  static T load_i8(const std::int8_t* p) {
    const int32x4_t i = {p[0], p[1], p[2], p[3]};
    return vcvtq_f32_s32(i);
  }
  static T load_i8_part(const std::int8_t* p, std::size_t n) {
    std::int8_t t[4] = {0, 0, 0, 0};
    for (std::size_t i = 0; i < n; ++i) t[i] = p[i];
    return load_i8(t);
  }
  static void store(float* p, T x) { vst1q_f32(p, x); }
  static void store_part(float* p, T x, std::size_t n) {
    float t[4];
    vst1q_f32(t, x);
    for (std::size_t i = 0; i < n; ++i) p[i] = t[i];
  }
  static T fma(T a, T b, T c) { return vfmaq_f32(c, a, b); }
  static T add(T a, T b) { return vaddq_f32(a, b); }
  static T sub(T a, T b) { return vsubq_f32(a, b); }
  static T mul(T a, T b) { return vmulq_f32(a, b); }
  static T div(T a, T b) { return vdivq_f32(a, b); }
  static T sqrt(T a) { return vsqrtq_f32(a); }
  static T max(T a, T b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
  static T gt_select(T a, T b, T yes, T no) { return vbslq_f32(vcgtq_f32(a, b), yes, no); }
};

#include "core/cpu/kernels_impl.inl"

constexpr Kernels kTable = make_table("neon");

}  // namespace

const Kernels& neon_kernels() { return kTable; }

}  // namespace mlpkit::cpu
#endif
