#include "core/model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/cpu/float_mode.h"
#include "core/cpu/kernels.h"
#include "core/finite.h"
#include "core/parallel.h"

namespace mlpkit {
namespace {

// Predict cuts the batch into tiles of rows and runs every layer on a tile before the next
// tile, so the tile's activations stay in L1/L2 (this budget) and the scratch memory does not
// grow with the batch.
constexpr std::size_t kPredictTileBytes = 1024 * 1024;
constexpr std::size_t kMaxPredictTileRows = 512;
// Training tiles keep more per row (pre- and post-activations of every layer, gradients).
constexpr std::size_t kTrainTileBytes = 192 * 1024;
constexpr std::size_t kMaxTrainTileRows = 120;
// Unless a layer's weights pass L2 (kWideLayerBytes): then its weight gradient, an update of
// every weight per tile, must be spread over enough rows to amortise that pass, whatever the
// cache holds of the activations.
constexpr std::size_t kWideTrainTileRows = 96;
// Training tiles are a multiple of this many rows when they can be: every ISA's register tile
// height (4 or 6) divides it, so no GEMM ends on a short row block.
constexpr std::size_t kTrainTileQuantum = 12;
// Work below this many multiply-adds runs on the calling thread: waking a worker costs more.
constexpr std::size_t kParallelMacs = std::size_t(1) << 18;
// Batches too small to split by rows share out each layer's columns instead, above this much
// work, in slices of whole column groups (a multiple of every ISA's register tile width).
constexpr std::size_t kColumnSplitMacs = std::size_t(1) << 20;
constexpr std::size_t kColumnGroup = 64;
// A layer with more weight bytes than this (about an L2) runs layer by layer over the whole
// batch, as long as the batch's activations stay under kColumnScratchFloats.
constexpr std::size_t kWideLayerBytes = std::size_t(2) << 20;
constexpr std::size_t kColumnScratchFloats = std::size_t(16) << 20;
constexpr std::size_t kMinTileRows = 32;
constexpr std::size_t kKeptScratchFloats = std::size_t(256) << 10;
// Batch-1 scratch up to this size lives on the stack (16 KB).
constexpr std::size_t kStackScratchFloats = 4096;
// Training splits the batch into at most this many chunks of at least kMinChunkRows rows, each
// accumulating its own weight gradients, summed in chunk order at the end. The split depends on
// the batch alone, so the sums, and so the results, are the same for any number of threads.
constexpr std::size_t kMinChunkRows = 64;
constexpr std::size_t kMaxChunks = 16;
constexpr std::size_t kPartialFloatsBudget = std::size_t(16) << 20;  // 64 MB of per-chunk gradients

void check_loss(Loss loss) {
  const int code = static_cast<int>(loss);
  if (code < 0 || code >= kLossCount) {
    throw std::out_of_range("loss must be a loss code in [0, " + std::to_string(kLossCount) + "), got " +
                            std::to_string(code));
  }
}

void check_optimizer(Optimizer optimizer) {
  const int code = static_cast<int>(optimizer);
  if (code < 0 || code >= kOptimizerCount) {
    throw std::out_of_range("optimizer must be an optimizer code in [0, " + std::to_string(kOptimizerCount) +
                            "), got " + std::to_string(code));
  }
}

std::size_t padded(std::size_t n) { return (n + cpu::kPanel - 1) / cpu::kPanel * cpu::kPanel; }

// Predict keeps three layer buffers per row in rotation: a layer's output never overwrites its
// input nor the input of the layer before (which a residual layer adds).
constexpr std::size_t kPingBuffers = 3;

// ReLU and leaky ReLU run in the GEMM epilogue; the other activations in a pass after it.
cpu::Epilogue epilogue_of(Activation a) {
  if (a == Activation::Relu) return cpu::Epilogue::Relu;
  if (a == Activation::LeakyRelu) return cpu::Epilogue::LeakyRelu;
  return cpu::Epilogue::None;
}
bool in_epilogue(Activation a) { return a == Activation::None || epilogue_of(a) != cpu::Epilogue::None; }
// A gated layer's activation applies to the gate half only, after the GEMM (finish_layer).
cpu::Epilogue epilogue_of(const LayerPlan& l) { return l.gated ? cpu::Epilogue::None : epilogue_of(l.activation); }
bool needs_activation_pass(const LayerPlan& l) { return !l.gated && !in_epilogue(l.activation); }

// After a layer's affine map (and, ungated, its activation) wrote z: a gated layer's output
// act(gate) * up into dst, then a residual layer's block input added. dst may be z: each row
// of dst ends before the same row of z starts (u * (r + 1) <= 2u * r for r >= 1; row 0 is
// read before written, element by element), so compacting rows in order is safe. An ungated
// layer has z == dst.
void finish_layer(const LayerPlan& layer, std::size_t rows, float* z, float* dst, const float* block_in) {
  const std::size_t u = layer.outputs;
  if (layer.gated) {
    for (std::size_t r = 0; r < rows; ++r) {
      float* zr = z + r * 2 * u;
      activation_forward(layer.activation, layer.alpha, zr, zr, u);
      float* d = dst + r * u;
      for (std::size_t o = 0; o < u; ++o) d[o] = zr[o] * zr[u + o];
    }
  }
  if (layer.residual) {
    for (std::size_t i = 0; i < rows * u; ++i) dst[i] += block_in[i];
  }
}

std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

std::atomic<std::size_t> g_live_models{0};

// As JS prints them, for messages about non-finite values.
std::string number_text(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return std::to_string(v);
}

}  // namespace

Model::Model(const ModelConfig& config, const float* params, std::size_t count)
    : plan_(plan_model(config)) {
  if (count != plan_.param_count) {
    throw std::length_error("params must have " + std::to_string(plan_.param_count) + " elements, got " +
                            std::to_string(count));
  }
  // Copied in parallel chunks: the pages of a large model fault in on every thread.
  params_.resize(count);
  constexpr std::size_t kCopyChunk = std::size_t(1) << 20;  // floats
  const std::size_t chunks = (count + kCopyChunk - 1) / kCopyChunk;
  auto copy_chunk = [&](std::size_t c) {
    const std::size_t begin = c * kCopyChunk, end = std::min(count, begin + kCopyChunk);
    std::memcpy(params_.data() + begin, params + begin, (end - begin) * sizeof(float));
  };
  parallel_for(chunks, copy_chunk);  // a single chunk runs inline
  // grads_ and opt_ wait for the first training call (ensure_training_state): a model that only
  // predicts, which is most loaded models, holds its parameters and their packed copy, not three
  // more buffers of the same size to zero (a 4096 x 16384 layer: 0.8 GB and ~2 s less).
  std::size_t at = 0;
  for (const LayerPlan& l : plan_.layers) {
    packed_at_.push_back(at);
    at += padded(l.rows) * l.inputs;
    bias_at_.push_back(at);
    at += padded(l.rows);
  }
  packed_.resize(at);  // unwritten: repack writes every element, the padding too
  repack();
  for (const LayerPlan& l : plan_.layers) {
    macs_ += l.inputs * l.rows;
    widest_layer_bytes_ = std::max(widest_layer_bytes_, l.inputs * l.rows * sizeof(float));
  }
  scratch_floats_ = (plan_.encoding.type == Encoding::Identity ? 0 : plan_.encoding.width()) + kPingBuffers * plan_.max_width;
  g_live_models.fetch_add(1, std::memory_order_relaxed);  // last: a constructor that throws made no model
}

Model::~Model() { g_live_models.fetch_sub(1, std::memory_order_relaxed); }

std::size_t Model::live_count() { return g_live_models.load(std::memory_order_relaxed); }

void Model::repack_panels(std::size_t l, std::size_t q0, std::size_t q1) {
  const LayerPlan& layer = plan_.layers[l];
  const std::size_t n = layer.rows, k = layer.inputs;
  const float* w = params_.data() + layer.weight;
  float* dst = packed_.data() + packed_at_[l];
  for (std::size_t q = q0; q < q1; ++q) {
    float* panel = dst + q * k * cpu::kPanel;
    const std::size_t cols = std::min(cpu::kPanel, n - q * cpu::kPanel);
    for (std::size_t c = 0; c < cols; ++c) {
      const float* wrow = w + (q * cpu::kPanel + c) * k;
      for (std::size_t p = 0; p < k; ++p) panel[p * cpu::kPanel + c] = wrow[p];
    }
    // The last panel's columns past n: zeros (packed_ starts unwritten).
    for (std::size_t c = cols; c < cpu::kPanel; ++c)
      for (std::size_t p = 0; p < k; ++p) panel[p * cpu::kPanel + c] = 0.0f;
  }
  if (q0 == 0) {
    float* bias = packed_.data() + bias_at_[l];
    for (std::size_t j = 0; j < n; ++j) bias[j] = layer.has_bias ? params_[layer.bias + j] : 0.0f;
    std::fill(bias + n, bias + padded(n), 0.0f);
  }
}

void Model::repack() {
  // Tasks of up to kRepackPanels panels (16 outputs each), so that one wide layer is shared out
  // over the threads too: a 4096 x 16384 layer was one thread's 268 MB transpose, at every load
  // and after every optimizer step.
  constexpr std::size_t kRepackPanels = 64;
  const std::size_t L = plan_.layers.size();
  std::vector<std::size_t> first_task(L + 1, 0);
  for (std::size_t l = 0; l < L; ++l) {
    const std::size_t panels = padded(plan_.layers[l].rows) / cpu::kPanel;
    first_task[l + 1] = first_task[l] + (panels + kRepackPanels - 1) / kRepackPanels;
  }
  auto task = [&](std::size_t t) {
    const std::size_t l = static_cast<std::size_t>(std::upper_bound(first_task.begin(), first_task.end(), t) - first_task.begin()) - 1;
    const std::size_t panels = padded(plan_.layers[l].rows) / cpu::kPanel;
    const std::size_t q0 = (t - first_task[l]) * kRepackPanels;
    repack_panels(l, q0, std::min(panels, q0 + kRepackPanels));
  };
  if (plan_.param_count >= (std::size_t(1) << 16)) {
    parallel_for(first_task[L], task);
  } else {
    for (std::size_t t = 0; t < first_task[L]; ++t) task(t);
  }
}

namespace {

// The forward GEMM of one layer on `rows` rows: out = in . W^T + b from the packed weights.
cpu::Gemm forward_gemm(const LayerPlan& layer, const float* packed, const float* bias, std::size_t rows,
                       const float* in, float* out) {
  cpu::Gemm g;
  g.m = rows;
  g.n = layer.rows;
  g.k = layer.inputs;
  g.a = in;
  g.a_rs = layer.inputs;
  g.a_cs = 1;
  g.b = packed;
  g.b_rs = cpu::kPanel;
  g.b_ps = layer.inputs * cpu::kPanel;
  g.bias = bias;
  g.c = out;
  g.ldc = layer.rows;
  return g;
}

// One layer's affine map with its activation (ungated), in place: z = act(in . W^T + b).
void forward_layer(const cpu::Kernels& k, const LayerPlan& layer, const float* packed, const float* bias,
                   std::size_t rows, const float* in, float* z) {
  cpu::Gemm g = forward_gemm(layer, packed, bias, rows, in, z);
  g.epilogue = epilogue_of(layer);
  g.alpha = layer.alpha;
  k.gemm(g);
  if (needs_activation_pass(layer)) activation_forward(layer.activation, layer.alpha, z, z, rows * layer.rows);
}

// Exact activation sparsity: after a ReLU most inputs of the next layer are exactly zero, and a
// zero input adds nothing to any output, so a one-row product can skip them and read only the
// weight rows of the active inputs (the panels hold one 64-byte row per input). Lists the
// nonzero entries of in[0, k) into idx; returns how many, or k + 1 (use the dense product) when
// more than half are active, where skipping saves too little to pay for the index.
std::size_t active_inputs(const float* in, std::size_t k, std::uint32_t* idx) {
  std::size_t count = 0;
  for (std::size_t p = 0; p < k; ++p) {
    idx[count] = static_cast<std::uint32_t>(p);
    count += in[p] != 0.0f;  // branch-free: write always, advance on nonzero (NaN counts as active)
  }
  return 2 * count <= k ? count : k + 1;
}

// Worth checking only for layers big enough that the weight rows skipped outweigh the pass
// over the inputs and the indirect loads (measured: a 64x64 layer gets slower).
constexpr std::size_t kSparseMinMacs = std::size_t(1) << 16;

// The union of the nonzero inputs of `rows` rows (in[rows x k]), as active_inputs.
std::size_t active_union(const float* in, std::size_t rows, std::size_t k, std::uint32_t* idx) {
  if (rows == 1) return active_inputs(in, k, idx);
  std::size_t count = 0;
  for (std::size_t p = 0; p < k; ++p) {
    bool any = false;
    for (std::size_t r = 0; r < rows; ++r) any = any || in[r * k + p] != 0.0f;
    idx[count] = static_cast<std::uint32_t>(p);
    count += any;
  }
  return 2 * count <= k ? count : k + 1;
}

// Batches above this go dense: the union of their active inputs is rarely sparse enough.
constexpr std::size_t kSparseMaxBatch = 16;

bool after_relu(const ModelPlan& plan, std::size_t l) {
  return l > 0 && plan.layers[l - 1].activation == Activation::Relu && !plan.layers[l - 1].residual &&
         plan.layers[l].inputs * plan.layers[l].rows >= kSparseMinMacs;
}

}  // namespace

void Model::predict(const float* x, std::size_t batch, float* out) const {
  const Sequencer::Ticket turn = order_.enter(Sequencer::Access::Read);
  predict_in_turn(x, batch, out);
}

void Model::predict(Sequencer::Ticket turn, const float* x, std::size_t batch, float* out) const {
  turn.wait();
  predict_in_turn(x, batch, out);
}

void Model::predict_in_turn(const float* x, std::size_t batch, float* out) const {
  const cpu::Kernels& k = cpu::kernels();
  if (batch == 1 && macs_ < kColumnSplitMacs && scratch_floats_ <= kStackScratchFloats) {
    // The latency path: one row, scratch on the stack (no thread-local lookup), no tiling
    // arithmetic, no thread hop.
    alignas(64) float scratch[kStackScratchFloats];
    std::uint32_t idx[kStackScratchFloats];
    predict_row(k, x, out, scratch, idx);
    return;
  }
  const std::size_t d = plan_.encoding.inputs;
  const bool identity = plan_.encoding.type == Encoding::Identity;
  const std::size_t enc_floats = identity ? 0 : plan_.encoding.width();
  const std::size_t row_floats = enc_floats + kPingBuffers * plan_.max_width;
  std::size_t tile = std::clamp<std::size_t>(kPredictTileBytes / (sizeof(float) * row_floats), 1, kMaxPredictTileRows);

  const std::size_t macs = macs_;
  const int threads = thread_count();
  const bool parallel = threads > 1 && batch > 1 && macs * batch >= kParallelMacs;
  // Enough tiles for every thread to get a few (load balance); rows are independent, so the
  // tile size never changes a result.
  if (parallel) tile = std::max<std::size_t>(1, std::min(tile, ceil_div(batch, 4 * static_cast<std::size_t>(threads))));
  if (tile >= kTrainTileQuantum && tile < batch) tile -= tile % kTrainTileQuantum;  // whole register tiles
  const std::size_t tiles = ceil_div(batch, tile);

  // A few rows through wide layers (batch 1 through a 1024x1024 layer): too few rows to share
  // out, so every layer's output columns are shared out instead, layer after layer.
  // And when a layer's weights exceed L2 and the row tiles (cache-sized, or cut small to share a
  // small batch out) hold only a few rows, every weight would be streamed from memory once per
  // few rows: then too the batch goes layer by layer (as long as its activations fit the
  // scratch budget), each weight read once.
  const bool wide_few_rows = batch > 1 && widest_layer_bytes_ > kWideLayerBytes && tile < kMinTileRows;
  if ((threads > 1 && batch < 4 * static_cast<std::size_t>(threads) && macs * batch >= kColumnSplitMacs) ||
      (wide_few_rows && batch * scratch_floats_ <= kColumnScratchFloats)) {
    predict_by_columns(x, batch, out);
    return;
  }
  // A batch whose activations pass the scratch budget goes layer by layer too, in equal chunks
  // of rows that fit it: each weight is then read once per chunk (hundreds of rows), not once per
  // few-row tile. Without this a 4096 -> 16384 layer ran at 80 GMAC/s from batch 342 on, 180
  // GMAC/s below it (Zen 5, 2 threads).
  const std::size_t chunk_max = kColumnScratchFloats / scratch_floats_;
  if (wide_few_rows && chunk_max >= kMinTileRows) {
    const std::size_t chunks = ceil_div(batch, chunk_max);
    const std::size_t chunk = ceil_div(batch, chunks);
    for (std::size_t r0 = 0; r0 < batch; r0 += chunk) {
      predict_by_columns(x + r0 * d, std::min(chunk, batch - r0), out + r0 * outputs());
    }
    return;
  }

  const std::size_t L = plan_.layers.size();
  auto run_tile = [&](std::size_t t) {
    // One scratch per thread: the JS thread, each libuv worker and each pool worker reuse
    // theirs across calls, and no two calls on one thread overlap. Bounded by the largest
    // model and tile seen.
    thread_local AlignedVector<float> scratch;
    if (scratch.size() < tile * row_floats) scratch.resize(tile * row_floats);
    float* enc = scratch.data();
    float* ping[kPingBuffers];
    for (std::size_t b = 0; b < kPingBuffers; ++b) ping[b] = enc + tile * (enc_floats + b * plan_.max_width);
    const std::size_t r0 = t * tile;
    const std::size_t rows = std::min(tile, batch - r0);
    const float* in = x + r0 * d;
    if (!identity) {
      encode_forward(plan_.encoding, in, rows, enc);
      in = enc;
    }
    const float* block = nullptr;  // the input of the previous layer
    for (std::size_t l = 0; l < L; ++l) {
      const LayerPlan& layer = plan_.layers[l];
      float* dst = l + 1 == L ? out + r0 * layer.outputs : ping[l % kPingBuffers];
      float* z = layer.gated ? ping[l % kPingBuffers] : dst;
      forward_layer(k, layer, packed_.data() + packed_at_[l], packed_.data() + bias_at_[l], rows, in, z);
      finish_layer(layer, rows, z, dst, block);
      block = in;
      in = dst;
    }
  };
  if (parallel && tiles > 1) {
    parallel_for(tiles, run_tile);
  } else {
    for (std::size_t t = 0; t < tiles; ++t) run_tile(t);
  }
}

void Model::predict_row(const cpu::Kernels& k, const float* x, float* out, float* scratch,
                        std::uint32_t* idx) const {
  const bool identity = plan_.encoding.type == Encoding::Identity;
  const std::size_t enc_floats = identity ? 0 : plan_.encoding.width();
  float* ping[kPingBuffers];
  for (std::size_t b = 0; b < kPingBuffers; ++b) ping[b] = scratch + enc_floats + b * plan_.max_width;
  const float* in = x;
  if (!identity) {
    encode_forward(plan_.encoding, x, 1, scratch);
    in = scratch;
  }
  const std::size_t L = plan_.layers.size();
  const float* block = nullptr;  // the input of the previous layer
  for (std::size_t l = 0; l < L; ++l) {
    const LayerPlan& layer = plan_.layers[l];
    float* dst = l + 1 == L ? out : ping[l % kPingBuffers];
    float* z = layer.gated ? ping[l % kPingBuffers] : dst;
    const std::size_t active = after_relu(plan_, l) ? active_inputs(in, layer.inputs, idx) : layer.inputs + 1;
    if (active <= layer.inputs) {
      cpu::Gemm g = forward_gemm(layer, packed_.data() + packed_at_[l], packed_.data() + bias_at_[l], 1, in, z);
      g.epilogue = epilogue_of(layer);
      g.alpha = layer.alpha;
      k.gemm_sparse(g, idx, active);
      if (needs_activation_pass(layer)) activation_forward(layer.activation, layer.alpha, z, z, layer.rows);
    } else {
      forward_layer(k, layer, packed_.data() + packed_at_[l], packed_.data() + bias_at_[l], 1, in, z);
    }
    finish_layer(layer, 1, z, dst, block);
    block = in;
    in = dst;
  }
}

void Model::predict_by_columns(const float* x, std::size_t batch, float* out) const {
  const cpu::Kernels& k = cpu::kernels();
  const bool identity = plan_.encoding.type == Encoding::Identity;
  const std::size_t enc_floats = identity ? 0 : plan_.encoding.width();
  // Small scratch is kept per thread; a large batch's is allocated for the call, so no thread
  // holds on to tens of megabytes after one big predict.
  thread_local AlignedVector<float> kept;
  thread_local std::vector<std::uint32_t> idx;  // active inputs of a batch-1 row (exact sparsity)
  AlignedVector<float> local;
  const std::size_t need = batch * (enc_floats + kPingBuffers * plan_.max_width);
  AlignedVector<float>& scratch = need <= kKeptScratchFloats ? kept : local;
  if (scratch.size() < need) scratch.resize(need);
  float* ping[kPingBuffers];
  for (std::size_t b = 0; b < kPingBuffers; ++b) ping[b] = scratch.data() + batch * (enc_floats + b * plan_.max_width);
  const float* in = x;
  if (!identity) {
    encode_forward(plan_.encoding, x, batch, scratch.data());
    in = scratch.data();
  }
  const std::size_t L = plan_.layers.size();
  const std::size_t parts_max = 4 * static_cast<std::size_t>(thread_count());
  const float* block = nullptr;  // the input of the previous layer
  for (std::size_t l = 0; l < L; ++l) {
    const LayerPlan& layer = plan_.layers[l];
    float* dst = l + 1 == L ? out : ping[l % kPingBuffers];
    float* z = layer.gated ? ping[l % kPingBuffers] : dst;
    cpu::Gemm g = forward_gemm(layer, packed_.data() + packed_at_[l], packed_.data() + bias_at_[l], batch, in, z);
    g.epilogue = epilogue_of(layer);
    g.alpha = layer.alpha;
    // Slices of whole 64-column groups, so every slice keeps full register tiles; each output
    // is still computed by one chain, so the split never changes a result.
    const std::size_t groups = ceil_div(layer.rows, kColumnGroup);
    const std::size_t per = ceil_div(groups, std::min(groups, parts_max)) * kColumnGroup;
    const std::size_t parts = ceil_div(layer.rows, per);
    // Exact sparsity for a few rows: the union of their active inputs (a row's zero at an input
    // another row needs adds exactly nothing).
    std::size_t active = layer.inputs + 1;
    if (batch <= kSparseMaxBatch && after_relu(plan_, l)) {
      if (idx.size() < layer.inputs) idx.resize(layer.inputs);
      active = active_union(in, batch, layer.inputs, idx.data());
    }
    // The thread_local list is this thread's; workers must be handed its address, not its name.
    const std::uint32_t* active_idx = idx.data();
    parallel_for(parts, [&](std::size_t part) {
      const std::size_t c0 = part * per;
      cpu::Gemm slice = g;
      slice.n = std::min(per, layer.rows - c0);
      slice.b = g.b + (c0 / cpu::kPanel) * g.b_ps;
      slice.bias = g.bias + c0;
      slice.c = g.c + c0;
      if (active <= layer.inputs) {
        k.gemm_sparse(slice, active_idx, active);
      } else {
        k.gemm(slice);
      }
    });
    if (needs_activation_pass(layer)) activation_forward(layer.activation, layer.alpha, z, z, batch * layer.rows);
    finish_layer(layer, batch, z, dst, block);
    block = in;
    in = dst;
  }
}

void Model::get_params(float* out) const {
  const Sequencer::Ticket turn = order_.enter(Sequencer::Access::Read);
  std::memcpy(out, params_.data(), params_.size() * sizeof(float));
}

void Model::set_params(const float* params) {
  const Sequencer::Ticket turn = order_.enter(Sequencer::Access::Write);
  std::memcpy(params_.data(), params, params_.size() * sizeof(float));
  opt_.bounds_known = false;  // the next update's check measures them again
  repack();
}

void Model::ensure_training_state() {
  if (grads_.size() != plan_.param_count) grads_.assign(plan_.param_count, 0.0f);
  if (opt_.m.size() != plan_.param_count) opt_ = OptimizerState(plan_.param_count);
}

void Model::get_grads(float* out) const {
  const Sequencer::Ticket turn = order_.enter(Sequencer::Access::Read);
  // Before any training call the gradients are all zero; they are not held yet.
  if (grads_.empty()) std::fill(out, out + plan_.param_count, 0.0f);
  else std::memcpy(out, grads_.data(), grads_.size() * sizeof(float));
}

void Model::set_grads(const float* grads) {
  const Sequencer::Ticket turn = order_.enter(Sequencer::Access::Write);
  ensure_training_state();
  std::memcpy(grads_.data(), grads, grads_.size() * sizeof(float));
}

// Scratch for one chunk of a training pass, reused tile after tile: everything the backward
// pass needs from the forward pass of one tile, and the gradients walking back through it.
struct Model::Pass {
  AlignedVector<float> storage;
  float* enc = nullptr;               // encoded input, when the encoding is not the identity
  std::vector<float*> z;              // pre-activations per layer (rows wide)
  std::vector<float*> a;              // outputs per layer (== z when the layer has nothing after its GEMM)
  float* grad_y = nullptr;            // dLoss/dy
  float* grad_z = nullptr;            // dLoss/dz of the layer being walked back
  float* grad_a[2] = {nullptr, nullptr};  // dLoss/d(layer input), alternating between layers
  float* skip[2] = {nullptr, nullptr};    // dLoss/d(block input) a residual layer passes back, alternating

  // a separate from z: an activation, a gate or a residual sum after the GEMM.
  static bool separate(const LayerPlan& l) { return l.activation != Activation::None || l.gated || l.residual; }

  Pass(const ModelPlan& plan, std::size_t tile) {
    const std::size_t width = plan.encoding.width();
    const bool identity = plan.encoding.type == Encoding::Identity;
    const std::size_t wide = std::max(plan.max_width, width);
    storage.resize(tile * row_floats(plan));
    float* p = storage.data();
    auto take = [&](std::size_t n) {
      float* q = p;
      p += tile * n;
      return q;
    };
    if (!identity) enc = take(width);
    for (const LayerPlan& l : plan.layers) {
      float* zl = take(l.rows);
      z.push_back(zl);
      a.push_back(separate(l) ? take(l.outputs) : zl);
    }
    grad_y = take(plan.layers.back().outputs);
    grad_z = take(plan.max_width);
    grad_a[0] = take(wide);
    grad_a[1] = take(wide);
    if (!plan.plain) {
      skip[0] = take(wide);
      skip[1] = take(wide);
    }
  }

  static std::size_t row_floats(const ModelPlan& plan) {
    const std::size_t width = plan.encoding.width();
    std::size_t floats = plan.encoding.type == Encoding::Identity ? 0 : width;
    for (const LayerPlan& l : plan.layers) floats += l.rows + (separate(l) ? l.outputs : 0);
    const std::size_t wide = std::max(plan.max_width, width);
    return floats + plan.layers.back().outputs + plan.max_width + (plan.plain ? 2 : 4) * wide;
  }
};

namespace {

// dL/dz of a gated layer from dL/d(output) (rows x u): gate half d * up * act'(gate), up half
// d * act(gate); gz is rows x 2u.
void gate_backward(const LayerPlan& layer, std::size_t rows, const float* z, const float* grad_out, float* gz) {
  const std::size_t u = layer.outputs;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* zr = z + r * 2 * u;
    const float* d = grad_out + r * u;
    float* g = gz + r * 2 * u;
    for (std::size_t o = 0; o < u; ++o) g[o] = d[o] * zr[u + o];
    activation_backward(layer.activation, layer.alpha, zr, g, g, u);
    activation_forward(layer.activation, layer.alpha, zr, g + u, u);
    for (std::size_t o = 0; o < u; ++o) g[u + o] *= d[o];
  }
}

}  // namespace

double Model::forward_backward(const float* x, std::size_t batch, const Loss* loss, double loss_param,
                               const LossTarget* target, const float* grad_output, float* grad_input) {
  const cpu::Kernels& k = cpu::kernels();
  const std::size_t P = plan_.param_count;
  const std::size_t L = plan_.layers.size();
  const std::size_t d = plan_.encoding.inputs;
  const std::size_t outs = outputs();
  const bool identity = plan_.encoding.type == Encoding::Identity;
  ensure_training_state();

  const std::size_t max_chunks = std::clamp<std::size_t>(kPartialFloatsBudget / std::max<std::size_t>(P, 1), 1, kMaxChunks);
  const std::size_t chunks = std::min(ceil_div(batch, kMinChunkRows), max_chunks);
  const std::size_t chunk_rows = ceil_div(batch, chunks);
  std::size_t tile = kTrainTileBytes / (sizeof(float) * Pass::row_floats(plan_));
  if (tile >= kTrainTileQuantum) tile -= tile % kTrainTileQuantum;
  if (widest_layer_bytes_ > kWideLayerBytes) tile = std::max(tile, kWideTrainTileRows);
  tile = std::clamp<std::size_t>(tile, 1, std::min(std::max(kMaxTrainTileRows, kWideTrainTileRows), chunk_rows));
  const std::size_t tiles_per_chunk = ceil_div(chunk_rows, tile);
  // One chunk (a small batch, or parameters too many for per-chunk gradient buffers) gets the
  // pool inside its products instead: each GEMM's columns are shared out, which never changes
  // a result (every output keeps its one chain).
  const bool inner = chunks == 1 && thread_count() > 1 && 3 * macs_ * batch >= kColumnSplitMacs;
  auto run_gemm = [&](const cpu::Gemm& g) {
    const std::size_t groups = ceil_div(g.n, kColumnGroup);
    const std::size_t parts = inner ? std::min(groups, 4 * static_cast<std::size_t>(thread_count())) : 1;
    if (parts <= 1 || g.m * g.n * g.k < kParallelMacs) {
      k.gemm(g);
      return;
    }
    const std::size_t per = ceil_div(groups, parts) * kColumnGroup;
    parallel_for(ceil_div(g.n, per), [&](std::size_t part) {
      const std::size_t c0 = part * per;
      cpu::Gemm slice = g;
      slice.n = std::min(per, g.n - c0);
      slice.b = g.b + (c0 / cpu::kPanel) * g.b_ps + c0 % cpu::kPanel;
      slice.c = g.c + c0;
      if (g.bias) slice.bias = g.bias + c0;
      if (g.act) slice.act = g.act + c0;
      if (g.gate) slice.gate = g.gate + c0;
      k.gemm(slice);
    });
  };

  // Bad labels throw here, before any gradient is written. One chunk accumulates straight into
  // grads_; several each into their own buffer, summed into grads_ once all have finished.
  if (loss && loss_uses_labels(*loss) && target->labels) check_labels(target->labels, batch, outs);
  AlignedVector<float> partial(chunks > 1 ? chunks * P : 0);
  std::vector<double> loss_sums(chunks, 0.0);

  auto run_chunk = [&](std::size_t c) {
    cpu::FlushDenormals flush;
    float* dparams = chunks > 1 ? partial.data() + c * P : grads_.data();
    std::fill(dparams, dparams + P, 0.0f);
    Pass pass(plan_, tile);
    const std::size_t c0 = c * chunk_rows, c1 = std::min(batch, c0 + chunk_rows);
    for (std::size_t t = 0; t < tiles_per_chunk; ++t) {
      const std::size_t r0 = c0 + t * tile;
      if (r0 >= c1) break;
      const std::size_t rows = std::min(tile, c1 - r0);
      const float* xr = x + r0 * d;

      // Forward, keeping z and a of every layer (ReLU-family activations in the GEMM epilogue).
      const float* in = xr;
      if (!identity) {
        encode_forward(plan_.encoding, xr, rows, pass.enc);
        in = pass.enc;
      }
      const float* enc = in;
      const float* block = nullptr;  // the input of the previous layer
      for (std::size_t l = 0; l < L; ++l) {
        const LayerPlan& layer = plan_.layers[l];
        float* z = pass.z[l];
        float* a = pass.a[l];
        cpu::Gemm g = forward_gemm(layer, packed_.data() + packed_at_[l], packed_.data() + bias_at_[l], rows, in, z);
        const cpu::Epilogue e = epilogue_of(layer);
        if (e != cpu::Epilogue::None) {
          g.epilogue = e;
          g.alpha = layer.alpha;
          g.act = a;
        }
        run_gemm(g);
        const std::size_t u = layer.outputs;
        if (layer.gated) {
          // z stays as it is (backward needs it): the output goes to a.
          for (std::size_t r = 0; r < rows; ++r) {
            const float* zr = z + r * 2 * u;
            float* ar = a + r * u;
            activation_forward(layer.activation, layer.alpha, zr, ar, u);
            for (std::size_t o = 0; o < u; ++o) ar[o] *= zr[u + o];
          }
        } else if (layer.activation != Activation::None && e == cpu::Epilogue::None) {
          activation_forward(layer.activation, layer.alpha, z, a, rows * u);
        } else if (layer.activation == Activation::None && a != z) {
          std::copy(z, z + rows * u, a);
        }
        if (layer.residual) {
          for (std::size_t i = 0; i < rows * u; ++i) a[i] += block[i];
        }
        block = in;
        in = a;
      }

      // Where the backward pass starts: the loss gradient, or the caller's dL/dy.
      const float* grad_y = nullptr;
      if (loss) {
        LossTarget part;
        if (target->labels) part.labels = target->labels + r0;
        if (target->values) part.values = target->values + r0 * outs;
        loss_sums[c] += loss_sum_and_gradient(*loss, loss_param, pass.a[L - 1], part, rows, outs, batch, pass.grad_y);
        grad_y = pass.grad_y;
      } else {
        grad_y = grad_output + r0 * outs;
      }

      // Walking back, grad holds dL/d(output of layer l), or already dL/dz when the GEMM that
      // produced it applied a ReLU-family derivative in its epilogue (fused).
      const float* grad = grad_y;
      bool fused = false;
      // dL/d(input of layer l - 1) that a residual layer l + 1 sends past layer l (pending),
      // and the one layer l sends past layer l - 1 (next).
      const float* pending = nullptr;
      const float* grad_a = nullptr;  // dL/d(input of layer 0), when grad_input is wanted
      for (std::size_t l = L; l-- > 0;) {
        const LayerPlan& layer = plan_.layers[l];
        const float* layer_in = l == 0 ? enc : pass.a[l - 1];
        const float* grad_z = grad;
        if (!fused) {
          if (layer.gated) {
            gate_backward(layer, rows, pass.z[l], grad, pass.grad_z);
            grad_z = pass.grad_z;
          } else if (layer.activation != Activation::None) {
            const cpu::Epilogue e = epilogue_of(layer.activation);
            if (e != cpu::Epilogue::None) {
              k.rectify_backward(e, layer.alpha, pass.z[l], grad, pass.grad_z, rows * layer.rows);
            } else {
              activation_backward(layer.activation, layer.alpha, pass.z[l], grad, pass.grad_z, rows * layer.rows);
            }
            grad_z = pass.grad_z;
          }
        }
        const float* next = nullptr;
        if (layer.residual) {
          // The block input receives dL/d(output) unchanged; keep it out of the buffers the
          // products below overwrite.
          float* keep = pass.skip[l & 1];
          std::copy(grad, grad + rows * layer.outputs, keep);
          next = keep;
        }

        // dW[rows_l x k] += dZ^T . A: rows are output neurons, the reduction runs over the tile rows.
        cpu::Gemm gw;
        gw.m = layer.rows;
        gw.n = layer.inputs;
        gw.k = rows;
        gw.a = grad_z;
        gw.a_rs = 1;
        gw.a_cs = layer.rows;
        gw.b = layer_in;
        gw.b_rs = layer.inputs;
        gw.b_ps = cpu::kPanel;
        gw.c = dparams + layer.weight;
        gw.ldc = layer.inputs;
        gw.accumulate = true;
        run_gemm(gw);
        if (layer.has_bias) k.column_sums(rows, layer.rows, grad_z, layer.rows, dparams + layer.bias);

        if (l == 0 && !grad_input) break;
        // dA[rows x k] = dZ . W, W in its own [rows x in] layout, times the previous layer's
        // activation derivative in the epilogue when it is ReLU-family and nothing else needs
        // dL/d(its output). Alternate buffers so this product never overwrites the gradient
        // being read.
        float* out = pass.grad_a[l & 1];
        cpu::Gemm gx;
        gx.m = rows;
        gx.n = layer.inputs;
        gx.k = layer.rows;
        gx.a = grad_z;
        gx.a_rs = layer.rows;
        gx.a_cs = 1;
        gx.b = params_.data() + layer.weight;
        gx.b_rs = layer.inputs;
        gx.b_ps = cpu::kPanel;
        gx.c = out;
        gx.ldc = layer.inputs;
        fused = false;
        if (l > 0) {
          const LayerPlan& below = plan_.layers[l - 1];
          const cpu::Epilogue e = epilogue_of(below);
          if (e != cpu::Epilogue::None && !below.residual && !pending) {
            gx.epilogue = e == cpu::Epilogue::Relu ? cpu::Epilogue::ReluGrad : cpu::Epilogue::LeakyReluGrad;
            gx.alpha = below.alpha;
            gx.gate = pass.z[l - 1];
            fused = true;
          }
        }
        run_gemm(gx);
        if (pending) {
          for (std::size_t i = 0; i < rows * layer.inputs; ++i) out[i] += pending[i];
        }
        pending = next;
        grad = out;
        if (l == 0) grad_a = out;
      }
      if (grad_input) encode_backward(plan_.encoding, xr, rows, grad_a, grad_input + r0 * d);
    }
  };

  if (chunks > 1 && thread_count() > 1 && 3 * macs_ * batch >= kParallelMacs) {
    parallel_for(chunks, run_chunk);
  } else {
    for (std::size_t c = 0; c < chunks; ++c) run_chunk(c);
  }

  // Every chunk succeeded: sum their gradients in chunk order into grads_.
  if (chunks == 1) return loss ? loss_sums[0] * loss_scale(*loss, batch, outs) : 0.0;
  std::vector<const float*> srcs(chunks);
  for (std::size_t c = 0; c < chunks; ++c) srcs[c] = partial.data() + c * P;
  constexpr std::size_t kBlock = 1 << 14;
  const std::size_t blocks = ceil_div(P, kBlock);
  auto reduce_block = [&](std::size_t b) {
    cpu::FlushDenormals flush;
    k.reduce(grads_.data(), srcs.data(), chunks, b * kBlock, std::min(P, (b + 1) * kBlock));
  };
  if (blocks > 1 && chunks > 1) {
    parallel_for(blocks, reduce_block);
  } else {
    for (std::size_t b = 0; b < blocks; ++b) reduce_block(b);
  }

  if (!loss) return 0;
  double total = 0;
  for (double s : loss_sums) total += s;
  return total * loss_scale(*loss, batch, outs);
}

double Model::loss_grad(const float* x, std::size_t batch, Loss loss, double loss_param, const LossTarget& target,
                        float* grad_input) {
  check_loss(loss);
  const Sequencer::Ticket turn = order_.enter(Sequencer::Access::Write);
  return forward_backward(x, batch, &loss, loss_param, &target, nullptr, grad_input);
}

void Model::backward(const float* x, std::size_t batch, const float* grad_output, float* grad_input) {
  const Sequencer::Ticket turn = order_.enter(Sequencer::Access::Write);
  forward_backward(x, batch, nullptr, 0, nullptr, grad_output, grad_input);
}

double Model::optimizer_step_locked(Optimizer optimizer, const Hyper& hyper, double clip_norm, bool want_norm) {
  check_optimizer(optimizer);
  ensure_training_state();
  // One NaN or infinite gradient (float32 overflow of activations or products) would poison
  // every weight the update touches, and the optimizer's moments with them: refuse the update.
  // (Vectorised passes of the kernel table; the slower scan only finds the index to report.) The
  // sum of squares is finite only when every gradient is, and then bounds them for the update's
  // check below; a gradient past ~1e19 makes it infinite, and all_finite tells which case it is.
  const cpu::Kernels& k = cpu::kernels();
  const float squares = [&] {
    cpu::FlushDenormals flush;  // tiny squares would crawl otherwise; grad_bound allows for them
    return k.sum_squares(grads_.data(), grads_.size());
  }();
  if (!std::isfinite(squares) && !k.all_finite(grads_.data(), grads_.size())) {
    const std::int64_t bad = first_non_finite(grads_.data(), grads_.size());
    throw std::out_of_range("gradient " + std::to_string(bad) + " is " + number_text(grads_[static_cast<std::size_t>(bad)]) +
                            " (the activations or gradients overflowed float32); the parameters were not updated");
  }
  const bool clipping = clip_norm > 0 && std::isfinite(clip_norm);
  const double norm = clipping || want_norm ? clip_grad_norm(grads_.data(), grads_.size(), clip_norm) : 0.0;
  // Finite gradients can still overflow the update itself (a huge learning rate, or Adam's g * g
  // past float32): such a step is refused with the parameters and moments as they were. Bounds
  // carried from step to step usually prove it finite; if not, a pass that stores nothing runs
  // the same arithmetic first (core/optimizer.cpp). Clipping only shrinks the gradients, so their
  // bound still holds after it.
  const double grad_max = grad_bound(squares, grads_.size());
  if (!optimizer_update_finite(optimizer, hyper, params_.data(), grads_.data(), params_.size(), opt_, grad_max)) {
    throw std::out_of_range(
        "the update overflowed float32 (a parameter or optimizer moment would be NaN or infinite): lower the "
        "learning rate, or clip the gradients; the parameters were not updated");
  }
  optimizer_update(optimizer, hyper, params_.data(), grads_.data(), params_.size(), opt_);
  repack();
  return norm;
}

double Model::optimizer_step(Optimizer optimizer, const Hyper& hyper, double clip_norm) {
  const Sequencer::Ticket turn = order_.enter(Sequencer::Access::Write);
  return optimizer_step_locked(optimizer, hyper, clip_norm, true);
}

void Model::reset_optimizer() {
  const Sequencer::Ticket turn = order_.enter(Sequencer::Access::Write);
  opt_.reset();  // empty before the first step: nothing to zero
}

double Model::train_step(const float* x, std::size_t batch, Loss loss, double loss_param, const LossTarget& target,
                         Optimizer optimizer, const Hyper& hyper, double clip_norm) {
  return train_step(reserve(Sequencer::Access::Write), x, batch, loss, loss_param, target, optimizer, hyper, clip_norm);
}

double Model::train_step(Sequencer::Ticket turn, const float* x, std::size_t batch, Loss loss, double loss_param,
                         const LossTarget& target, Optimizer optimizer, const Hyper& hyper, double clip_norm) {
  // Check both codes before anything runs, so a bad optimizer code cannot leave fresh
  // gradients behind without the update they were computed for.
  check_loss(loss);
  check_optimizer(optimizer);
  turn.wait();
  const double value = forward_backward(x, batch, &loss, loss_param, &target, nullptr, nullptr);
  if (!std::isfinite(value)) {
    throw std::out_of_range("the loss is " + number_text(value) +
                            " (the outputs overflowed float32); the parameters were not updated");
  }
  optimizer_step_locked(optimizer, hyper, clip_norm, false);
  return value;
}

}  // namespace mlpkit
