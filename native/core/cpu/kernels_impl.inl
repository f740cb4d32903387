// The generic CPU kernels, written once against a vector type V and instantiated per ISA.
//
// Include this file only from a kernels_<isa>.cpp, inside that file's anonymous namespace in
// mlpkit::cpu, after defining V. Everything here then has internal linkage in that translation
// unit: the linker can never merge, say, the AVX-512 build of a helper into the scalar path.
// For the same reason this file includes no headers and uses nothing from the standard library.
//
// V provides: T (the register type), W (lanes), MR x NV (the GEMM register tile: MR rows of A
// by NV vectors of columns), and zero/set1/load/load_part/store/store_part/fma/add/mul/div/
// sqrt/max/gt_select, prefetch (a hint; may do nothing), and pin (keeps a loaded value in a register: without it the compiler
// folds the B loads into every FMA's memory operand, MR loads where one would do, and the
// microkernel becomes load-bound). See kernels_scalar.cpp for the plainest V.

using T = typename V::T;
constexpr std::size_t W = V::W;
static_assert(kPanel % W == 0, "a vector must never straddle two panels");

inline std::size_t min_size(std::size_t a, std::size_t b) { return a < b ? a : b; }

// Address of B(p = 0, column c) for the strided view in Gemm.
inline const float* b_column(const Gemm& g, std::size_t c) { return g.b + (c / kPanel) * g.b_ps + c % kPanel; }

inline T epilogue(const T& x, Epilogue e, const T& alpha) {
  if (e == Epilogue::Relu) return V::max(x, V::zero());
  if (e == Epilogue::LeakyRelu) return V::gt_select(x, V::zero(), x, V::mul(alpha, x));
  return x;
}

// The register tile: rows [i0, i0 + MR) by columns [c0, c0 + NV * W), the last vector holding
// only `tail` valid lanes when TAIL. The p loop is the only loop at run time; each output is one
// accumulator chain over p in order (see kernels.h).
template <int MR, int NV, bool TAIL>
void micro_tile(const Gemm& g, std::size_t i0, std::size_t c0, std::size_t tail) {
  T acc[MR][NV];
  const float* bcol[NV];
  for (int v = 0; v < NV; ++v) bcol[v] = b_column(g, c0 + v * W);

  auto load_c = [&](const float* p, int v) { return (TAIL && v == NV - 1) ? V::load_part(p, tail) : V::load(p); };
  if (g.accumulate) {
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = load_c(g.c + (i0 + i) * g.ldc + c0 + v * W, v);
  } else if (g.bias) {
    for (int v = 0; v < NV; ++v) {
      const T b = load_c(g.bias + c0 + v * W, v);
      for (int i = 0; i < MR; ++i) acc[i][v] = b;
    }
  } else {
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
  }

  const float* a = g.a + i0 * g.a_rs;
  const std::size_t a_rs = g.a_rs, a_cs = g.a_cs, b_rs = g.b_rs;
  for (std::size_t p = 0; p < g.k; ++p) {
    T bv[NV];
    for (int v = 0; v < NV; ++v) {
      bv[v] = load_c(bcol[v] + p * b_rs, v);
      V::pin(bv[v]);
    }
    const float* ap = a + p * a_cs;
    for (int i = 0; i < MR; ++i) {
      const T av = V::set1(ap[i * a_rs]);
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(av, bv[v], acc[i][v]);
    }
  }

  const T alpha = V::set1(g.alpha);
  auto put = [&](float* p, const T& x, int v) {
    if (TAIL && v == NV - 1) {
      V::store_part(p, x, tail);
    } else {
      V::store(p, x);
    }
  };
  const bool grad = g.epilogue == Epilogue::ReluGrad || g.epilogue == Epilogue::LeakyReluGrad;
  const T low = g.epilogue == Epilogue::LeakyReluGrad ? alpha : V::zero();
  const T one = V::set1(1.0f);
  for (int i = 0; i < MR; ++i) {
    const std::size_t at = (i0 + i) * g.ldc + c0;
    for (int v = 0; v < NV; ++v) {
      const T& x = acc[i][v];
      if (grad) {
        // x * f'(z) as a product, as the scalar activation_backward, so NaN stays NaN.
        const T z = load_c(g.gate + at + v * W, v);
        put(g.c + at + v * W, V::mul(x, V::gt_select(z, V::zero(), one, low)), v);
      } else if (g.act) {
        put(g.c + at + v * W, x, v);
        put(g.act + at + v * W, epilogue(x, g.epilogue, alpha), v);
      } else {
        put(g.c + at + v * W, epilogue(x, g.epilogue, alpha), v);
      }
    }
  }
}

using TileFn = void (*)(const Gemm&, std::size_t, std::size_t, std::size_t);

template <int MR, int NV>
constexpr TileFn pick_tail(bool tail) {
  return tail ? micro_tile<MR, NV, true> : micro_tile<MR, NV, false>;
}

template <int MR, int... NVs>
TileFn pick_nv(std::size_t nv, bool tail, std::integer_sequence<int, NVs...>) {
  TileFn fn = nullptr;
  ((nv == static_cast<std::size_t>(NVs + 1) ? (fn = pick_tail<MR, NVs + 1>(tail), 0) : 0), ...);
  return fn;
}

template <int... MRs>
TileFn pick_tile(std::size_t rows, std::size_t nv, bool tail, std::integer_sequence<int, MRs...>) {
  TileFn fn = nullptr;
  ((rows == static_cast<std::size_t>(MRs + 1)
        ? (fn = pick_nv<MRs + 1>(nv, tail, std::make_integer_sequence<int, V::NV>{}), 0)
        : 0),
   ...);
  return fn;
}

// Columns [c0, c0 + cols) of C over the whole of m, for the reduction range of g.
void gemm_columns(const Gemm& g, std::size_t c0, std::size_t cols) {
  const std::size_t nv = (cols + W - 1) / W;
  const std::size_t tail = cols - (nv - 1) * W;
  const TileFn full = pick_tile(V::MR, nv, tail != W, std::make_integer_sequence<int, V::MR>{});
  std::size_t i0 = 0;
  for (; i0 + V::MR <= g.m; i0 += V::MR) full(g, i0, c0, tail);
  if (i0 < g.m) pick_tile(g.m - i0, nv, tail != W, std::make_integer_sequence<int, V::MR>{})(g, i0, c0, tail);
}

// Reduction steps per pass: a column group's slice of B (kc x NV*W floats, 128 KB at 512 x 64)
// then stays in L2 while every row block of A streams past it. Passes after the first accumulate
// into C, which keeps each output's one chain over p in order, so the blocking never changes a
// result. The slices were 128 steps (32 KB, for L1) until Zen 5 measurements showed every pass
// boundary costing more than L2's extra latency: a tile's stream of B loads ends and restarts.
// 2 threads, Zen 5, medians of paired in-process runs, 512 against 128: predict of 8-192 rows
// through 4096 -> 16384, 2048 -> 8192, 1024 -> 4096 and 1024 -> 1024 layers 1.06-1.5x (most
// 1.1-1.17x; 256 steps measured 0.92x of 512, 1024 1.06x for up to 16 rows), training steps of
// 512-2048-2048-16, 1024-4096-4096-16 and 64-256-256-16 MLPs 1.01-1.02x.
// Rows that fit one register tile (a predict of up to MR rows) have no other row block to share
// a slice with: they run the whole reduction in one pass. Against 128-step passes, batch 1 / 4 /
// 6: 4096 -> 16384 (weights from memory) 1.05x / 1.07x / 1.20x, 2048 -> 8192 1.10x / 1.08x /
// 1.33x, 1024 -> 1024 (in cache) 1.11x / 1.24x / 1.29x.
constexpr std::size_t kKc = 512;

void gemm(const Gemm& g) {
  if (g.m == 0 || g.n == 0) return;
  constexpr std::size_t group = V::NV * W;  // columns per register tile
  const bool one_pass = g.k <= 2 * kKc || g.m <= static_cast<std::size_t>(V::MR);
  for (std::size_t c0 = 0; c0 < g.n; c0 += group) {
    const std::size_t cols = min_size(group, g.n - c0);
    if (one_pass) {
      gemm_columns(g, c0, cols);
      continue;
    }
    for (std::size_t p0 = 0; p0 < g.k; p0 += kKc) {
      Gemm part = g;
      part.k = min_size(kKc, g.k - p0);
      part.a = g.a + p0 * g.a_cs;
      part.b = g.b + p0 * g.b_rs;
      if (p0 > 0) {
        part.accumulate = true;
        part.bias = nullptr;
      }
      if (p0 + part.k < g.k) {  // the epilogue belongs to the last pass only
        part.epilogue = Epilogue::None;
        part.act = nullptr;
        part.gate = nullptr;
      }
      gemm_columns(part, c0, cols);
    }
  }
}

// gemm_sparse's register tile: MR rows by NV vectors of columns, the reduction over idx only.
template <int MR, int NV, bool TAIL>
void sparse_tile(const Gemm& g, std::size_t i0, std::size_t c0, std::size_t tail, const std::uint32_t* idx,
                 std::size_t count) {
  T acc[MR][NV];
  const float* bcol[NV];
  for (int v = 0; v < NV; ++v) bcol[v] = b_column(g, c0 + v * W);
  auto load_c = [&](const float* p, int v) { return (TAIL && v == NV - 1) ? V::load_part(p, tail) : V::load(p); };
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) {
      acc[i][v] = g.accumulate ? load_c(g.c + (i0 + i) * g.ldc + c0 + v * W, v)
                  : g.bias     ? load_c(g.bias + c0 + v * W, v)
                               : V::zero();
    }
  const float* a = g.a + i0 * g.a_rs;
  for (std::size_t n = 0; n < count; ++n) {
    const std::size_t p = idx[n];
    T bv[NV];
    for (int v = 0; v < NV; ++v) {
      bv[v] = load_c(bcol[v] + p * g.b_rs, v);
      V::pin(bv[v]);
    }
    for (int i = 0; i < MR; ++i) {
      const T av = V::set1(a[i * g.a_rs + p * g.a_cs]);
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(av, bv[v], acc[i][v]);
    }
  }
  const T alpha = V::set1(g.alpha);
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) {
      const T out = epilogue(acc[i][v], g.epilogue, alpha);
      float* dst = g.c + (i0 + i) * g.ldc + c0 + v * W;
      if (TAIL && v == NV - 1) {
        V::store_part(dst, out, tail);
      } else {
        V::store(dst, out);
      }
    }
}

using SparseFn = void (*)(const Gemm&, std::size_t, std::size_t, std::size_t, const std::uint32_t*, std::size_t);

template <int MR, int... NVs>
SparseFn pick_sparse_nv(std::size_t nv, bool tail, std::integer_sequence<int, NVs...>) {
  SparseFn fn = nullptr;
  ((nv == static_cast<std::size_t>(NVs + 1) ? (fn = tail ? sparse_tile<MR, NVs + 1, true> : sparse_tile<MR, NVs + 1, false>, 0)
                                            : 0),
   ...);
  return fn;
}

template <int... MRs>
SparseFn pick_sparse(std::size_t rows, std::size_t nv, bool tail, std::integer_sequence<int, MRs...>) {
  SparseFn fn = nullptr;
  ((rows == static_cast<std::size_t>(MRs + 1)
        ? (fn = pick_sparse_nv<MRs + 1>(nv, tail, std::make_integer_sequence<int, V::NV>{}), 0)
        : 0),
   ...);
  return fn;
}

void gemm_sparse(const Gemm& g, const std::uint32_t* idx, std::size_t count) {
  if (g.m == 0 || g.n == 0) return;
  constexpr std::size_t group = V::NV * W;
  // Passes of kSparseKc listed inputs: the group's kSparseKc rows of B stay in L1 while every
  // row block of A goes past them (one pass over the whole list re-read them from L2 for each
  // block of V::MR rows). Passes after the first continue each output's chain from C. (128, as
  // gemm's were before; not measured at 512.)
  constexpr std::size_t kSparseKc = 128;
  const std::size_t passes = count == 0 ? 1 : (count + kSparseKc - 1) / kSparseKc;
  for (std::size_t c0 = 0; c0 < g.n; c0 += group) {
    const std::size_t cols = min_size(group, g.n - c0);
    const std::size_t nv = (cols + W - 1) / W;
    const std::size_t tail = cols - (nv - 1) * W;
    for (std::size_t pass = 0; pass < passes; ++pass) {
      const std::size_t first = pass * kSparseKc, n = min_size(kSparseKc, count - min_size(first, count));
      Gemm part = g;
      if (pass > 0) {
        part.accumulate = true;
        part.bias = nullptr;
      }
      if (pass + 1 < passes) {  // the epilogue belongs to the last pass only
        part.epilogue = Epilogue::None;
        part.act = nullptr;
        part.gate = nullptr;
      }
      for (std::size_t i0 = 0; i0 < g.m; i0 += V::MR) {
        const std::size_t rows = min_size(V::MR, g.m - i0);
        pick_sparse(rows, nv, tail != W, std::make_integer_sequence<int, V::MR>{})(part, i0, c0, tail, idx + first, n);
      }
    }
  }
}

void rectify(Epilogue e, float alpha, const float* z, float* y, std::size_t n) {
  const T va = V::set1(alpha);
  std::size_t i = 0;
  for (; i + W <= n; i += W) V::store(y + i, epilogue(V::load(z + i), e, va));
  if (i < n) V::store_part(y + i, epilogue(V::load_part(z + i, n - i), e, va), n - i);
}

void rectify_backward(Epilogue e, float alpha, const float* z, const float* gy, float* gz, std::size_t n) {
  // gy * f'(z) as a product, like the scalar code, so a NaN gradient stays NaN.
  const T low = e == Epilogue::LeakyRelu ? V::set1(alpha) : V::zero();
  const T one = V::set1(1.0f);
  std::size_t i = 0;
  for (; i + W <= n; i += W) {
    const T d = V::gt_select(V::load(z + i), V::zero(), one, low);
    V::store(gz + i, V::mul(V::load(gy + i), d));
  }
  if (i < n) {
    const T d = V::gt_select(V::load_part(z + i, n - i), V::zero(), one, low);
    V::store_part(gz + i, V::mul(V::load_part(gy + i, n - i), d), n - i);
  }
}

void column_sums(std::size_t m, std::size_t n, const float* dz, std::size_t ldz, float* db) {
  std::size_t j = 0;
  for (; j + W <= n; j += W) {
    T s = V::load(db + j);
    for (std::size_t r = 0; r < m; ++r) s = V::add(s, V::load(dz + r * ldz + j));
    V::store(db + j, s);
  }
  if (j < n) {
    const std::size_t t = n - j;
    T s = V::load_part(db + j, t);
    for (std::size_t r = 0; r < m; ++r) s = V::add(s, V::load_part(dz + r * ldz + j, t));
    V::store_part(db + j, s, t);
  }
}

void reduce(float* dst, const float* const* srcs, std::size_t count, std::size_t begin, std::size_t end) {
  std::size_t i = begin;
  for (; i + W <= end; i += W) {
    T s = V::load(srcs[0] + i);
    for (std::size_t c = 1; c < count; ++c) s = V::add(s, V::load(srcs[c] + i));
    V::store(dst + i, s);
  }
  if (i < end) {
    T s = V::load_part(srcs[0] + i, end - i);
    for (std::size_t c = 1; c < count; ++c) s = V::add(s, V::load_part(srcs[c] + i, end - i));
    V::store_part(dst + i, s, end - i);
  }
}

// A check pass adds zero times each result to `seen`: the sum stays 0 exactly while every
// result is finite (see all_finite). Lanes past `lanes` in a partial vector hold the update of
// zero-filled inputs (0 / 0 with eps = 0), so they are left out.
inline T seen_plus(T seen, const T& results, std::size_t lanes) {
  if (lanes == W) return V::add(seen, results);
  float part[W] = {};
  V::store_part(part, results, lanes);
  return V::add(seen, V::load(part));
}

inline bool nothing_seen(const T& seen) {
  float lanes[W];
  V::store(lanes, seen);
  for (std::size_t l = 0; l < W; ++l) {
    if (lanes[l] != lanes[l]) return false;  // NaN
  }
  return true;
}

// The same operations, in the same order, as adam() in core/optimizer.cpp.
inline T adam_lanes(const AdamStep& s, std::size_t i, std::size_t lanes, T seen) {
  const bool full = lanes == W;
  auto ld = [&](const float* p) { return full ? V::load(p + i) : V::load_part(p + i, lanes); };
  auto st = [&](float* p, const T& x) { full ? V::store(p + i, x) : V::store_part(p + i, x, lanes); };
  T p = ld(s.p), g = ld(s.g);
  if (s.decoupled) {
    p = V::mul(p, V::set1(s.decay));
  } else {
    g = V::add(g, V::mul(V::set1(s.wd), p));
  }
  const T m = V::add(V::mul(V::set1(s.b1), ld(s.m)), V::mul(V::set1(s.one_b1), g));
  const T v = V::add(V::mul(V::set1(s.b2), ld(s.v)), V::mul(V::mul(V::set1(s.one_b2), g), g));
  const T denom = V::add(V::div(V::sqrt(v), V::set1(s.sqrt_bc2)), V::set1(s.eps));
  const T next = V::sub(p, V::div(V::mul(V::set1(s.step_size), m), denom));
  if (s.check) {
    const T zero = V::zero();
    return seen_plus(seen, V::add(V::add(V::mul(m, zero), V::mul(v, zero)), V::mul(next, zero)), lanes);
  }
  st(s.m, m);
  st(s.v, v);
  st(s.p, next);
  return seen;
}

bool adam(const AdamStep& s, std::size_t begin, std::size_t end) {
  T seen = V::zero();
  std::size_t i = begin;
  for (; i + W <= end; i += W) seen = adam_lanes(s, i, W, seen);
  if (i < end) seen = adam_lanes(s, i, end - i, seen);
  return nothing_seen(seen);
}

// The same operations, in the same order, as sgd() in core/optimizer.cpp.
inline T sgd_lanes(const SgdStep& s, std::size_t i, std::size_t lanes, T seen) {
  const bool full = lanes == W;
  auto ld = [&](const float* p) { return full ? V::load(p + i) : V::load_part(p + i, lanes); };
  auto st = [&](float* p, const T& x) { full ? V::store(p + i, x) : V::store_part(p + i, x, lanes); };
  const T zero = V::zero();
  const T p = ld(s.p);
  T g = V::add(ld(s.g), V::mul(V::set1(s.wd), p));
  T results = zero;
  if (s.use_momentum) {
    const T momentum = V::set1(s.momentum);
    const T buf = s.first ? g : V::add(V::mul(momentum, ld(s.buf)), V::mul(V::set1(s.keep), g));
    if (s.check) results = V::mul(buf, zero);
    else st(s.buf, buf);
    g = s.nesterov ? V::add(g, V::mul(momentum, buf)) : buf;
  }
  const T next = V::sub(p, V::mul(V::set1(s.lr), g));
  if (s.check) return seen_plus(seen, V::add(results, V::mul(next, zero)), lanes);
  st(s.p, next);
  return seen;
}

bool sgd(const SgdStep& s, std::size_t begin, std::size_t end) {
  T seen = V::zero();
  std::size_t i = begin;
  for (; i + W <= end; i += W) seen = sgd_lanes(s, i, W, seen);
  if (i < end) seen = sgd_lanes(s, i, end - i, seen);
  return nothing_seen(seen);
}

// Output slices of at most this many floats per row, so the slices of all rows stay in L1
// while the listed weight rows stream past them.
constexpr std::size_t kAxpySliceFloats = 8192;
// How many groups ahead axpy_rows prefetches (into L2: a group of four 16 KB rows would not
// stay in L1 until its turn).
constexpr std::size_t kAxpyAhead = 2;

// Weights as float or as int8 codes (AxpyRows::w8, DotRows::w8): the codes widen to float on
// load, exactly (every int8 is a float), so either kind feeds the same FMA chains.
inline T load_w(const float* p) { return V::load(p); }
inline T load_w(const std::int8_t* p) { return V::load_i8(p); }
inline T load_w_part(const float* p, std::size_t n) { return V::load_part(p, n); }
inline T load_w_part(const std::int8_t* p, std::size_t n) { return V::load_i8_part(p, n); }
template <class WT>
inline void prefetch_w(const WT* p) { V::prefetch(reinterpret_cast<const float*>(p)); }

// y[0, n) += h0 * w0 + h1 * w1 + ... (G rows of weights, in order) for one row of outputs.
// G rows at once: G memory streams in flight instead of one (a single stream stalls at every
// page boundary), and one load and store of y per G products.
// next: the following group's rows (gn of them), prefetched at the same columns, so their
// streams are already running when this group ends (a prefetcher restarts at every row).
template <int G, class WT>
inline void axpy_group(const WT* const* w, const float* hs, float* y, std::size_t c0, std::size_t c1,
                       const WT* const* next, std::size_t gn) {
  // Elements of WT per 64-byte cache line.
  constexpr std::size_t kLine = 64 / sizeof(WT);
  T hv[G];
  for (int g = 0; g < G; ++g) hv[g] = V::set1(hs[g]);
  std::size_t c = c0;
  const std::size_t whole = c0 + (c1 - c0) / W * W;
  for (; c + 4 * W <= whole; c += 4 * W) {
    for (std::size_t g = 0; g < gn; ++g)
      for (std::size_t off = 0; off < 4 * W; off += kLine) prefetch_w(next[g] + c + off);
    T acc[4];
    for (int u = 0; u < 4; ++u) acc[u] = V::load(y + c + u * W);
    for (int g = 0; g < G; ++g)
      for (int u = 0; u < 4; ++u) acc[u] = V::fma(hv[g], load_w(w[g] + c + u * W), acc[u]);
    for (int u = 0; u < 4; ++u) V::store(y + c + u * W, acc[u]);
  }
  for (; c < whole; c += W) {
    T acc = V::load(y + c);
    for (int g = 0; g < G; ++g) acc = V::fma(hv[g], load_w(w[g] + c), acc);
    V::store(y + c, acc);
  }
  if (c < c1) {
    const std::size_t n = c1 - c;
    T acc = V::load_part(y + c, n);
    for (int g = 0; g < G; ++g) acc = V::fma(hv[g], load_w_part(w[g] + c, n), acc);
    V::store_part(y + c, acc, n);
  }
}

// A zero h adds nothing (fma(0, w, y) == y for the finite weights a model holds), so groups
// where a row's h are all zero are skipped for that row, and the others need no test.
template <class WT>
void axpy_rows_of(const AxpyRows& a, const WT* base) {
  constexpr int G = 4;
  const std::size_t rows = a.rows == 0 ? 1 : a.rows;
  std::size_t slice = kAxpySliceFloats / rows / W * W;
  if (slice < 4 * W) slice = 4 * W;
  for (std::size_t s0 = a.c0; s0 < a.c1; s0 += slice) {
    const std::size_t s1 = min_size(a.c1, s0 + slice);
    for (std::size_t n0 = 0; n0 < a.count; n0 += G) {
      const std::size_t g = min_size(G, a.count - n0);
      const WT* w[G];
      for (std::size_t i = 0; i < g; ++i) w[i] = base + a.idx[n0 + i] * a.ldw;
      const std::size_t ahead = n0 + kAxpyAhead * G;
      const std::size_t gn = ahead < a.count ? min_size(G, a.count - ahead) : 0;
      const WT* next[G];
      for (std::size_t i = 0; i < gn; ++i) next[i] = base + a.idx[ahead + i] * a.ldw;
      for (std::size_t r = 0; r < a.rows; ++r) {
        float hs[G];
        bool any = false;
        for (std::size_t i = 0; i < g; ++i) {
          hs[i] = a.h[r * a.ldh + a.idx[n0 + i]];
          any = any || hs[i] != 0.0f;
        }
        if (!any) continue;
        float* y = a.y + r * a.ldy;
        if (g == 4) {
          axpy_group<4, WT>(w, hs, y, s0, s1, next, r == 0 ? gn : 0);
        } else if (g == 3) {
          axpy_group<3, WT>(w, hs, y, s0, s1, next, r == 0 ? gn : 0);
        } else if (g == 2) {
          axpy_group<2, WT>(w, hs, y, s0, s1, next, r == 0 ? gn : 0);
        } else {
          axpy_group<1, WT>(w, hs, y, s0, s1, next, r == 0 ? gn : 0);
        }
      }
    }
  }
}

void axpy_rows(const AxpyRows& a) {
  if (a.w8) {
    axpy_rows_of(a, a.w8);
  } else {
    axpy_rows_of(a, a.w);
  }
}

// dot_rows in blocks of J units by R rows: J * R independent chains (one vector accumulator
// each, over p in steps of W), J weight streams in flight, each weight vector loaded once for R
// rows. Every (unit, row) result is the same chain and the same lane tree whatever the block,
// so it does not depend on how many rows or units are computed together.
template <int J, int R, class WT>
void dot_block(const DotRows& d, const WT* base, const std::uint32_t* units, std::size_t r0) {
  const WT* w[J];
  const float* x[R];
  for (int j = 0; j < J; ++j) w[j] = base + units[j] * d.ldw;
  for (int r = 0; r < R; ++r) x[r] = d.x + (r0 + r) * d.ldx;
  T acc[J][R];
  for (int j = 0; j < J; ++j)
    for (int r = 0; r < R; ++r) acc[j][r] = V::zero();
  std::size_t p = 0;
  for (; p + W <= d.k; p += W) {
    T wv[J];
    for (int j = 0; j < J; ++j) wv[j] = load_w(w[j] + p);
    for (int r = 0; r < R; ++r) {
      const T xv = V::load(x[r] + p);
      for (int j = 0; j < J; ++j) acc[j][r] = V::fma(wv[j], xv, acc[j][r]);
    }
  }
  if (p < d.k) {
    const std::size_t n = d.k - p;
    T wv[J];
    for (int j = 0; j < J; ++j) wv[j] = load_w_part(w[j] + p, n);
    for (int r = 0; r < R; ++r) {
      const T xv = V::load_part(x[r] + p, n);
      for (int j = 0; j < J; ++j) acc[j][r] = V::fma(wv[j], xv, acc[j][r]);
    }
  }
  for (int j = 0; j < J; ++j)
    for (int r = 0; r < R; ++r) {
      float lanes[W];
      V::store(lanes, acc[j][r]);
      for (std::size_t half = W / 2; half >= 1; half /= 2)
        for (std::size_t i = 0; i < half; ++i) lanes[i] += lanes[i + half];
      d.h[(r0 + r) * d.ldh + units[j]] = lanes[0];
    }
}

// Units outside, rows inside: a block of units' weight rows is read from memory once and from
// cache for every other pair of rows.
template <int J, class WT>
void dot_rows_of(const DotRows& d, const WT* base, const std::uint32_t* units) {
  std::size_t r = 0;
  for (; r + 2 <= d.rows; r += 2) dot_block<J, 2>(d, base, units, r);
  if (r < d.rows) dot_block<J, 1>(d, base, units, r);
}

template <class WT>
void dot_rows_with(const DotRows& d, const WT* base) {
  std::size_t n = 0;
  for (; n + 4 <= d.count; n += 4) dot_rows_of<4>(d, base, d.idx + n);
  switch (d.count - n) {
    case 3: dot_rows_of<3>(d, base, d.idx + n); break;
    case 2: dot_rows_of<2>(d, base, d.idx + n); break;
    case 1: dot_rows_of<1>(d, base, d.idx + n); break;
    default: break;
  }
}

void dot_rows(const DotRows& d) {
  if (d.w8) {
    dot_rows_with(d, d.w8);
  } else {
    dot_rows_with(d, d.w);
  }
}

// x * 0 is 0 for every finite x (denormals flushed or not) and NaN for NaN and +-Infinity, so
// the sums stay 0 exactly when all are finite. Four independent sums keep the adds from waiting
// on each other; the lanes are order-free, so no rounding question arises.
bool all_finite(const float* x, std::size_t n) {
  const T zero = V::zero();
  T s0 = zero, s1 = zero, s2 = zero, s3 = zero;
  std::size_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    s0 = V::add(s0, V::mul(V::load(x + i), zero));
    s1 = V::add(s1, V::mul(V::load(x + i + W), zero));
    s2 = V::add(s2, V::mul(V::load(x + i + 2 * W), zero));
    s3 = V::add(s3, V::mul(V::load(x + i + 3 * W), zero));
  }
  for (; i + W <= n; i += W) s0 = V::add(s0, V::mul(V::load(x + i), zero));
  if (i < n) s1 = V::add(s1, V::mul(V::load_part(x + i, n - i), zero));
  float lanes[W];
  V::store(lanes, V::add(V::add(s0, s1), V::add(s2, s3)));
  for (std::size_t l = 0; l < W; ++l) {
    if (lanes[l] != lanes[l]) return false;  // NaN
  }
  return true;
}

// Four interleaved chains of one FMA per vector, summed in a fixed order at the end.
float sum_squares(const float* x, std::size_t n) {
  T s0 = V::zero(), s1 = V::zero(), s2 = V::zero(), s3 = V::zero();
  std::size_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    const T a = V::load(x + i), b = V::load(x + i + W), c = V::load(x + i + 2 * W), d = V::load(x + i + 3 * W);
    s0 = V::fma(a, a, s0);
    s1 = V::fma(b, b, s1);
    s2 = V::fma(c, c, s2);
    s3 = V::fma(d, d, s3);
  }
  for (; i + W <= n; i += W) {
    const T a = V::load(x + i);
    s0 = V::fma(a, a, s0);
  }
  if (i < n) {
    const T a = V::load_part(x + i, n - i);  // zero-filled
    s1 = V::fma(a, a, s1);
  }
  float lanes[W];
  V::store(lanes, V::add(V::add(s0, s1), V::add(s2, s3)));
  float sum = 0;
  for (std::size_t l = 0; l < W; ++l) sum += lanes[l];
  return sum;
}

constexpr Kernels make_table(const char* isa) {
  return Kernels{isa, gemm, gemm_sparse, rectify, rectify_backward, column_sums, reduce, adam, sgd, axpy_rows, dot_rows, all_finite, sum_squares};
}
