// AVX-512F kernels (Skylake-SP, Ice Lake, Zen 4 and later). This file alone is compiled with
// -mavx512f -mfma; dispatch.cpp calls into it only after cpuid and xgetbv say the CPU and the
// OS (opmask and upper ZMM state) support it.
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <cstddef>
#include <utility>

#include "core/cpu/kernels.h"

namespace mlpkit::cpu {
namespace {

struct V {
  using T = __m512;
  static constexpr std::size_t W = 16;
  // 32 zmm registers: 6 x 4 accumulators + 4 B vectors + 1 broadcast. A 64-wide layer is one
  // column group.
  static constexpr int MR = 6;
  static constexpr int NV = 4;
  static __mmask16 lanes(std::size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static void pin(T& x) { __asm__("" : "+v"(x)); }
  static void prefetch(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }
  static T zero() { return _mm512_setzero_ps(); }
  static T set1(float x) { return _mm512_set1_ps(x); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  // Masked-off lanes are neither read nor faulted on.
  static T load_part(const float* p, std::size_t n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
  // 16 int8 codes widened to floats (sparse models with int8 weights); the all-lanes masked
  // form for the reason given at sqrt.
  static T load_i8(const std::int8_t* p) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __mmask16 all = static_cast<__mmask16>(0xFFFF);
    return _mm512_maskz_cvtepi32_ps(all, _mm512_maskz_cvtepi8_epi32(all, b));
  }
  // Byte-masked loads need AVX-512BW, which this file does not assume: a small buffer instead.
  static T load_i8_part(const std::int8_t* p, std::size_t n) {
    alignas(16) std::int8_t t[16] = {};
    for (std::size_t i = 0; i < n; ++i) t[i] = p[i];
    return load_i8(t);
  }
  static void store(float* p, T x) { _mm512_storeu_ps(p, x); }
  static void store_part(float* p, T x, std::size_t n) { _mm512_mask_storeu_ps(p, lanes(n), x); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T div(T a, T b) { return _mm512_div_ps(a, b); }
  // The all-lanes masked form: same instruction, and it keeps GCC 12 from warning about the
  // _mm512_undefined_ps inside _mm512_sqrt_ps.
  static T sqrt(T a) { return _mm512_maskz_sqrt_ps(static_cast<__mmask16>(0xFFFF), a); }
  static T max(T a, T b) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), b, a); }
  static T gt_select(T a, T b, T yes, T no) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), no, yes);
  }
};

#include "core/cpu/kernels_impl.inl"

constexpr Kernels kTable = make_table("avx512");

}  // namespace

const Kernels& avx512_kernels() { return kTable; }

}  // namespace mlpkit::cpu
#endif
