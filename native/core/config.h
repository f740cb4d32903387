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
};

// One Linear layer (+ activation) and where its parameters sit in the flat vector.
struct LayerPlan {
  std::size_t inputs = 0;
  std::size_t outputs = 0;
  std::size_t weight = 0;  // offset of W [outputs x inputs]
  std::size_t bias = 0;    // offset of b [outputs]; meaningful only when has_bias
  bool has_bias = false;
  Activation activation = Activation::None;
  float alpha = 0;
};

struct ModelPlan {
  EncodingSpec encoding;
  std::vector<LayerPlan> layers;
  std::size_t param_count = 0;
  std::size_t max_width = 0;  // widest layer output
};

// Checks every field and lays out the parameters: W_l then b_l per layer, in order (the
// PyTorch nn.Linear layout). Throws std::out_of_range with a message naming the field.
ModelPlan plan_model(const ModelConfig& config);

}  // namespace mlpkit
