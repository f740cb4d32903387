// A multilayer perceptron with its parameters, gradients and optimizer state: every operation
// of BackendModel (lib/backend/types.ts) on raw pointers. Callers (the binding, the C++ tests)
// check buffer lengths; the model checks codes, labels and sizes it derives itself.
//
// Thread safety and order: calls run in the order they were issued, as if one at a time
// (core/sequencer.h); neighbouring reads (predict, get_*) overlap, and a call that writes
// (training, set_*, reset) waits for the calls issued before it. A call made from another
// thread is issued when it is made; an async caller takes its place earlier with reserve().
#pragma once

#include <cstddef>
#include <vector>

#include "core/aligned.h"
#include "core/config.h"
#include "core/cpu/kernels.h"
#include "core/loss.h"
#include "core/optimizer.h"
#include "core/predictor.h"
#include "core/sequencer.h"

namespace mlpkit {

class Model final : public Predictor {
 public:
  // params holds param_count floats in the flat layout of plan_model(). Throws
  // std::out_of_range for a bad config, std::length_error when count is not param_count.
  Model(const ModelConfig& config, const float* params, std::size_t count);

  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  ~Model() override;

  // Models alive in this process (every thread and Node environment): for leak tests.
  static std::size_t live_count();

  std::size_t param_count() const { return plan_.param_count; }
  std::size_t inputs() const override { return plan_.encoding.inputs; }
  std::size_t outputs() const override { return plan_.layers.back().outputs; }
  const ModelPlan& plan() const { return plan_; }
  // Bytes a training model holds: parameters, their packed copy, gradients and two optimizer
  // moments (for GC accounting; one that only predicts holds the first two).
  std::size_t memory_bytes() const { return 5 * sizeof(float) * plan_.param_count; }

  // out[batch x outputs] = net(x[batch x inputs]).
  void predict(const float* x, std::size_t batch, float* out) const override;
  // A place in the order of this model's calls, taken now for a call that runs later.
  Sequencer::Ticket reserve(Sequencer::Access access) const { return order_.issue(access); }
  Sequencer::Ticket reserve_predict() const override { return reserve(Sequencer::Access::Read); }
  // predict in the place `turn` (from reserve_predict()) holds; the turn ends when it returns.
  void predict(Sequencer::Ticket turn, const float* x, std::size_t batch, float* out) const override;

  void get_params(float* out) const;
  void set_params(const float* params);
  void get_grads(float* out) const;
  void set_grads(const float* grads);

  // Forward keeping activations, the loss, backward. Overwrites the gradient buffer; fills
  // grad_input [batch x inputs] when it is not null. Returns the loss.
  double loss_grad(const float* x, std::size_t batch, Loss loss, double loss_param, const LossTarget& target,
                   float* grad_input);

  // Forward keeping activations, then backward from grad_output [batch x outputs].
  void backward(const float* x, std::size_t batch, const float* grad_output, float* grad_input);

  // Clip the gradient buffer (see clip_grad_norm), then one optimizer update. Returns the
  // norm before clipping.
  double optimizer_step(Optimizer optimizer, const Hyper& hyper, double clip_norm);
  void reset_optimizer();

  // loss_grad without grad_input, then optimizer_step, as one exclusive operation.
  double train_step(const float* x, std::size_t batch, Loss loss, double loss_param, const LossTarget& target,
                    Optimizer optimizer, const Hyper& hyper, double clip_norm);
  // train_step in the place `turn` (from reserve(Access::Write)) holds; the turn ends when it returns.
  double train_step(Sequencer::Ticket turn, const float* x, std::size_t batch, Loss loss, double loss_param,
                    const LossTarget& target, Optimizer optimizer, const Hyper& hyper, double clip_norm);

 private:
  struct Pass;

  void predict_in_turn(const float* x, std::size_t batch, float* out) const;

  // Packs every layer's weights and bias for the forward kernels (see core/cpu/kernels.h).
  // Called whenever the parameters change; predict and training only read the packed copy.
  void repack();
  // Packs panels [q0, q1) of layer l (and its bias with the first panel).
  void repack_panels(std::size_t l, std::size_t q0, std::size_t q1);
  // predict for one row, scratch_floats_ of scratch given.
  // idx: room for the widest layer's inputs (active-input lists, exact sparsity after ReLU).
  void predict_row(const cpu::Kernels& k, const float* x, float* out, float* scratch, std::uint32_t* idx) const;
  // predict for a few rows through wide layers: each layer's columns shared out over threads.
  void predict_by_columns(const float* x, std::size_t batch, float* out) const;
  // One forward + backward over the batch, in fixed chunks of rows, writing the summed weight
  // gradients into grads_ and dL/dx into grad_input when given. Either a loss (loss_grad) or an
  // upstream gradient (grad_output) starts the backward pass. Returns the loss (0 without one).
  double forward_backward(const float* x, std::size_t batch, const Loss* loss, double loss_param,
                          const LossTarget* target, const float* grad_output, float* grad_input);
  // want_norm: compute the gradient norm even when not clipping (optimizer_step returns it).
  double optimizer_step_locked(Optimizer optimizer, const Hyper& hyper, double clip_norm, bool want_norm);
  // Allocates grads_ and opt_ (zeroed) on the first call that needs them; under a write turn.
  void ensure_training_state();

  ModelPlan plan_;
  UninitVector<float> params_;
  AlignedVector<float> grads_;            // empty until the first training call
  UninitVector<float> packed_;          // per layer: W^T panels, then the bias padded to a panel
  std::vector<std::size_t> packed_at_;   // offset of each layer's panels in packed_
  std::vector<std::size_t> bias_at_;     // offset of each layer's padded bias in packed_
  std::size_t macs_ = 0;                 // multiply-adds per row
  std::size_t widest_layer_bytes_ = 0;   // the largest layer's float weights
  std::size_t scratch_floats_ = 0;       // predict scratch per row: encoded input + two activations
  OptimizerState opt_;                     // empty until the first training call
  mutable Sequencer order_;
};

}  // namespace mlpkit
