// A multilayer perceptron on an NVIDIA GPU: every operation of BackendModel (lib/backend/types.ts)
// with the semantics of the CPU Model (core/model.h), its parameters, gradients and optimizer
// moments resident on the device. Plain C++ (the CUDA parts hide behind Impl), so the N-API
// layer and the tests' host code compile with the host compiler.
//
// Precision:
//  - F32: the tiled fp32 GEMM path for every layer (any width), fp32 everywhere.
//  - F16 / BF16: when every width (the encoded input and each layer's output) is at most 128
//    and there are at most 16 layers, the fully fused tensor-core kernels (fp32 master weights,
//    half or bf16 copies for the products, fp32 accumulation, fp32 bias and activation);
//    otherwise the fp32 path. kernel() says which one runs. The fused backward pass scales
//    dL/dy by a power of two (the batch size's for a loss, 1 / max |dL/dy| for a caller's
//    gradient) so that the half gradients sit in fp16's normal range, and divides it out of the
//    fp32 weight gradients exactly. The scale is static per call: no overflow detection.
//
// Residency: one stream per model; input rows go through pinned staging buffers (grown to the
// largest batch seen, as are the device buffers); the frequency encoding and its backward pass
// run on the host (core/encoding.h) on the staged rows.
//
// Thread safety: every call takes the model's mutex; calls run one at a time.
#pragma once

#include <cstddef>
#include <memory>

#include "core/config.h"
#include "core/loss.h"
#include "core/optimizer.h"
#include "core/predictor.h"

namespace mlpkit::cuda {

enum class Precision : int { F32 = 0, F16 = 1, BF16 = 2 };
constexpr int kPrecisionCount = 3;
const char* precision_name(Precision p);  // "fp32", "fp16", "bf16"

class CudaModel final : public Predictor {
 public:
  // Throws std::out_of_range for a bad config or device index, std::length_error when count is
  // not the parameter count, std::runtime_error when CUDA is unusable.
  CudaModel(const ModelConfig& config, const float* params, std::size_t count, Precision precision, int device = 0);
  ~CudaModel() override;

  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  std::size_t param_count() const;
  std::size_t inputs() const override;
  std::size_t outputs() const override;
  Precision precision() const;
  // "fused-fp16", "fused-bf16" or "gemm-fp32".
  const char* kernel() const;
  // Device bytes held now (parameters, moments, buffers).
  std::size_t device_bytes() const;

  void predict(const float* x, std::size_t batch, float* out) const override;

  void get_params(float* out) const;
  void set_params(const float* params);
  void get_grads(float* out) const;
  void set_grads(const float* grads);

  double loss_grad(const float* x, std::size_t batch, Loss loss, double loss_param, const LossTarget& target,
                   float* grad_input);
  void backward(const float* x, std::size_t batch, const float* grad_output, float* grad_input);
  double optimizer_step(Optimizer optimizer, const Hyper& hyper, double clip_norm);
  void reset_optimizer();
  double train_step(const float* x, std::size_t batch, Loss loss, double loss_param, const LossTarget& target,
                    Optimizer optimizer, const Hyper& hyper, double clip_norm);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mlpkit::cuda
