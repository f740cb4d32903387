#include "core/config.h"

#include <limits>
#include <stdexcept>
#include <string>


namespace mlpkit {
namespace {

// Sizes are products of user numbers: refuse any that would not fit, rather than wrap.
constexpr std::size_t kMaxElements = std::numeric_limits<std::size_t>::max() / 16;

std::size_t checked_mul(std::size_t a, std::size_t b, const char* what) {
  if (a != 0 && b > kMaxElements / a) throw std::out_of_range(std::string(what) + " is too large");
  return a * b;
}

std::size_t checked_add(std::size_t a, std::size_t b, const char* what) {
  if (b > kMaxElements - a) throw std::out_of_range(std::string(what) + " is too large");
  return a + b;
}

std::string at(const char* field, std::size_t l) { return std::string("config.") + field + "[" + std::to_string(l) + "]"; }

}  // namespace

ModelPlan plan_model(const ModelConfig& c) {
  if (c.inputs < 1) throw std::out_of_range("config.inputs must be >= 1, got " + std::to_string(c.inputs));
  if (c.encoding < 0 || c.encoding >= kEncodingCount) {
    throw std::out_of_range("config.encoding must be an encoding code in [0, " + std::to_string(kEncodingCount) +
                            "), got " + std::to_string(c.encoding));
  }
  if (c.octaves < 0) throw std::out_of_range("config.octaves must be >= 0, got " + std::to_string(c.octaves));
  const std::size_t L = c.units.size();
  if (L == 0) throw std::out_of_range("config.units must have at least one layer, got 0");
  if (c.activations.size() != L || c.alphas.size() != L || c.bias.size() != L) {
    throw std::out_of_range("config.activations, config.alphas and config.bias must each have one entry per layer (" +
                            std::to_string(L) + "), got " + std::to_string(c.activations.size()) + ", " +
                            std::to_string(c.alphas.size()) + " and " + std::to_string(c.bias.size()));
  }

  if ((!c.gated.empty() && c.gated.size() != L) || (!c.residual.empty() && c.residual.size() != L)) {
    throw std::out_of_range("config.gated and config.residual must each have one entry per layer (" + std::to_string(L) +
                            "), got " + std::to_string(c.gated.size()) + " and " + std::to_string(c.residual.size()));
  }

  ModelPlan plan;
  plan.encoding.type = static_cast<Encoding>(c.encoding);
  plan.encoding.inputs = static_cast<std::size_t>(c.inputs);
  plan.encoding.octaves = plan.encoding.type == Encoding::Frequency ? static_cast<std::size_t>(c.octaves) : 0;
  plan.encoding.include_input = plan.encoding.type == Encoding::Frequency && c.include_input;
  // width() = (include_input ? d : 0) + 2 * octaves * d: check the product before forming it.
  checked_mul(checked_mul(2, plan.encoding.octaves + 1, "config.octaves"), plan.encoding.inputs, "the encoded input");
  const std::size_t width = plan.encoding.width();
  if (width == 0) throw std::out_of_range("the encoding produces no features: set octaves >= 1 or includeInput");

  std::size_t in = width;
  std::size_t offset = 0;
  for (std::size_t l = 0; l < L; ++l) {
    if (c.units[l] < 1) throw std::out_of_range(at("units", l) + " must be >= 1, got " + std::to_string(c.units[l]));
    if (c.activations[l] < 0 || c.activations[l] >= kActivationCount) {
      throw std::out_of_range(at("activations", l) + " must be an activation code in [0, " +
                              std::to_string(kActivationCount) + "), got " + std::to_string(c.activations[l]));
    }
    if (c.bias[l] > 1) throw std::out_of_range(at("bias", l) + " must be 0 or 1, got " + std::to_string(c.bias[l]));
    const std::uint8_t gated = c.gated.empty() ? 0 : c.gated[l];
    const std::uint8_t residual = c.residual.empty() ? 0 : c.residual[l];
    if (gated > 1) throw std::out_of_range(at("gated", l) + " must be 0 or 1, got " + std::to_string(gated));
    if (residual > 1) throw std::out_of_range(at("residual", l) + " must be 0 or 1, got " + std::to_string(residual));
    LayerPlan p;
    p.inputs = in;
    p.outputs = static_cast<std::size_t>(c.units[l]);
    p.gated = gated == 1;
    p.residual = residual == 1;
    p.rows = p.gated ? checked_mul(2, p.outputs, "a gated layer") : p.outputs;
    if (p.residual && (l == 0 || p.outputs != plan.layers[l - 1].inputs)) {
      throw std::out_of_range(at("residual", l) + ": a residual layer adds the input of the layer before it, so it " +
                              (l == 0 ? std::string("cannot be the first layer") :
                                        "must have " + std::to_string(plan.layers[l - 1].inputs) + " units, got " +
                                            std::to_string(p.outputs)));
    }
    plan.plain = plan.plain && !p.gated && !p.residual;
    p.activation = static_cast<Activation>(c.activations[l]);
    p.alpha = c.alphas[l];
    p.has_bias = c.bias[l] == 1;
    p.weight = offset;
    offset = checked_add(offset, checked_mul(p.rows, p.inputs, "a layer's weight matrix"), "the parameter count");
    if (p.has_bias) {
      p.bias = offset;
      offset = checked_add(offset, p.rows, "the parameter count");
    }
    if (p.rows > plan.max_width) plan.max_width = p.rows;
    plan.layers.push_back(p);
    in = p.outputs;
  }
  plan.param_count = offset;
  return plan;
}

}  // namespace mlpkit
