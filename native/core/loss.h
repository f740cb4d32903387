// Losses with mean reduction (PyTorch's default) and their gradient with respect to the
// network output.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mlpkit {

// Codes are ABI: they index LOSSES in lib/backend/types.ts.
enum class Loss : int { Mse = 0, L1, Huber, SoftmaxCrossEntropy, BceWithLogits };
constexpr int kLossCount = 5;

// Softmax cross-entropy takes one class index per row; the others a value per output.
inline bool loss_uses_labels(Loss loss) { return loss == Loss::SoftmaxCrossEntropy; }

struct LossTarget {
  const float* values = nullptr;   // batch x outputs, when !loss_uses_labels
  const std::int32_t* labels = nullptr;  // batch, when loss_uses_labels
};

// Returns the loss and writes dLoss/dy into grad (batch x outputs). Accumulates in double.
// param is Huber's delta (ignored by the others). Throws std::out_of_range for a label outside
// [0, outputs) or a Huber delta that is not a positive number; grad may then be partly
// written, which is why the model passes scratch memory, never its gradient buffer.
double loss_and_gradient(Loss loss, double param, const float* y, const LossTarget& target, std::size_t batch,
                         std::size_t outputs, float* grad);

}  // namespace mlpkit
