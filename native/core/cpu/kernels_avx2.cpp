// AVX2 + FMA kernels (x86-64 since Haswell / Zen 1). This file alone is compiled with
// -mavx2 -mfma; dispatch.cpp calls into it only after cpuid and xgetbv say the CPU and the OS
// support both.
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <cstddef>
#include <utility>

#include "core/cpu/kernels.h"

namespace mlpkit::cpu {
namespace {

struct V {
  using T = __m256;
  static constexpr std::size_t W = 8;
  // 16 ymm registers: 6 x 2 accumulators + 2 B vectors + 1 broadcast.
  static constexpr int MR = 6;
  static constexpr int NV = 2;
  static __m256i lanes(std::size_t n) {
    // Lane i is enabled when i < n: compare the lane indices with n.
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static void pin(T& x) { __asm__("" : "+x"(x)); }
  static void prefetch(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }
  static T zero() { return _mm256_setzero_ps(); }
  static T set1(float x) { return _mm256_set1_ps(x); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static T load_part(const float* p, std::size_t n) { return _mm256_maskload_ps(p, lanes(n)); }
  static T load_i8(const std::int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static T load_i8_part(const std::int8_t* p, std::size_t n) {
    alignas(16) std::int8_t t[16] = {};
    for (std::size_t i = 0; i < n; ++i) t[i] = p[i];
    return load_i8(t);
  }
  static void store(float* p, T x) { _mm256_storeu_ps(p, x); }
  static void store_part(float* p, T x, std::size_t n) { _mm256_maskstore_ps(p, lanes(n), x); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T div(T a, T b) { return _mm256_div_ps(a, b); }
  static T sqrt(T a) { return _mm256_sqrt_ps(a); }
  // (a > b) ? a : b with b returned for NaN a, as the scalar `a > b ? a : b`.
  static T max(T a, T b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
  static T gt_select(T a, T b, T yes, T no) { return _mm256_blendv_ps(no, yes, _mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
};

#include "core/cpu/kernels_impl.inl"

constexpr Kernels kTable = make_table("avx2");

}  // namespace

const Kernels& avx2_kernels() { return kTable; }

}  // namespace mlpkit::cpu
#endif
