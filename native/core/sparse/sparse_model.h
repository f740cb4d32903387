// A sparse-activation MLP for inference (issue #5): after chosen hidden layers only some units
// are kept per row (exact ReLU zeros, a magnitude threshold, top-k, or a low-rank predictor
// that picks them before the layer is computed), and the next layer reads only the weights of
// the kept units. Immutable after construction, so any number of predicts may run at once.
//
// Weight storage follows how each layer is read:
//  - a layer whose inputs arrive sparse keeps W^T row-major ("neuron-major": one contiguous row
//    of outputs per input unit), read by axpy over the kept units, and a panel copy for the
//    dense GEMM when a batch's union of kept units is too dense to win;
//  - a layer whose outputs a predictor chooses keeps W row-major (PyTorch's layout), read one
//    chosen output row at a time by dot products; so do the up rows of a gated layer whose
//    units are chosen on its gate;
//  - any other layer keeps the packed panels of the dense kernels (core/cpu/kernels.h).
// With int8 weights (SparseLayerSource::scales) the first two are int8 codes: a batch-1 predict
// then reads a quarter of the bytes for the same kept units.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/activation.h"
#include "core/aligned.h"
#include "core/encoding.h"
#include "core/predictor.h"
#include "core/sparse/select.h"

namespace mlpkit::sparse {

struct SparseLayerSource {
  std::size_t inputs = 0, outputs = 0;
  Activation activation = Activation::None;
  float alpha = 0;
  const float* weight = nullptr;  // [rows x inputs], rows = outputs, or 2 * outputs when gated
  const float* bias = nullptr;    // [rows] or null
  // Int8 weights: weight[o * inputs + p] == f32(scales[o] * q) for an int8 code q in [-127, 127]
  // (lib/quant's int8 rule; scale 0 for an all-zero row). The rows read sparsely are then stored
  // and read as the codes, 1 byte per weight, with each output's scale applied after its sum.
  const float* scales = nullptr;  // [rows] or null (float weights)
  // A gated layer (core/config.h): output act(gate) * up; the gate rows come first. When its
  // outputs are sparsified the units are chosen on act(gate) and only their up rows are read.
  bool gated = false;
  // The output adds the input of the layer before (only on layers that are not sparsified).
  bool residual = false;
  // What is kept of this layer's outputs (Dense for the last layer).
  Mode mode = Mode::Dense;
  float threshold = 0;  // Threshold: keep |h| > threshold
  std::size_t k = 0;    // TopK, Predictor: units kept per row
  // Predictor: score = B (A x + a) + b, with A [rank x inputs] and B [outputs x rank].
  std::size_t rank = 0;
  const float* pa = nullptr;
  const float* pa_bias = nullptr;
  const float* pb = nullptr;
  const float* pb_bias = nullptr;
  // Predictor: a tile of at least this many rows skips the prediction and computes the layer
  // exactly (every unit, as exact mode: only its zeros are skipped downstream). 0: never.
  // Chosen at calibration where the tile's union of predicted units would be too dense to win,
  // so the predictor's own cost is not paid on top of the dense work.
  std::size_t dense_from_rows = 0;
};

class SparseModel final : public Predictor {
 public:
  // Copies the weights. Throws std::invalid_argument for layers that do not chain or settings
  // that do not fit them.
  SparseModel(const EncodingSpec& encoding, const std::vector<SparseLayerSource>& layers);
  SparseModel(const SparseModel&) = delete;
  SparseModel& operator=(const SparseModel&) = delete;
  ~SparseModel() override;

  // Sparse models alive in the process (leak tests watch it).
  static std::size_t live_count();

  std::size_t inputs() const override { return encoding_.inputs; }
  std::size_t outputs() const override { return layers_.back().n; }
  std::size_t bytes() const;

  // out[batch x outputs] = net(x[batch x inputs]). A row's result does not depend on the batch
  // it comes in or on the thread count (every product has one fixed chain per output).
  void predict(const float* x, std::size_t batch, float* out) const override;

 private:
  struct Layer {
    std::size_t k = 0, n = 0, rows = 0;  // rows: n, or 2n when gated
    bool gated = false, residual = false;
    Activation activation = Activation::None;
    float alpha = 0;
    Mode mode = Mode::Dense;
    float threshold = 0;
    std::size_t keep = 0;
    std::size_t dense_from_rows = 0;
    bool sparse_in = false;
    AlignedVector<float> panels;  // dense layers: W^T in panels
    AlignedVector<float> wt;      // sparse inputs: W^T [k x ldt]
    std::size_t ldt = 0;
    AlignedVector<float> wr;      // predictor-chosen outputs: W [rows x k]
    AlignedVector<float> up;      // gated, sparsified by its gate: the up rows [n x k]
    // Int8 layers keep wt, wr and up as codes instead (same shapes), dense_panels as the codes
    // in float (so a dense tile sums exactly what the sparse kernels sum), and the scales.
    bool int8 = false;
    AlignedVector<std::int8_t> wt8, wr8, up8;
    AlignedVector<float> scale;   // [rows], padded like bias
    // Layers with sparse inputs, predictor layers (all rows) and gated layers sparsified by
    // their gate (the up rows): the same weights in panels too, for tiles whose union of kept
    // units is too dense for axpy or dot products to beat the GEMM.
    AlignedVector<float> dense_panels;
    AlignedVector<float> bias;    // padded to whole panels, zeros without a bias
    std::size_t rank = 0;
    AlignedVector<float> pa_panels, pa_bias, pb_panels, pb_bias;
  };
  struct Scratch;

  // threads: the pool's size as predict read it, which the tile shares its layers' work by (1:
  // the tile runs on one thread, as a task of a predict that shares out whole tiles).
  void run_tile(const float* x, std::size_t rows, float* out, int threads, Scratch& s) const;

  EncodingSpec encoding_;
  std::vector<Layer> layers_;
  std::size_t max_width_ = 0, max_rank_ = 0;
  std::size_t widest_layer_bytes_ = 0;  // the largest layer's weights as floats (predict's grouping rule)
};

}  // namespace mlpkit::sparse
