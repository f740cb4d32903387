// What async predict needs from a model: the float and the quantised models both provide it.
#pragma once

#include <cstddef>

namespace mlpkit {

class Predictor {
 public:
  virtual ~Predictor() = default;
  virtual std::size_t inputs() const = 0;
  virtual std::size_t outputs() const = 0;
  // out[batch x outputs] = net(x[batch x inputs]); safe to call from several threads at once.
  virtual void predict(const float* x, std::size_t batch, float* out) const = 0;
};

}  // namespace mlpkit
