// A quantised MLP for inference: the input encoding, then quantised Linear layers (qlayer.h),
// each with bias and activation, activations in float or int8 (W8A8) per lib/quant/format.ts.
// Immutable after construction, so any number of predicts may run at once.
#pragma once

#include <cstddef>
#include <vector>

#include "core/encoding.h"
#include "core/predictor.h"
#include "core/quant/qlayer.h"

namespace mlpkit::quant {

struct QuantScratch;  // one thread's working buffers (qmodel.cpp)

class QuantModel final : public Predictor {
 public:
  // Throws std::invalid_argument for layers that do not chain or break the format.
  QuantModel(const EncodingSpec& encoding, const std::vector<QuantLayerSource>& layers, ActMode mode);
  QuantModel(const QuantModel&) = delete;
  QuantModel& operator=(const QuantModel&) = delete;
  ~QuantModel() override;

  // Quantised models alive in this process: for leak tests.
  static std::size_t live_count();

  std::size_t inputs() const override { return encoding_.inputs; }
  std::size_t outputs() const override { return layers_.back().n; }
  std::size_t bytes() const;

  // out[batch x outputs] = net(x[batch x inputs]).
  void predict(const float* x, std::size_t batch, float* out) const override;

 private:
  void run_layer(const QuantLayer& l, const float* in, std::size_t batch, float* out, QuantScratch& s) const;

  EncodingSpec encoding_;
  std::vector<QuantLayer> layers_;
  ActMode mode_;
  std::size_t max_width_ = 0;
};

}  // namespace mlpkit::quant
