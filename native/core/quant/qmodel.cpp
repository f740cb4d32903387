#include "core/quant/qmodel.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/aligned.h"
#include "core/parallel.h"
#include "core/quant/qkernels.h"

namespace mlpkit::quant {
namespace {

// Work below this many multiply-adds stays on the calling thread.
constexpr std::size_t kParallelMacs = std::size_t(1) << 20;
// Rows per pass over a block (or pair of blocks): 8 for W8A8 (the int8 pair kernel's 16
// accumulators), 9 for the weight-only pair kernel (three of its 3-row passes; 8 left a
// 2-row pass, ~10% slower per row).
constexpr std::size_t kRowsPerPass = 8;
constexpr std::size_t kWeightOnlyRowsPerPass = 9;
constexpr std::size_t kMaxW8A8Int8Inputs = (std::size_t(1) << 31) / (127 * 127);  // 133144

// Buffers over this size are not kept between calls (see QuantScratch).
constexpr std::size_t kKeepBytes = std::size_t(1) << 20;

template <class V>
void release_if_large(V& v) {
  if (v.capacity() * sizeof(typename V::value_type) > kKeepBytes) V().swap(v);
}

std::atomic<std::size_t> g_live_quant_models{0};
}  // namespace

// One thread's working buffers for predict, kept between its calls: at batch 1 a 5-layer model
// of 64-wide layers spent ~40% of its time in malloc and free, five buffers per layer. Buffers
// grown past kKeepBytes (a big batch) are released when the call ends, so a thread keeps at
// most a few MiB. Per thread (thread_local): predicts run at once on any number of threads,
// and the pool's workers only read the caller's buffers.
struct QuantScratch {
  AlignedVector<std::int8_t> xq;
  AlignedVector<std::uint8_t> xu;
  std::vector<std::int32_t> xsum;
  std::vector<QuantRow> rows;
  AlignedVector<float> padded, enc, ping[2];

  void trim() {
    release_if_large(xq);
    release_if_large(xu);
    release_if_large(xsum);
    release_if_large(rows);
    release_if_large(padded);
    release_if_large(enc);
    release_if_large(ping[0]);
    release_if_large(ping[1]);
  }
};

namespace {

QuantScratch& thread_scratch() {
  thread_local QuantScratch s;
  return s;
}

// W8A8's inputs quantised per row (the ISA's quantize_row, exactly lib/quant/format.ts), once
// per row and layer before the layer's kernels, into s's buffers. quantize_row writes every
// byte of a row, padding included, so the buffers need no clearing first. Batches of many
// values are split over the thread pool by rows: a batch-64 4096-wide layer has 262144 inputs
// to quantise, ~5% of the layer's time on one core.
void quantize_rows(const QuantLayer& l, const float* x, std::size_t ldx, std::size_t batch, QuantScratch& s) {
  s.xq.resize(batch * l.kq);
  s.xu.resize(batch * l.kq);
  s.xsum.resize(batch * l.groups);
  s.rows.resize(batch);
  const QuantKernels& k = quant_kernels();
  auto one = [&](std::size_t r) {
    std::int8_t* q = s.xq.data() + r * l.kq;
    std::uint8_t* u = s.xu.data() + r * l.kq;
    std::int32_t* sum = s.xsum.data() + r * l.groups;
    s.rows[r] = QuantRow{q, u, sum, k.quantize_row(l, x + r * ldx, q, u, sum)};
  };
  constexpr std::size_t kParallelValues = std::size_t(1) << 16;
  if (thread_count() > 1 && batch > 1 && batch * l.k >= kParallelValues) {
    const std::size_t parts = std::min<std::size_t>(batch, 4 * static_cast<std::size_t>(thread_count()));
    const std::size_t per = (batch + parts - 1) / parts;
    parallel_for((batch + per - 1) / per, [&](std::size_t i) {
      for (std::size_t r = i * per; r < std::min(batch, (i + 1) * per); ++r) one(r);
    });
  } else {
    for (std::size_t r = 0; r < batch; ++r) one(r);
  }
}

}  // namespace

QuantModel::QuantModel(const EncodingSpec& encoding, const std::vector<QuantLayerSource>& layers, ActMode mode)
    : encoding_(encoding), mode_(mode) {
  if (layers.empty()) throw std::invalid_argument("a quantised model needs at least one layer");
  if (mode != ActMode::Float && mode != ActMode::Int8) throw std::invalid_argument("unknown activations mode");
  std::size_t width = encoding_.width();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].inputs != width) {
      throw std::invalid_argument("layer " + std::to_string(i) + " takes " + std::to_string(layers[i].inputs) +
                                  " inputs but receives " + std::to_string(width));
    }
    // 127 * 127 * k must fit the int32 accumulator of an int8 row (format.ts).
    if (mode == ActMode::Int8 && layers[i].format == Format::Int8 && layers[i].inputs > kMaxW8A8Int8Inputs) {
      throw std::invalid_argument("W8A8 with int8 weights takes at most " + std::to_string(kMaxW8A8Int8Inputs) +
                                  " inputs per layer, layer " + std::to_string(i) + " has " +
                                  std::to_string(layers[i].inputs));
    }
    layers_.push_back(repack(layers[i], mode == ActMode::Float));
    width = layers[i].outputs;
    max_width_ = std::max({max_width_, layers_.back().kq, layers_.back().blocks * kLanes});
  }
  max_width_ = std::max(max_width_, encoding_.width());
  g_live_quant_models.fetch_add(1, std::memory_order_relaxed);  // last: a constructor that throws made no model
}

QuantModel::~QuantModel() {
  for (QuantLayer& l : layers_) recycle_layer(std::move(l));
  g_live_quant_models.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t QuantModel::live_count() { return g_live_quant_models.load(std::memory_order_relaxed); }

std::size_t QuantModel::bytes() const {
  std::size_t total = 0;
  for (const QuantLayer& l : layers_) total += l.bytes();
  return total;
}

void QuantModel::run_layer(const QuantLayer& l, const float* in, std::size_t batch, float* out, QuantScratch& s) const {
  const QuantKernels& k = quant_kernels();
  const std::size_t np = l.blocks * kLanes;
  // Inputs padded with zeros to kq (the weight-only kernels read whole steps), and multiplied
  // by the layer's input scales where it has them (one float32 multiply each, as format.ts).
  AlignedVector<float>& padded = s.padded;
  const float* x = in;
  std::size_t ldx = l.k;
  const bool scaled = !l.input_scales.empty();
  if (scaled || (l.kq != l.k && mode_ == ActMode::Float)) {
    padded.assign(batch * l.kq, 0.0f);
    const float* sc = l.input_scales.data();
    for (std::size_t r = 0; r < batch; ++r) {
      const float* src = in + r * l.k;
      float* dst = padded.data() + r * l.kq;
      if (scaled) {
        for (std::size_t p = 0; p < l.k; ++p) dst[p] = src[p] * sc[p];
      } else {
        std::copy(src, src + l.k, dst);
      }
    }
    x = padded.data();
    ldx = l.kq;
  }
  if (mode_ == ActMode::Int8) quantize_rows(l, x, ldx, batch, s);
  const QuantRow* const qrows = s.rows.data();

  // Batched W8A8, and batched weight-only int8, go two blocks at a time where the ISA has a
  // kernel for it (qkernels.h).
  const bool pairs = batch >= 2 && (mode_ == ActMode::Int8 ? k.w8a8_pair != nullptr
                                                           : l.format == Format::Int8 && k.wfloat_pair != nullptr);
  const std::size_t per_pass = pairs && mode_ == ActMode::Float ? kWeightOnlyRowsPerPass : kRowsPerPass;
  const std::size_t block_bytes = l.w.size() / l.blocks;
  auto run_blocks = [&](std::size_t b0, std::size_t b1) {
    alignas(64) float y[kWeightOnlyRowsPerPass * 2 * kLanes];
    const float* rows[kWeightOnlyRowsPerPass];
    // Blocks outside, rows inside: a block's weights (16 outputs, 16 * kq bytes) stay in cache
    // while every row of the batch passes over them.
    for (std::size_t b = b0; b < b1;) {
      const std::size_t nb = pairs && b + 1 < b1 ? 2 : 1;
      const std::size_t ldy = nb * kLanes;
      // A pair's first pass reads its weights from memory, at twice the rate the two cores'
      // memory bandwidth can serve, and every later pass from L2. So its passes prefetch the
      // next blocks' weights into L2, a share each, and the next pair's first pass finds them
      // there: the reads spread over all passes. 4096 -> 16384 W8A8, 2 threads, Zen 4, medians of
      // alternated runs: int8 batch 64 1.09x, batch 256 1.06x; int4 g32 batch 8 1.15x; int8 batch
      // 8 (one pass per pair, bandwidth-bound) unchanged within the noise.
      const std::size_t next = std::min<std::size_t>(2, b1 - std::min(b1, b + nb));
      const std::size_t next_lines = next * block_bytes / 64;
      const std::size_t passes = (batch + per_pass - 1) / per_pass;
      const std::size_t share = (next_lines + passes - 1) / passes;
      std::size_t count = 0;
      for (std::size_t r0 = 0, pass = 0; r0 < batch; r0 += count, ++pass) {
        count = std::min(per_pass, batch - r0);
        // A lone last row would run a whole pass over the pair's weights for itself: the last
        // two passes share their rows instead (9 + 1 -> 5 + 5).
        if (batch - r0 == per_pass + 1) count = (per_pass + 1) / 2;
        for (std::size_t r = 0; r < count; ++r) rows[r] = x + (r0 + r) * ldx;
        if (nb == 2) {
          const std::size_t first = std::min(next_lines, pass * share);
          const std::uint8_t* pf = l.w.data() + (b + nb) * block_bytes + first * 64;
          const std::size_t pf_lines = std::min(share, next_lines - first);
          if (mode_ == ActMode::Int8) {
            k.w8a8_pair(l, b, qrows + r0, count, y, ldy, pf, pf_lines);
          } else {
            k.wfloat_pair(l, b, rows, count, y, ldy, pf, pf_lines);
          }
        } else if (mode_ == ActMode::Int8) {
          k.w8a8_block(l, b, qrows + r0, count, y, ldy);
        } else {
          k.wfloat_block(l, b, rows, count, y, ldy);
        }
        const std::size_t valid = std::min(ldy, l.n - b * kLanes);
        for (std::size_t r = 0; r < count; ++r) {
          float* dst = out + (r0 + r) * l.n + b * kLanes;
          for (std::size_t o = 0; o < valid; ++o) dst[o] = y[r * ldy + o] + l.bias[b * kLanes + o];
          activation_forward(l.activation, l.alpha, dst, dst, valid);
        }
      }
      b += nb;
    }
  };
  const std::size_t macs = l.kq * np * batch;
  const int threads = thread_count();
  if (threads > 1 && macs >= kParallelMacs && l.blocks > 1) {
    const std::size_t parts = std::min<std::size_t>(l.blocks, 8 * static_cast<std::size_t>(threads));
    const std::size_t per = (l.blocks + parts - 1) / parts;
    parallel_for((l.blocks + per - 1) / per, [&](std::size_t i) { run_blocks(i * per, std::min(l.blocks, (i + 1) * per)); });
  } else {
    run_blocks(0, l.blocks);
  }
}

void QuantModel::predict(const float* x, std::size_t batch, float* out) const {
  QuantScratch& s = thread_scratch();
  const bool identity = encoding_.type == Encoding::Identity;
  const float* in = x;
  if (!identity) {
    s.enc.resize(batch * encoding_.width());
    encode_forward(encoding_, x, batch, s.enc.data());
    in = s.enc.data();
  }
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const QuantLayer& l = layers_[i];
    float* dst = out;
    if (i + 1 < layers_.size()) {
      s.ping[i & 1].resize(batch * l.n);
      dst = s.ping[i & 1].data();
    }
    run_layer(l, in, batch, dst, s);
    in = dst;
  }
  s.trim();
}

}  // namespace mlpkit::quant
