// Tests of the quantised kernel tables (core/quant/qkernels.h) on their own: no Node, no
// framework. Runs the table quant_kernels() chose and every table below it that this machine
// can run (x86: avx512vnni, avx2, scalar; arm64: neon-dotprod, neon, scalar), all on the same
// layers, each checked against a reference computed here from the file layout (row-major codes,
// low nibble first: lib/quant/format.ts), never from the repacked blocks the kernels read:
//  - W8A8 bit for bit (NaN matches NaN): exact integer sums, then the float32 steps of format.ts
//    in their order, which is what makes every table agree with the scalar one;
//  - weight-only within the float32 bound of its sum: (kq + groups + 2) u sum |terms|.
// Shapes: 1 to 3 blocks of 16 outputs with a partial last one, k not a multiple of 4 nor of the
// group, every group size, symmetric and asymmetric, 1 to 9 rows per call (a model passes at most
// 4; a kernel takes any count), and ldy > 16 with sentinels between rows, which must survive.
// Values: random codes; every product +-127 x +-127 with one sign (the int16 pair sums of the
// ARMv8.0 and AVX2 kernels at their limit); nibbles 15 against zero point 0 and 0 against 15; an
// int8 row of 133144 inputs, the most W8A8 allows, summing to 4071 below 2^31; zero rows (sx = 0)
// and non-finite rows (sx = NaN, codes 0), as the model's quantiser leaves them. quantize_row,
// W8A8's input quantisation, bit for bit against format.ts's rule on rows of every kind.
//
// MLPKIT_EXPECT_QUANT_TABLE=<name> fails the run unless quant_kernels() chose that table
// (scripts/test-neon.sh: the sdot table on a dotprod CPU, the ARMv8.0 one on a core without).
// Exit status 0 = all passed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/quant/qkernels.h"
#include "core/quant/qlayer.h"

namespace q = mlpkit::quant;

namespace {

constexpr double kU = 1.0 / 16777216.0;  // 2^-24: float32 unit roundoff
constexpr std::uint32_t kSentinel = 0x7fc5a5a5u;
constexpr std::size_t kLdy = q::kLanes + 3;  // 3 sentinels after each row's 16 lanes
constexpr std::size_t kRows = 9;
constexpr std::size_t kMaxW8A8Int8Inputs = (std::size_t(1) << 31) / (127 * 127);  // qmodel.cpp's limit

std::uint32_t bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
float sentinel() {
  float x;
  std::memcpy(&x, &kSentinel, 4);
  return x;
}
bool same(float a, float b) { return bits(a) == bits(b) || (std::isnan(a) && std::isnan(b)); }

// One float32 operation, rounded on its own whatever -ffp-contract says: the reference must round
// exactly where format.ts does.
float mul(float a, float b) {
  volatile float p = a * b;
  return p;
}
float add(float a, float b) {
  volatile float s = a + b;
  return s;
}

struct Rng {
  std::uint64_t s;
  explicit Rng(std::uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 1) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  int range(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<std::uint64_t>(hi - lo + 1)); }
  double uniform() { return static_cast<double>(next() >> 11) / 9007199254740992.0; }
  int sign() { return (next() & 1) ? 1 : -1; }
};

// Random: codes, zero points, scales and activations at random (a zero group now and then).
// High: every code at the top (int8 +-127 with one sign per input, int4 nibble 15, zero point 0)
//   and rows 0 and 3 at +-127 against them, so every product of a row has the same sign.
// Low: nibble 0 against zero point 15 (int4), random int8.
enum class Values { Random, High, Low };
const char* const kValueNames[] = {"random", "high", "low"};

// A layer in the file layout and the rows it is run on.
struct Case {
  std::size_t k = 0, n = 0, group = 0, kq = 0, groups = 0;
  q::Format format = q::Format::Int8;
  bool symmetric = true;
  Values values = Values::Random;
  std::size_t count = kRows;  // rows per kernel call
  bool weight_only = true;    // also run wfloat_block
  std::vector<std::int8_t> w8;     // n * k
  std::vector<std::uint8_t> w4;    // n * kq / 2
  std::vector<float> scales;       // n * groups
  std::vector<std::uint8_t> zeros; // n * groups
  // int4: scales rounded to bfloat16 values, which repack keeps in 2 bytes (qlayer.h); half of
  // the int4 cases, so both scale layouts meet every kind of values.
  bool bf16 = false;
  // W8A8 rows as the model's quantiser leaves them: xq zero past k, xu = xq + 128, xsum per group.
  std::vector<std::int8_t> xq;
  std::vector<std::uint8_t> xu;
  std::vector<std::int32_t> xsum;
  std::vector<float> sx;
  std::vector<q::QuantRow> rows;
  // Weight-only rows, zero past k (the model pads them to kq).
  std::vector<float> xf;
  std::vector<const float*> xf_rows;

  // Code of output j at input p: int8 q, or the int4 nibble u.
  int code(std::size_t j, std::size_t p) const {
    if (format == q::Format::Int8) return p < k ? w8[j * k + p] : 0;
    const std::uint8_t byte = w4[j * (kq / 2) + p / 2];
    return p % 2 == 0 ? (byte & 0x0f) : (byte >> 4);
  }
  int zero(std::size_t j, std::size_t g) const {
    if (format == q::Format::Int8) return 0;
    return symmetric ? 8 : zeros[j * groups + g];
  }
  float scale(std::size_t j, std::size_t g) const { return scales[j * groups + g]; }

  q::QuantLayerSource source() const {
    q::QuantLayerSource s;
    s.inputs = k;
    s.outputs = n;
    s.format = format;
    s.group = format == q::Format::Int8 ? k : group;
    s.symmetric = symmetric;
    s.weights = format == q::Format::Int8 ? reinterpret_cast<const std::uint8_t*>(w8.data()) : w4.data();
    s.scales = scales.data();
    s.zeros = zeros.data();
    return s;
  }
};

Case make_case(q::Format format, std::size_t group, bool symmetric, std::size_t k, std::size_t n, Values values,
               std::uint64_t seed) {
  Case c;
  Rng r(seed);
  c.k = k;
  c.n = n;
  c.format = format;
  c.symmetric = symmetric;
  c.values = values;
  c.group = format == q::Format::Int8 ? 0 : group;
  c.kq = format == q::Format::Int8 ? (k + 3) / 4 * 4 : (k + group - 1) / group * group;
  c.groups = format == q::Format::Int8 ? 1 : c.kq / group;
  const bool high = values == Values::High, low = values == Values::Low;
  std::vector<int> input_sign(c.kq);
  for (int& s : input_sign) s = r.sign();

  c.zeros.assign(n * c.groups, 0);
  if (!symmetric) {
    for (auto& z : c.zeros) z = static_cast<std::uint8_t>(high ? 0 : low ? 15 : r.range(0, 15));
  }
  c.scales.resize(n * c.groups);
  for (auto& s : c.scales) s = r.range(0, 15) == 0 ? 0.0f : static_cast<float>(std::ldexp(0.5 + r.uniform(), -r.range(2, 9)));
  c.bf16 = format == q::Format::Int4 && seed % 2 == 0;
  if (c.bf16) {
    for (auto& s : c.scales) {
      std::uint32_t u;
      std::memcpy(&u, &s, 4);
      u &= 0xffff0000u;
      std::memcpy(&s, &u, 4);
    }
  }
  if (format == q::Format::Int8) {
    c.w8.resize(n * k);
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t p = 0; p < k; ++p)
        c.w8[j * k + p] = static_cast<std::int8_t>(high ? 127 * input_sign[p] : r.range(-127, 127));
  } else {
    c.w4.assign(n * c.kq / 2, 0);
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t g = 0; g < c.groups; ++g)
        for (std::size_t p = g * group; p < (g + 1) * group; ++p) {
          // Padding holds q = 0, i.e. the zero point (format.ts).
          const int z = symmetric ? 8 : c.zeros[j * c.groups + g];
          const int u = p >= k ? z : high ? 15 : low ? 0 : r.range(0, 15);
          c.w4[j * (c.kq / 2) + p / 2] |= static_cast<std::uint8_t>(p % 2 == 0 ? u : u << 4);
        }
  }

  c.xq.assign(kRows * c.kq, 0);
  c.xu.assign(kRows * c.kq, 128);
  c.xsum.assign(kRows * c.groups, 0);
  c.sx.resize(kRows);
  c.xf.assign(kRows * c.kq, 0.0f);
  for (std::size_t i = 0; i < kRows; ++i) {
    // Row 1 is all zeros (sx = 0); row 2 is a row that held NaN or Infinity (sx = NaN, xq = 0).
    c.sx[i] = i == 1 ? 0.0f : i == 2 ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>(0.001 + r.uniform());
    for (std::size_t p = 0; p < k; ++p) {
      int v = r.range(-127, 127);
      float f = static_cast<float>((r.uniform() - 0.5) * 4.0);
      if (i == 1 || i == 2) {
        v = 0;
        f = i == 1 ? 0.0f : f;
      } else if (i == 0 || i == 3) {
        // Saturated: +-127 everywhere, against the codes' signs when they are at the top.
        const int s = (i == 0 ? 1 : -1) * (!high ? r.sign() : format == q::Format::Int8 ? input_sign[p] : 1);
        v = 127 * s;
        f = static_cast<float>(s) * 1000.0f;
      } else if (i == 4) {
        f = static_cast<float>(std::ldexp(r.uniform() + 0.5, r.range(-14, 14)) * r.sign());  // wide magnitudes
      }
      c.xq[i * c.kq + p] = static_cast<std::int8_t>(v);
      c.xu[i * c.kq + p] = static_cast<std::uint8_t>(v + 128);
      c.xsum[i * c.groups + (format == q::Format::Int8 ? 0 : p / group)] += v;
      c.xf[i * c.kq + p] = f;
    }
  }
  for (std::size_t i = 0; i < kRows; ++i) {
    c.rows.push_back(q::QuantRow{c.xq.data() + i * c.kq, c.xu.data() + i * c.kq, c.xsum.data() + i * c.groups, c.sx[i]});
    c.xf_rows.push_back(c.xf.data() + i * c.kq);
  }
  return c;
}

// W8A8 output j of row i as format.ts states it.
float w8a8_reference(const Case& c, std::size_t i, std::size_t j, bool* overflow) {
  const std::size_t per = c.format == q::Format::Int8 ? c.kq : c.group;
  float sum = 0;
  for (std::size_t g = 0; g < c.groups; ++g) {
    std::int64_t acc = 0;
    for (std::size_t p = g * per; p < (g + 1) * per; ++p) acc += std::int64_t(c.xq[i * c.kq + p]) * c.code(j, p);
    acc -= std::int64_t(c.zero(j, g)) * c.xsum[i * c.groups + g];
    if (acc > std::numeric_limits<std::int32_t>::max() || acc < std::numeric_limits<std::int32_t>::min()) *overflow = true;
    const float t = mul(mul(c.sx[i], c.scale(j, g)), static_cast<float>(acc));
    sum = g == 0 ? t : add(sum, t);
  }
  return sum;
}

// Weight-only output j of row i in double, and the sum of the magnitudes of its terms.
double wfloat_reference(const Case& c, std::size_t i, std::size_t j, double* mag) {
  const std::size_t per = c.format == q::Format::Int8 ? c.kq : c.group;
  double sum = 0;
  *mag = 0;
  for (std::size_t g = 0; g < c.groups; ++g) {
    double part = 0, part_mag = 0;
    for (std::size_t p = g * per; p < (g + 1) * per; ++p) {
      const double term = static_cast<double>(c.xf[i * c.kq + p]) * (c.code(j, p) - c.zero(j, g));
      part += term;
      part_mag += std::fabs(term);
    }
    sum += static_cast<double>(c.scale(j, g)) * part;
    *mag += static_cast<double>(c.scale(j, g)) * part_mag;
  }
  return sum;
}

struct Stat {
  long long cases = 0, values = 0, failures = 0;
};
struct Table {
  const q::QuantKernels* k;
  Stat w8a8, wfloat, pair, wpair, quantize;
};

long long g_printed = 0;
void fail(Stat& s, const char* table, const Case& c, const char* fmt, double a, double b, std::size_t i, std::size_t j) {
  ++s.failures;
  if (g_printed++ >= 20) return;
  std::printf("  FAIL [%s %s k=%zu n=%zu group=%zu %s %s rows/call=%zu] row %zu output %zu: ", table,
              c.format == q::Format::Int8 ? "int8" : "int4", c.k, c.n, c.group, c.symmetric ? "sym" : "asym",
              kValueNames[static_cast<int>(c.values)], c.count, i, j);
  std::printf(fmt, a, b);
  std::printf("\n");
}

// Runs one block function over every block of the case, c.count rows per call, and checks each
// output with `check(i, j, got)`; the lanes between 16 and ldy must keep their sentinel.
template <class Call, class Check>
void run_blocks(const Case& c, const q::QuantLayer& l, Stat& s, const char* table, Call call, Check check) {
  std::vector<float> y(c.count * kLdy);
  for (std::size_t r0 = 0; r0 < kRows; r0 += c.count) {
    const std::size_t rows = std::min(c.count, kRows - r0);
    for (std::size_t b = 0; b < l.blocks; ++b) {
      std::fill(y.begin(), y.end(), sentinel());
      call(b, r0, rows, y.data());
      for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t o = q::kLanes; o < kLdy; ++o) {
          if (bits(y[i * kLdy + o]) != kSentinel) fail(s, table, c, "wrote past lane 16 (%g, %g)", y[i * kLdy + o], 0, r0 + i, o);
        }
        for (std::size_t o = 0; o < q::kLanes && b * q::kLanes + o < c.n; ++o) {
          ++s.values;
          check(r0 + i, b * q::kLanes + o, y[i * kLdy + o]);
        }
      }
    }
  }
}

// The same for a table's pair kernels (W8A8, weight-only int8): blocks b and b + 1 per call,
// 32 lanes of each row, sentinels after them (kPairLdy).
constexpr std::size_t kPairLdy = 2 * q::kLanes + 3;
template <class Call, class Check>
void run_pairs(const Case& c, const q::QuantLayer& l, Stat& s, Call call, Check check) {
  std::vector<float> y(c.count * kPairLdy);
  for (std::size_t r0 = 0; r0 < kRows; r0 += c.count) {
    const std::size_t rows = std::min(c.count, kRows - r0);
    for (std::size_t b = 0; b + 1 < l.blocks; b += 2) {
      std::fill(y.begin(), y.end(), sentinel());
      call(b, r0, rows, y.data());
      for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t o = 2 * q::kLanes; o < kPairLdy; ++o) {
          if (bits(y[i * kPairLdy + o]) != kSentinel) fail(s, "pair", c, "wrote past lane 32 (%g, %g)", y[i * kPairLdy + o], 0, r0 + i, o);
        }
        for (std::size_t o = 0; o < 2 * q::kLanes && b * q::kLanes + o < c.n; ++o) {
          ++s.values;
          check(r0 + i, b * q::kLanes + o, y[i * kPairLdy + o]);
        }
      }
    }
  }
}

void test_case(std::vector<Table>& tables, const Case& c) {
  const q::QuantLayer blocked = q::repack(c.source(), false);
  const q::QuantLayer input_major = q::repack(c.source(), true);
  // bfloat16 layout exactly when every scale is a bfloat16 value (a case may be so by chance:
  // one group whose scale is 0), and never for the weight-only layout.
  bool all_bf16 = c.format == q::Format::Int4;
  for (const float sc : c.scales) {
    std::uint32_t u;
    std::memcpy(&u, &sc, 4);
    all_bf16 = all_bf16 && (u & 0xffffu) == 0;
  }
  if (c.bf16 && !all_bf16) std::printf("  FAIL test setup: scales not rounded to bfloat16\n");
  if (blocked.bf16_scales != all_bf16 || input_major.bf16_scales || (c.bf16 && !all_bf16)) {
    std::printf("  FAIL repack kept %s scales for a case with%s only bfloat16 scales (k=%zu n=%zu)\n",
                blocked.bf16_scales ? "bfloat16" : "float32", all_bf16 ? "" : "out", c.k, c.n);
    ++tables[0].w8a8.failures;
  }
  std::vector<float> want(kRows * c.n);
  std::vector<double> ref(kRows * c.n), mag(kRows * c.n);
  for (std::size_t i = 0; i < kRows; ++i)
    for (std::size_t j = 0; j < c.n; ++j) {
      bool overflow = false;
      want[i * c.n + j] = w8a8_reference(c, i, j, &overflow);
      if (overflow) {
        std::printf("  FAIL test setup: an int32 accumulator overflows (k=%zu)\n", c.k);
        ++tables[0].w8a8.failures;
      }
      if (c.weight_only) ref[i * c.n + j] = wfloat_reference(c, i, j, &mag[i * c.n + j]);
    }
  const double bound = (static_cast<double>(c.kq) + static_cast<double>(c.groups) + 2) * kU;
  for (Table& t : tables) {
    // A check that output (i, j) has the bits of expected[i][j].
    auto bits_of = [&](Stat& s, const std::vector<float>& expected, const char* message) {
      return [&, message](std::size_t i, std::size_t j, float got) {
        const float w = expected[i * c.n + j];
        if (!same(got, w)) fail(s, t.k->isa, c, message, got, w, i, j);
      };
    };
    ++t.w8a8.cases;
    run_blocks(
        c, blocked, t.w8a8, t.k->isa,
        [&](std::size_t b, std::size_t r0, std::size_t rows, float* y) { t.k->w8a8_block(blocked, b, c.rows.data() + r0, rows, y, kLdy); },
        bits_of(t.w8a8, want, "got %.9g, format.ts %.9g (W8A8 must match bit for bit)"));
    if (t.k->w8a8_pair && blocked.blocks >= 2) {
      ++t.pair.cases;
      run_pairs(
          c, blocked, t.pair,
          [&](std::size_t b, std::size_t r0, std::size_t rows, float* y) {
            t.k->w8a8_pair(blocked, b, c.rows.data() + r0, rows, y, kPairLdy, blocked.w.data(), blocked.w.size() / 64);
          },
          bits_of(t.pair, want, "pair kernel got %.9g, format.ts %.9g (bit for bit)"));
    }
    if (!c.weight_only) continue;
    ++t.wfloat.cases;
    std::vector<float> single(kRows * c.n);
    run_blocks(
        c, input_major, t.wfloat, t.k->isa,
        [&](std::size_t b, std::size_t r0, std::size_t rows, float* y) { t.k->wfloat_block(input_major, b, c.xf_rows.data() + r0, rows, y, kLdy); },
        [&](std::size_t i, std::size_t j, float got) {
          single[i * c.n + j] = got;
          const double r = ref[i * c.n + j], tol = bound * mag[i * c.n + j] + 1e-30;
          if (!(std::fabs(got - r) <= tol)) fail(t.wfloat, t.k->isa, c, "got %.9g, double reference %.12g", got, r, i, j);
        });
    // The weight-only int8 pair kernel: the bits of the table's own wfloat_block.
    if (t.k->wfloat_pair && c.format == q::Format::Int8 && input_major.blocks >= 2) {
      ++t.wpair.cases;
      run_pairs(
          c, input_major, t.wpair,
          [&](std::size_t b, std::size_t r0, std::size_t rows, float* y) {
            t.k->wfloat_pair(input_major, b, c.xf_rows.data() + r0, rows, y, kPairLdy, input_major.w.data(), input_major.w.size() / 64);
          },
          bits_of(t.wpair, single, "weight-only pair kernel got %.9g, wfloat_block %.9g (bit for bit)"));
    }
  }
}

// W8A8's input quantisation of one row as format.ts states it: amax over finite values (a NaN or
// infinity anywhere makes sx NaN and the codes 0), sx = amax / 127, q = clamp(round half to even
// (x / sx), -127, 127), and each group's sum of q.
float quantize_reference(const q::QuantLayer& l, const float* x, std::int8_t* qv, std::int32_t* sums) {
  float amax = 0;
  for (std::size_t p = 0; p < l.k; ++p) {
    if (!std::isfinite(x[p])) return std::numeric_limits<float>::quiet_NaN();
    amax = std::max(amax, std::fabs(x[p]));
  }
  const float sx = amax / 127.0f;
  if (sx == 0) return sx;
  for (std::size_t p = 0; p < l.k; ++p) {
    volatile float ratio = x[p] / sx;
    const float v = std::min(127.0f, std::max(-127.0f, std::nearbyint(ratio)));
    qv[p] = static_cast<std::int8_t>(v);
    sums[p / l.group] += static_cast<int>(v);
  }
  return sx;
}

// quantize_row of every table against quantize_reference: row lengths around the vector widths
// and groups, random values of wide magnitude, values exactly halfway between two codes (sx = 1),
// the largest finite float, subnormals, -0, zero rows, and NaN or an infinity at the first, a
// middle and the last position (the tail past the last whole vector included).
void test_quantize_row(std::vector<Table>& tables) {
  Rng r(77);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (std::size_t k : {1, 3, 15, 16, 17, 31, 33, 63, 65, 100, 1000, 4099})
    for (std::size_t group : {0, 32, 128})
      for (int kind = 0; kind < 9; ++kind) {
        q::QuantLayer l;
        l.k = k;
        l.group = group ? group : (k + 3) / 4 * 4;
        l.kq = (k + l.group - 1) / l.group * l.group;
        l.groups = l.kq / l.group;
        std::vector<float> x(k);
        for (std::size_t p = 0; p < k; ++p) {
          switch (kind) {
            case 0: x[p] = static_cast<float>((r.uniform() - 0.5) * 8); break;
            case 1: x[p] = static_cast<float>(std::ldexp(r.uniform() + 0.5, r.range(-30, 30)) * r.sign()); break;
            // One value is 127, so sx = 1 exactly and every other value k + 0.5 is a tie.
            case 2: x[p] = p == k / 2 ? 127.0f : static_cast<float>(r.range(-127, 126)) + 0.5f; break;
            case 3: x[p] = p % 3 == 0 ? std::numeric_limits<float>::max() * r.sign() : static_cast<float>(r.uniform()) * 1e30f; break;
            case 4: x[p] = p % 2 ? -0.0f : std::numeric_limits<float>::denorm_min() * static_cast<float>(r.range(0, 1000)); break;
            case 5: x[p] = p % 2 ? -0.0f : 0.0f; break;
            default: x[p] = static_cast<float>(r.uniform() - 0.5); break;
          }
        }
        // Kinds 6-8: NaN, +inf, -inf at the first, middle or last position by turns.
        if (kind >= 6) x[(kind == 6 ? 0 : kind == 7 ? k / 2 : k - 1)] = kind == 6 ? nan : kind == 7 ? inf : -inf;
        std::vector<std::int8_t> want_q(l.kq, 0);
        std::vector<std::int32_t> want_s(l.groups, 0);
        const float want_sx = quantize_reference(l, x.data(), want_q.data(), want_s.data());
        for (Table& t : tables) {
          // Filled with junk: quantize_row must write every code and sum, padding included.
          std::vector<std::int8_t> got_q(l.kq, 0x5a);
          std::vector<std::uint8_t> got_u(l.kq, 0xa5);
          std::vector<std::int32_t> got_s(l.groups, -12345);
          const float got_sx = t.k->quantize_row(l, x.data(), got_q.data(), got_u.data(), got_s.data());
          ++t.quantize.cases;
          t.quantize.values += static_cast<long long>(l.kq);
          bool ok = same(got_sx, want_sx) && got_s == want_s && got_q == want_q;
          for (std::size_t p = 0; ok && p < l.kq; ++p) ok = got_u[p] == static_cast<std::uint8_t>(got_q[p] + 128);
          if (!ok) {
            ++t.quantize.failures;
            if (g_printed++ < 20) {
              std::printf("FAIL [%s] quantize_row k=%zu group=%zu kind=%d: sx %.9g, want %.9g\n", t.k->isa, k, l.group, kind,
                          got_sx, want_sx);
            }
          }
        }
      }
}

// The table quant_kernels() chose and every table below it that this CPU runs, widest first.
std::vector<Table> tables_from_chosen(int* setup_failures) {
  std::vector<const q::QuantKernels*> all;
#if defined(__x86_64__) || defined(_M_X64)
  all.push_back(&q::quant_vnni_kernels());
  all.push_back(&q::quant_avx2_kernels());
#elif defined(__aarch64__) || defined(_M_ARM64)
  if (q::cpu_has_dotprod() && q::quant_neon_dotprod_kernels()) all.push_back(q::quant_neon_dotprod_kernels());
  all.push_back(&q::quant_neon_kernels());
#endif
  all.push_back(&q::quant_scalar_kernels());
  std::vector<Table> tables;
  for (const q::QuantKernels* k : all) {
    if (k == &q::quant_kernels() || !tables.empty()) tables.push_back(Table{k, {}, {}, {}, {}, {}});
  }
  if (tables.empty()) {
    std::printf("FAIL quant_kernels() (%s) is none of this machine's tables\n", q::quant_kernels().isa);
    ++*setup_failures;
  }
  return tables;
}

void print_stat(const char* table, const char* what, const Stat& s) {
  std::printf("[%s] %s %-44s %5lld cases %9lld values", table, s.failures ? "FAIL" : "ok  ", what, s.cases, s.values);
  if (s.failures) std::printf(", %lld failed", s.failures);
  std::printf("\n");
}

// recycle_layer: a repack into kept buffers (holding another layer's codes and scales) packs
// exactly what fresh buffers do; a layer never takes a kept buffer over twice its size; a buffer
// past kRecycledBytes is not kept, and a full pool keeps the largest kRecycledBuffers. Each case
// has its own size, so the buffer a repack should take is the only one of its capacity.
// repack checks every value before it writes anything (qlayer.cpp), so each bad value must be
// refused wherever it sits; the last entry is the one a check that stops early would miss.
int test_repack_rejects() {
  int failures = 0;
  auto expect_refused = [&](const Case& c, const char* what) {
    for (bool input_major : {false, true}) {
      try {
        (void)q::repack(c.source(), input_major);
        std::printf("FAIL repack accepted %s (k=%zu n=%zu)\n", what, c.k, c.n);
        ++failures;
      } catch (const std::invalid_argument&) {
      }
    }
  };
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::uint64_t seed = 2000;
  for (q::Format format : {q::Format::Int8, q::Format::Int4}) {
    const Case good = make_case(format, 32, format == q::Format::Int8, 100, 33, Values::Random, seed++);
    (void)q::repack(good.source(), false);
    for (float bad : {nan, inf, -inf, -1.0f, -1e-30f}) {
      for (std::size_t at : {std::size_t{0}, good.scales.size() - 1}) {
        Case c = good;
        c.scales[at] = bad;
        expect_refused(c, "a scale that is not finite and >= 0");
      }
    }
    Case c = good;
    if (format == q::Format::Int8) {
      c.w8.back() = -128;
      expect_refused(c, "int8 code -128");
    } else {
      c.zeros.back() = 16;
      expect_refused(c, "zero point 16");
      c = good;
      c.group = 48;
      expect_refused(c, "group size 48");
    }
  }
  return failures;
}

int test_recycled_layers() {
  int failures = 0;
  auto fail = [&](const char* what, std::size_t k, std::size_t n) {
    std::printf("FAIL recycled layers: %s (k=%zu n=%zu)\n", what, k, n);
    ++failures;
  };
  auto same = [](const auto& x, const auto& y) {
    return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(x[0])) == 0);
  };
  std::uint64_t seed = 1000;
  std::size_t n = 40;
  for (bool input_major : {false, true}) {
    for (q::Format format : {q::Format::Int8, q::Format::Int4}) {
      for (bool symmetric : {true, false}) {
        if (format == q::Format::Int8 && !symmetric) continue;
        // a fills the block whose last 8 lanes are b's padding (n is 8 past a multiple of 16), so
        // b must clear what a left there.
        const Case a = make_case(format, 32, symmetric, 300, n + 8, Values::Random, seed++);
        const Case b = make_case(format, 32, symmetric, 300, n, Values::Random, seed++);
        const q::QuantLayer fresh = q::repack(b.source(), input_major);
        q::QuantLayer other = q::repack(a.source(), input_major);
        const std::uint8_t* kept = other.w.data();
        q::recycle_layer(std::move(other));
        const q::QuantLayer reused = q::repack(b.source(), input_major);
        if (reused.w.data() != kept) fail("the kept weights buffer was not reused", 300, n);
        if (!same(reused.w, fresh.w) || !same(reused.scales, fresh.scales) || !same(reused.scales16, fresh.scales16) ||
            !same(reused.zeros, fresh.zeros) || !same(reused.wsum, fresh.wsum) || reused.bf16_scales != fresh.bf16_scales) {
          fail("a repack into kept buffers differs from a fresh one", 300, n);
        }
        q::recycle_layer(q::repack(a.source(), input_major));
        const Case small = make_case(format, 32, symmetric, 64, 16, Values::Random, seed++);
        const q::QuantLayer s = q::repack(small.source(), input_major);
        if (s.w.capacity() > 2 * s.w.size() || s.scales.capacity() > 2 * s.scales.size() ||
            s.zeros.capacity() > 2 * s.zeros.size()) {
          fail("a small layer took a buffer over twice its size", 64, 16);
        }
        n += 16;
      }
    }
  }
  auto weights_only = [](std::size_t bytes) {
    q::QuantLayer l;
    l.w.resize(bytes);
    return l;
  };
  const std::size_t before = q::recycled_bytes();
  q::recycle_layer(weights_only(q::kRecycledBytes + 64));
  if (q::recycled_bytes() != before) fail("a buffer past kRecycledBytes was kept", 0, 0);
  // Buffers of 1 MB and up, larger each time, kRecycledBuffers at a time: each round leaves the
  // weights pool holding exactly that round's buffers (each replaced the smallest kept).
  std::size_t round_bytes[2] = {0, 0}, kept_after[2] = {0, 0};
  for (int round = 0; round < 2; ++round) {
    for (std::size_t i = 0; i < q::kRecycledBuffers; ++i) {
      const std::size_t bytes = (std::size_t(1) << 20) + 4096 * (round * q::kRecycledBuffers + i);
      round_bytes[round] += bytes;
      q::recycle_layer(weights_only(bytes));
    }
    kept_after[round] = q::recycled_bytes();
  }
  if (kept_after[1] - kept_after[0] != round_bytes[1] - round_bytes[0]) fail("a full pool did not keep the largest buffers", 0, 0);
  // The budget over all pools: four 15 MB weight buffers (60 MB) are kept, then a 15 MB scale
  // buffer would pass kRecycledTotalBytes and is not, where a 2 MB one still fits.
  for (int i = 0; i < 4; ++i) q::recycle_layer(weights_only(std::size_t(15) << 20));
  const std::size_t with_weights = q::recycled_bytes();
  if (with_weights < (std::size_t(60) << 20) || with_weights > q::kRecycledTotalBytes) fail("four 15 MB buffers not kept", 0, 0);
  auto scales_only = [](std::size_t bytes) {
    q::QuantLayer l;
    l.scales.resize(bytes / sizeof(float));
    return l;
  };
  q::recycle_layer(scales_only(std::size_t(15) << 20));
  if (q::recycled_bytes() != with_weights) fail("a buffer past kRecycledTotalBytes was kept", 0, 0);
  // (It may replace one of the small scale buffers the cases above left, so "about 2 MB more".)
  q::recycle_layer(scales_only(std::size_t(2) << 20));
  const std::size_t after = q::recycled_bytes();
  if (after < with_weights + (std::size_t(1) << 20) || after > q::kRecycledTotalBytes) fail("a buffer within the budget was not kept", 0, 0);
  std::printf("[pool] %s recycle_layer: reuse, same bytes, size limits\n", failures ? "FAIL" : "ok  ");
  return failures;
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int setup_failures = 0;
  const char* chosen = q::quant_kernels().isa;
  std::printf("quant_kernel_tests: quant_kernels() = %s (float kernels: %s", chosen, mlpkit::cpu::kernels().isa);
#if defined(__aarch64__) || defined(_M_ARM64)
  // (The sdot getter may only run on a dotprod CPU.)
  const bool dotprod = q::cpu_has_dotprod();
  std::printf("; CPU dotprod: %s; sdot table built: %s", dotprod ? "yes" : "no",
              !dotprod ? "not asked" : q::quant_neon_dotprod_kernels() ? "yes" : "no");
#endif
  std::printf("%s)\n", std::getenv("MLPKIT_ISA") ? "; MLPKIT_ISA is set" : "");
  if (const char* expect = std::getenv("MLPKIT_EXPECT_QUANT_TABLE")) {
    if (std::strcmp(expect, chosen) != 0) {
      std::printf("FAIL MLPKIT_EXPECT_QUANT_TABLE=%s but quant_kernels() chose %s\n", expect, chosen);
      ++setup_failures;
    }
  }
  std::vector<Table> tables = tables_from_chosen(&setup_failures);
  std::printf("tables tested:");
  for (const Table& t : tables) std::printf(" %s", t.k->isa);
  std::printf("\n");

  if (!tables.empty()) {
    std::uint64_t seed = 1;
    std::size_t index = 0;
    const std::size_t counts[] = {kRows, 7, 6, 5, 4, 3, 2, 1};  // passes of 4 with every remainder
    auto run = [&](Case c) {
      c.count = counts[index++ % (sizeof counts / sizeof counts[0])];
      test_case(tables, c);
    };
    for (std::size_t k : {1, 3, 4, 5, 17, 64, 67, 255})
      for (std::size_t n : {1, 17, 40, 65})
        for (Values v : {Values::Random, Values::High}) run(make_case(q::Format::Int8, 0, true, k, n, v, seed++));
    for (std::size_t group : {32, 64, 128})
      for (bool symmetric : {true, false})
        for (std::size_t k : {1, 31, 33, 100, 129, 300})
          for (std::size_t n : {1, 17, 40})
            for (Values v : {Values::Random, Values::High, Values::Low})
              run(make_case(q::Format::Int4, group, symmetric, k, n, v, seed++));
    // The widest int8 row W8A8 takes, every product +127 * 127 in row 0 (-127 * 127 in row 3).
    Case wide = make_case(q::Format::Int8, 0, true, kMaxW8A8Int8Inputs, 32, Values::High, seed++);
    wide.count = 4;
    wide.weight_only = false;
    test_case(tables, wide);
    test_quantize_row(tables);
  }

  long long failed = setup_failures + test_recycled_layers() + test_repack_rejects(), checked = 0;
  for (const Table& t : tables) {
    print_stat(t.k->isa, "w8a8_block: bit for bit with format.ts", t.w8a8);
    print_stat(t.k->isa, "wfloat_block: within the float32 bound", t.wfloat);
    if (t.k->w8a8_pair) print_stat(t.k->isa, "w8a8_pair: bit for bit with format.ts", t.pair);
    if (t.k->wfloat_pair) print_stat(t.k->isa, "wfloat_pair: bit for bit with wfloat_block", t.wpair);
    print_stat(t.k->isa, "quantize_row: bit for bit with format.ts", t.quantize);
    failed += t.w8a8.failures + t.wfloat.failures + t.pair.failures + t.wpair.failures + t.quantize.failures;
    checked += t.w8a8.values + t.wfloat.values + t.pair.values + t.wpair.values + t.quantize.values;
  }
  std::printf("quant_kernel_tests: %s (%zu tables, %lld values checked)\n", failed ? "FAILED" : "all passed", tables.size(),
              checked);
  return failed ? 1 : 0;
}
