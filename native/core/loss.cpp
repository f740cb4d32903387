#include "core/loss.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

namespace mlpkit {
namespace {

inline double sigmoid(double z) {
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

inline double sign(double d) { return d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0); }

// Each label is read exactly once (a volatile load) and checked before it indexes the row: an
// async caller, or another thread writing a SharedArrayBuffer, may change the labels while
// this runs, and a label re-read after its check could index past the row.
std::size_t checked_label(const std::int32_t* labels, std::size_t r, std::size_t outputs) {
  const std::int32_t label = *static_cast<const volatile std::int32_t*>(labels + r);
  if (label < 0 || static_cast<std::size_t>(label) >= outputs) {
    throw std::out_of_range("label " + std::to_string(r) + " must be in [0, " + std::to_string(outputs) + "), got " +
                            std::to_string(label));
  }
  return static_cast<std::size_t>(label);
}

// Sum of term(i) for i in [0, n) in four interleaved partial sums: a fixed order (so results
// are reproducible) in which the additions do not each wait on the one before.
template <class Term>
double interleaved_sum(std::size_t n, Term term) {
  double part[4] = {0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (std::size_t j = 0; j < 4; ++j) part[j] += term(i + j);
  for (std::size_t j = 0; i < n; ++i, ++j) part[j] += term(i);
  return (part[0] + part[1]) + (part[2] + part[3]);
}

}  // namespace

void check_labels(const std::int32_t* labels, std::size_t batch, std::size_t outputs) {
  for (std::size_t r = 0; r < batch; ++r) checked_label(labels, r, outputs);
}

double loss_scale(Loss loss, std::size_t batch, std::size_t outputs) {
  return 1.0 / static_cast<double>(loss_uses_labels(loss) ? batch : batch * outputs);
}

double loss_and_gradient(Loss loss, double param, const float* y, const LossTarget& target, std::size_t batch,
                         std::size_t outputs, float* grad) {
  return loss_sum_and_gradient(loss, param, y, target, batch, outputs, batch, grad) *
         loss_scale(loss, batch, outputs);
}

double loss_sum_and_gradient(Loss loss, double param, const float* y, const LossTarget& target, std::size_t batch,
                             std::size_t outputs, std::size_t norm_rows, float* grad) {
  const std::size_t n = batch * outputs;
  const double inv_n = 1.0 / static_cast<double>(norm_rows * outputs);
  double total = 0;
  if (loss_uses_labels(loss)) {
    if (!target.labels) throw std::invalid_argument("this loss needs integer class labels");
  } else if (static_cast<int>(loss) >= 0 && static_cast<int>(loss) < kLossCount && !target.values) {
    throw std::invalid_argument("this loss needs a float target");
  }
  switch (loss) {
    case Loss::Mse:
      return interleaved_sum(n, [&](std::size_t i) {
        const double d = static_cast<double>(y[i]) - target.values[i];
        grad[i] = static_cast<float>(2 * d * inv_n);
        return d * d;
      });
    case Loss::L1:
      return interleaved_sum(n, [&](std::size_t i) {
        const double d = static_cast<double>(y[i]) - target.values[i];
        grad[i] = static_cast<float>(sign(d) * inv_n);
        return std::abs(d);
      });
    case Loss::Huber: {
      const double delta = param;
      if (!(delta > 0) || !std::isfinite(delta)) {
        std::ostringstream message;
        message << "huber delta must be a finite number > 0, got " << delta;
        throw std::out_of_range(message.str());
      }
      return interleaved_sum(n, [&](std::size_t i) {
        const double d = static_cast<double>(y[i]) - target.values[i];
        const double a = std::abs(d);
        if (a < delta) {
          grad[i] = static_cast<float>(d * inv_n);
          return 0.5 * d * d;
        }
        grad[i] = static_cast<float>(delta * sign(d) * inv_n);
        return delta * (a - 0.5 * delta);
      });
    }
    case Loss::SoftmaxCrossEntropy: {
      const double inv_batch = 1.0 / static_cast<double>(norm_rows);
      for (std::size_t r = 0; r < batch; ++r) {
        const std::size_t label = checked_label(target.labels, r, outputs);
        const float* yr = y + r * outputs;
        float* gr = grad + r * outputs;
        // Subtracting the row max keeps every exp <= 1: logsumexp without overflow.
        double max = -INFINITY;
        for (std::size_t j = 0; j < outputs; ++j) max = std::max(max, static_cast<double>(yr[j]));
        double sum = 0;
        for (std::size_t j = 0; j < outputs; ++j) sum += std::exp(yr[j] - max);
        // (max - z_label) first: max + log(sum) - z_label loses log(sum) entirely once the
        // logits reach ~1e17 (equal logits of 3e38 gave a loss of 0 instead of log 2).
        total += (max - static_cast<double>(yr[label])) + std::log(sum);
        for (std::size_t j = 0; j < outputs; ++j) {
          const double p = std::exp(yr[j] - max) / sum;
          gr[j] = static_cast<float>((p - (j == label ? 1.0 : 0.0)) * inv_batch);
        }
      }
      return total;
    }
    case Loss::BceWithLogits:
      return interleaved_sum(n, [&](std::size_t i) {
        const double z = y[i];
        const double t = target.values[i];
        grad[i] = static_cast<float>((sigmoid(z) - t) * inv_n);
        // max(z, 0) - z t + log(1 + e^-|z|): the log term never overflows.
        return std::max(z, 0.0) - z * t + std::log1p(std::exp(-std::abs(z)));
      });
  }
  throw std::out_of_range("unknown loss code " + std::to_string(static_cast<int>(loss)));
}

}  // namespace mlpkit
