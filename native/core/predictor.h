// What async predict needs from a model: the float and the quantised models both provide it.
#pragma once

#include <cstddef>

#include "core/sequencer.h"

namespace mlpkit {

class Predictor {
 public:
  virtual ~Predictor() = default;
  virtual std::size_t inputs() const = 0;
  virtual std::size_t outputs() const = 0;
  // out[batch x outputs] = net(x[batch x inputs]); safe to call from several threads at once.
  virtual void predict(const float* x, std::size_t batch, float* out) const = 0;
  // For an async predict: a place in the model's order of calls, taken when the call is made
  // (empty for models nothing can change, such as quantised ones), and predict in that place.
  // The call owns the turn and ends it when it returns: no later call waits on the caller's
  // clean-up (an async job is destroyed on the JS thread, which may itself be waiting its turn).
  virtual Sequencer::Ticket reserve_predict() const { return {}; }
  virtual void predict(Sequencer::Ticket turn, const float* x, std::size_t batch, float* out) const {
    turn.wait();
    predict(x, batch, out);
  }
};

}  // namespace mlpkit
