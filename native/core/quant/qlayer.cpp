#include "core/quant/qlayer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/parallel.h"

// SSE2 is part of x86-64; other targets take the plain loops.
#if defined(__SSE2__) && defined(__x86_64__)
#define MLPKIT_QLAYER_SSE2 1
#include <emmintrin.h>
#endif

// The int4 repack reads four packed bytes as one word, low byte first.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mlpkit's int4 repack assumes a little-endian target"
#endif

namespace mlpkit::quant {
namespace {

std::size_t round_up(std::size_t a, std::size_t m) { return (a + m - 1) / m * m; }

std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// dst[c * kLanes + o] = src[o * stride + c] for o < rows, c < cols: a block's rows turned
// input-major (the weight-only layout, qlayer.h). Inputs outer, the block's outputs inner: each
// row is read in order and each input's 16 bytes are written together. (Outputs outer wrote
// every 16th byte of the block, in 16 passes over it: ~0.25 s of a 67 MB int8 layer's load.)
// A full block goes 16 inputs at a time through transpose_16x16 where SSE2 is there (every
// x86-64): byte by byte, the transpose was half of a weight-only layer's repack.
#if defined(MLPKIT_QLAYER_SSE2)
// 16 rows of 16 bytes in, their 16 columns out (dst[c * 16 + o] = src[o * stride + c]): four
// rounds of interleaving, bytes, then pairs, quads and octets of rows.
void transpose_16x16(const std::uint8_t* src, std::size_t stride, std::uint8_t* dst) {
  __m128i a[16], b[16];
  for (int o = 0; o < 16; ++o) a[o] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + o * stride));
  // b[2i + h]: rows 2i, 2i + 1, columns 8h .. 8h + 7.
  for (int i = 0; i < 8; ++i) {
    b[2 * i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
    b[2 * i + 1] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
  }
  // a[4j + q]: rows 4j .. 4j + 3, columns 4q .. 4q + 3.
  for (int j = 0; j < 4; ++j)
    for (int h = 0; h < 2; ++h) {
      a[4 * j + 2 * h] = _mm_unpacklo_epi16(b[4 * j + h], b[4 * j + 2 + h]);
      a[4 * j + 2 * h + 1] = _mm_unpackhi_epi16(b[4 * j + h], b[4 * j + 2 + h]);
    }
  // b[8m + s]: rows 8m .. 8m + 7, columns 2s and 2s + 1.
  for (int m = 0; m < 2; ++m)
    for (int q = 0; q < 4; ++q) {
      b[8 * m + 2 * q] = _mm_unpacklo_epi32(a[8 * m + q], a[8 * m + 4 + q]);
      b[8 * m + 2 * q + 1] = _mm_unpackhi_epi32(a[8 * m + q], a[8 * m + 4 + q]);
    }
  for (int s = 0; s < 8; ++s) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * s) * 16), _mm_unpacklo_epi64(b[s], b[8 + s]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * s + 1) * 16), _mm_unpackhi_epi64(b[s], b[8 + s]));
  }
}
#endif

// Sum of a row's int8 codes. SSE2 has no signed byte sum, so the bytes are flipped to
// unsigned (+128) and summed by psadbw, 16 at a time; the sum the compiler made of the plain
// loop (sign extensions, then adds) was most of an int8 W8A8 layer's repack.
std::int32_t row_sum(const std::int8_t* row, std::size_t k) {
  std::size_t p = 0;
  std::int64_t sum = 0;
#if defined(MLPKIT_QLAYER_SSE2)
  const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));
  __m128i acc = _mm_setzero_si128();
  for (; p + 16 <= k; p += 16) {
    const __m128i u = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + p)), flip);
    acc = _mm_add_epi64(acc, _mm_sad_epu8(u, _mm_setzero_si128()));
  }
  sum = _mm_cvtsi128_si64(acc) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc)) - 128 * static_cast<std::int64_t>(p);
#endif
  for (; p < k; ++p) sum += row[p];
  return static_cast<std::int32_t>(sum);
}

void transpose_block(const std::uint8_t* src, std::size_t stride, std::size_t rows, std::size_t cols,
                     std::uint8_t* dst) {
  static_assert(kLanes == 16, "transpose_16x16 fills blocks of 16 outputs");
  std::size_t c = 0;
  if (rows == kLanes) {
#if defined(MLPKIT_QLAYER_SSE2)
    for (; c + 16 <= cols; c += 16) transpose_16x16(src + c, stride, dst + c * kLanes);
#endif
    for (; c < cols; ++c)
      for (std::size_t o = 0; o < kLanes; ++o) dst[c * kLanes + o] = src[o * stride + c];
  } else {
    for (; c < cols; ++c)
      for (std::size_t o = 0; o < rows; ++o) dst[c * kLanes + o] = src[o * stride + c];
  }
}

// int4 W8A8 step word: the source word holds inputs 0..7 as nibbles 0..7 (low byte first), the
// kernels want (0,4) (1,5) (2,6) (3,7) in its bytes, i.e. nibbles 0 4 1 5 2 6 3 7: a perfect
// shuffle, done as two swaps inside the word (bytes 1 and 2, then nibbles 1-2 and 5-6).
std::uint32_t interleave_nibbles(std::uint32_t x) {
  x = (x & 0xff0000ffu) | ((x >> 8) & 0x0000ff00u) | ((x << 8) & 0x00ff0000u);
  return (x & 0xf00ff00fu) | ((x >> 4) & 0x00f000f0u) | ((x << 4) & 0x0f000f00u);
}

#if defined(MLPKIT_QLAYER_SSE2)
__m128i interleave_nibbles(__m128i x) {
  const auto mask = [](std::uint32_t m) { return _mm_set1_epi32(static_cast<int>(m)); };
  x = _mm_or_si128(_mm_and_si128(x, mask(0xff0000ffu)),
                   _mm_or_si128(_mm_and_si128(_mm_srli_epi32(x, 8), mask(0x0000ff00u)),
                                _mm_and_si128(_mm_slli_epi32(x, 8), mask(0x00ff0000u))));
  return _mm_or_si128(_mm_and_si128(x, mask(0xf00ff00fu)),
                      _mm_or_si128(_mm_and_si128(_mm_srli_epi32(x, 4), mask(0x00f000f0u)),
                                   _mm_and_si128(_mm_slli_epi32(x, 4), mask(0x0f000f00u))));
}
#endif

// The W8A8 layout (qlayer.h): step t of a block holds word t (4 bytes) of each of its 16 rows,
// dst[t * 64 + o * 4 ..] = src[o * stride + 4t ..] for t < words, with int4 words' nibbles
// interleaved on the way. Row by row, a 4-byte copy to every 64th byte was most of a W8A8
// layer's repack; with SSE2, 4 rows x 4 words go as one 4 x 4 transpose of words.
template <bool kInt4>
void rows_to_steps(const std::uint8_t* src, std::size_t stride, std::size_t rows, std::size_t words,
                   std::uint8_t* dst) {
  std::size_t t = 0;
#if defined(MLPKIT_QLAYER_SSE2)
  if (rows == kLanes) {
    for (; t + 4 <= words; t += 4)
      for (std::size_t g = 0; g < kLanes; g += 4) {
        __m128i r[4];
        for (std::size_t i = 0; i < 4; ++i) {
          r[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (g + i) * stride + 4 * t));
          if constexpr (kInt4) r[i] = interleave_nibbles(r[i]);
        }
        const __m128i lo01 = _mm_unpacklo_epi32(r[0], r[1]), lo23 = _mm_unpacklo_epi32(r[2], r[3]);
        const __m128i hi01 = _mm_unpackhi_epi32(r[0], r[1]), hi23 = _mm_unpackhi_epi32(r[2], r[3]);
        std::uint8_t* out = dst + t * 64 + g * 4;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi64(lo01, lo23));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 64), _mm_unpackhi_epi64(lo01, lo23));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 128), _mm_unpacklo_epi64(hi01, hi23));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 192), _mm_unpackhi_epi64(hi01, hi23));
      }
  }
#endif
  for (std::size_t o = 0; o < rows; ++o)
    for (std::size_t u = t; u < words; ++u) {
      std::uint32_t x;
      std::memcpy(&x, src + o * stride + 4 * u, 4);
      if constexpr (kInt4) x = interleave_nibbles(x);
      std::memcpy(dst + u * 64 + o * 4, &x, 4);
    }
}

// A layer's blocks, on the pool when the layer is large enough to repay waking it: below
// kParallelRepackBytes of packed weights (a 724 x 724 int8 layer) the calling thread does them
// all. On the pool, a 256 x 256 qmatmul spent most of its ~22 us handing the blocks over; in
// one process with the pool build, qmatmul at 512 x 512 int8 took 26.6 us serial against
// 36.4 us, and at 1024 x 1024 (1 MB) 199 us serial against 96-102 us.
constexpr std::size_t kParallelRepackBytes = std::size_t(512) << 10;

template <class Task>
void for_blocks(std::size_t blocks, std::size_t packed_bytes, Task&& task) {
  if (packed_bytes < kParallelRepackBytes) {
    for (std::size_t b = 0; b < blocks; ++b) task(b);
  } else {
    parallel_for(blocks, task);
  }
}

// The buffers recycle_layer keeps, one pool per buffer type, shared by every thread (a model
// may be freed on any) under one lock, which also guards the bytes kept over all pools.
template <class V>
struct Pool {
  std::vector<V> kept;
};

// Never destroyed: a model freed during the process's exit (a finalizer) still finds them.
template <class V>
Pool<V>& pool_of() {
  static Pool<V>* const pool = new Pool<V>;
  return *pool;
}

struct PoolLock {
  std::mutex mutex;
  std::size_t kept_bytes = 0;  // over every pool
};

PoolLock& pool_lock() {
  static PoolLock* const lock = new PoolLock;
  return *lock;
}

template <class V>
std::size_t bytes_of(const V& v) {
  return v.capacity() * sizeof(typename V::value_type);
}

// An empty vector holding the smallest kept buffer of capacity [n, 2n] elements, or none.
template <class V>
V take(std::size_t n) {
  V v;
  if (n * sizeof(typename V::value_type) > kRecycledBytes) return v;
  Pool<V>& pool = pool_of<V>();
  PoolLock& lock = pool_lock();
  std::lock_guard<std::mutex> guard(lock.mutex);
  std::size_t best = pool.kept.size();
  for (std::size_t i = 0; i < pool.kept.size(); ++i) {
    const std::size_t c = pool.kept[i].capacity();
    if (c >= n && c <= 2 * n && (best == pool.kept.size() || c < pool.kept[best].capacity())) best = i;
  }
  if (best < pool.kept.size()) {
    v = std::move(pool.kept[best]);
    pool.kept.erase(pool.kept.begin() + static_cast<std::ptrdiff_t>(best));
    lock.kept_bytes -= bytes_of(v);
  }
  return v;
}

template <class V>
void give(V&& v) {
  const std::size_t bytes = bytes_of(v);
  if (bytes == 0 || bytes > kRecycledBytes) return;
  v.clear();
  Pool<V>& pool = pool_of<V>();
  PoolLock& lock = pool_lock();
  std::lock_guard<std::mutex> guard(lock.mutex);
  if (pool.kept.size() < kRecycledBuffers) {
    if (lock.kept_bytes + bytes > kRecycledTotalBytes) return;
    pool.kept.push_back(std::move(v));
    lock.kept_bytes += bytes;
    return;
  }
  // Full: the new buffer replaces the smallest kept one when it is larger (the smaller is freed
  // as v goes out of scope).
  auto smallest = std::min_element(pool.kept.begin(), pool.kept.end(),
                                   [](const V& x, const V& y) { return x.capacity() < y.capacity(); });
  const std::size_t out = bytes_of(*smallest);
  if (out < bytes && lock.kept_bytes - out + bytes <= kRecycledTotalBytes) {
    std::swap(*smallest, v);
    lock.kept_bytes = lock.kept_bytes - out + bytes;
  }
}

// The packed weights: resized without writing (the repack clears and writes every block).
UninitVector<std::uint8_t> weights_of(std::size_t bytes) {
  UninitVector<std::uint8_t> w = take<UninitVector<std::uint8_t>>(bytes);
  w.resize(bytes);
  return w;
}

}  // namespace

void recycle_layer(QuantLayer&& l) {
  give(std::move(l.w));
  give(std::move(l.scales));
  give(std::move(l.scales16));
  give(std::move(l.zeros));
}

std::size_t recycled_bytes() {
  PoolLock& lock = pool_lock();
  std::lock_guard<std::mutex> guard(lock.mutex);
  return lock.kept_bytes;
}

float QuantLayer::scale(std::size_t i) const {
  if (!bf16_scales) return scales[i];
  const std::uint32_t u = static_cast<std::uint32_t>(scales16[i]) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

QuantLayer repack(const QuantLayerSource& s, bool input_major) {
  if (s.inputs == 0 || s.outputs == 0) throw std::invalid_argument("a quantised layer needs inputs and outputs > 0");
  QuantLayer l;
  l.k = s.inputs;
  l.n = s.outputs;
  l.format = s.format;
  l.input_major = input_major;
  l.activation = s.activation;
  l.alpha = s.alpha;
  l.blocks = (l.n + kLanes - 1) / kLanes;
  const std::size_t np = l.blocks * kLanes;
  if (s.format == Format::Int8) {
    if (s.group != s.inputs) throw std::invalid_argument("int8 layers have one group per row (groupSize == inputs)");
    l.kq = round_up(l.k, 4);
    l.group = l.kq;
    l.groups = 1;
  } else {
    if (s.group != 32 && s.group != 64 && s.group != 128) {
      throw std::invalid_argument("int4 groupSize must be 32, 64 or 128, got " + std::to_string(s.group));
    }
    l.group = s.group;
    l.symmetric = s.symmetric;
    l.kq = round_up(l.k, l.group);
    l.groups = l.kq / l.group;
  }
  if (s.input_scales) {
    l.input_scales.assign(s.input_scales, s.input_scales + l.k);
    for (const float v : l.input_scales) {
      if (!(v > 0) || !std::isfinite(v)) throw std::invalid_argument("input scales must be finite and > 0");
    }
  }
  const std::size_t G = l.groups;
  // Every value is checked before anything is written, so the packing below cannot throw and
  // runs one block of outputs per task. (Checked inside a serial scatter, the scales were a fifth
  // of a 4096 x 4096 int4 W4A8 layer's repack.) bf16 scales (qlayer.h) are chosen in the same
  // pass.
  const std::size_t count = l.n * G;
  bool scales_ok = true;
  bool bf16_exact = true;
  for (std::size_t i = 0; i < count; ++i) {
    const float sc = s.scales[i];
    scales_ok &= (sc >= 0.0f) & (sc <= std::numeric_limits<float>::max());
    bf16_exact &= (bits_of(sc) & 0xffffu) == 0;
  }
  if (!scales_ok) throw std::invalid_argument("scales must be finite and >= 0");
  const bool own_zeros = s.format == Format::Int4 && !s.symmetric && s.zeros;
  if (own_zeros) {
    bool zeros_ok = true;
    for (std::size_t i = 0; i < count; ++i) zeros_ok &= s.zeros[i] <= 15;
    if (!zeros_ok) throw std::invalid_argument("int4 zero points must be in [0, 15]");
  }
  // -128 would break the int8 kernels' sign tricks: one memchr here rather than a check inside
  // the scatter (a 4096 x 16384 layer: ~0.5 s on one thread that way).
  if (s.format == Format::Int8 && std::memchr(s.weights, 0x80, l.n * l.k) != nullptr) {
    throw std::invalid_argument("int8 weights must be in [-127, 127]");
  }
  l.bf16_scales = s.format == Format::Int4 && !input_major && bf16_exact;
  if (l.bf16_scales) {
    l.scales16 = take<AlignedVector<std::uint16_t>>(G * np);
    l.scales16.resize(G * np);
  } else {
    l.scales = take<AlignedVector<float>>(G * np);
    l.scales.resize(G * np);
  }
  l.zeros = take<AlignedVector<std::int32_t>>(G * np);
  l.zeros.resize(G * np);
  l.bias.assign(np, 0.0f);
  if (s.bias) std::copy(s.bias, s.bias + l.n, l.bias.begin());
  // int8 has no zero points; symmetric int4's is 8; asymmetric int4 without any reads 0.
  const std::int32_t fixed_zero = s.format == Format::Int4 && s.symmetric ? 8 : 0;
  float* const scales32 = l.scales.data();
  std::uint16_t* const scales16 = l.scales16.data();
  std::int32_t* const zeros = l.zeros.data();
  const bool bf16 = l.bf16_scales;
  const std::size_t packed_bytes = s.format == Format::Int8 ? np * l.kq : np * l.kq / 2;
  for_blocks(l.blocks, packed_bytes, [&](std::size_t b) {
    const std::size_t rows = std::min(kLanes, l.n - b * kLanes);
    const std::size_t first = l.at(b, 0);
    // Outputs past n (a partial block's last lanes) keep the 0 scale and zero point that
    // resize gave them (a kept buffer comes back empty, so resize value-initialises it whole).
    // Row by row, so the source is read in order; a block's G x 16 entries stay in L1.
    for (std::size_t o = 0; o < rows; ++o) {
      const std::size_t j = b * kLanes + o;
      const float* row = s.scales + j * G;
      if (bf16) {
        for (std::size_t g = 0; g < G; ++g) scales16[first + g * kLanes + o] = static_cast<std::uint16_t>(bits_of(row[g]) >> 16);
      } else {
        for (std::size_t g = 0; g < G; ++g) scales32[first + g * kLanes + o] = row[g];
      }
      if (own_zeros) {
        for (std::size_t g = 0; g < G; ++g) zeros[first + g * kLanes + o] = s.zeros[j * G + g];
      } else {
        for (std::size_t g = 0; g < G; ++g) zeros[first + g * kLanes + o] = fixed_zero;
      }
    }
  });
  if (s.format == Format::Int8) {
    // Block b, step t (inputs 4t..4t+3), output o, byte i at ((b * steps + t) * 16 + o) * 4 + i.
    const std::size_t steps = l.kq / 4;
    l.w = weights_of(l.blocks * steps * 64);
    // The row sums are W8A8's (the VNNI kernels' u8 x s8 compensation); weight-only has none.
    if (!input_major) l.wsum.assign(np, 0);
    const auto* src = reinterpret_cast<const std::int8_t*>(s.weights);
    for_blocks(l.blocks, packed_bytes, [&](std::size_t b) {
      const std::size_t rows = std::min(kLanes, l.n - b * kLanes);
      // Padding (inputs past k, outputs past n) is zero. A full block's writes below cover every
      // byte before its padding inputs, which sit at the block's end in both layouts (input-major
      // from input k on, the other from the step holding input k), so only that tail is cleared
      // first; a partial block is cleared whole. (Clearing every block whole wrote each byte
      // twice.)
      const std::size_t tail = rows < kLanes ? 0 : input_major ? l.k * kLanes : l.k / 4 * 64;
      std::memset(l.w.data() + b * steps * 64 + tail, 0, steps * 64 - tail);
      const auto* block = reinterpret_cast<const std::uint8_t*>(src + b * kLanes * l.k);
      std::uint8_t* dst = l.w.data() + b * steps * 64;
      if (input_major) {
        transpose_block(block, l.k, rows, l.k, dst);
        return;
      }
      // Four consecutive inputs of one output are four consecutive bytes here: whole words,
      // then the inputs past the last whole word byte by byte.
      rows_to_steps<false>(block, l.k, rows, l.k / 4, dst);
      for (std::size_t o = 0; o < rows; ++o) {
        const std::size_t j = b * kLanes + o;
        const std::int8_t* row = src + j * l.k;
        l.wsum[j] = row_sum(row, l.k);
        for (std::size_t p = l.k / 4 * 4; p < l.k; ++p) dst[(p / 4) * 64 + o * 4 + p % 4] = static_cast<std::uint8_t>(row[p]);
      }
    });
  } else {
    // Block b, step t (inputs 8t..8t+7), output o, byte i: low nibble input 8t + i, high nibble
    // input 8t + 4 + i. The source packs input 2c in the low nibble of byte c, 2c + 1 in the high.
    const std::size_t steps = l.kq / 8;
    const std::size_t row_bytes = l.kq / 2;
    l.w = weights_of(l.blocks * steps * 64);
    // One block of outputs per task, as int8 (a block's bytes are its own).
    for_blocks(l.blocks, packed_bytes, [&](std::size_t b) {
      const std::size_t rows = std::min(kLanes, l.n - b * kLanes);
      // A full block's bytes are all written below (its padding nibbles come from the source).
      if (rows < kLanes) std::memset(l.w.data() + b * steps * 64, 0, steps * 64);
      if (input_major) {
        transpose_block(s.weights + b * kLanes * row_bytes, row_bytes, rows, row_bytes, l.w.data() + b * row_bytes * kLanes);
        return;
      }
      rows_to_steps<true>(s.weights + b * kLanes * row_bytes, row_bytes, rows, steps, l.w.data() + b * steps * 64);
    });
  }
  return l;
}

}  // namespace mlpkit::quant
