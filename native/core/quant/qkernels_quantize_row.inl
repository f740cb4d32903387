// W8A8's input quantisation of one row, exactly as lib/quant/format.ts, for the quantised kernel
// files of every ISA. Include only inside a kernel file's anonymous namespace (as
// qkernels_passes.inl): each file compiles its own copy with its own flags, so the compiler
// vectorises it for that ISA (16 lanes under AVX-512, 4 at x86-64's SSE2 baseline), and every
// copy gives the same bits: a max is exact, the division is one correctly rounded operation in
// any vector width, and the build never contracts (-ffp-contract=off). At the baseline the
// scalar max it replaced took ~40% of a batch-64 4096 -> 1024 int8 layer.

// The largest |x[p]| of a row, or false when the row holds a NaN or an infinity. On the bit
// patterns with the sign cleared: for non-negative floats integer order is float order, and every
// infinity and NaN pattern lies above every finite one, so one integer max answers both. (int32,
// not uint32: with the sign bit clear both orders agree, and SSE2 has only a signed compare.)
inline bool row_absmax(const float* x, std::size_t n, float& amax) {
  constexpr std::int32_t kAbs = 0x7fffffff, kInf = 0x7f800000;
  // A plain integer max reduction: the compiler vectorises it (integer max is associative) and
  // keeps the lanes in registers. (A local array of lanes came out as aligned vector stores to
  // the stack, which ASan's detect_stack_use_after_return, whose fake frames are less aligned,
  // turned into a fault.)
  std::int32_t m = 0;
  for (std::size_t p = 0; p < n; ++p) {
    std::int32_t u;
    std::memcpy(&u, x + p, 4);
    m = std::max(m, u & kAbs);
  }
  if (m >= kInf) return false;
  std::memcpy(&amax, &m, 4);
  return true;
}

// Round half to even for |v| < 2^22, in the default rounding mode, as std::nearbyint: adding
// 1.5 * 2^23 leaves no fraction bits, so the addition itself rounds. Unlike nearbyint, a libm
// call, it is two adds and vectorises.
inline float round_half_even_small(float v) {
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  return (v + kShift) - kShift;
}

// Quantises x[0, l.k) into q (int8), u (q + 128) and s (the sum of q over each group), and
// returns the row's scale sx; NaN when the row is not finite (format.ts: the row's outputs are
// NaN). Writes all of q and u up to l.kq and all l.groups sums: the padding past l.k, and the
// whole row when it is all zeros or not finite, get code 0 (u = 128; sums 0).
float quantize_row(const QuantLayer& l, const float* x, std::int8_t* q, std::uint8_t* u, std::int32_t* s) {
  float amax = 0;
  const bool finite = row_absmax(x, l.k, amax);
  const float sx = finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
  const std::size_t coded = finite && sx > 0 ? l.k : 0;  // inputs that get a code of their own
  for (std::size_t g = 0; g < l.groups; ++g) {
    const std::size_t p1 = std::min(coded, (g + 1) * l.group);
    std::int32_t sum = 0;
    for (std::size_t p = g * l.group; p < p1; ++p) {
      // |x[p] / sx| <= 127 (plus rounding), well inside round_half_even_small's range.
      const float v = std::clamp(round_half_even_small(x[p] / sx), -127.0f, 127.0f);
      const int qi = static_cast<int>(v);
      q[p] = static_cast<std::int8_t>(qi);
      u[p] = static_cast<std::uint8_t>(qi + 128);
      sum += qi;
    }
    s[g] = sum;
  }
  std::memset(q + coded, 0, l.kq - coded);
  std::memset(u + coded, 128, l.kq - coded);
  return sx;
}
