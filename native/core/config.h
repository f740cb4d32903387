// The network as the core sees it, and the flat parameter layout derived from it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/activation.h"
#include "core/encoding.h"

namespace mlpkit {

// Mirrors ModelConfig in lib/backend/types.ts. Codes stay plain ints here so that validate()
// can reject an out-of-range code before it is ever cast to an enum.
struct ModelConfig {
  std::int64_t inputs = 0;
  int encoding = 0;
  std::int64_t octaves = 0;
  bool include_input = false;
  std::vector<std::int64_t> units;
  std::vector<int> activations;
  std::vector<float> alphas;
  std::vector<std::uint8_t> bias;
  std::vector<std::uint8_t> gated;     // empty: no gated layers
  std::vector<std::uint8_t> residual;  // empty: no residual layers
};

// One Linear layer (+ activation) and where its parameters sit in the flat vector.
// A gated layer has two maps of its input, gate and up: its affine map has rows = 2 * outputs
// pre-activations (gate first) and its output is act(gate) * up. A residual layer's output
// adds the input of the layer before it (after the activation).
struct LayerPlan {
  std::size_t inputs = 0;
  std::size_t outputs = 0;
  std::size_t rows = 0;    // outputs, or 2 * outputs when gated
  std::size_t weight = 0;  // offset of W [rows x inputs]
  std::size_t bias = 0;    // offset of b [rows]; meaningful only when has_bias
  bool has_bias = false;
  bool gated = false;
  bool residual = false;
  Activation activation = Activation::None;
  float alpha = 0;
};

struct ModelPlan {
  EncodingSpec encoding;
  std::vector<LayerPlan> layers;
  std::size_t param_count = 0;
  std::size_t max_width = 0;  // widest layer pre-activation (rows)
  bool plain = true;          // no gated and no residual layer
};

// Checks every field and lays out the parameters: W_l then b_l per layer, in order (the
// PyTorch nn.Linear layout). Throws std::out_of_range with a message naming the field.
ModelPlan plan_model(const ModelConfig& config);

}  // namespace mlpkit
