// The scale search's inner loop, included into an anonymous namespace twice: by quantize.cpp
// (baseline flags) and by quantize_avx2.cpp (-mavx2), each copy private to its file so the
// linker never swaps one for the other. Neither build contracts a * b + c (-ffp-contract=off),
// so both give the bits of lib/quant/quantize.ts.

constexpr double kRoundingShift = 6755399441055744.0;  // 1.5 * 2^52: rounding.ts ROUNDING_SHIFT

// clamp for a value that cannot be NaN, in the form x86's minpd / maxpd compute (clamp's own
// form, which sends NaN to lo, compiles to compare-and-blend: 3x the instructions). group_errors
// runs it 5 (symmetric) or 10 (asymmetric) times per weight; its v * inv is finite (1 / a bfloat16 denormal is < 2^134).
inline double clamp_min_max(double v, double lo, double hi) {
  const double t = lo > v ? lo : v;
  return t < hi ? t : hi;
}

constexpr std::size_t kMaxCandidates = 10;  // asymmetric: 5 ranges x 2 anchors
constexpr std::size_t kMaxGroup = 128;

// quantize.ts groupError for `count` candidates (scale s[c], zero point z[c]) of row[0, len):
// e[c], each summed in element order as there. groupError stops summing once its sum reaches
// the best error so far, and that candidate then loses. This sums on: the terms are
// non-negative and rounded addition is monotone, so such a sum stays at or above that limit and
// loses the same comparison, while every sum that did not stop is the same double. Summing
// every candidate whole lets the per-element terms vectorise and the candidates' sums run as
// independent chains (the float64 arithmetic JS prescribes, ~10 operations per weight and
// candidate, is most of the int4 time).
//
// The group's length (32, 64 or 128; 0: a shorter last group, length len) and the number of
// candidates (Count: 5 symmetric, 10 asymmetric; unused slots repeat candidate 0 and are
// dropped) are template arguments, so the loops have fixed trip counts and unroll: one Zen 1
// core quantised a 4096 x 4096 layer to int4 g32 in 0.24 s instead of 0.31 s (asymmetric 0.38
// instead of 0.47 s, with asymmetric_codes).
template <std::size_t Len, std::size_t Count>
void group_errors_sized(const float* row, std::size_t len, const double* s, const double* z, double qmin, double qmax, double* e) {
  const std::size_t n = Len != 0 ? Len : len;
  double d2[Count][Len != 0 ? Len : kMaxGroup];
  for (std::size_t c = 0; c < Count; ++c) {
    const double sc = s[c], zc = z[c], inv = 1 / sc;
    for (std::size_t i = 0; i < n; ++i) {
      const double v = row[i];
      const double d = v - sc * (clamp_min_max(v * inv + kRoundingShift - kRoundingShift + zc, qmin, qmax) - zc);
      d2[c][i] = d * d;
    }
  }
  for (std::size_t c = 0; c < Count; ++c) e[c] = 0;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t c = 0; c < Count; ++c) e[c] += d2[c][i];
  }
}

template <std::size_t Count>
void group_errors_padded(const float* row, std::size_t len, const double* s, const double* z, std::size_t count, double qmin,
                         double qmax, double* e) {
  double sp[Count], zp[Count], ep[Count];
  for (std::size_t c = 0; c < Count; ++c) {
    sp[c] = s[c < count ? c : 0];
    zp[c] = z[c < count ? c : 0];
  }
  switch (len) {
    case 32: group_errors_sized<32, Count>(row, len, sp, zp, qmin, qmax, ep); break;
    case 64: group_errors_sized<64, Count>(row, len, sp, zp, qmin, qmax, ep); break;
    case 128: group_errors_sized<128, Count>(row, len, sp, zp, qmin, qmax, ep); break;
    default: group_errors_sized<0, Count>(row, len, sp, zp, qmin, qmax, ep); break;
  }
  for (std::size_t c = 0; c < count; ++c) e[c] = ep[c];
}

// e[0, count) for count <= kMaxCandidates candidates of one group of len <= kMaxGroup weights.
inline void group_errors_of(const float* row, std::size_t len, const double* s, const double* z, std::size_t count,
                            double qmin, double qmax, double* e) {
  if (count <= 5) return group_errors_padded<5>(row, len, s, z, count, qmin, qmax, e);
  return group_errors_padded<kMaxCandidates>(row, len, s, z, count, qmin, qmax, e);
}
