// Tests of the CPU kernel tables (core/cpu/kernels.h) on their own: no Node, no framework.
// One process runs every table this machine supports (supported_isas, widest first), so a
// plain `kernel_tests` covers avx512 + avx2 + scalar on a recent x86 and neon + scalar on arm64
// (scripts/test-neon.sh runs it under qemu-aarch64-static). Exit status 0 = all passed.
//
// Every entry of every table is checked against two references computed here:
//  - a double-precision reference, within a stated rounding bound (see each test), which checks
//    what is computed: views, strides, tails, bias, epilogues;
//  - the float32 result of the documented summation (kernels.h: each GEMM output is one float32
//    chain, init then p = 0..k-1 in order, fused multiply-add on SIMD ISAs, multiply then add on
//    scalar; the element-wise entries use the operations of kernels_impl.inl in order), which
//    must match bit for bit (NaN matches NaN). This is what makes every ISA agree.
//    One exception is reported but, with MLPKIT_KERNEL_TESTS_STRICT=0, not failed: a value that
//    is within tolerance and differs only the way floating-point contraction makes it differ (a
//    GEMM output equal to the chain of the other rounding, fused vs separate; an adam/sgd value
//    off by rounding). g++ contracts a*b + c into an FMA whenever the target has one, even under
//    -std=c++17 (its ISO-mode -ffp-contract=off applies to C only), so AVX2/AVX-512 adam/sgd and
//    every scalar a*b + c on arm64 would be fused; the builds therefore pass -ffp-contract=off and
//    this test is strict by default. Those lines are "NOTE ... fp contraction".
// and the table invariants:
//  - GEMM row i equals the m = 1 call on that row, bit for bit;
//  - nothing is written outside the output: sentinels after each row of C (ldc > n), after the
//    buffer, and before/after the [begin, end) ranges stay intact;
//  - nothing is read past the end: in the "page-end" cases every input and output ends exactly
//    where a PROT_NONE page starts (tight strides, the last row at the end), so a load or store
//    one float too far faults (the fault handler names the case);
//  - inputs padded with NaN (lda > k, ldb > n, panel lanes past n) never reach an output.

#include <csetjmp>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <limits>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define KT_GUARD_PAGES 1
#else
#define KT_GUARD_PAGES 0
#endif

#include "core/cpu/kernels.h"

namespace cpu = mlpkit::cpu;
using cpu::Epilogue;

namespace {

constexpr double kU = 1.0 / 16777216.0;            // 2^-24: float32 unit roundoff
constexpr std::uint32_t kSentinel = 0x7fc5a5a5u;    // a quiet NaN no kernel computes
constexpr std::size_t kGuard = 7;                   // sentinel floats after padded outputs
constexpr double kTiny = 1e-44;                     // absolute floor: 7 ulps of a float32 denormal
const std::size_t kSizes[] = {1, 3, 16, 17, 63, 64, 65, 200};

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

// A float32 product rounded on its own. The volatile keeps any compiler, with any
// -ffp-contract, from fusing it into the add that follows: the references below must round
// exactly where the kernels' source does.
float mul(float a, float b) {
  volatile float p = a * b;
  return p;
}

// ---- bookkeeping --------------------------------------------------------------------------------

enum Group {
  kGemmPacked, kGemmRowMajor, kGemmWeightGrad, kGemmPageEnd, kGemmRows, kRectify, kRectifyBackward,
  kColumnSums, kReduce, kAdam, kSgd, kAxpyRows, kDotRows, kGemmSparse, kAllFinite, kSumSquares, kGroups
};
const char* const kGroupNames[kGroups] = {
    "gemm forward, packed B (10 variants)",
    "gemm row-major B (10 variants)",
    "gemm weight gradient a_rs=1 a_cs=ldz",
    "gemm page-end (PROT_NONE after every buffer)",
    "gemm row i == m=1 call, bit for bit",
    "rectify",
    "rectify_backward",
    "column_sums",
    "reduce",
    "adam",
    "sgd",
    "axpy_rows (sparse, neuron-major)",
    "dot_rows (sparse, chosen outputs)",
    "gemm_sparse (listed inputs, passes of 128)",
    "all_finite",
    "sum_squares",
};
struct Stat {
  long long cases = 0, values = 0, failures = 0;
  long long contracted = 0;  // within tolerance, off the documented rounding only as contraction makes it
};
struct Table {
  const char* name;
  const cpu::Kernels* k;
  bool fused;  // SIMD: fused multiply-add in the GEMM chain
  Stat stat[kGroups];
};

char g_case[400] = "";
int g_case_printed = 0;
Stat* g_stat = nullptr;
bool g_strict = true;  // MLPKIT_KERNEL_TESTS_STRICT=0: contraction deviations are reported, not failed

void set_case(Table& t, Group grp, const char* fmt, ...) {
  int at = std::snprintf(g_case, sizeof g_case, "%s %s: ", t.name, kGroupNames[grp]);
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(g_case + at, sizeof g_case - at, fmt, ap);
  va_end(ap);
  g_case_printed = 0;
  g_stat = &t.stat[grp];
  ++g_stat->cases;
}

void fail(const char* fmt, ...) {
  ++g_stat->failures;
  if (g_case_printed++ >= 3) return;
  std::printf("  FAIL [%s] ", g_case);
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  std::printf("\n");
}

// How a bitwise mismatch that is within tolerance counts (see the top of the file).
enum class Contraction {
  None,     // it fails
  Alt,      // it is a contraction deviation when got equals `alt`, the other rounding's result
  Rounding  // it is a contraction deviation (adam, sgd: which products fuse is the compiler's choice)
};

// got against the float32 reference `want` (bits) and the double reference within tol.
void compare(const char* what, std::size_t i, std::size_t j, float got, float want, double ref, double tol,
             Contraction mode = Contraction::None, float alt = 0) {
  ++g_stat->values;
  const bool exact = same(got, want);
  const bool close = std::isnan(ref) ? std::isnan(got)
                                      : static_cast<double>(got) == ref || std::fabs(static_cast<double>(got) - ref) <= tol;
  if (exact && close) return;
  if (close && !g_strict &&
      (mode == Contraction::Rounding || (mode == Contraction::Alt && same(got, alt)))) {
    if (g_stat->contracted++ == 0) {
      std::printf("  NOTE [%s] %s(%zu, %zu): got %.9g (0x%08x), documented rounding gives %.9g (0x%08x)%s: fp "
                  "contraction (first of this group)\n",
                  g_case, what, i, j, got, bits(got), want, bits(want),
                  mode == Contraction::Alt ? ", got is the other (fused/separate) chain" : "");
    }
    return;
  }
  fail("%s(%zu, %zu): got %.9g (0x%08x), float32 chain %.9g (0x%08x)%s, double %.12g, |err| %.3g vs tol %.3g%s",
       what, i, j, got, bits(got), want, bits(want), exact ? "" : " MISMATCH", ref,
       std::fabs(static_cast<double>(got) - ref), tol, close ? "" : " OUT OF TOLERANCE");
}

void check_sentinel(const char* what, std::size_t at, float got) {
  ++g_stat->values;
  if (bits(got) != kSentinel) fail("%s[%zu] outside the output was overwritten: 0x%08x", what, at, bits(got));
}

// ---- memory that ends at a PROT_NONE page ------------------------------------------------------

#if KT_GUARD_PAGES
sigjmp_buf g_probe;
volatile sig_atomic_t g_probing = 0;

extern "C" void on_fault(int sig) {
  if (g_probing) siglongjmp(g_probe, 1);
  const char head[] = "\nFATAL: memory fault (signal ";
  const char mid[] = ") in case: ";
  const char tail[] = "\n(a load or store past the end of a buffer hit the PROT_NONE guard page)\n";
  char num[4] = {static_cast<char>('0' + sig / 10 % 10), static_cast<char>('0' + sig % 10), 0, 0};
  ssize_t r = write(2, head, sizeof head - 1);
  r = write(2, num, 2);
  r = write(2, mid, sizeof mid - 1);
  r = write(2, g_case, std::strlen(g_case));
  r = write(2, tail, sizeof tail - 1);
  (void)r;
  _exit(3);
}
#endif

// n values of T (float, or int8 codes) whose last one ends exactly where an inaccessible page
// starts. Floats are filled with the sentinel, codes with 0.
template <class T>
class PageEndOf {
 public:
  explicit PageEndOf(std::size_t n) : n_(n) {
#if KT_GUARD_PAGES
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t bytes = (n == 0 ? 1 : n) * sizeof(T);
    const std::size_t data = (bytes + page - 1) / page * page;
    total_ = data + page;
    void* base = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || mprotect(static_cast<char*>(base) + data, page, PROT_NONE) != 0) {
      std::perror("mmap/mprotect");
      std::exit(2);
    }
    base_ = base;
    p_ = reinterpret_cast<T*>(static_cast<char*>(base) + data) - n;
#else
    store_.resize(n + 1);
    p_ = store_.data();
#endif
    for (std::size_t i = 0; i < n; ++i) p_[i] = fill_value();
  }
  ~PageEndOf() {
#if KT_GUARD_PAGES
    munmap(base_, total_);
#endif
  }
  PageEndOf(const PageEndOf&) = delete;
  PageEndOf& operator=(const PageEndOf&) = delete;
  T* data() { return p_; }
  T& operator[](std::size_t i) { return p_[i]; }
  std::size_t size() const { return n_; }
  void fill_sentinel() {
    for (std::size_t i = 0; i < n_; ++i) p_[i] = fill_value();
  }

 private:
  static T fill_value() {
    if constexpr (std::is_same_v<T, float>) {
      return sentinel();
    } else {
      return T(0);
    }
  }
  std::size_t n_;
  T* p_ = nullptr;
#if KT_GUARD_PAGES
  void* base_ = nullptr;
  std::size_t total_ = 0;
#else
  std::vector<T> store_;
#endif
};
using PageEnd = PageEndOf<float>;

// The harness itself: one float past a PageEnd must fault, or the page-end cases prove nothing.
bool guard_page_traps() {
#if KT_GUARD_PAGES
  PageEnd b(5);
  volatile float* p = b.data();
  g_probing = 1;
  bool trapped = false;
  if (sigsetjmp(g_probe, 1) == 0) {
    volatile float x = p[5];
    (void)x;
  } else {
    trapped = true;
  }
  g_probing = 0;
  return trapped;
#else
  return false;
#endif
}

// ---- data ------------------------------------------------------------------------------------------

struct Rng {
  std::uint64_t s;
  explicit Rng(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::uint32_t>(s >> 33);
  }
  // Uniform in [-1, 1) on a 2^-23 grid, about 1 in `zeros` an exact 0 (or -0).
  float value(unsigned zeros = 0) {
    const std::uint32_t r = next();
    if (zeros && r % zeros == 0) return (r & 0x100) ? -0.0f : 0.0f;
    return static_cast<float>(static_cast<std::int32_t>(r >> 7) - (1 << 23)) / static_cast<float>(1 << 23);
  }
};

const float kAlpha = 0.1f;

float epi_f(float x, Epilogue e) {
  if (e == Epilogue::Relu) return x > 0.0f ? x : 0.0f;
  if (e == Epilogue::LeakyRelu) return x > 0.0f ? x : mul(kAlpha, x);
  return x;
}
double epi_d(double x, Epilogue e) {
  if (e == Epilogue::Relu) return x > 0 ? x : 0.0;
  if (e == Epilogue::LeakyRelu) return x > 0 ? x : static_cast<double>(kAlpha) * x;
  return x;
}

// ---- GEMM ----------------------------------------------------------------------------------------

enum class Form { Packed, RowMajor, WeightGrad };
const char* form_name(Form f) {
  return f == Form::Packed ? "packed B" : f == Form::RowMajor ? "row-major B" : "weight-grad";
}

struct Variant {
  const char* name;
  bool bias, accumulate;
  Epilogue e;
  bool act;
  bool rows;  // also compare every row with its own m = 1 call
};
const Variant kForward[] = {
    {"no bias", false, false, Epilogue::None, false, false},
    {"bias", true, false, Epilogue::None, false, false},
    {"bias+relu", true, false, Epilogue::Relu, false, false},
    {"bias+leaky_relu", true, false, Epilogue::LeakyRelu, false, false},
    {"bias+relu, act out", true, false, Epilogue::Relu, true, true},
    {"bias+leaky_relu, act out", true, false, Epilogue::LeakyRelu, true, false},
    {"relu_grad gate", false, false, Epilogue::ReluGrad, false, false},
    {"leaky_relu_grad gate", false, false, Epilogue::LeakyReluGrad, false, true},
    {"accumulate", false, true, Epilogue::None, false, false},
    {"accumulate (bias set, ignored)+leaky_relu", true, true, Epilogue::LeakyRelu, false, true},
};
const Variant kWeightGrad[] = {
    {"plain", false, false, Epilogue::None, false, true},
    {"accumulate", false, true, Epilogue::None, false, true},
};
// Page-end cases: tight strides, every buffer ending at a PROT_NONE page.
const Variant kPageEndRowMajor[] = {
    {"no bias", false, false, Epilogue::None, false, false},
    {"bias+leaky_relu, act out", true, false, Epilogue::LeakyRelu, true, false},
    {"accumulate+relu_grad gate", false, true, Epilogue::ReluGrad, false, true},
};
const Variant kPageEndPacked[] = {{"bias+relu", true, false, Epilogue::Relu, false, false}};
const Variant kPageEndWeightGrad[] = {{"accumulate", false, true, Epilogue::None, false, true}};

// One GEMM problem in logical layout, with its references (shared by every table and form: the
// weight-gradient view reads the same A(i, p), only transposed in memory).
struct Problem {
  std::size_t m, n, k;
  std::vector<float> a, b, bias, c0, gate;  // a[i*k+p], b[p*n+c], bias[c], c0[i*n+c], gate[i*n+c]
  std::vector<double> dot, mag;             // sum a*b and sum |a*b| over p, in double
  std::vector<float> chain[2][3];           // [fused][init: 0, bias, c0]: the float32 chains

  Problem(std::size_t m_, std::size_t n_, std::size_t k_, std::uint64_t seed) : m(m_), n(n_), k(k_) {
    Rng r(seed);
    a.resize(m * k);
    b.resize(k * n);
    bias.resize(n);
    c0.resize(m * n);
    gate.resize(m * n);
    for (float& x : a) x = r.value(16);
    for (float& x : b) x = r.value();
    for (float& x : bias) x = r.value();
    for (float& x : c0) x = r.value();
    for (float& x : gate) x = r.value(8);
    dot.assign(m * n, 0.0);
    mag.assign(m * n, 0.0);
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t p = 0; p < k; ++p) {
        const double av = a[i * k + p];
        for (std::size_t c = 0; c < n; ++c) {
          const double t = av * b[p * n + c];
          dot[i * n + c] += t;
          mag[i * n + c] += std::fabs(t);
        }
      }
  }

  float init(int kind, std::size_t i, std::size_t c) const {
    return kind == 0 ? 0.0f : kind == 1 ? bias[c] : c0[i * n + c];
  }

  const std::vector<float>& expected(bool fused, int kind) {
    std::vector<float>& out = chain[fused][kind];
    if (!out.empty()) return out;
    out.resize(m * n);
    for (std::size_t i = 0; i < m; ++i) {
      float* acc = out.data() + i * n;
      for (std::size_t c = 0; c < n; ++c) acc[c] = init(kind, i, c);
      for (std::size_t p = 0; p < k; ++p) {
        const float av = a[i * k + p];
        const float* bp = b.data() + p * n;
        if (fused) {
          for (std::size_t c = 0; c < n; ++c) acc[c] = std::fma(av, bp[c], acc[c]);
        } else {
          for (std::size_t c = 0; c < n; ++c) acc[c] = acc[c] + mul(av, bp[c]);
        }
      }
    }
    return out;
  }
};

// A problem laid out in memory for one form: padded (ld > width, NaN padding, sentinels after
// every row of the outputs) or tight (ld = width, every buffer ending at a PROT_NONE page).
struct Buffers {
  Form form;
  bool tight;
  std::size_t lda, ldb, ldc, csize;
  PageEnd a, b, bias, gate, c, act, c1, act1;

  static std::size_t a_size(const Problem& p, Form f, bool tight) {
    return f == Form::WeightGrad ? p.k * (p.m + (tight ? 0 : 2)) : p.m * (p.k + (tight ? 0 : 3));
  }
  static std::size_t b_size(const Problem& p, Form f, bool tight) {
    if (f == Form::Packed) return (p.n + cpu::kPanel - 1) / cpu::kPanel * cpu::kPanel * p.k;
    return p.k * (p.n + (tight ? 0 : 5));
  }
  static std::size_t c_size(const Problem& p, bool tight) { return tight ? p.m * p.n : p.m * (p.n + 3) + kGuard; }

  Buffers(const Problem& p, Form f, bool t)
      : form(f), tight(t), lda(f == Form::WeightGrad ? p.m + (t ? 0 : 2) : p.k + (t ? 0 : 3)),
        ldb(f == Form::Packed ? cpu::kPanel : p.n + (t ? 0 : 5)), ldc(t ? p.n : p.n + 3), csize(c_size(p, t)),
        a(a_size(p, f, t)), b(b_size(p, f, t)), bias(p.n), gate(csize), c(csize), act(csize), c1(csize),
        act1(csize) {
    for (std::size_t i = 0; i < p.m; ++i)
      for (std::size_t q = 0; q < p.k; ++q) a[f == Form::WeightGrad ? q * lda + i : i * lda + q] = p.a[i * p.k + q];
    for (std::size_t q = 0; q < p.k; ++q)
      for (std::size_t col = 0; col < p.n; ++col) {
        const std::size_t at = f == Form::Packed ? (col / cpu::kPanel) * p.k * cpu::kPanel + q * cpu::kPanel + col % cpu::kPanel
                                                 : q * ldb + col;
        b[at] = p.b[q * p.n + col];
      }
    for (std::size_t col = 0; col < p.n; ++col) bias[col] = p.bias[col];
    for (std::size_t i = 0; i < p.m; ++i)
      for (std::size_t col = 0; col < p.n; ++col) gate[i * ldc + col] = p.gate[i * p.n + col];
  }

  cpu::Gemm view(const Problem& p, const Variant& v) {
    cpu::Gemm g;
    g.m = p.m;
    g.n = p.n;
    g.k = p.k;
    g.a = a.data();
    if (form == Form::WeightGrad) {
      g.a_rs = 1;
      g.a_cs = lda;
    } else {
      g.a_rs = lda;
      g.a_cs = 1;
    }
    g.b = b.data();
    if (form == Form::Packed) {
      g.b_rs = cpu::kPanel;
      g.b_ps = p.k * cpu::kPanel;
    } else {
      g.b_rs = ldb;
      g.b_ps = cpu::kPanel;
    }
    g.bias = v.bias ? bias.data() : nullptr;
    g.c = c.data();
    g.ldc = ldc;
    g.accumulate = v.accumulate;
    g.epilogue = v.e;
    g.alpha = kAlpha;
    g.act = v.act ? act.data() : nullptr;
    g.gate = (v.e == Epilogue::ReluGrad || v.e == Epilogue::LeakyReluGrad) ? gate.data() : nullptr;
    return g;
  }

  // Sentinels everywhere; C0 in the valid slots of C (and c1) when accumulating.
  void reset_outputs(const Problem& p, const Variant& v) {
    c.fill_sentinel();
    act.fill_sentinel();
    c1.fill_sentinel();
    act1.fill_sentinel();
    if (!v.accumulate) return;
    for (std::size_t i = 0; i < p.m; ++i)
      for (std::size_t col = 0; col < p.n; ++col) c[i * ldc + col] = c1[i * ldc + col] = p.c0[i * p.n + col];
  }
};

void run_gemm(Table& t, Group grp, Problem& p, Buffers& buf, const Variant& v) {
  set_case(t, grp, "%s, %s, m=%zu n=%zu k=%zu%s", form_name(buf.form), v.name, p.m, p.n, p.k,
           buf.tight ? ", tight" : "");
  buf.reset_outputs(p, v);
  const cpu::Gemm g = buf.view(p, v);
  t.k->gemm(g);

  const int kind = v.accumulate ? 2 : v.bias ? 1 : 0;
  const std::vector<float>& want = p.expected(t.fused, kind);
  const std::vector<float>* other = nullptr;  // the other rounding's chains, made on the first mismatch
  const bool grad = v.e == Epilogue::ReluGrad || v.e == Epilogue::LeakyReluGrad;
  const float low = v.e == Epilogue::LeakyReluGrad ? kAlpha : 0.0f;
  for (std::size_t at = 0; at < buf.csize; ++at) {
    const std::size_t i = at / buf.ldc, c = at % buf.ldc;
    if (i >= p.m || c >= p.n) {
      check_sentinel("C", at, buf.c[at]);
      check_sentinel("act", at, buf.act[at]);
      continue;
    }
    const std::size_t e = i * p.n + c;
    const float x = want[e];
    if (!other && (bits(buf.c[at]) != bits(x) || v.act)) other = &p.expected(!t.fused, kind);
    const float y = other ? (*other)[e] : x;  // the chain if the compiler fused / did not fuse
    const double init = p.init(kind, i, c);
    const double r = init + p.dot[e];
    // Rigorous: k + 1 roundings in the chain (products, sums) plus one in the epilogue.
    const double tol = (static_cast<double>(p.k) + 3) * kU * (p.mag[e] + std::fabs(init)) + 1e-30;
    if (grad) {
      const float d = p.gate[e] > 0.0f ? 1.0f : low;
      compare("C", i, c, buf.c[at], x * d, r * d, tol, Contraction::Alt, y * d);
    } else if (v.act) {
      compare("C", i, c, buf.c[at], x, r, tol, Contraction::Alt, y);
      compare("act", i, c, buf.act[at], epi_f(x, v.e), epi_d(r, v.e), tol, Contraction::Alt, epi_f(y, v.e));
    } else {
      compare("C", i, c, buf.c[at], epi_f(x, v.e), epi_d(r, v.e), tol, Contraction::Alt, epi_f(y, v.e));
      check_sentinel("act", at, buf.act[at]);
    }
  }

  if (!v.rows) return;
  // Row i on its own (m = 1) must give the bits of the batched call.
  set_case(t, kGemmRows, "%s, %s, m=%zu n=%zu k=%zu%s", form_name(buf.form), v.name, p.m, p.n, p.k,
           buf.tight ? ", tight" : "");
  for (std::size_t i = 0; i < p.m; ++i) {
    cpu::Gemm r = g;
    r.m = 1;
    r.a = g.a + i * g.a_rs;
    r.c = buf.c1.data() + i * buf.ldc;
    if (g.act) r.act = buf.act1.data() + i * buf.ldc;
    if (g.gate) r.gate = g.gate + i * buf.ldc;
    t.k->gemm(r);
  }
  for (std::size_t at = 0; at < buf.csize; ++at) {
    ++g_stat->values;
    if (bits(buf.c1[at]) != bits(buf.c[at]) || bits(buf.act1[at]) != bits(buf.act[at])) {
      fail("element %zu (row %zu, col %zu): m=1 call gave C 0x%08x act 0x%08x, batched C 0x%08x act 0x%08x", at,
           at / buf.ldc, at % buf.ldc, bits(buf.c1[at]), bits(buf.act1[at]), bits(buf.c[at]), bits(buf.act[at]));
    }
  }
}

void test_gemm_shape(std::vector<Table>& tables, std::size_t m, std::size_t n, std::size_t k, std::uint64_t seed) {
  Problem p(m, n, k, seed);
  for (Form f : {Form::Packed, Form::RowMajor, Form::WeightGrad}) {
    const Group grp = f == Form::Packed ? kGemmPacked : f == Form::RowMajor ? kGemmRowMajor : kGemmWeightGrad;
    {
      Buffers buf(p, f, false);
      for (Table& t : tables) {
        if (f == Form::WeightGrad) {
          for (const Variant& v : kWeightGrad) run_gemm(t, grp, p, buf, v);
        } else {
          for (const Variant& v : kForward) run_gemm(t, grp, p, buf, v);
        }
      }
    }
    Buffers tight(p, f, true);
    for (Table& t : tables) {
      if (f == Form::Packed) {
        for (const Variant& v : kPageEndPacked) run_gemm(t, kGemmPageEnd, p, tight, v);
      } else if (f == Form::RowMajor) {
        for (const Variant& v : kPageEndRowMajor) run_gemm(t, kGemmPageEnd, p, tight, v);
      } else {
        for (const Variant& v : kPageEndWeightGrad) run_gemm(t, kGemmPageEnd, p, tight, v);
      }
    }
  }
}

void test_gemm(std::vector<Table>& tables) {
  std::uint64_t seed = 1;
  for (std::size_t m : kSizes)
    for (std::size_t n : kSizes)
      for (std::size_t k : kSizes) test_gemm_shape(tables, m, n, k, seed++);
  // Long reductions, past any blocking of k (a pass of kc rows of B at a time must not change
  // the chain, the bias or where the epilogue is applied): gemm blocks reductions over 1024 in
  // passes of 512 (1537: three whole passes and one of a single step), except for rows that
  // fit one register tile (m = 1), which run in one pass and must give the same bits.
  for (std::size_t m : {1, 17, 65})
    for (std::size_t n : {1, 17, 65})
      for (std::size_t k : {513, 777, 1025, 1537}) test_gemm_shape(tables, m, n, k, seed++);
}

// ---- element-wise entries ----------------------------------------------------------------------

// Values with the edge cases of a select: zeros of both signs, NaN, infinities, denormals.
float special(Rng& r, std::size_t i) {
  switch (i % 23) {
    case 3: return 0.0f;
    case 7: return -0.0f;
    case 11: return NAN;
    case 13: return INFINITY;
    case 17: return -INFINITY;
    case 19: return 1e-40f;
    case 21: return -1e-40f;
    default: return r.value();
  }
}

std::vector<std::size_t> lengths() {
  std::vector<std::size_t> out = {0};
  for (std::size_t n : kSizes) out.push_back(n);
  return out;
}

void test_rectify(Table& t) {
  std::uint64_t seed = 1000;
  for (Epilogue e : {Epilogue::None, Epilogue::Relu, Epilogue::LeakyRelu})
    for (std::size_t n : lengths())
      for (bool alias : {false, true}) {
        set_case(t, kRectify, "epilogue %d, n=%zu%s", static_cast<int>(e), n, alias ? ", y = z" : "");
        Rng r(seed++);
        std::vector<float> z0(n);
        for (std::size_t i = 0; i < n; ++i) z0[i] = special(r, i);
        PageEnd z(n), y(n + kGuard + 1);  // y: one sentinel before, kGuard after
        for (std::size_t i = 0; i < n; ++i) z[i] = z0[i];
        float* out = alias ? z.data() : y.data() + 1;
        t.k->rectify(e, kAlpha, z.data(), out, n);
        for (std::size_t i = 0; i < n; ++i) {
          const float want = epi_f(z0[i], e);
          compare("y", 0, i, out[i], want, epi_d(z0[i], e), kU * std::fabs(static_cast<double>(z0[i])) + kTiny);
        }
        if (!alias) {
          check_sentinel("y", 0, y[0]);
          for (std::size_t i = n + 1; i < y.size(); ++i) check_sentinel("y", i, y[i]);
        }
      }
}

void test_rectify_backward(Table& t) {
  std::uint64_t seed = 2000;
  for (Epilogue e : {Epilogue::Relu, Epilogue::LeakyRelu})
    for (std::size_t n : lengths())
      for (bool alias : {false, true}) {
        set_case(t, kRectifyBackward, "epilogue %d, n=%zu%s", static_cast<int>(e), n, alias ? ", gz = gy" : "");
        Rng r(seed++);
        std::vector<float> z0(n), gy0(n);
        for (std::size_t i = 0; i < n; ++i) {
          z0[i] = special(r, i);
          gy0[i] = special(r, i * 5 + 1);
        }
        PageEnd z(n), gy(n), gz(n + kGuard + 1);
        for (std::size_t i = 0; i < n; ++i) {
          z[i] = z0[i];
          gy[i] = gy0[i];
        }
        float* out = alias ? gy.data() : gz.data() + 1;
        t.k->rectify_backward(e, kAlpha, z.data(), gy.data(), out, n);
        const float low = e == Epilogue::LeakyRelu ? kAlpha : 0.0f;
        for (std::size_t i = 0; i < n; ++i) {
          const float d = z0[i] > 0.0f ? 1.0f : low;
          const double ref = static_cast<double>(gy0[i]) * d;
          compare("gz", 0, i, out[i], mul(gy0[i], d), ref, kU * std::fabs(ref) + kTiny);
        }
        if (!alias) {
          check_sentinel("gz", 0, gz[0]);
          for (std::size_t i = n + 1; i < gz.size(); ++i) check_sentinel("gz", i, gz[i]);
        }
      }
}

void test_column_sums(Table& t) {
  std::uint64_t seed = 3000;
  std::vector<std::size_t> rows = {0};
  for (std::size_t m : kSizes) rows.push_back(m);
  for (std::size_t m : rows)
    for (std::size_t n : kSizes)
      for (bool tight : {false, true}) {
        set_case(t, kColumnSums, "m=%zu n=%zu%s", m, n, tight ? ", tight (page end)" : ", ldz = n + 3");
        Rng r(seed++);
        const std::size_t ldz = tight ? n : n + 3;
        PageEnd dz(m * ldz), db(n + kGuard + 1);
        std::vector<float> db0(n);
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t j = 0; j < n; ++j) dz[i * ldz + j] = r.value();
        for (std::size_t j = 0; j < n; ++j) db[1 + j] = db0[j] = r.value();
        // tight: db ends at the page too.
        PageEnd dbt(n);
        for (std::size_t j = 0; j < n; ++j) dbt[j] = db0[j];
        float* out = tight ? dbt.data() : db.data() + 1;
        t.k->column_sums(m, n, dz.data(), ldz, out);
        for (std::size_t j = 0; j < n; ++j) {
          float s = db0[j];
          double ref = db0[j], mag = std::fabs(ref);
          for (std::size_t i = 0; i < m; ++i) {
            s = s + dz[i * ldz + j];
            ref += dz[i * ldz + j];
            mag += std::fabs(static_cast<double>(dz[i * ldz + j]));
          }
          compare("db", 0, j, out[j], s, ref, (static_cast<double>(m) + 1) * kU * mag + 1e-30);
        }
        if (!tight) {
          check_sentinel("db", 0, db[0]);
          for (std::size_t i = n + 1; i < db.size(); ++i) check_sentinel("db", i, db[i]);
        }
      }
}

void test_reduce(Table& t) {
  std::uint64_t seed = 4000;
  for (std::size_t count : {1, 2, 3, 5})
    for (std::size_t end : lengths())
      for (std::size_t begin : {0, 1, 5}) {
        if (begin > end) continue;
        set_case(t, kReduce, "count=%zu [%zu, %zu)", count, begin, end);
        Rng r(seed++);
        std::vector<PageEnd*> src;
        std::vector<const float*> ptrs;
        for (std::size_t c = 0; c < count; ++c) {
          src.push_back(new PageEnd(end));
          for (std::size_t i = 0; i < end; ++i) (*src.back())[i] = r.value();
          ptrs.push_back(src.back()->data());
        }
        PageEnd dst(end);
        t.k->reduce(dst.data(), ptrs.data(), count, begin, end);
        for (std::size_t i = 0; i < end; ++i) {
          if (i < begin) {
            check_sentinel("dst", i, dst[i]);
            continue;
          }
          float s = ptrs[0][i];
          double ref = s, mag = std::fabs(ref);
          for (std::size_t c = 1; c < count; ++c) {
            s = s + ptrs[c][i];
            ref += ptrs[c][i];
            mag += std::fabs(static_cast<double>(ptrs[c][i]));
          }
          compare("dst", 0, i, dst[i], s, ref, static_cast<double>(count) * kU * mag + 1e-30);
        }
        for (PageEnd* b : src) delete b;
      }
}

// Adam / AdamW as core/optimizer.cpp sets the step up (lr 1e-3, betas 0.9 / 0.999, eps 1e-8,
// weight decay 0.01, step t = 5).
cpu::AdamStep adam_step(bool decoupled) {
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01, t = 5;
  cpu::AdamStep s{};
  s.step_size = static_cast<float>(lr / (1 - std::pow(b1, t)));
  s.sqrt_bc2 = static_cast<float>(std::sqrt(1 - std::pow(b2, t)));
  s.b1 = static_cast<float>(b1);
  s.one_b1 = static_cast<float>(1 - b1);
  s.b2 = static_cast<float>(b2);
  s.one_b2 = static_cast<float>(1 - b2);
  s.eps = static_cast<float>(eps);
  s.wd = static_cast<float>(wd);
  s.decay = static_cast<float>(1 - lr * wd);
  s.decoupled = decoupled;
  return s;
}

void test_adam(Table& t) {
  std::uint64_t seed = 5000;
  for (bool decoupled : {false, true})
    for (std::size_t end : lengths())
      for (std::size_t begin : {0, 3}) {
        if (begin > end) continue;
        set_case(t, kAdam, "%s [%zu, %zu)", decoupled ? "adamw" : "adam", begin, end);
        Rng r(seed++);
        PageEnd p(end), g(end), m(end), v(end);
        std::vector<float> p0(end), g0(end), m0(end), v0(end);
        for (std::size_t i = 0; i < end; ++i) {
          p[i] = p0[i] = r.value();
          g[i] = g0[i] = r.value();
          m[i] = m0[i] = 0.1f * r.value();
          v[i] = v0[i] = 0.01f * std::fabs(r.value());
        }
        cpu::AdamStep s = adam_step(decoupled);
        s.p = p.data();
        s.g = g.data();
        s.m = m.data();
        s.v = v.data();
        t.k->adam(s, begin, end);
        for (std::size_t i = 0; i < end; ++i) {
          if (i < begin) {  // untouched
            compare("p", 0, i, p[i], p0[i], p0[i], 0);
            compare("m", 0, i, m[i], m0[i], m0[i], 0);
            compare("v", 0, i, v[i], v0[i], v0[i], 0);
            continue;
          }
          compare("g", 0, i, g[i], g0[i], g0[i], 0);
          // float32, in the order of kernels_impl.inl / optimizer.cpp
          float pf = p0[i], gf = g0[i];
          if (decoupled) {
            pf = pf * s.decay;
          } else {
            gf = gf + mul(s.wd, pf);
          }
          const float mf = mul(s.b1, m0[i]) + mul(s.one_b1, gf);
          const float vf = mul(s.b2, v0[i]) + mul(mul(s.one_b2, gf), gf);
          const float den = std::sqrt(vf) / s.sqrt_bc2 + s.eps;
          pf = pf - mul(s.step_size, mf) / den;
          // double, from the same float inputs and constants
          double pd = p0[i], gd = g0[i];
          if (decoupled) {
            pd *= s.decay;
          } else {
            gd += static_cast<double>(s.wd) * pd;
          }
          const double md = static_cast<double>(s.b1) * m0[i] + static_cast<double>(s.one_b1) * gd;
          const double vd = static_cast<double>(s.b2) * v0[i] + static_cast<double>(s.one_b2) * gd * gd;
          const double dd = std::sqrt(vd) / s.sqrt_bc2 + s.eps;
          const double upd = static_cast<double>(s.step_size) * md / dd;
          pd -= upd;
          // Tolerances: 16 float32 roundings of the magnitudes that enter each result.
          const double gmag = std::fabs(static_cast<double>(g0[i])) + (decoupled ? 0 : s.wd * std::fabs(p0[i]));
          const double mmag = s.b1 * std::fabs(m0[i]) + s.one_b1 * gmag;
          const double vmag = s.b2 * v0[i] + s.one_b2 * gmag * gmag;
          const Contraction fused = Contraction::Rounding;
          compare("m", 0, i, m[i], mf, md, 16 * kU * mmag + 1e-30, fused);
          compare("v", 0, i, v[i], vf, vd, 16 * kU * vmag + 1e-30, fused);
          compare("p", 0, i, p[i], pf, pd, 16 * kU * (std::fabs(p0[i]) + s.step_size * mmag / dd) + 1e-30, fused);
        }
      }
}

void test_sgd(Table& t) {
  struct Mode {
    const char* name;
    float momentum, keep;
    bool use_momentum, first, nesterov;
  };
  const Mode modes[] = {
      {"plain", 0, 1, false, false, false},
      {"momentum, first step", 0.9f, 0.9f, true, true, false},
      {"momentum, dampening 0.1", 0.9f, 0.9f, true, false, false},
      {"nesterov", 0.9f, 1, true, false, true},
  };
  std::uint64_t seed = 6000;
  for (const Mode& mode : modes)
    for (std::size_t end : lengths())
      for (std::size_t begin : {0, 3}) {
        if (begin > end) continue;
        set_case(t, kSgd, "%s [%zu, %zu)", mode.name, begin, end);
        Rng r(seed++);
        PageEnd p(end), g(end), b(end);
        std::vector<float> p0(end), g0(end), b0(end);
        for (std::size_t i = 0; i < end; ++i) {
          p[i] = p0[i] = r.value();
          g[i] = g0[i] = r.value();
          b[i] = b0[i] = 0.1f * r.value();
        }
        cpu::SgdStep s{};
        s.p = p.data();
        s.g = g.data();
        s.buf = b.data();
        s.lr = 0.05f;
        s.wd = 1e-3f;
        s.momentum = mode.momentum;
        s.keep = mode.keep;
        s.use_momentum = mode.use_momentum;
        s.first = mode.first;
        s.nesterov = mode.nesterov;
        t.k->sgd(s, begin, end);
        for (std::size_t i = 0; i < end; ++i) {
          if (i < begin) {
            compare("p", 0, i, p[i], p0[i], p0[i], 0);
            compare("buf", 0, i, b[i], b0[i], b0[i], 0);
            continue;
          }
          float gf = g0[i] + mul(s.wd, p0[i]);
          double gd = g0[i] + static_cast<double>(s.wd) * p0[i];
          double scale = std::fabs(static_cast<double>(g0[i])) + s.wd * std::fabs(p0[i]);
          float bf = b0[i];
          double bd = b0[i];
          if (s.use_momentum) {
            if (s.first) {
              bf = gf;
              bd = gd;
            } else {
              bf = mul(s.momentum, b0[i]) + mul(s.keep, gf);
              bd = static_cast<double>(s.momentum) * b0[i] + static_cast<double>(s.keep) * gd;
              scale = s.momentum * std::fabs(b0[i]) + s.keep * scale;
            }
            if (s.nesterov) {
              gf = gf + mul(s.momentum, bf);
              gd = gd + static_cast<double>(s.momentum) * bd;
              scale = scale * (1 + s.momentum) + std::fabs(static_cast<double>(g0[i]));
            } else {
              gf = bf;
              gd = bd;
            }
          }
          const float pf = p0[i] - mul(s.lr, gf);
          const double pd = p0[i] - static_cast<double>(s.lr) * gd;
          compare("buf", 0, i, b[i], bf, bd, s.use_momentum ? 8 * kU * scale + 1e-30 : 0, Contraction::Rounding);
          compare("p", 0, i, p[i], pf, pd, 8 * kU * (std::fabs(p0[i]) + s.lr * scale) + 1e-30, Contraction::Rounding);
          compare("g", 0, i, g[i], g0[i], g0[i], 0);
        }
      }
}

// ---- the tables ------------------------------------------------------------------------------------

// all_finite over page-end buffers: true for any mix of finite values (denormals, +-FLT_MAX,
// -0), false with one NaN or +-Infinity at the first, a middle, the last or a tail position.
void test_all_finite(Table& t) {
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::quiet_NaN()};
  const float finite[] = {0.0f, -0.0f, 1.5f, -3.0f, std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::denorm_min(), 1e-40f};
  for (std::size_t n : lengths()) {
    set_case(t, kAllFinite, "n=%zu all finite", n);
    PageEnd x(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = finite[i % (sizeof finite / sizeof *finite)];
    ++g_stat->values;
    if (!t.k->all_finite(x.data(), n)) fail("all finite but all_finite returned false");
    if (n == 0) continue;
    for (std::size_t at : {std::size_t(0), n / 2, n - 1}) {
      for (float bad : specials) {
        set_case(t, kAllFinite, "n=%zu %g at %zu", n, static_cast<double>(bad), at);
        const float keep = x[at];
        x[at] = bad;
        ++g_stat->values;
        if (t.k->all_finite(x.data(), n)) fail("%g at %zu but all_finite returned true", static_cast<double>(bad), at);
        x[at] = keep;
      }
    }
  }
}

// sum_squares over page-end buffers: within n 2^-23 relative of the float64 sum (a float32 sum
// of n nonnegative terms in any order is off by at most (n - 1) 2^-24), +Infinity once a square
// overflows (|x| ~ 2e19), and not finite for one NaN or +-Infinity.
void test_sum_squares(Table& t) {
  for (std::size_t n : lengths()) {
    set_case(t, kSumSquares, "n=%zu", n);
    PageEnd x(n);
    double want = 0;
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = static_cast<float>(std::sin(0.7 * static_cast<double>(i) + 0.3) * (i % 5 == 0 ? 1e3 : 1.0));
      want += static_cast<double>(x[i]) * x[i];
    }
    ++g_stat->values;
    const double got = t.k->sum_squares(x.data(), n);
    if (std::fabs(got - want) > want * static_cast<double>(n) * 0x1p-23) fail("sum %.9g, float64 %.9g", got, want);
    if (n == 0) continue;
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity(), 3e19f}) {
      set_case(t, kSumSquares, "n=%zu %g last", n, static_cast<double>(bad));
      const float keep = x[n - 1];
      x[n - 1] = bad;
      ++g_stat->values;
      if (std::isfinite(t.k->sum_squares(x.data(), n))) fail("%g in the input but a finite sum", static_cast<double>(bad));
      x[n - 1] = keep;
    }
  }
}

const cpu::Kernels* table_named(const char* name) {
  if (std::strcmp(name, "scalar") == 0) return &cpu::scalar_kernels();
#if defined(__x86_64__) || defined(_M_X64)
  if (std::strcmp(name, "avx2") == 0) return &cpu::avx2_kernels();
  if (std::strcmp(name, "avx512") == 0) return &cpu::avx512_kernels();
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
  if (std::strcmp(name, "neon") == 0) return &cpu::neon_kernels();
#endif
  return nullptr;
}

}  // namespace

// An int8 code for test weights: the extremes -127 and 127 (and -128, which the kernels must
// widen as well although models never hold it) every few values, random codes otherwise.
std::int8_t code_for(Rng& r, std::size_t i) {
  if (i % 7 == 0) return 127;
  if (i % 11 == 0) return -127;
  if (i % 13 == 0) return -128;
  return static_cast<std::int8_t>(static_cast<int>(r.next() % 255) - 127);
}

// axpy_rows: y[r][c] += h[r][j] * w[j][c] over a list of j, each output one chain in list order
// (fused for SIMD, multiply then add for scalar; zero h contribute exactly nothing). Weight rows
// of exactly n floats with the last one ending at a page end, and a column range [c0, c1)
// inside the rows, so a load past a row or a store outside the range shows.
// With int8 weights (AxpyRows::w8) the codes, extremes included, widen to float exactly, so the
// expected chain is the float one over the codes.
void test_axpy_rows(Table& t) {
  std::uint64_t seed = 7000;
  for (bool int8 : {false, true})
  for (std::size_t rows : {1, 2, 5, 16})
    for (std::size_t n : {1, 3, 17, 63, 65, 1000})
      for (std::size_t k : {1, 7, 64}) {
        set_case(t, kAxpyRows, "%s rows=%zu n=%zu k=%zu", int8 ? "int8" : "float", rows, n, k);
        Rng r(seed++);
        PageEnd w(k * n);
        PageEndOf<std::int8_t> w8(int8 ? k * n : 0);
        for (std::size_t i = 0; i < k * n; ++i) {
          if (int8) {
            w8[i] = code_for(r, i);
            w[i] = w8[i];
          } else {
            w[i] = r.value();
          }
        }
        std::vector<float> h(rows * k);
        for (float& v : h) v = r.value(3);  // a third exact zeros
        std::vector<std::uint32_t> idx;
        for (std::size_t j = 0; j < k; ++j)
          if (r.next() % 4 != 0) idx.push_back(static_cast<std::uint32_t>(j));
        const std::size_t c0 = n > 2 ? 1 : 0, c1 = n > 2 ? n - 1 : n;
        PageEnd y(rows * n);
        std::vector<float> y0(rows * n);
        for (std::size_t i = 0; i < rows * n; ++i) y[i] = y0[i] = (i % n >= c0 && i % n < c1) ? r.value() : sentinel();
        cpu::AxpyRows a;
        a.w = int8 ? nullptr : w.data();
        a.w8 = int8 ? w8.data() : nullptr;
        a.ldw = n;
        a.idx = idx.data();
        a.count = idx.size();
        a.h = h.data();
        a.ldh = k;
        a.rows = rows;
        a.y = y.data();
        a.ldy = n;
        a.c0 = c0;
        a.c1 = c1;
        t.k->axpy_rows(a);
        for (std::size_t row = 0; row < rows; ++row)
          for (std::size_t c = 0; c < n; ++c) {
            const std::size_t at = row * n + c;
            if (c < c0 || c >= c1) {
              check_sentinel("y", at, y[at]);
              continue;
            }
            float want = y0[at];
            double ref = want, mag = std::fabs(ref);
            for (std::uint32_t j : idx) {
              const float hv = h[row * k + j], wv = w[j * n + c];
              if (hv == 0.0f) continue;
              want = t.fused ? std::fma(hv, wv, want) : want + mul(hv, wv);
              ref += static_cast<double>(hv) * wv;
              mag += std::fabs(static_cast<double>(hv) * wv);
            }
            compare("y", row, c, y[at], want, ref, (static_cast<double>(idx.size()) + 1) * kU * mag + 1e-30);
          }
      }
}

// dot_rows: h[r][j] = w_j . x_r for the listed j only (other entries untouched), within the
// float32 bound of its fixed order (one vector chain over p, then a tree over lanes).
void test_dot_rows(Table& t) {
  std::uint64_t seed = 8000;
  for (bool int8 : {false, true})
  for (std::size_t rows : {1, 3, 16})
    for (std::size_t k : {1, 3, 17, 63, 65, 1000})
      for (std::size_t n : {1, 9}) {
        set_case(t, kDotRows, "%s rows=%zu k=%zu n=%zu", int8 ? "int8" : "float", rows, k, n);
        Rng r(seed++);
        PageEnd w(n * k), x(rows * k);
        PageEndOf<std::int8_t> w8(int8 ? n * k : 0);
        for (std::size_t i = 0; i < n * k; ++i) {
          if (int8) {
            w8[i] = code_for(r, i);
            w[i] = w8[i];
          } else {
            w[i] = r.value();
          }
        }
        for (std::size_t i = 0; i < rows * k; ++i) x[i] = r.value(5);
        std::vector<std::uint32_t> idx;
        for (std::size_t j = 0; j < n; ++j)
          if (n == 1 || j % 3 != 1) idx.push_back(static_cast<std::uint32_t>(j));
        std::vector<float> h(rows * n, sentinel());
        cpu::DotRows d;
        d.w = int8 ? nullptr : w.data();
        d.w8 = int8 ? w8.data() : nullptr;
        d.ldw = k;
        d.k = k;
        d.idx = idx.data();
        d.count = idx.size();
        d.x = x.data();
        d.ldx = k;
        d.rows = rows;
        d.h = h.data();
        d.ldh = n;
        t.k->dot_rows(d);
        for (std::size_t row = 0; row < rows; ++row)
          for (std::size_t j = 0; j < n; ++j) {
            const float got = h[row * n + j];
            if (std::find(idx.begin(), idx.end(), j) == idx.end()) {
              check_sentinel("h", row * n + j, got);
              continue;
            }
            double ref = 0, mag = 0;
            for (std::size_t p = 0; p < k; ++p) {
              ref += static_cast<double>(w[j * k + p]) * x[row * k + p];
              mag += std::fabs(static_cast<double>(w[j * k + p]) * x[row * k + p]);
            }
            ++g_stat->values;
            if (!(std::fabs(got - ref) <= (static_cast<double>(k) + 8) * kU * mag + 1e-30)) {
              fail("h(%zu, %zu): got %.9g, double %.12g, |err| %.3g", row, j, got, ref, std::fabs(got - ref));
            }
          }
      }
}

// gemm_sparse: C = init + A . B over the listed p only, each output one chain over the list in
// order (fused for SIMD, multiply then add for scalar), started from C (accumulate), the bias
// or zero, the epilogue on the final sum. Lists longer than the kernel's pass of 128 inputs
// check that the passes continue each chain. B is packed panels ending at a page end, C has
// sentinels past each row's n columns.
void test_gemm_sparse(Table& t) {
  std::uint64_t seed = 9000;
  for (std::size_t m : {1, 5, 7, 16})
    for (std::size_t n : {1, 17, 65, 200})
      for (std::size_t k : {1, 100, 300, 700})
        for (int form = 0; form < 4; ++form) {  // 0 plain, 1 bias + relu, 2 accumulate, 3 empty list
          set_case(t, kGemmSparse, "m=%zu n=%zu k=%zu form=%d", m, n, k, form);
          Rng r(seed++);
          const std::size_t np = (n + cpu::kPanel - 1) / cpu::kPanel * cpu::kPanel;
          PageEnd b(k * np);
          for (std::size_t q = 0; q < np / cpu::kPanel; ++q)
            for (std::size_t p = 0; p < k; ++p)
              for (std::size_t c = 0; c < cpu::kPanel; ++c) {
                const std::size_t col = q * cpu::kPanel + c;
                b[q * k * cpu::kPanel + p * cpu::kPanel + c] = col < n ? r.value() : 0.0f;
              }
          std::vector<float> a(m * k), bias(n);
          for (float& v : a) v = r.value();
          for (float& v : bias) v = r.value();
          std::vector<std::uint32_t> idx;
          if (form != 3)
            for (std::size_t p = 0; p < k; ++p)
              if (r.next() % 4 != 0) idx.push_back(static_cast<std::uint32_t>(p));
          const std::size_t ldc = n + 3;
          std::vector<float> c(m * ldc), c0(m * ldc);
          for (std::size_t i = 0; i < m * ldc; ++i) c[i] = c0[i] = i % ldc < n ? r.value() : sentinel();
          cpu::Gemm g;
          g.m = m;
          g.n = n;
          g.k = k;
          g.a = a.data();
          g.a_rs = k;
          g.b = b.data();
          g.b_rs = cpu::kPanel;
          g.b_ps = k * cpu::kPanel;
          g.bias = form == 1 ? bias.data() : nullptr;
          g.c = c.data();
          g.ldc = ldc;
          g.accumulate = form == 2;
          g.epilogue = form == 1 ? Epilogue::Relu : Epilogue::None;
          t.k->gemm_sparse(g, idx.data(), idx.size());
          for (std::size_t i = 0; i < m; ++i)
            for (std::size_t col = 0; col < ldc; ++col) {
              const std::size_t at = i * ldc + col;
              if (col >= n) {
                check_sentinel("c", at, c[at]);
                continue;
              }
              const float init = form == 2 ? c0[at] : form == 1 ? bias[col] : 0.0f;
              float want = init;
              double ref = init, mag = std::fabs(ref);
              for (std::uint32_t p : idx) {
                const float av = a[i * k + p];
                const float bv = b[(col / cpu::kPanel) * k * cpu::kPanel + p * cpu::kPanel + col % cpu::kPanel];
                want = t.fused ? std::fma(av, bv, want) : want + mul(av, bv);
                ref += static_cast<double>(av) * bv;
                mag += std::fabs(static_cast<double>(av) * bv);
              }
              if (form == 1) {
                want = epi_f(want, Epilogue::Relu);
                ref = epi_d(ref, Epilogue::Relu);
              }
              compare("c", i, col, c[at], want, ref, (static_cast<double>(idx.size()) + 1) * kU * mag + 1e-30);
            }
        }
}

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  // Strict by default now that the builds pass -ffp-contract=off; MLPKIT_KERNEL_TESTS_STRICT=0
  // reports contraction deviations without failing (for a build made with other flags).
  const char* strict = std::getenv("MLPKIT_KERNEL_TESTS_STRICT");
  g_strict = !strict || std::strcmp(strict, "0") != 0;
  std::size_t count = 0;
  const char* const* names = cpu::supported_isas(&count);
  std::printf("kernel_tests: supported ISAs (widest first):");
  for (std::size_t i = 0; i < count; ++i) std::printf(" %s", names[i]);
  std::printf("; kernels().isa = %s%s\n", cpu::kernels().isa,
              std::getenv("MLPKIT_ISA") ? " (MLPKIT_ISA is set)" : "");

  int setup_failures = 0;
  std::vector<Table> tables;
  for (std::size_t i = 0; i < count; ++i) {
    const cpu::Kernels* k = table_named(names[i]);
    if (!k || std::strcmp(k->isa, names[i]) != 0) {
      std::printf("FAIL supported_isas names '%s' but its table is %s\n", names[i], k ? k->isa : "missing");
      ++setup_failures;
      continue;
    }
    Table t{};
    t.name = names[i];
    t.k = k;
    t.fused = std::strcmp(names[i], "scalar") != 0;
    tables.push_back(t);
  }
  bool picked_listed = false;
  for (const Table& t : tables) picked_listed = picked_listed || t.k == &cpu::kernels();
  if (!picked_listed) {
    std::printf("FAIL kernels() (%s) is not one of the supported tables\n", cpu::kernels().isa);
    ++setup_failures;
  }

#if KT_GUARD_PAGES
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_fault;
  sa.sa_flags = SA_NODEFER;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
#endif
  const bool guard = guard_page_traps();
  std::printf("guard page: %s\n", guard ? "a load one float past a page-end buffer faults, as it must"
                                        : "NOT ACTIVE on this platform (page-end cases only check values)");
  if (KT_GUARD_PAGES && !guard) ++setup_failures;

  test_gemm(tables);
  for (Table& t : tables) {
    test_rectify(t);
    test_rectify_backward(t);
    test_column_sums(t);
    test_reduce(t);
    test_adam(t);
    test_sgd(t);
    test_axpy_rows(t);
    test_dot_rows(t);
    test_gemm_sparse(t);
    test_all_finite(t);
    test_sum_squares(t);
  }

  long long failed = setup_failures;
  for (Table& t : tables) {
    long long values = 0, fails = 0, contracted = 0;
    for (int g = 0; g < kGroups; ++g) {
      const Stat& s = t.stat[g];
      std::printf("[%s] %s %-46s %6lld cases %11lld values", t.name, s.failures ? "FAIL" : "ok  ", kGroupNames[g],
                  s.cases, s.values);
      if (s.contracted) std::printf(" (%lld off the documented rounding by fp contraction)", s.contracted);
      std::printf("\n");
      contracted += s.contracted;
      if (s.failures) std::printf("[%s]      %lld failed\n", t.name, s.failures);
      values += s.values;
      fails += s.failures;
    }
    std::printf("[%s] %s: %lld values checked, %lld failed, %lld fp-contraction deviations%s\n", t.name,
                fails ? "FAILED" : "passed", values, fails, contracted,
                contracted ? " (not failures because MLPKIT_KERNEL_TESTS_STRICT=0)" : "");
    failed += fails;
  }
  std::printf("kernel_tests: %s (%zu ISA tables)\n", failed ? "FAILED" : "all passed", tables.size());
  return failed ? 1 : 0;
}
