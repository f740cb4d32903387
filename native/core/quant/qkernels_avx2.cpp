// Quantised kernels for AVX2 + FMA (Haswell, Zen 1 and later, where AVX-512 VNNI is missing).
// This file alone is compiled with -mavx2 -mfma. A block of 16 outputs (qlayer.h) is two halves
// of 8 lanes.
//
// There is no non-saturating byte dot product before VNNI: vpmaddubsw multiplies unsigned by
// signed bytes and adds adjacent pairs into int16 *with saturation*. The operands are chosen so
// that no pair can saturate: int8 x int8 multiplies |xq| (<= 127) by w with xq's sign moved onto
// it (vpsignb), so a pair is at most 2 * 127 * 127 = 32258 < 32767; int4 multiplies the nibbles
// (<= 15) by xq, at most 2 * 15 * 127 = 3810. (The VNNI trick of shifting xq to unsigned
// xq + 128 would reach 2 * 255 * 127 = 64770 here, and saturate.) vpmaddwd by ones then adds the
// pairs into int32 lanes exactly: after every product for int8, after four steps' int16 sums
// for int4 (w8a8_int4). tests/91 drives every product to +-127 x +-127 (and every nibble to 0
// and 15) to prove it.
#if defined(__x86_64__) || defined(_M_X64)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/quant/qkernels.h"

namespace mlpkit::quant {
namespace {

#include "core/quant/qkernels_quantize_row.inl"

inline __m256i bcast4(const void* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Sum of four byte products per int32 lane, exact: a unsigned, b signed, no pair above 32767.
// vpmaddubsw and vpmaddwd share Zen 1's one integer-multiply pipe, so this is 4 cycles per 32
// products there, the rate of float32's FMAs. Widening without the second multiply (flip the
// int16 sign bits, then sum the int32 lanes and their top halves, 12 uops instead of 8) measured
// slower in L1 on Zen 1: 5.6 against 4.35 cycles per 32 products, sign included (2.35 GHz).
inline __m256i dot4(__m256i acc, __m256i a, __m256i b) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)));
}

// As in qkernels_vnni.cpp: the first row's pass over a block streams its weights from memory,
// and prefetching them 4 KiB ahead (the scales as far ahead in groups) keeps more lines in
// flight than the hardware prefetchers do; the later rows find the block in cache. 4096 -> 16384
// under MLPKIT_ISA=avx2, 2 threads: int4 g32 W4A8 at batch 1 1.31x on Zen 4 (median of 8 paired
// runs, all 8 faster). Zen 5, medians of in-process paired runs: int8 weight-only batch 1 1.23x;
// prefetching in the first row's pass of a batch, not only at batch 1, int8 / int4 weight-only
// batch 2 1.12x / 1.07x, batch 4 1.07x / 1.04x, batch 8 1.03x / 1.02x; int4 g32 W4A8 batch 4 / 8
// about 1.12x / 1.15x (medians of 6 alternated processes, noisy). (8 KiB against 4 KiB on
// Zen 5: int8 weight-only 1.06x, int4 1.00x.) Unlike the VNNI one (see qkernels_vnni.cpp), the
// AVX2 int8 W8A8 kernel prefetches too: on Zen 1 it spends a vpmaddubsw and a vpmaddwd per
// 32 bytes on one multiply pipe, and at batch 1 it went from 4.97 / 5.28 ms to 4.24 / 4.6 ms
// (medians of 6 and 8 alternated processes, faster in 12 of the 14 pairs; batch 8 unchanged).
constexpr std::size_t kPrefetchBytes = 4096;

template <bool Prefetch>
void w8a8_int8(const QuantLayer& l, std::size_t b, const QuantRow& x, float* y) {
  const std::size_t steps = l.kq / 4;
  const std::uint8_t* w = l.w.data() + b * steps * 64;
  __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
  for (std::size_t t = 0; t < steps; ++t) {
    if constexpr (Prefetch) _mm_prefetch(reinterpret_cast<const char*>(w + t * 64) + kPrefetchBytes, _MM_HINT_T0);
    const __m256i xq = bcast4(x.xq + 4 * t);
    const __m256i xabs = _mm256_abs_epi8(xq);
    for (int h = 0; h < 2; ++h) {
      const __m256i wv = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + t * 64 + h * 32));
      acc[h] = dot4(acc[h], xabs, _mm256_sign_epi8(wv, xq));
    }
  }
  for (int h = 0; h < 2; ++h) {
    const __m256 scale = _mm256_load_ps(l.scales.data() + b * kLanes + h * 8);
    const __m256 s = _mm256_mul_ps(_mm256_set1_ps(x.sx), scale);
    _mm256_storeu_ps(y + h * 8, _mm256_mul_ps(s, _mm256_cvtepi32_ps(acc[h])));
  }
}

// Eight scales of block b, group g, from lane 8h: float32, or bfloat16 widened exactly (qlayer.h).
template <bool Bf16>
inline __m256 group_scales(const QuantLayer& l, std::size_t b, std::size_t g, int h) {
  if constexpr (Bf16) {
    const __m128i half = _mm_load_si128(reinterpret_cast<const __m128i*>(l.scales16.data() + l.at(b, g) + h * 8));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
  } else {
    return _mm256_load_ps(l.scales.data() + l.at(b, g) + h * 8);
  }
}

// int4 pair sums are small (at most 2 * 15 * 127 = 3810), so eight of them add up in int16 lanes
// exactly (30480 < 32767): four steps' low and high nibble products are summed with vpaddw, and
// only then widened by vpmaddwd, once per four steps instead of once per product. On Zen 1 the
// two multiplies share one 128-bit pipe, so this took the kernel from two multiplies per
// product to 1.125.
constexpr std::size_t kInt16Steps = 4;  // divides every group's steps (32, 64, 128 inputs: 4, 8, 16)

template <bool Prefetch, bool Bf16>
void w8a8_int4(const QuantLayer& l, std::size_t b, const QuantRow& x, float* y) {
  const std::size_t steps = l.kq / 8, per_group = l.group / 8;
  const std::uint8_t* w = l.w.data() + b * steps * 64;
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 sum[2];
  for (std::size_t g = 0; g < l.groups; ++g) {
    __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    if constexpr (Prefetch) {
      const char* scales = Bf16 ? reinterpret_cast<const char*>(l.scales16.data() + l.at(b, g)) : reinterpret_cast<const char*>(l.scales.data() + l.at(b, g));
      _mm_prefetch(scales + kPrefetchBytes / per_group / (Bf16 ? 2 : 1), _MM_HINT_T0);
    }
    for (std::size_t t0 = g * per_group; t0 < (g + 1) * per_group; t0 += kInt16Steps) {
      __m256i pairs[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      for (std::size_t t = t0; t < t0 + kInt16Steps; ++t) {
        if constexpr (Prefetch) _mm_prefetch(reinterpret_cast<const char*>(w + t * 64) + kPrefetchBytes, _MM_HINT_T0);
        const __m256i x0 = bcast4(x.xq + 8 * t), x1 = bcast4(x.xq + 8 * t + 4);
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + t * 64 + h * 32));
          const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(v, nibble), x0);
          const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), nibble), x1);
          pairs[h] = _mm256_add_epi16(pairs[h], _mm256_add_epi16(lo, hi));
        }
      }
      for (int h = 0; h < 2; ++h) acc[h] = _mm256_add_epi32(acc[h], _mm256_madd_epi16(pairs[h], ones));
    }
    const __m256 xsum = _mm256_set1_ps(static_cast<float>(x.xsum[g]));
    for (int h = 0; h < 2; ++h) {
      // acc - zero * xsum, exact in float (integers below 2^24; see qkernels_vnni.cpp); a
      // symmetric layer's zero point is 8 in every lane, not read.
      const __m256 sums = _mm256_cvtepi32_ps(acc[h]);
      const __m256 exact = l.symmetric
          ? _mm256_sub_ps(sums, _mm256_mul_ps(_mm256_set1_ps(8.0f), xsum))
          : _mm256_fnmadd_ps(_mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(l.zeros.data() + l.at(b, g) + h * 8))), xsum, sums);
      const __m256 scale = group_scales<Bf16>(l, b, g, h);
      const __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(x.sx), scale), exact);
      sum[h] = g == 0 ? t : _mm256_add_ps(sum[h], t);
    }
  }
  _mm256_storeu_ps(y, sum[0]);
  _mm256_storeu_ps(y + 8, sum[1]);
}

// Weight-only kernels keep four accumulator chains per half (inputs p..p+3; kq is a multiple of
// 4): with one, every FMA waited for the previous one's 4-cycle latency.
template <bool Prefetch>
void wfloat_int8(const QuantLayer& l, std::size_t b, const float* x, float* y) {
  const std::uint8_t* w = l.w.data() + b * l.kq * kLanes;
  __m256 acc[2][4];
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 4; ++i) acc[h][i] = _mm256_setzero_ps();
  for (std::size_t p = 0; p < l.kq; p += 4) {
    if constexpr (Prefetch) _mm_prefetch(reinterpret_cast<const char*>(w + p * kLanes) + kPrefetchBytes, _MM_HINT_T0);
    for (int i = 0; i < 4; ++i) {
      const __m256 xv = _mm256_set1_ps(x[p + i]);
      for (int h = 0; h < 2; ++h) {
        const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + (p + i) * kLanes + h * 8));
        acc[h][i] = _mm256_fmadd_ps(xv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), acc[h][i]);
      }
    }
  }
  for (int h = 0; h < 2; ++h) {
    const __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[h][0], acc[h][1]), _mm256_add_ps(acc[h][2], acc[h][3]));
    _mm256_storeu_ps(y + h * 8, _mm256_mul_ps(_mm256_load_ps(l.scales.data() + b * kLanes + h * 8), sum));
  }
}

// A symmetric layer's zero points are all 8: not read (4 bytes per output and group, a sixth of a
// g32 layer's bytes). Low and high nibbles of both halves accumulate in four chains. First-row
// calls prefetch as w8a8_int4 does.
template <bool Prefetch, bool Symmetric>
void wfloat_int4(const QuantLayer& l, std::size_t b, const float* x, float* y) {
  const std::size_t pairs = l.group / 2;
  const std::uint8_t* w = l.w.data() + b * (l.kq / 2) * kLanes;
  const __m256i nibble = _mm256_set1_epi32(0x0f);
  __m256 sum[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (std::size_t g = 0; g < l.groups; ++g) {
    if constexpr (Prefetch) _mm_prefetch(reinterpret_cast<const char*>(l.scales.data() + l.at(b, g)) + kPrefetchBytes / (pairs / 2), _MM_HINT_T0);
    __m256i zero[2];
    for (int h = 0; h < 2; ++h) {
      zero[h] = Symmetric ? _mm256_set1_epi32(8) : _mm256_load_si256(reinterpret_cast<const __m256i*>(l.zeros.data() + l.at(b, g) + h * 8));
    }
    __m256 lo_part[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 hi_part[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (std::size_t t = g * pairs; t < (g + 1) * pairs; ++t) {
      if constexpr (Prefetch) _mm_prefetch(reinterpret_cast<const char*>(w + t * kLanes) + kPrefetchBytes, _MM_HINT_T0);
      const __m256 x0 = _mm256_set1_ps(x[2 * t]), x1 = _mm256_set1_ps(x[2 * t + 1]);
      for (int h = 0; h < 2; ++h) {
        const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + t * kLanes + h * 8)));
        const __m256 lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v, nibble), zero[h]));
        const __m256 hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(v, 4), zero[h]));
        lo_part[h] = _mm256_fmadd_ps(x0, lo, lo_part[h]);
        hi_part[h] = _mm256_fmadd_ps(x1, hi, hi_part[h]);
      }
    }
    for (int h = 0; h < 2; ++h) {
      const __m256 scale = _mm256_load_ps(l.scales.data() + l.at(b, g) + h * 8);
      sum[h] = _mm256_fmadd_ps(scale, _mm256_add_ps(lo_part[h], hi_part[h]), sum[h]);
    }
  }
  _mm256_storeu_ps(y, sum[0]);
  _mm256_storeu_ps(y + 8, sum[1]);
}

// Weight-only over several rows. Converting each code to float is most of the single-row
// kernels' work on AVX2 (on Zen 1, 128-bit units, the int8 and int4 weight-only paths ran at
// 0.4x float32 from batch 8 up), and they redid it for every row. Here a chunk of the block's
// codes is converted once into a float panel in L1 (kPanelInputs inputs x 16 outputs, 16 KiB),
// and every row runs over it with the single-row kernel's own accumulator chains in the same
// order, carried from chunk to chunk: each row gets the bits wfloat_int8 / wfloat_int4 give it
// alone (batch-invariance, README "Determinism"), the conversion being exact. 4096 -> 16384,
// 2 threads, Zen 1, old and new build alternated twice (bench/quant-layer.mjs): int8 batch 8
// 52-53 -> 28-30 ms, batch 64 489-681 -> 231-259 ms; int4 g32 batch 8 63-70 -> 32-56 ms,
// batch 64 464-849 -> 247-250 ms (float32: ~30 and ~197 ms).
constexpr std::size_t kPanelInputs = 256;
constexpr std::size_t kMaxPanelRows = 8;  // qmodel.cpp's kRowsPerPass

void wfloat_int8_rows(const QuantLayer& l, std::size_t b, const float* const* x, std::size_t count, float* y,
                      std::size_t ldy) {
  const std::uint8_t* w = l.w.data() + b * l.kq * kLanes;
  alignas(32) float panel[kPanelInputs * kLanes];
  alignas(32) float state[kMaxPanelRows][2][4][8];  // each row's acc[h][i] between chunks
  std::memset(state, 0, sizeof(state));
  for (std::size_t p0 = 0; p0 < l.kq; p0 += kPanelInputs) {
    const std::size_t p1 = std::min(l.kq, p0 + kPanelInputs);
    for (std::size_t p = p0; p < p1; ++p) {
      if (p % 4 == 0) _mm_prefetch(reinterpret_cast<const char*>(w + p * kLanes) + kPrefetchBytes, _MM_HINT_T0);
      for (int h = 0; h < 2; ++h) {
        const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + p * kLanes + h * 8));
        _mm256_store_ps(panel + (p - p0) * kLanes + h * 8, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)));
      }
    }
    for (std::size_t r = 0; r < count; ++r) {
      __m256 acc[2][4];
      for (int h = 0; h < 2; ++h)
        for (int i = 0; i < 4; ++i) acc[h][i] = _mm256_load_ps(state[r][h][i]);
      const float* xr = x[r];
      for (std::size_t p = p0; p < p1; p += 4) {
        for (int i = 0; i < 4; ++i) {
          const __m256 xv = _mm256_set1_ps(xr[p + i]);
          for (int h = 0; h < 2; ++h) acc[h][i] = _mm256_fmadd_ps(xv, _mm256_load_ps(panel + (p - p0 + i) * kLanes + h * 8), acc[h][i]);
        }
      }
      for (int h = 0; h < 2; ++h)
        for (int i = 0; i < 4; ++i) _mm256_store_ps(state[r][h][i], acc[h][i]);
    }
  }
  for (std::size_t r = 0; r < count; ++r) {
    for (int h = 0; h < 2; ++h) {
      const __m256 a0 = _mm256_load_ps(state[r][h][0]), a1 = _mm256_load_ps(state[r][h][1]);
      const __m256 a2 = _mm256_load_ps(state[r][h][2]), a3 = _mm256_load_ps(state[r][h][3]);
      const __m256 sum = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
      _mm256_storeu_ps(y + r * ldy + h * 8, _mm256_mul_ps(_mm256_load_ps(l.scales.data() + b * kLanes + h * 8), sum));
    }
  }
}

// The panel holds, per input pair t, the low nibbles' (u - zero) of both halves, then the high
// nibbles': 32 floats. Chunks are whole groups, so only the running sums cross them.
template <bool Symmetric>
void wfloat_int4_rows(const QuantLayer& l, std::size_t b, const float* const* x, std::size_t count, float* y,
                      std::size_t ldy) {
  const std::size_t pairs = l.group / 2;
  const std::size_t chunk_groups = std::max<std::size_t>(1, kPanelInputs / l.group);
  const std::uint8_t* w = l.w.data() + b * (l.kq / 2) * kLanes;
  const __m256i nibble = _mm256_set1_epi32(0x0f);
  alignas(32) float panel[kPanelInputs / 2 * 32];
  alignas(32) float state[kMaxPanelRows][2][8];  // each row's sum[h] between chunks
  std::memset(state, 0, sizeof(state));
  for (std::size_t g0 = 0; g0 < l.groups; g0 += chunk_groups) {
    const std::size_t g1 = std::min(l.groups, g0 + chunk_groups);
    for (std::size_t g = g0; g < g1; ++g) {
      __m256i zero[2];
      for (int h = 0; h < 2; ++h) {
        zero[h] = Symmetric ? _mm256_set1_epi32(8) : _mm256_load_si256(reinterpret_cast<const __m256i*>(l.zeros.data() + l.at(b, g) + h * 8));
      }
      for (std::size_t t = g * pairs; t < (g + 1) * pairs; ++t) {
        if (t % 4 == 0) _mm_prefetch(reinterpret_cast<const char*>(w + t * kLanes) + kPrefetchBytes, _MM_HINT_T0);
        float* at = panel + (t - g0 * pairs) * 32;
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + t * kLanes + h * 8)));
          _mm256_store_ps(at + h * 8, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v, nibble), zero[h])));
          _mm256_store_ps(at + 16 + h * 8, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(v, 4), zero[h])));
        }
      }
    }
    for (std::size_t r = 0; r < count; ++r) {
      const float* xr = x[r];
      __m256 sum[2] = {_mm256_load_ps(state[r][0]), _mm256_load_ps(state[r][1])};
      for (std::size_t g = g0; g < g1; ++g) {
        __m256 lo_part[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        __m256 hi_part[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        for (std::size_t t = g * pairs; t < (g + 1) * pairs; ++t) {
          const float* at = panel + (t - g0 * pairs) * 32;
          const __m256 x0 = _mm256_set1_ps(xr[2 * t]), x1 = _mm256_set1_ps(xr[2 * t + 1]);
          for (int h = 0; h < 2; ++h) {
            lo_part[h] = _mm256_fmadd_ps(x0, _mm256_load_ps(at + h * 8), lo_part[h]);
            hi_part[h] = _mm256_fmadd_ps(x1, _mm256_load_ps(at + 16 + h * 8), hi_part[h]);
          }
        }
        for (int h = 0; h < 2; ++h) {
          const __m256 scale = _mm256_load_ps(l.scales.data() + l.at(b, g) + h * 8);
          sum[h] = _mm256_fmadd_ps(scale, _mm256_add_ps(lo_part[h], hi_part[h]), sum[h]);
        }
      }
      _mm256_store_ps(state[r][0], sum[0]);
      _mm256_store_ps(state[r][1], sum[1]);
    }
  }
  for (std::size_t r = 0; r < count; ++r) {
    _mm256_storeu_ps(y + r * ldy, _mm256_load_ps(state[r][0]));
    _mm256_storeu_ps(y + r * ldy + 8, _mm256_load_ps(state[r][1]));
  }
}

void w8a8_block(const QuantLayer& l, std::size_t b, const QuantRow* rows, std::size_t count, float* y,
                std::size_t ldy) {
  for (std::size_t r = 0; r < count; ++r) {
    const bool first = r == 0;  // later rows find the block in cache
    if (l.format == Format::Int8) {
      if (first) w8a8_int8<true>(l, b, rows[r], y + r * ldy);
      else w8a8_int8<false>(l, b, rows[r], y + r * ldy);
    } else if (l.bf16_scales) {
      if (first) w8a8_int4<true, true>(l, b, rows[r], y + r * ldy);
      else w8a8_int4<false, true>(l, b, rows[r], y + r * ldy);
    } else {
      if (first) w8a8_int4<true, false>(l, b, rows[r], y + r * ldy);
      else w8a8_int4<false, false>(l, b, rows[r], y + r * ldy);
    }
  }
}

void wfloat_block(const QuantLayer& l, std::size_t b, const float* const* x, std::size_t count, float* y,
                  std::size_t ldy) {
  if (count >= 2 && count <= kMaxPanelRows) {
    if (l.format == Format::Int8) wfloat_int8_rows(l, b, x, count, y, ldy);
    else if (l.symmetric) wfloat_int4_rows<true>(l, b, x, count, y, ldy);
    else wfloat_int4_rows<false>(l, b, x, count, y, ldy);
    return;
  }
  for (std::size_t r = 0; r < count; ++r) {
    const bool first = r == 0;
    if (l.format == Format::Int8) {
      if (first) wfloat_int8<true>(l, b, x[r], y + r * ldy);
      else wfloat_int8<false>(l, b, x[r], y + r * ldy);
    } else if (l.symmetric) {
      if (first) wfloat_int4<true, true>(l, b, x[r], y + r * ldy);
      else wfloat_int4<false, true>(l, b, x[r], y + r * ldy);
    } else {
      if (first) wfloat_int4<true, false>(l, b, x[r], y + r * ldy);
      else wfloat_int4<false, false>(l, b, x[r], y + r * ldy);
    }
  }
}

constexpr QuantKernels kAvx2 = {"avx2", w8a8_block, wfloat_block, nullptr, quantize_row, nullptr};

}  // namespace

const QuantKernels& quant_avx2_kernels() { return kAvx2; }

}  // namespace mlpkit::quant
#endif
