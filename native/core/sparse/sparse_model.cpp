#include "core/sparse/sparse_model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/cpu/kernels.h"
#include "core/parallel.h"

namespace mlpkit::sparse {
namespace {

std::atomic<std::size_t> g_live_sparse_models{0};

// Rows that go through the layers together and share one union of kept units: the tiles of
// the model's semantics (a predictor layer's denseFromRows counts them; SPARSE_TILE_ROWS in
// lib/sparse/format.ts), cut from the batch in order, the last one shorter.
constexpr std::size_t kTileRows = 16;
// A batch's whole tiles run in groups of up to this many rows. A group computes what its tiles
// would one by one (denseFromRows is at most kTileRows, so a group of whole tiles falls back
// wherever each of its tiles would; the union of more rows only moves work between the GEMM
// and the dot-product paths, which give the same kept units), but reads each weight once per
// group instead of once per 16 rows: at batch 64-256 a 2048-8192-2048 ReLU FFN in exact or
// threshold mode took 1.2-1.6x the dense model's time in tiles of 16 rows, 1.0-1.1x in groups
// of 64 (Zen 5, 2 threads), where the dense model goes layer by layer over the whole batch.
// Only for models with a layer past this many weight bytes (about an L2): smaller layers stay
// in cache across tiles, and there the tiles spread over the pool one per task beat a group
// sharing each small layer out (a 128-512-128 model at batch 48-64: 2x slower in groups).
constexpr std::size_t kGroupRows = 64;
constexpr std::size_t kGroupLayerBytes = std::size_t(2) << 20;
// Work below this many multiply-adds per layer stays on the calling thread.
constexpr std::size_t kParallelMacs = std::size_t(1) << 18;
// A tile of several rows reads the union of their kept units by axpy (or dot products) only
// while the union is at most this fraction of the layer; above it the dense GEMM on a panel
// copy (accumulators in registers) is faster. One row always goes the sparse way: it reads
// only its own units' rows, in order.
constexpr double kUnionDenseFraction = 0.5;
constexpr std::size_t kColumnGroup = 64;
// A dense tile's range of inputs goes through gemm_sparse (only the kept inputs' panel rows)
// while at most this fraction of the range is kept; above it the plain GEMM over the whole
// range is as fast (an m = 16 tile is compute-bound; measured on AVX-512: gemm_sparse takes
// 0.85 of the GEMM's time at 69% kept, 0.98 at 90%, 1.05 at 98%). Zeros add nothing, so both
// give the same sums.
constexpr double kSparseGemmFraction = 0.9;
// Sparse products split their kept inputs into this many fixed ranges (see run_tile).
constexpr std::size_t kAxpyParts = 8;

// The most a thread keeps of its scratch between calls: enough for a 16384-unit layer at a group
// of 64 rows (~54 MiB), the largest the benches run, so no bench call pays for allocating and
// zeroing it again.
constexpr std::size_t kKeepScratchBytes = std::size_t(64) << 20;

std::size_t padded(std::size_t n) { return (n + cpu::kPanel - 1) / cpu::kPanel * cpu::kPanel; }

// Whether a tile of several rows computes its union of u kept units (of n) by the dense GEMM.
// One row never does: dot products read just its rows.
bool union_dense_for(std::size_t rows, std::size_t u, std::size_t n) {
  return rows > 1 && static_cast<double>(u) > kUnionDenseFraction * static_cast<double>(n);
}
std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

// A pre-activation from a product's sum: sum + bias, or for an int8 layer (scale not null)
// scale * sum + bias, the sum being over the codes.
inline float affine(float sum, const float* scale, const float* bias, std::size_t j) {
  return scale ? scale[j] * sum + bias[j] : sum + bias[j];
}
// v[j] = scale[j] * v[j] + bias[j]: an int8 layer's sums of codes to pre-activations.
void scale_and_shift(float* v, const float* scale, const float* bias, std::size_t n) {
  for (std::size_t j = 0; j < n; ++j) v[j] = scale[j] * v[j] + bias[j];
}

cpu::Epilogue epilogue_of(Activation a) {
  if (a == Activation::Relu) return cpu::Epilogue::Relu;
  if (a == Activation::LeakyRelu) return cpu::Epilogue::LeakyRelu;
  return cpu::Epilogue::None;
}
bool in_epilogue(Activation a) { return a == Activation::None || epilogue_of(a) != cpu::Epilogue::None; }

// W [n x k] row-major into the kernels' panels of 16 outputs.
AlignedVector<float> pack_panels(const float* w, std::size_t n, std::size_t k) {
  AlignedVector<float> out(padded(n) * k, 0.0f);
  for (std::size_t q = 0; q < padded(n) / cpu::kPanel; ++q) {
    float* panel = out.data() + q * k * cpu::kPanel;
    const std::size_t cols = std::min(cpu::kPanel, n - q * cpu::kPanel);
    for (std::size_t c = 0; c < cols; ++c) {
      const float* row = w + (q * cpu::kPanel + c) * k;
      for (std::size_t p = 0; p < k; ++p) panel[p * cpu::kPanel + c] = row[p];
    }
  }
  return out;
}

// The int8 codes of weights given as f32(scale * q) (SparseLayerSource::scales). Every int8
// times a float scale rounds to a float whose quotient by the scale is within 127 * 2^-23 of
// the code, so nearbyint recovers it exactly; anything else is not such a weight and is refused.
std::vector<std::int8_t> int8_codes(const float* w, const float* scales, std::size_t rows, std::size_t k,
                                    const std::string& where) {
  std::vector<std::int8_t> q(rows * k);
  for (std::size_t o = 0; o < rows; ++o) {
    const float sc = scales[o];
    if (!(sc >= 0 && sc <= 3.4e38f)) {
      throw std::invalid_argument(where + ": the int8 scale of row " + std::to_string(o) + " is " + std::to_string(sc) +
                                  ", not a finite number >= 0");
    }
    for (std::size_t p = 0; p < k; ++p) {
      const float v = w[o * k + p];
      const float c = sc == 0 ? 0.0f : std::nearbyint(v / sc);
      if (!(c >= -127 && c <= 127) || sc * c != v) {
        throw std::invalid_argument(where + ": weight [" + std::to_string(o) + ", " + std::to_string(p) + "] = " +
                                    std::to_string(v) + " is not an int8 code times its row's scale " +
                                    std::to_string(sc));
      }
      q[o * k + p] = static_cast<std::int8_t>(c);
    }
  }
  return q;
}

AlignedVector<float> padded_bias(const float* b, std::size_t n) {
  AlignedVector<float> out(padded(n), 0.0f);
  if (b) std::copy(b, b + n, out.begin());
  return out;
}

// Runs fn(c0, c1) over [0, n) in slices of whole column groups, on the pool when asked.
template <class Fn>
void by_columns(std::size_t n, std::size_t parts_wanted, bool parallel, const Fn& fn) {
  const std::size_t groups = ceil_div(n, kColumnGroup);
  const std::size_t parts = parallel ? std::min(groups, parts_wanted) : 1;
  if (parts <= 1) {
    fn(std::size_t(0), n);
    return;
  }
  const std::size_t per = ceil_div(groups, parts);
  parallel_for(ceil_div(groups, per), [&](std::size_t i) {
    fn(i * per * kColumnGroup, std::min(n, (i + 1) * per * kColumnGroup));
  });
}

// out[rows x n] = in[rows x k] . W^T + bias through the dense kernels, columns shared out.
void dense_gemm(const float* b, std::size_t b_rs, std::size_t b_ps, const float* bias, std::size_t k, std::size_t n,
                const float* in, std::size_t rows, float* out, Activation act, float alpha, bool parallel) {
  const cpu::Kernels& kern = cpu::kernels();
  const std::size_t parts = 4 * static_cast<std::size_t>(thread_count());
  by_columns(n, parts, parallel, [&](std::size_t c0, std::size_t c1) {
    cpu::Gemm g;
    g.m = rows;
    g.n = c1 - c0;
    g.k = k;
    g.a = in;
    g.a_rs = k;
    g.a_cs = 1;
    g.b = b + (c0 / cpu::kPanel) * b_ps;
    g.b_rs = b_rs;
    g.b_ps = b_ps;
    g.bias = bias ? bias + c0 : nullptr;  // int8 layers add theirs after the scale
    g.c = out + c0;
    g.ldc = n;
    g.epilogue = epilogue_of(act);
    g.alpha = alpha;
    kern.gemm(g);
  });
}

}  // namespace

// One thread's working buffers, kept between its calls (at batch 1 the allocations would cost
// more than a small model's layers). They grow with the widest layer and the tile's rows
// (~52 bytes per unit per row, most of it the axpy partial sums), so a thread that ran a big
// model would hold tens of MiB after the model is gone: past kKeepScratchBytes they are
// released when the call ends.
struct SparseModel::Scratch {
  AlignedVector<float> enc, ping0, ping1, ping2, low, aux, partial;
  std::vector<std::uint32_t> idx, uni;
  std::vector<std::uint8_t> mark;
  std::vector<std::size_t> counts;
  std::vector<std::uint64_t> keys;

  std::size_t bytes() const {
    return sizeof(float) * (enc.capacity() + ping0.capacity() + ping1.capacity() + ping2.capacity() + low.capacity() +
                            aux.capacity() + partial.capacity()) +
           sizeof(std::uint32_t) * (idx.capacity() + uni.capacity()) + mark.capacity() +
           sizeof(std::size_t) * counts.capacity() + sizeof(std::uint64_t) * keys.capacity();
  }
  void trim() {
    if (bytes() > kKeepScratchBytes) *this = Scratch();
  }
};

SparseModel::SparseModel(const EncodingSpec& encoding, const std::vector<SparseLayerSource>& layers)
    : encoding_(encoding) {
  if (layers.empty()) throw std::invalid_argument("a sparse model needs at least one layer");
  std::size_t width = encoding_.width();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const SparseLayerSource& s = layers[i];
    const std::string where = "layer " + std::to_string(i);
    if (s.inputs != width) {
      throw std::invalid_argument(where + " takes " + std::to_string(s.inputs) + " inputs but receives " +
                                  std::to_string(width));
    }
    if (s.outputs == 0 || s.outputs >= (std::size_t(1) << 31)) throw std::invalid_argument(where + " has no outputs");
    const int code = static_cast<int>(s.mode);
    if (code < 0 || code >= kModeCount) throw std::invalid_argument(where + ": unknown sparsity mode");
    // A sparse last layer is allowed here: net.sparsify() calibrates each layer on the prefix of
    // the model before it, sparse layers included, and measures a layer's density as the zeros
    // of a prefix that ends with it. The options and the file loader keep a model's output layer
    // dense.
    if ((s.mode == Mode::TopK || s.mode == Mode::Predictor) && (s.k == 0 || s.k > s.outputs)) {
      throw std::invalid_argument(where + ": k must be in [1, " + std::to_string(s.outputs) + "], got " +
                                  std::to_string(s.k));
    }
    if (s.mode == Mode::Threshold && !(s.threshold >= 0)) {
      throw std::invalid_argument(where + ": the threshold must be a number >= 0");
    }
    if (s.mode == Mode::Predictor && (s.rank == 0 || !s.pa || !s.pb)) {
      throw std::invalid_argument(where + ": predictor mode needs the predictor's weights and rank");
    }
    if (s.residual && s.mode != Mode::Dense) {
      throw std::invalid_argument(where + " is residual: its outputs (a sum with the block input) are not sparsified");
    }
    if (s.residual && (i == 0 || s.outputs != layers[i - 1].inputs)) {
      throw std::invalid_argument(where + " is residual but its width does not match the input of the layer before");
    }
    Layer l;
    l.k = s.inputs;
    l.n = s.outputs;
    l.gated = s.gated;
    l.residual = s.residual;
    l.rows = s.gated ? 2 * s.outputs : s.outputs;
    l.activation = s.activation;
    l.alpha = s.alpha;
    l.mode = s.mode;
    l.threshold = s.threshold;
    l.keep = s.k;
    l.dense_from_rows = s.mode == Mode::Predictor ? s.dense_from_rows : 0;
    l.sparse_in = i > 0 && layers[i - 1].mode != Mode::Dense;
    l.bias = padded_bias(s.bias, l.rows);
    // Int8 weights matter only where rows are read sparsely; elsewhere the panels hold the
    // dequantised floats, the same products the reference computes.
    const bool sparse_read = s.mode == Mode::Predictor || (s.gated && s.mode != Mode::Dense) || l.sparse_in;
    l.int8 = s.scales != nullptr && sparse_read;
    std::vector<std::int8_t> q;
    std::vector<float> qf;  // the codes as floats, for the dense panels of an int8 layer
    if (l.int8) {
      q = int8_codes(s.weight, s.scales, l.rows, s.inputs, where);
      qf.assign(q.begin(), q.end());
      l.scale = padded_bias(s.scales, l.rows);
    }
    const float* dense_src = l.int8 ? qf.data() : s.weight;
    if (s.mode == Mode::Predictor) {
      // Chosen outputs are computed one row of W at a time; sparse inputs are then just zeros.
      if (l.int8) {
        l.wr8.assign(q.begin(), q.end());
      } else {
        l.wr.assign(s.weight, s.weight + l.rows * s.inputs);
      }
      l.rank = s.rank;
      l.pa_panels = pack_panels(s.pa, s.rank, s.inputs);
      l.pa_bias = padded_bias(s.pa_bias, s.rank);
      l.pb_panels = pack_panels(s.pb, s.outputs, s.rank);
      l.pb_bias = padded_bias(s.pb_bias, s.outputs);
      l.dense_panels = pack_panels(dense_src, l.rows, s.inputs);
      max_rank_ = std::max(max_rank_, s.rank);
    } else if (s.gated && s.mode != Mode::Dense) {
      // The gate in panels (computed densely, it chooses the units), the up rows row-major.
      l.panels = pack_panels(s.weight, s.outputs, s.inputs);
      const std::size_t half = s.outputs * s.inputs;
      if (l.int8) {
        l.up8.assign(q.begin() + half, q.end());
      } else {
        l.up.assign(s.weight + half, s.weight + 2 * half);
      }
      l.dense_panels = pack_panels(dense_src + half, s.outputs, s.inputs);
    } else if (l.sparse_in) {
      l.ldt = padded(l.rows);
      if (l.int8) {
        l.wt8.assign(l.k * l.ldt, 0);
        for (std::size_t o = 0; o < l.rows; ++o)
          for (std::size_t p = 0; p < s.inputs; ++p) l.wt8[p * l.ldt + o] = q[o * s.inputs + p];
      } else {
        l.wt.assign(l.k * l.ldt, 0.0f);
        for (std::size_t o = 0; o < l.rows; ++o)
          for (std::size_t p = 0; p < s.inputs; ++p) l.wt[p * l.ldt + o] = s.weight[o * s.inputs + p];
      }
      l.dense_panels = pack_panels(dense_src, l.rows, s.inputs);
    } else {
      l.panels = pack_panels(s.weight, l.rows, s.inputs);
    }
    max_width_ = std::max(max_width_, l.rows);
    layers_.push_back(std::move(l));
    width = s.outputs;
  }
  max_width_ = std::max(max_width_, encoding_.width());
  // As floats: a group that falls back to the GEMM reads the float panel copy, int8 or not.
  for (const Layer& l : layers_) widest_layer_bytes_ = std::max(widest_layer_bytes_, l.k * l.rows * sizeof(float));
  g_live_sparse_models.fetch_add(1, std::memory_order_relaxed);  // last: a constructor that throws made no model
}

SparseModel::~SparseModel() { g_live_sparse_models.fetch_sub(1, std::memory_order_relaxed); }

std::size_t SparseModel::live_count() { return g_live_sparse_models.load(std::memory_order_relaxed); }

std::size_t SparseModel::bytes() const {
  std::size_t total = 0;
  for (const Layer& l : layers_) {
    total += 4 * (l.panels.size() + l.wt.size() + l.wr.size() + l.up.size() + l.dense_panels.size() + l.bias.size() +
                  l.scale.size() + l.pa_panels.size() + l.pa_bias.size() + l.pb_panels.size() + l.pb_bias.size());
    total += l.wt8.size() + l.wr8.size() + l.up8.size();
  }
  return total;
}

void SparseModel::run_tile(const float* x, std::size_t rows, float* out, int threads, Scratch& s) const {
  const cpu::Kernels& kern = cpu::kernels();
  const bool inner = threads > 1;
  const float* in = x;
  if (encoding_.type != Encoding::Identity) {
    encode_forward(encoding_, x, rows, s.enc.data());
    in = s.enc.data();
  }
  float* ping[3] = {s.ping0.data(), s.ping1.data(), s.ping2.data()};
  const float* block = nullptr;           // the input of the previous layer (residual layers add it)
  const std::uint32_t* in_idx = nullptr;  // the union of the kept inputs, when they are sparse
  std::size_t in_count = 0;
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    const bool last = li + 1 == layers_.size();
    float* dst = last ? out : ping[li % 3];
    const bool parallel = inner && l.k * l.rows * rows >= kParallelMacs;
    std::uint32_t* idx = s.idx.data();  // rows x n kept lists
    std::size_t* counts = s.counts.data();

    auto union_dense = [&](std::size_t u, std::size_t n) { return union_dense_for(rows, u, n); };
    // The union of the rows' lists (the units any row of the tile needs), in increasing order:
    // marks, then one branch-free pass over the units (merging the sorted lists pairwise was
    // rows x n mispredicted branches, ~10% of a batch-16 predict).
    auto unite = [&]() -> std::size_t {
      if (rows == 1) {
        std::copy(idx, idx + counts[0], s.uni.data());
        return counts[0];
      }
      std::uint8_t* mark = s.mark.data();
      std::fill(mark, mark + l.n, std::uint8_t(0));
      for (std::size_t r = 0; r < rows; ++r) {
        const std::uint32_t* ir = idx + r * l.n;
        for (std::size_t i = 0; i < counts[r]; ++i) mark[ir[i]] = 1;
      }
      std::size_t count = 0;
      for (std::size_t j = 0; j < l.n; ++j) {
        s.uni[count] = static_cast<std::uint32_t>(j);
        count += mark[j];
      }
      return count;
    };
    // fn(r, keys) for every row, the rows shared out over the pool when the layer is (each part
    // with its own top-k scratch); a row's choice does not depend on which thread makes it.
    auto each_row = [&](const auto& fn) {
      const std::size_t parts = parallel ? std::min(rows, static_cast<std::size_t>(threads)) : 1;
      if (parts <= 1) {
        for (std::size_t r = 0; r < rows; ++r) fn(r, s.keys.data());
        return;
      }
      parallel_for(parts, [&](std::size_t p) {
        for (std::size_t r = p * rows / parts; r < (p + 1) * rows / parts; ++r) fn(r, s.keys.data() + p * l.n);
      });
    };
    // h[r * n + j] = w_j . in_r for the units j of the union, shared out over the pool.
    // w8 instead of w for int8 layers (raw code sums: the caller applies the scales).
    auto dots = [&](const float* w, const std::int8_t* w8, std::size_t u, float* h) {
      const std::size_t parts = parallel ? std::min(u, 4 * static_cast<std::size_t>(threads)) : 1;
      auto part = [&](std::size_t i) {
        const std::size_t a = i * u / parts, b = (i + 1) * u / parts;
        cpu::DotRows d;
        d.w = w;
        d.w8 = w8;
        d.ldw = l.k;
        d.k = l.k;
        d.idx = s.uni.data() + a;
        d.count = b - a;
        d.x = in;
        d.ldx = l.k;
        d.rows = rows;
        d.h = h;
        d.ldh = l.n;
        kern.dot_rows(d);
      };
      if (parts > 1) {
        parallel_for(parts, part);
      } else if (u > 0) {
        part(0);
      }
    };
    // The kept units of each row from its values in dst (exact, threshold, top-k); the others
    // zeroed. Returns the size of the union.
    auto select_rows = [&]() -> std::size_t {
      each_row([&](std::size_t r, std::uint64_t* keys) {
        float* zr = dst + r * l.n;
        std::uint32_t* ir = idx + r * l.n;
        if (l.mode == Mode::Exact) {
          counts[r] = select_nonzero(zr, l.n, ir);
        } else if (l.mode == Mode::Threshold) {
          counts[r] = select_threshold(zr, l.n, l.threshold, ir);
        } else {
          counts[r] = select_top(zr, true, l.n, l.keep, ir, keys);
          keep_only(zr, l.n, ir, counts[r], reinterpret_cast<float*>(keys));
        }
      });
      return unite();
    };

    if (l.mode == Mode::Predictor && l.dense_from_rows != 0 && rows >= l.dense_from_rows) {
      // A tile this tall would keep most units as the union of its rows' picks: the layer
      // exactly instead, every unit by the GEMM, then as exact mode (a row's zeros skipped).
      float* full = s.partial.data();
      dense_gemm(l.dense_panels.data(), cpu::kPanel, l.k * cpu::kPanel, nullptr, l.k, l.rows, in, rows, full,
                 Activation::None, 0, parallel);
      const float* sc = l.int8 ? l.scale.data() : nullptr;
      each_row([&](std::size_t r, std::uint64_t*) {
        const float* fr = full + r * l.rows;
        float* zr = dst + r * l.n;
        for (std::size_t j = 0; j < l.n; ++j) zr[j] = affine(fr[j], sc, l.bias.data(), j);
        activation_forward(l.activation, l.alpha, zr, zr, l.n);
        if (l.gated) {
          for (std::size_t j = 0; j < l.n; ++j) zr[j] *= affine(fr[l.n + j], sc, l.bias.data(), l.n + j);
        }
        counts[r] = select_nonzero(zr, l.n, idx + r * l.n);
      });
      block = in;
      in = dst;
      in_count = unite();
      in_idx = s.uni.data();
      continue;
    }
    if (l.mode == Mode::Predictor) {
      // Scores from the low-rank predictor, then the k best units per row, computed alone: their
      // rows of W (and of the up projection when gated), bias and activation on the gathered
      // units; then each row keeps only its own.
      dense_gemm(l.pa_panels.data(), cpu::kPanel, l.k * cpu::kPanel, l.pa_bias.data(), l.k, l.rank, in, rows,
                 s.low.data(), Activation::None, 0, parallel);
      dense_gemm(l.pb_panels.data(), cpu::kPanel, l.rank * cpu::kPanel, l.pb_bias.data(), l.rank, l.n, s.low.data(),
                 rows, s.aux.data(), Activation::None, 0, parallel);
      each_row([&](std::size_t r, std::uint64_t* keys) {
        float* score = s.aux.data() + r * l.n;
        const bool magnitude = predictor_keys(l.activation, l.alpha, score, l.n);
        counts[r] = select_top(score, magnitude, l.n, l.keep, idx + r * l.n, keys);
      });
      const std::size_t u = unite();
      // Row r from the sums of its own units (gate[j], and up[j] when gated): scale and bias,
      // activation and the gate product on the kept units only (gathered into g), every other
      // unit of the row zero. The sums come from the GEMM or the dot products, without bias.
      const float* sc = l.int8 ? l.scale.data() : nullptr;
      auto finish_row = [&](std::size_t r, const float* gate, const float* up, float* g) {
        const std::uint32_t* ir = idx + r * l.n;
        const std::size_t c = counts[r];
        for (std::size_t i = 0; i < c; ++i) g[i] = affine(gate[ir[i]], sc, l.bias.data(), ir[i]);
        activation_forward(l.activation, l.alpha, g, g, c);
        if (l.gated) {
          for (std::size_t i = 0; i < c; ++i) g[i] *= affine(up[ir[i]], sc, l.bias.data(), l.n + ir[i]);
        }
        float* zr = dst + r * l.n;  // may be gate itself: read above, before it is cleared
        std::fill(zr, zr + l.n, 0.0f);
        for (std::size_t i = 0; i < c; ++i) zr[ir[i]] = g[i];
      };
      if (union_dense(u, l.n)) {
        // Every unit by the GEMM, rows of l.rows sums in the partial buffer.
        float* full = s.partial.data();
        dense_gemm(l.dense_panels.data(), cpu::kPanel, l.k * cpu::kPanel, nullptr, l.k, l.rows, in, rows, full,
                   Activation::None, 0, parallel);
        each_row([&](std::size_t r, std::uint64_t* keys) {
          const float* fr = full + r * l.rows;
          finish_row(r, fr, fr + l.n, reinterpret_cast<float*>(keys));
        });
      } else {
        // The union's units by dot products (a row's own units are among them).
        dots(l.int8 ? nullptr : l.wr.data(), l.int8 ? l.wr8.data() : nullptr, u, dst);
        if (l.gated) {
          dots(l.int8 ? nullptr : l.wr.data() + l.n * l.k, l.int8 ? l.wr8.data() + l.n * l.k : nullptr, u, s.aux.data());
        }
        each_row([&](std::size_t r, std::uint64_t* keys) {
          finish_row(r, dst + r * l.n, s.aux.data() + r * l.n, reinterpret_cast<float*>(keys));
        });
      }
      // The next layer reads the rows of the nonzero outputs only: a picked unit its activation
      // zeroed (a relu the predictor expected to fire) is dropped, as exact mode drops it.
      each_row([&](std::size_t r, std::uint64_t*) { counts[r] = select_nonzero(dst + r * l.n, l.n, idx + r * l.n); });
      block = in;
      in = dst;
      in_idx = s.uni.data();
      in_count = unite();
      continue;
    }

    if (l.gated && l.mode != Mode::Dense) {
      // Units chosen on act(gate): the gate densely, then only the kept units' up rows.
      dense_gemm(l.panels.data(), cpu::kPanel, l.k * cpu::kPanel, l.bias.data(), l.k, l.n, in, rows, dst, l.activation,
                 l.alpha, parallel);
      if (!in_epilogue(l.activation)) {
        each_row([&](std::size_t r, std::uint64_t*) {
          activation_forward(l.activation, l.alpha, dst + r * l.n, dst + r * l.n, l.n);
        });
      }
      const std::size_t u = select_rows();
      if (union_dense(u, l.n)) {
        // Every unit's up value by the GEMM (its bias included).
        dense_gemm(l.dense_panels.data(), cpu::kPanel, l.k * cpu::kPanel, l.int8 ? nullptr : l.bias.data() + l.n, l.k,
                   l.n, in, rows, s.aux.data(), Activation::None, 0, parallel);
        each_row([&](std::size_t r, std::uint64_t*) {
          float* zr = dst + r * l.n;
          float* up = s.aux.data() + r * l.n;
          if (l.int8) scale_and_shift(up, l.scale.data() + l.n, l.bias.data() + l.n, l.n);
          for (std::size_t j = 0; j < l.n; ++j) zr[j] *= up[j];  // zero for the units this row dropped
        });
      } else {
        dots(l.int8 ? nullptr : l.up.data(), l.int8 ? l.up8.data() : nullptr, u, s.aux.data());
        const float* sc = l.int8 ? l.scale.data() + l.n : nullptr;
        for (std::size_t r = 0; r < rows; ++r) {
          float* zr = dst + r * l.n;
          const float* up = s.aux.data() + r * l.n;
          for (std::size_t i = 0; i < u; ++i) {
            const std::uint32_t j = s.uni[i];
            zr[j] *= affine(up[j], sc, l.bias.data() + l.n, j);  // zero for the units this row dropped
          }
        }
      }
      block = in;
      in = dst;
      in_idx = s.uni.data();
      in_count = u;
      continue;
    }

    // The affine map into z (rows wide): dst itself, or for a gated layer a free buffer.
    float* z = l.gated ? ping[li % 3] : dst;
    if (l.sparse_in) {
      // The inputs in kAxpyParts fixed ranges of input index, each summed into its own partial
      // output by one task, then the partials added to the bias in range order. A range runs
      // by axpy over its kept inputs (whole weight rows streamed in order) or, when a tile's
      // union is too dense for axpy to win, by the GEMM's register tiles over the same kept
      // inputs on the panel copy: the same sums either way, whatever the thread count or batch.
      const bool by_rows = !union_dense(in_count, l.k);
      float* partial = s.partial.data();
      std::size_t bounds[kAxpyParts + 1];
      for (std::size_t p = 0; p <= kAxpyParts; ++p) {
        const std::uint32_t edge = static_cast<std::uint32_t>(p * l.k / kAxpyParts);
        bounds[p] = p == kAxpyParts ? in_count : static_cast<std::size_t>(std::lower_bound(in_idx, in_idx + in_count, edge) - in_idx);
      }
      auto part = [&](std::size_t p) {
        float* y = partial + p * rows * l.rows;
        if (!by_rows) {
          // The range through the GEMM's register tiles: only its kept inputs' rows of the
          // panels (the others are zero in every row of the tile), or all of it when nearly
          // all are kept.
          const std::size_t k0 = p * l.k / kAxpyParts, k1 = (p + 1) * l.k / kAxpyParts;
          const std::size_t kept = bounds[p + 1] - bounds[p];
          cpu::Gemm g;
          g.m = rows;
          g.n = l.rows;
          g.a_rs = l.k;
          g.a_cs = 1;
          g.b_rs = cpu::kPanel;
          g.b_ps = l.k * cpu::kPanel;
          g.c = y;
          g.ldc = l.rows;
          if (static_cast<double>(kept) > kSparseGemmFraction * static_cast<double>(k1 - k0)) {
            g.k = k1 - k0;
            g.a = in + k0;
            g.b = l.dense_panels.data() + k0 * cpu::kPanel;
            kern.gemm(g);  // k1 > k0 here: kept <= k1 - k0
          } else {
            g.k = l.k;
            g.a = in;
            g.b = l.dense_panels.data();
            kern.gemm_sparse(g, in_idx + bounds[p], kept);
          }
          return;
        }
        std::fill(y, y + rows * l.rows, 0.0f);
        cpu::AxpyRows a;
        a.w = l.wt.data();
        a.w8 = l.int8 ? l.wt8.data() : nullptr;
        a.ldw = l.ldt;
        a.idx = in_idx + bounds[p];
        a.count = bounds[p + 1] - bounds[p];
        a.h = in;
        a.ldh = l.k;
        a.rows = rows;
        a.y = y;
        a.ldy = l.rows;
        a.c0 = 0;
        a.c1 = l.rows;
        kern.axpy_rows(a);
      };
      if (parallel) {
        parallel_for(kAxpyParts, part);
      } else {
        for (std::size_t p = 0; p < kAxpyParts; ++p) part(p);
      }
      // Float: bias + partials, left to right. Int8: the partials (sums of codes), then
      // times each output's scale plus its bias.
      const float* sums[kAxpyParts + 1];
      sums[0] = l.bias.data();
      const std::size_t first = l.int8 ? 1 : 0;
      const cpu::Epilogue e = l.gated ? cpu::Epilogue::None : epilogue_of(l.activation);
      for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t p = 0; p < kAxpyParts; ++p) sums[p + 1] = partial + (p * rows + r) * l.rows;
        float* zr = z + r * l.rows;
        kern.reduce(zr, sums + first, kAxpyParts + 1 - first, 0, l.rows);
        if (l.int8) scale_and_shift(zr, l.scale.data(), l.bias.data(), l.rows);
        if (e != cpu::Epilogue::None) kern.rectify(e, l.alpha, zr, zr, l.rows);
      }
    } else {
      dense_gemm(l.panels.data(), cpu::kPanel, l.k * cpu::kPanel, l.bias.data(), l.k, l.rows, in, rows, z,
                 l.gated ? Activation::None : l.activation, l.alpha, parallel);
    }
    if (l.gated) {
      // act(gate) * up, row by row into dst; z may be dst (each row of dst ends before the same
      // row of z starts, and row 0 is read before written, element by element).
      for (std::size_t r = 0; r < rows; ++r) {
        float* zr = z + r * l.rows;
        activation_forward(l.activation, l.alpha, zr, zr, l.n);
        float* d = dst + r * l.n;
        for (std::size_t o = 0; o < l.n; ++o) d[o] = zr[o] * zr[l.n + o];
      }
    } else if (!in_epilogue(l.activation)) {
      activation_forward(l.activation, l.alpha, dst, dst, rows * l.n);
    }
    if (l.residual) {
      for (std::size_t i = 0; i < rows * l.n; ++i) dst[i] += block[i];
    }
    block = in;
    in = dst;
    if (l.mode == Mode::Dense) {
      in_idx = nullptr;
      in_count = 0;
      continue;
    }
    in_count = select_rows();
    in_idx = s.uni.data();
  }
}

void SparseModel::predict(const float* x, std::size_t batch, float* out) const {
  // The batch's whole tiles in groups of at most kGroupRows rows (a multiple of kTileRows; the
  // groups of a batch as equal as whole tiles allow), then its last, shorter tile on its own:
  // the cut depends on the batch alone, so no result depends on the thread count.
  const bool grouped = widest_layer_bytes_ > kGroupLayerBytes;
  const std::size_t whole = batch / kTileRows;
  const std::size_t groups = ceil_div(whole, grouped ? kGroupRows / kTileRows : 1);
  const std::size_t spans = groups + (batch % kTileRows != 0 ? 1 : 0);
  // Span i: group i's rows, or past the groups the last, shorter tile.
  auto span_rows = [&](std::size_t i, std::size_t& r0) -> std::size_t {
    if (i == groups) {
      r0 = whole * kTileRows;
      return batch - r0;
    }
    const std::size_t t0 = i * whole / groups, t1 = (i + 1) * whole / groups;
    r0 = t0 * kTileRows;
    return (t1 - t0) * kTileRows;
  };
  const std::size_t tallest = std::min(batch, grouped ? kGroupRows : kTileRows);

  // Read once: setThreads() may run on another thread during this call, and the scratch (one
  // top-k key list per part) is sized for the count the tiles share their work by.
  const int threads = std::max(1, thread_count());
  const std::size_t enc_w = encoding_.type == Encoding::Identity ? 0 : encoding_.width();
  auto make_scratch = [&](Scratch& s, std::size_t rows) {
    s.enc.resize(rows * enc_w);
    s.ping0.resize(rows * max_width_);
    s.ping1.resize(rows * max_width_);
    s.ping2.resize(rows * max_width_);
    s.low.resize(rows * std::max<std::size_t>(max_rank_, 1));
    s.aux.resize(rows * max_width_);
    s.partial.resize(kAxpyParts * rows * max_width_);
    s.idx.resize(rows * max_width_);
    s.uni.resize(max_width_);
    s.mark.resize(max_width_);
    s.counts.resize(rows);
    s.keys.resize(max_width_ * static_cast<std::size_t>(threads));
  };
  const std::size_t out_w = outputs(), in_w = inputs();
  // Groups are shared out whole only when there are enough of them to balance the pool.
  if (spans == 1 || threads == 1 || (grouped && spans < 2 * static_cast<std::size_t>(threads))) {
    // One span at a time, the pool working inside each layer.
    thread_local Scratch kept;
    make_scratch(kept, tallest);
    for (std::size_t i = 0; i < spans; ++i) {
      std::size_t r0 = 0;
      const std::size_t rows = span_rows(i, r0);
      run_tile(x + r0 * in_w, rows, out + r0 * out_w, threads, kept);
    }
    kept.trim();
    return;
  }
  // Many spans: one per task, each on one thread.
  parallel_for(spans, [&](std::size_t i) {
    thread_local Scratch kept;
    make_scratch(kept, tallest);
    std::size_t r0 = 0;
    const std::size_t rows = span_rows(i, r0);
    run_tile(x + r0 * in_w, rows, out + r0 * out_w, 1, kept);
    kept.trim();
  });
}

}  // namespace mlpkit::sparse
