// Quantised kernels for AVX-512 with VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later). This
// file alone is compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni; quant_kernels()
// calls into it only after cpuid and xgetbv say the CPU and the OS support all of them.
//
// vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes and adds the 4 products to an int32
// lane, exactly (no saturation: the non-saturating form). int8 x int8 takes the activations
// shifted to unsigned (xq + 128) and subtracts 128 * sum(w) afterwards; int4 weights are
// unsigned nibbles already, so they are the unsigned side and the activations the signed one.
#if defined(__x86_64__) || defined(_M_X64)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns about the _mm512_undefined_* placeholders inside its own intrinsic headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "core/quant/qkernels.h"

namespace mlpkit::quant {
namespace {

#include "core/quant/qkernels_passes.inl"
#include "core/quant/qkernels_quantize_row.inl"

constexpr std::size_t kRows = 4;  // input rows per pass over a block's weights

// Passes over a block's weights prefetch them this far ahead of the step being read (scales as
// far ahead in groups): single-row W8A8 int4 passes, and every weight-only pass. At batch 1 a
// layer is one pass over its weights, and the hardware prefetchers, which stop at each 4 KiB
// page, keep too few lines in flight for a core that also spends its cycles unpacking the
// weights. 4096 -> 16384 layers, medians of paired runs, 2 threads. Zen 4, 4 KiB against none:
// int4 W4A8 g32 (42 MB) 1.11x and 1.18x in two runs, g128 1.25x (2 and 8 KiB measured as 4).
// Zen 5 (2-2.5x Zen 4's memory bandwidth), 8 KiB against 4 KiB at batch 1: int4 W4A8
// g32/g64/g128 1.08-1.17x, int4 weight-only 1.01-1.04x, int8 weight-only 1.19-1.35x (where 4 KiB
// measured as none); 12 and 16 KiB about as 8, 24 KiB slower. The int8 W8A8 kernel, a bare
// stream of loads and vpdpbusd, lost with it on Zen 4 (4 KiB 0.84x, unchanged code 0.95-1.05x in
// the same A/B) and gained 0.97-1.11x on Zen 5 (4, 8 and 16 KiB, varying from run to run): it
// does not prefetch, and batched W8A8 goes through w8a8_pair, which prefetches the next blocks
// itself.
// Weight-only passes of several rows: the first pass over a block reads it from memory too, at a
// pace the hardware prefetchers did not keep up with either (Zen 5, prefetching in every pass
// against single-row passes only: int8 batch 2 / 4 / 8 / 16 / 32 / 64 1.67x / 1.74x / 1.40x /
// 1.22x / 1.11x / 1.05x, int4 g32 batch 2 / 4 / 8 / 16 / 64 1.63x / 1.39x / 1.19x / 1.09x / 1.00x);
// the later passes find the lines in cache, where a prefetch costs next to nothing.
constexpr std::size_t kPrefetchBytes = 8192;

inline void prefetch(const void* p, std::size_t ahead) {
  _mm_prefetch(static_cast<const char*>(p) + ahead, _MM_HINT_T0);  // never faults, even past the end
}

// acc += u8 x s8 dot products, in place. GCC 12 allocates _mm512_dpbusd_epi32's accumulator to
// a fresh register and copies it back, two vmovdqa per vpdpbusd in the multi-row loops (seen in
// objdump); the asm ties the accumulator to one register.
// (By value: an asm operand bound to an array element keeps the whole array on the stack.)
inline __m512i dpbusd(__m512i acc, __m512i u8, __m512i s8) {
#if defined(__GNUC__)
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
  return acc;
#else
  return _mm512_dpbusd_epi32(acc, u8, s8);
#endif
}

inline __m512i bcast4(const void* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Block b's int8 W8A8 outputs of R rows from their sums of xu * w: the compensation 128 * sum(w)
// taken off (exact int32), then (sx * scale) * exact, in format.ts's order.
template <std::size_t R>
inline void store_int8(const QuantLayer& l, std::size_t b, const QuantRow* x, const __m512i (&acc)[R], float* y,
                       std::size_t ldy) {
  const __m512i bias128 = _mm512_slli_epi32(_mm512_load_si512(l.wsum.data() + b * kLanes), 7);
  const __m512 scale = _mm512_load_ps(l.scales.data() + b * kLanes);
  for (std::size_t r = 0; r < R; ++r) {
    const __m512i exact = _mm512_sub_epi32(acc[r], bias128);
    const __m512 s = _mm512_mul_ps(_mm512_set1_ps(x[r].sx), scale);
    _mm512_storeu_ps(y + r * ldy, _mm512_mul_ps(s, _mm512_cvtepi32_ps(exact)));
  }
}

// A single row against a block of int8 weights, in four accumulator chains (steps t mod 4),
// added after: exact integer sums, so the same bits. With one chain every vpdpbusd waited out
// the previous one's latency: where the weights come from memory (a big layer at batch 1) that
// is hidden behind the reads, but a layer in L2 or L3 (1024 -> 1024, 1 MB) ran at a quarter of
// the core's vpdpbusd rate. Single-row passes keep the intrinsic, as in w8a8_int4.
inline __m512i int8_row_sums(const std::uint8_t* w, const std::uint8_t* xu, std::size_t steps) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  std::size_t t = 0;
  for (; t + 4 <= steps; t += 4) {
    a0 = _mm512_dpbusd_epi32(a0, bcast4(xu + 4 * t), _mm512_load_si512(w + t * 64));
    a1 = _mm512_dpbusd_epi32(a1, bcast4(xu + 4 * t + 4), _mm512_load_si512(w + t * 64 + 64));
    a2 = _mm512_dpbusd_epi32(a2, bcast4(xu + 4 * t + 8), _mm512_load_si512(w + t * 64 + 128));
    a3 = _mm512_dpbusd_epi32(a3, bcast4(xu + 4 * t + 12), _mm512_load_si512(w + t * 64 + 192));
  }
  for (; t < steps; ++t) a0 = _mm512_dpbusd_epi32(a0, bcast4(xu + 4 * t), _mm512_load_si512(w + t * 64));
  return _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3));
}

template <std::size_t R>
void w8a8_int8(const QuantLayer& l, std::size_t b, const QuantRow* x, float* y, std::size_t ldy) {
  const std::size_t steps = l.kq / 4;
  const std::uint8_t* w = l.w.data() + b * steps * 64;
  __m512i acc[R];
  if constexpr (R == 1) {
    acc[0] = int8_row_sums(w, x[0].xu, steps);
  } else {
    // R rows are R chains already.
    for (std::size_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
    for (std::size_t t = 0; t < steps; ++t) {
      const __m512i wv = _mm512_load_si512(w + t * 64);
      for (std::size_t r = 0; r < R; ++r) acc[r] = dpbusd(acc[r], bcast4(x[r].xu + 4 * t), wv);
    }
  }
  store_int8<R>(l, b, x, acc, y, ldy);
}

// Blocks b and b + 1 of an int8 layer against R rows: 2R accumulators, and each broadcast
// input word feeds both blocks (one broadcast per vpdpbusd in w8a8_int8 held batched layers at
// ~0.5 of this core's vpdpbusd rate).
template <std::size_t R>
void w8a8_int8_pair(const QuantLayer& l, std::size_t b, const QuantRow* x, float* y, std::size_t ldy,
                    const std::uint8_t* pf, std::size_t pf_lines) {
  const std::size_t steps = l.kq / 4;
  const std::uint8_t* w0 = l.w.data() + b * steps * 64;
  const std::uint8_t* w1 = w0 + steps * 64;
  __m512i acc0[R], acc1[R];
  for (std::size_t r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_si512();
  for (std::size_t t = 0; t < steps; ++t) {
    if (t < pf_lines) _mm_prefetch(reinterpret_cast<const char*>(pf + t * 64), _MM_HINT_T1);
    const __m512i v0 = _mm512_load_si512(w0 + t * 64);
    const __m512i v1 = _mm512_load_si512(w1 + t * 64);
    for (std::size_t r = 0; r < R; ++r) {
      const __m512i xv = bcast4(x[r].xu + 4 * t);
      acc0[r] = dpbusd(acc0[r], xv, v0);
      acc1[r] = dpbusd(acc1[r], xv, v1);
    }
  }
  store_int8<R>(l, b, x, acc0, y, ldy);
  store_int8<R>(l, b + 1, x, acc1, y + kLanes, ldy);
}

// Block b's 16 scales of group g: float32, or bfloat16 widened to float32 exactly (qlayer.h).
template <bool Bf16>
inline __m512 group_scales(const QuantLayer& l, std::size_t b, std::size_t g) {
  if constexpr (Bf16) {
    const __m256i half = _mm256_load_si256(reinterpret_cast<const __m256i*>(l.scales16.data() + l.at(b, g)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
  } else {
    return _mm512_load_ps(l.scales.data() + l.at(b, g));
  }
}

template <bool Bf16>
inline const void* group_scales_address(const QuantLayer& l, std::size_t b, std::size_t g) {
  if constexpr (Bf16) {
    return l.scales16.data() + l.at(b, g);
  } else {
    return l.scales.data() + l.at(b, g);
  }
}

// Group g's term of block b's W4A8 outputs, added to sum (set at g = 0), from the group's exact
// integer sums isum of xq * code. isum - zero * xsum in float: every value involved is an
// integer below 2^24 in magnitude (|isum|, |zero * xsum| <= 15 * 127 * 128), so the conversion
// and the subtraction are exact, equal to the int32 result, and cheaper than a 32-bit integer
// multiply. Symmetric layers' zero point is 8 in every lane: one broadcast 8 * xsum per row, no
// zero points read. Then (sx * scale) * exact, in format.ts's order.
template <std::size_t R, bool Bf16>
inline void add_int4_group(const QuantLayer& l, std::size_t b, std::size_t g, const QuantRow* x, const __m512i (&isum)[R],
                           __m512 (&sum)[R]) {
  const __m512 zero = l.symmetric ? _mm512_set1_ps(8.0f) : _mm512_cvtepi32_ps(_mm512_load_si512(l.zeros.data() + l.at(b, g)));
  const __m512 scale = group_scales<Bf16>(l, b, g);
  for (std::size_t r = 0; r < R; ++r) {
    const __m512 sums = _mm512_cvtepi32_ps(isum[r]);
    const __m512 xsum = _mm512_set1_ps(static_cast<float>(x[r].xsum[g]));
    const __m512 exact = l.symmetric ? _mm512_sub_ps(sums, _mm512_mul_ps(zero, xsum)) : _mm512_fnmadd_ps(zero, xsum, sums);
    const __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(x[r].sx), scale), exact);
    sum[r] = g == 0 ? t : _mm512_add_ps(sum[r], t);
  }
}

template <std::size_t R, bool Bf16>
void w8a8_int4(const QuantLayer& l, std::size_t b, const QuantRow* x, float* y, std::size_t ldy) {
  const std::size_t steps = l.kq / 8, per_group = l.group / 8;
  const std::uint8_t* w = l.w.data() + b * steps * 64;
  const __m512i nibble = _mm512_set1_epi8(0x0f);
  __m512 sum[R];
  for (std::size_t g = 0; g < l.groups; ++g) {
    // The low and the high nibbles in chains of their own, added after (exact integer sums):
    // one chain through both waited on vpdpbusd's latency twice a step.
    __m512i acc[R], high[R];
    for (std::size_t r = 0; r < R; ++r) acc[r] = high[r] = _mm512_setzero_si512();
    // The scales are a stream of their own: prefetched as many groups ahead as the weights.
    if constexpr (R == 1) prefetch(group_scales_address<Bf16>(l, b, g), kPrefetchBytes / per_group / (Bf16 ? 2 : 1));
    __m512i total[R];
    if constexpr (R == 1) {
      // A single row: four chains (low and high nibbles of even and odd steps; a group has 4,
      // 8 or 16 steps), for the reason of int8_row_sums. (The intrinsic: the asm form measured
      // ~5-10% slower at batch 1, where the scheduling around the prefetches matters more than
      // the instruction count.)
      __m512i lo1 = acc[0], hi1 = high[0];
      for (std::size_t t = g * per_group; t < (g + 1) * per_group; t += 2) {
        prefetch(w + t * 64, kPrefetchBytes);
        prefetch(w + t * 64 + 64, kPrefetchBytes);
        const __m512i v0 = _mm512_load_si512(w + t * 64), v1 = _mm512_load_si512(w + t * 64 + 64);
        acc[0] = _mm512_dpbusd_epi32(acc[0], _mm512_and_si512(v0, nibble), bcast4(x[0].xq + 8 * t));
        high[0] = _mm512_dpbusd_epi32(high[0], _mm512_and_si512(_mm512_srli_epi16(v0, 4), nibble), bcast4(x[0].xq + 8 * t + 4));
        lo1 = _mm512_dpbusd_epi32(lo1, _mm512_and_si512(v1, nibble), bcast4(x[0].xq + 8 * t + 8));
        hi1 = _mm512_dpbusd_epi32(hi1, _mm512_and_si512(_mm512_srli_epi16(v1, 4), nibble), bcast4(x[0].xq + 8 * t + 12));
      }
      total[0] = _mm512_add_epi32(_mm512_add_epi32(acc[0], high[0]), _mm512_add_epi32(lo1, hi1));
    } else {
      for (std::size_t t = g * per_group; t < (g + 1) * per_group; ++t) {
        const __m512i v = _mm512_load_si512(w + t * 64);
        const __m512i lo = _mm512_and_si512(v, nibble);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
        for (std::size_t r = 0; r < R; ++r) {
          acc[r] = dpbusd(acc[r], lo, bcast4(x[r].xq + 8 * t));
          high[r] = dpbusd(high[r], hi, bcast4(x[r].xq + 8 * t + 4));
        }
      }
      for (std::size_t r = 0; r < R; ++r) total[r] = _mm512_add_epi32(acc[r], high[r]);
    }
    add_int4_group<R, Bf16>(l, b, g, x, total, sum);
  }
  for (std::size_t r = 0; r < R; ++r) _mm512_storeu_ps(y + r * ldy, sum[r]);
}

// Blocks b and b + 1 of an int4 layer against R rows, the batched W4A8 counterpart of
// w8a8_int8_pair: each pair of broadcast input words feeds both blocks. The low and high nibbles
// share one accumulator here (exact integer sums, as in w8a8_int4): with 2R chains no chain
// waits on vpdpbusd's latency, and 4R accumulators would not fit the 32 registers.
template <std::size_t R, bool Bf16>
void w8a8_int4_pair(const QuantLayer& l, std::size_t b, const QuantRow* x, float* y, std::size_t ldy,
                    const std::uint8_t* pf, std::size_t pf_lines) {
  const std::size_t steps = l.kq / 8, per_group = l.group / 8;
  const std::uint8_t* w0 = l.w.data() + b * steps * 64;
  const std::uint8_t* w1 = w0 + steps * 64;
  const __m512i nibble = _mm512_set1_epi8(0x0f);
  __m512 sum0[R], sum1[R];
  for (std::size_t g = 0; g < l.groups; ++g) {
    __m512i acc0[R], acc1[R];
    for (std::size_t r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_si512();
    for (std::size_t t = g * per_group; t < (g + 1) * per_group; ++t) {
      if (t < pf_lines) _mm_prefetch(reinterpret_cast<const char*>(pf + t * 64), _MM_HINT_T1);
      const __m512i v0 = _mm512_load_si512(w0 + t * 64);
      const __m512i v1 = _mm512_load_si512(w1 + t * 64);
      const __m512i lo0 = _mm512_and_si512(v0, nibble), hi0 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), nibble);
      const __m512i lo1 = _mm512_and_si512(v1, nibble), hi1 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), nibble);
      for (std::size_t r = 0; r < R; ++r) {
        const __m512i xl = bcast4(x[r].xq + 8 * t), xh = bcast4(x[r].xq + 8 * t + 4);
        acc0[r] = dpbusd(acc0[r], lo0, xl);
        acc1[r] = dpbusd(acc1[r], lo1, xl);
        acc0[r] = dpbusd(acc0[r], hi0, xh);
        acc1[r] = dpbusd(acc1[r], hi1, xh);
      }
    }
    add_int4_group<R, Bf16>(l, b, g, x, acc0, sum0);
    add_int4_group<R, Bf16>(l, b + 1, g, x, acc1, sum1);
  }
  for (std::size_t r = 0; r < R; ++r) {
    _mm512_storeu_ps(y + r * ldy, sum0[r]);
    _mm512_storeu_ps(y + r * ldy + kLanes, sum1[r]);
  }
}

// Weight-only kernels read the input-major layout (qlayer.h): 16 bytes per input (int8) or per
// pair of inputs (int4), widened to 16 int32 lanes in one instruction.
template <std::size_t R>
void wfloat_int8(const QuantLayer& l, std::size_t b, const float* const* x, float* y, std::size_t ldy) {
  const std::uint8_t* w = l.w.data() + b * l.kq * kLanes;
  // Four accumulators per row (kq is a multiple of 4): one row would otherwise wait on the FMA
  // latency at every input.
  __m512 acc[R][4];
  for (std::size_t r = 0; r < R; ++r)
    for (int i = 0; i < 4; ++i) acc[r][i] = _mm512_setzero_ps();
  for (std::size_t p = 0; p < l.kq; p += 4) {
    prefetch(w + p * kLanes, kPrefetchBytes);
    __m512 wv[4];
    for (int i = 0; i < 4; ++i) {
      wv[i] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(w + (p + i) * kLanes))));
    }
    for (std::size_t r = 0; r < R; ++r)
      for (int i = 0; i < 4; ++i) acc[r][i] = _mm512_fmadd_ps(_mm512_set1_ps(x[r][p + i]), wv[i], acc[r][i]);
  }
  const __m512 scale = _mm512_load_ps(l.scales.data() + b * kLanes);
  for (std::size_t r = 0; r < R; ++r) {
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), _mm512_add_ps(acc[r][2], acc[r][3]));
    _mm512_storeu_ps(y + r * ldy, _mm512_mul_ps(scale, sum));
  }
}

// Blocks b and b + 1 of a weight-only int8 layer against R rows. Each row keeps, per block,
// wfloat_int8's four chains (input p into chain p % 4, summed (0 + 1) + (2 + 3), times the
// scale), so a row gets the same bits as from wfloat_int8 alone; what the pair adds is that one
// broadcast input feeds both blocks. One block at a time spent a broadcast load per FMA and
// held batched weight-only layers at ~0.6 of the FMA rate (below mlpkit's float32 GEMM at batch
// 64); two blocks by 3 rows ran 1.23x faster in cache on one core (a standalone bench). 24
// accumulators: R is at most 3. Prefetches as w8a8_int8_pair does, and 8 KiB ahead in both
// blocks, as wfloat_int8.
template <std::size_t R>
void wfloat_int8_pair(const QuantLayer& l, std::size_t b, const float* const* x, float* y, std::size_t ldy,
                      const std::uint8_t* pf, std::size_t pf_lines) {
  const std::uint8_t* w0 = l.w.data() + b * l.kq * kLanes;
  const std::uint8_t* w1 = w0 + l.kq * kLanes;
  __m512 acc0[R][4], acc1[R][4];
  for (std::size_t r = 0; r < R; ++r)
    for (int i = 0; i < 4; ++i) acc0[r][i] = acc1[r][i] = _mm512_setzero_ps();
  for (std::size_t p = 0; p < l.kq; p += 4) {
    prefetch(w0 + p * kLanes, kPrefetchBytes);
    prefetch(w1 + p * kLanes, kPrefetchBytes);
    if (p / 4 < pf_lines) _mm_prefetch(reinterpret_cast<const char*>(pf + p / 4 * 64), _MM_HINT_T1);
    for (int i = 0; i < 4; ++i) {
      const __m512 v0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(w0 + (p + i) * kLanes))));
      const __m512 v1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(w1 + (p + i) * kLanes))));
      for (std::size_t r = 0; r < R; ++r) {
        const __m512 xv = _mm512_set1_ps(x[r][p + i]);
        acc0[r][i] = _mm512_fmadd_ps(xv, v0, acc0[r][i]);
        acc1[r][i] = _mm512_fmadd_ps(xv, v1, acc1[r][i]);
      }
    }
  }
  const __m512 scale0 = _mm512_load_ps(l.scales.data() + b * kLanes);
  const __m512 scale1 = _mm512_load_ps(l.scales.data() + (b + 1) * kLanes);
  for (std::size_t r = 0; r < R; ++r) {
    const __m512 sum0 = _mm512_add_ps(_mm512_add_ps(acc0[r][0], acc0[r][1]), _mm512_add_ps(acc0[r][2], acc0[r][3]));
    const __m512 sum1 = _mm512_add_ps(_mm512_add_ps(acc1[r][0], acc1[r][1]), _mm512_add_ps(acc1[r][2], acc1[r][3]));
    _mm512_storeu_ps(y + r * ldy, _mm512_mul_ps(scale0, sum0));
    _mm512_storeu_ps(y + r * ldy + kLanes, _mm512_mul_ps(scale1, sum1));
  }
}

// A nibble u becomes the float u - 8 (symmetric) or u (asymmetric, the zero point subtracted as
// a float after: exact, both are small integers) by a 16-entry table lookup, vpermps, which reads
// only the low 4 bits of each lane: the low nibble needs no mask and the high one only a shift.
// Against mask, subtract and convert that is 1-2 instructions per 16 weights instead of 3, and a
// symmetric layer never reads its zero points (4 bytes per output and group, a sixth of a g32
// layer's bytes). Same values as the arithmetic, so the same sums.
template <std::size_t R, bool Symmetric>
void wfloat_int4(const QuantLayer& l, std::size_t b, const float* const* x, float* y, std::size_t ldy) {
  const std::size_t pairs = l.group / 2;
  const std::uint8_t* w = l.w.data() + b * (l.kq / 2) * kLanes;
  const __m512 table = Symmetric ? _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7)
                                 : _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512 sum[R];
  for (std::size_t r = 0; r < R; ++r) sum[r] = _mm512_setzero_ps();
  for (std::size_t g = 0; g < l.groups; ++g) {
    __m512 zero = _mm512_setzero_ps();
    if constexpr (!Symmetric) zero = _mm512_cvtepi32_ps(_mm512_load_si512(l.zeros.data() + l.at(b, g)));
    // Four accumulators per row (two byte-rows per step; a group has an even number of them).
    __m512 part[R][4];
    for (std::size_t r = 0; r < R; ++r)
      for (int i = 0; i < 4; ++i) part[r][i] = _mm512_setzero_ps();
    prefetch(l.scales.data() + l.at(b, g), kPrefetchBytes / (pairs / 2));
    for (std::size_t t = g * pairs; t < (g + 1) * pairs; t += 2) {
      prefetch(w + t * kLanes, kPrefetchBytes);
      __m512 wv[4];
      for (int j = 0; j < 2; ++j) {
        const __m512i v = _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(w + (t + j) * kLanes)));
        wv[2 * j] = _mm512_permutexvar_ps(v, table);
        wv[2 * j + 1] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
        if constexpr (!Symmetric) {
          wv[2 * j] = _mm512_sub_ps(wv[2 * j], zero);
          wv[2 * j + 1] = _mm512_sub_ps(wv[2 * j + 1], zero);
        }
      }
      for (std::size_t r = 0; r < R; ++r)
        for (int i = 0; i < 4; ++i) part[r][i] = _mm512_fmadd_ps(_mm512_set1_ps(x[r][2 * t + i]), wv[i], part[r][i]);
    }
    const __m512 scale = _mm512_load_ps(l.scales.data() + l.at(b, g));
    for (std::size_t r = 0; r < R; ++r) {
      const __m512 total = _mm512_add_ps(_mm512_add_ps(part[r][0], part[r][1]), _mm512_add_ps(part[r][2], part[r][3]));
      sum[r] = _mm512_fmadd_ps(scale, total, sum[r]);
    }
  }
  for (std::size_t r = 0; r < R; ++r) _mm512_storeu_ps(y + r * ldy, sum[r]);
}

template <class Rows, class Fn1, class Fn2, class Fn3, class Fn4>
void by_rows(std::size_t count, Rows rows, float* y, std::size_t ldy, Fn1 f1, Fn2 f2, Fn3 f3, Fn4 f4) {
  std::size_t r = 0;
  for (; r + kRows <= count; r += kRows) f4(rows + r, y + r * ldy);
  switch (count - r) {
    case 3: f3(rows + r, y + r * ldy); break;
    case 2: f2(rows + r, y + r * ldy); break;
    case 1: f1(rows + r, y + r * ldy); break;
    default: break;
  }
}

void w8a8_block(const QuantLayer& l, std::size_t b, const QuantRow* rows, std::size_t count, float* y,
                std::size_t ldy) {
  if (l.format == Format::Int8) {
    by_rows(count, rows, y, ldy, [&](const QuantRow* x, float* o) { w8a8_int8<1>(l, b, x, o, ldy); },
            [&](const QuantRow* x, float* o) { w8a8_int8<2>(l, b, x, o, ldy); },
            [&](const QuantRow* x, float* o) { w8a8_int8<3>(l, b, x, o, ldy); },
            [&](const QuantRow* x, float* o) { w8a8_int8<4>(l, b, x, o, ldy); });
  } else if (l.bf16_scales) {
    by_rows(count, rows, y, ldy, [&](const QuantRow* x, float* o) { w8a8_int4<1, true>(l, b, x, o, ldy); },
            [&](const QuantRow* x, float* o) { w8a8_int4<2, true>(l, b, x, o, ldy); },
            [&](const QuantRow* x, float* o) { w8a8_int4<3, true>(l, b, x, o, ldy); },
            [&](const QuantRow* x, float* o) { w8a8_int4<4, true>(l, b, x, o, ldy); });
  } else {
    by_rows(count, rows, y, ldy, [&](const QuantRow* x, float* o) { w8a8_int4<1, false>(l, b, x, o, ldy); },
            [&](const QuantRow* x, float* o) { w8a8_int4<2, false>(l, b, x, o, ldy); },
            [&](const QuantRow* x, float* o) { w8a8_int4<3, false>(l, b, x, o, ldy); },
            [&](const QuantRow* x, float* o) { w8a8_int4<4, false>(l, b, x, o, ldy); });
  }
}

void w8a8_pair_block(const QuantLayer& l, std::size_t b, const QuantRow* rows, std::size_t count, float* y,
                     std::size_t ldy, const std::uint8_t* pf, std::size_t pf_lines) {
  // The int4 kernel takes 4 rows a pass: the lines to prefetch are shared out over the passes.
  const std::size_t per_pass = l.format == Format::Int8 ? 8 : 4;
  const std::size_t passes = std::max<std::size_t>(1, (count + per_pass - 1) / per_pass);
  const std::size_t lines = (pf_lines + passes - 1) / passes;
  auto share = [&](std::size_t r) {
    const std::size_t first = std::min(pf_lines, r / per_pass * lines);
    return std::make_pair(pf + first * 64, std::min(lines, pf_lines - first));
  };
  if (l.format == Format::Int8) {
    in_passes<8>(count, [&](std::size_t r, auto n) {
      const auto [p, np] = share(r);
      w8a8_int8_pair<decltype(n)::value>(l, b, rows + r, y + r * ldy, ldy, p, np);
    });
  } else if (l.bf16_scales) {
    in_passes<4>(count, [&](std::size_t r, auto n) {
      const auto [p, np] = share(r);
      w8a8_int4_pair<decltype(n)::value, true>(l, b, rows + r, y + r * ldy, ldy, p, np);
    });
  } else {
    in_passes<4>(count, [&](std::size_t r, auto n) {
      const auto [p, np] = share(r);
      w8a8_int4_pair<decltype(n)::value, false>(l, b, rows + r, y + r * ldy, ldy, p, np);
    });
  }
}

void wfloat_block(const QuantLayer& l, std::size_t b, const float* const* x, std::size_t count, float* y,
                  std::size_t ldy) {
  if (l.format == Format::Int8) {
    by_rows(count, x, y, ldy, [&](const float* const* r, float* o) { wfloat_int8<1>(l, b, r, o, ldy); },
            [&](const float* const* r, float* o) { wfloat_int8<2>(l, b, r, o, ldy); },
            [&](const float* const* r, float* o) { wfloat_int8<3>(l, b, r, o, ldy); },
            [&](const float* const* r, float* o) { wfloat_int8<4>(l, b, r, o, ldy); });
  } else if (l.symmetric) {
    by_rows(count, x, y, ldy, [&](const float* const* r, float* o) { wfloat_int4<1, true>(l, b, r, o, ldy); },
            [&](const float* const* r, float* o) { wfloat_int4<2, true>(l, b, r, o, ldy); },
            [&](const float* const* r, float* o) { wfloat_int4<3, true>(l, b, r, o, ldy); },
            [&](const float* const* r, float* o) { wfloat_int4<4, true>(l, b, r, o, ldy); });
  } else {
    by_rows(count, x, y, ldy, [&](const float* const* r, float* o) { wfloat_int4<1, false>(l, b, r, o, ldy); },
            [&](const float* const* r, float* o) { wfloat_int4<2, false>(l, b, r, o, ldy); },
            [&](const float* const* r, float* o) { wfloat_int4<3, false>(l, b, r, o, ldy); },
            [&](const float* const* r, float* o) { wfloat_int4<4, false>(l, b, r, o, ldy); });
  }
}

// Weight-only pairs: int8 only (an int4 layer's per-group sums would not fit 3 rows of two
// blocks in the 32 registers); qmodel.cpp asks for them only for int8 layers. Passes of 3 rows
// and 2, never a lone row after others (7 rows: 3 + 2 + 2), since each pass converts the pair's
// codes again; 4 rows run as one 4-row pass per block (the same bits), which measured faster
// than two passes of 2 or 3 + 1.
void wfloat_pair_block(const QuantLayer& l, std::size_t b, const float* const* x, std::size_t count, float* y,
                       std::size_t ldy, const std::uint8_t* pf, std::size_t pf_lines) {
  if (count == 0) return;
  if (count == 4) {
    wfloat_int8<4>(l, b, x, y, ldy);
    wfloat_int8<4>(l, b + 1, x, y + kLanes, ldy);
    return;
  }
  const std::size_t passes = std::max<std::size_t>(1, (count + 2) / 3);
  const std::size_t lines = (pf_lines + passes - 1) / passes;
  std::size_t r = 0;
  for (std::size_t pass = 0; pass < passes; ++pass) {
    // The first count % passes passes take one row more than the others.
    const std::size_t n = count / passes + (pass < count % passes ? 1 : 0);
    const std::size_t first = std::min(pf_lines, pass * lines);
    const std::uint8_t* p = pf + first * 64;
    const std::size_t np = std::min(lines, pf_lines - first);
    switch (n) {
      case 3: wfloat_int8_pair<3>(l, b, x + r, y + r * ldy, ldy, p, np); break;
      case 2: wfloat_int8_pair<2>(l, b, x + r, y + r * ldy, ldy, p, np); break;
      default: wfloat_int8_pair<1>(l, b, x + r, y + r * ldy, ldy, p, np); break;
    }
    r += n;
  }
}

constexpr QuantKernels kVnni = {"avx512vnni", w8a8_block, wfloat_block, w8a8_pair_block, quantize_row, wfloat_pair_block};

}  // namespace

const QuantKernels& quant_vnni_kernels() { return kVnni; }

}  // namespace mlpkit::quant
#endif
