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

// The same for `rows` rows of a batch of norm_rows rows (training walks a batch in tiles): the
// target pointers start at the first of those rows, the gradient is scaled for the whole batch,
// and the return value is the unnormalised sum; times loss_scale() it is the batch's mean.
double loss_sum_and_gradient(Loss loss, double param, const float* y, const LossTarget& target, std::size_t rows,
                             std::size_t outputs, std::size_t norm_rows, float* grad);

// Throws std::out_of_range, naming the row, for the first label outside [0, outputs).
void check_labels(const std::int32_t* labels, std::size_t batch, std::size_t outputs);

// 1 / (the number of terms the mean is over): batch rows for cross-entropy, elements otherwise.
double loss_scale(Loss loss, std::size_t batch, std::size_t outputs);

}  // namespace mlpkit
