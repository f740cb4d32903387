// Readers of the arguments of the Model methods (lossGrad, backward, optimizerStep, trainStep),
// shared by the CPU addon's Model and the CUDA addon's, so both check exactly the same things.
#pragma once

#include <napi.h>

#include <cstddef>

#include "addon/async_work.h"
#include "core/loss.h"
#include "core/optimizer.h"

namespace mlpkit::addon {

// The typed target of lossGrad / trainStep: Int32Array labels for softmax cross-entropy
// (one per row), a Float32Array of batch x outputs for every other loss.
void ReadTarget(const Napi::Value& v, Loss loss, std::size_t batch, std::size_t outputs, const char* what,
                std::size_t* length, LossTarget* target);

// The Float64Array [lr, weightDecay, momentum, dampening, nesterov, beta1, beta2, eps].
Hyper ReadHyper(const Napi::Value& v, const char* what);

// An optional Float32Array of batch x inputs at info[index]: null or undefined means "not wanted".
float* ReadGradInput(const Napi::CallbackInfo& info, std::size_t index, std::size_t batch, std::size_t inputs,
                     const char* what);

// trainStep(x, batch, loss, lossParam, target, optimizer, hyper, clipNorm).
TrainArgs ReadTrainArgs(const Napi::CallbackInfo& info, std::size_t inputs, std::size_t outputs, const char* what);

}  // namespace mlpkit::addon
