// GPTQ's inner loops (gptq.cpp), included into an anonymous namespace twice: by gptq.cpp
// (baseline flags) and by gptq_avx2.cpp (-mavx2). Each is elementwise, one multiply and one
// add per element with no running sum, and neither build contracts them into an FMA
// (-ffp-contract=off), so any vector width gives the bits of lib/quant/hessian.ts and gptq.ts.

// a[i] += s * b[i] (hessian.ts invertUpper).
inline void add_scaled_of(double* a, const double* b, double s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) a[i] += s * b[i];
}

// a[i] -= s * b[i] (hessian.ts reverseCholesky, gptq.ts propagate).
inline void sub_scaled_of(double* a, const double* b, double s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) a[i] -= s * b[i];
}

// Panels (gptq.cpp's blocked passes) are packed in chunks of kPanelChunk columns, each chunk
// holding its columns for every update in turn, so that a chunk's updates are read as one
// stream. Read in place, the updates of a panel lie a matrix row apart: at a power-of-two row
// length they all fall in the same cache set and evict each other.
constexpr std::size_t kPanelChunk = 16;

// packed[(t / kPanelChunk) * count * kPanelChunk + m * kPanelChunk + t % kPanelChunk] =
// double(src[m * ld + t]) for m < count, t < n (the chunk past n is padded with zeros).
template <typename T>
inline void pack_panel_of(const T* src, std::size_t ld, std::size_t count, std::size_t n, double* packed) {
  for (std::size_t c = 0; c * kPanelChunk < n; ++c) {
    const std::size_t t0 = c * kPanelChunk;
    const std::size_t width = n - t0 < kPanelChunk ? n - t0 : kPanelChunk;
    double* out = packed + c * count * kPanelChunk;
    for (std::size_t m = 0; m < count; ++m) {
      const T* in = src + m * ld + t0;
      std::size_t q = 0;
      for (; q < width; ++q) out[m * kPanelChunk + q] = static_cast<double>(in[q]);
      for (; q < kPanelChunk; ++q) out[m * kPanelChunk + q] = 0;
    }
  }
}

// One element's updates from a panel: x -= coef[m] * v[m * kPanelChunk] (or +=) in order of m,
// skipping every m with coef[m] == 0 as the row-at-a-time loops do.
template <bool kSubtract>
inline double panel_element_of(double x, const double* v, const double* coef, std::size_t count) {
  for (std::size_t m = 0; m < count; ++m) {
    const double c = coef[m];
    if (c == 0) continue;
    if (kSubtract)
      x -= c * v[m * kPanelChunk];
    else
      x += c * v[m * kPanelChunk];
  }
  return x;
}

// A panel of updates applied to a row: x[t] -= coef[m] * v(m, t) (or +=) for m = 0 .. count - 1
// in order, skipping every m with coef[m] == 0, for t in [begin, end), v packed by
// pack_panel_of. The element stays in a register across the panel instead of going to memory
// and back once per update: the same operations in the same order, so the same bits, at a
// fraction of the memory traffic.
template <bool kSubtract>
inline void apply_panel_of(double* x, const double* packed, const double* coef, std::size_t count, std::size_t begin,
                           std::size_t end) {
  const std::size_t stride = count * kPanelChunk;
  auto chunk_of = [&](std::size_t t) { return packed + (t / kPanelChunk) * stride + t % kPanelChunk; };
  std::size_t t = begin;
  const std::size_t aligned = (begin + kPanelChunk - 1) / kPanelChunk * kPanelChunk;
  for (; t < end && t < aligned; ++t) x[t] = panel_element_of<kSubtract>(x[t], chunk_of(t), coef, count);
  for (; t + kPanelChunk <= end; t += kPanelChunk) {
    const double* v = chunk_of(t);
    double acc[kPanelChunk];
    for (std::size_t q = 0; q < kPanelChunk; ++q) acc[q] = x[t + q];
    for (std::size_t m = 0; m < count; ++m) {
      const double c = coef[m];
      if (c == 0) continue;
      const double* vm = v + m * kPanelChunk;
      for (std::size_t q = 0; q < kPanelChunk; ++q) {
        if (kSubtract)
          acc[q] -= c * vm[q];
        else
          acc[q] += c * vm[q];
      }
    }
    for (std::size_t q = 0; q < kPanelChunk; ++q) x[t + q] = acc[q];
  }
  for (; t < end; ++t) x[t] = panel_element_of<kSubtract>(x[t], chunk_of(t), coef, count);
}
