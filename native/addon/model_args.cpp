#include "addon/model_args.h"

#include <cmath>
#include <limits>
#include <string>

#include "addon/checks.h"
#include "addon/errors.h"

namespace mlpkit::addon {

void ReadTarget(const Napi::Value& v, Loss loss, std::size_t batch, std::size_t outputs, const char* what,
                std::size_t* length, LossTarget* target) {
  if (loss_uses_labels(loss)) {
    const auto labels = TypedArg<std::int32_t>(v, what, "target");
    ExpectLength(v.Env(), labels.ElementLength(), batch, 1, what, "target", "batch");
    *length = labels.ElementLength();
    *target = LossTarget{nullptr, labels.Data()};
  } else {
    const auto values = TypedArg<float>(v, what, "target");
    ExpectLength(v.Env(), values.ElementLength(), batch, outputs, what, "target", "batch * outputs");
    *length = values.ElementLength();
    *target = LossTarget{values.Data(), nullptr};
  }
}

Hyper ReadHyper(const Napi::Value& v, const char* what) {
  const auto hyper = TypedArg<double>(v, what, "hyper");
  if (hyper.ElementLength() != kHyperCount) {
    throw RangeError(v.Env(), std::string(what) + ": hyper must have " + std::to_string(kHyperCount) +
                                  " elements [lr, weightDecay, momentum, dampening, nesterov, beta1, beta2, eps], got " +
                                  std::to_string(hyper.ElementLength()));
  }
  // The TypeScript optimizers check their options; the raw addon is checked here too, so NaN
  // or an infinity can never reach the weights through it.
  static const char* const names[kHyperCount] = {"lr", "weightDecay", "momentum", "dampening",
                                                 "nesterov", "beta1", "beta2", "eps"};
  // The kernels take them as float32 constants: past float32's range the conversion is undefined.
  for (std::size_t i = 0; i < kHyperCount; ++i) {
    const double h = hyper.Data()[i];
    if (!std::isfinite(h) || std::fabs(h) > std::numeric_limits<float>::max()) {
      throw RangeError(v.Env(), std::string(what) + ": hyper[" + std::to_string(i) + "] (" + names[i] +
                                    ") must be a finite number within float32's range (|x| <= 3.4028235e38), got " +
                                    FormatNumber(h));
    }
  }
  return Hyper::from_array(hyper.Data());
}

float* ReadGradInput(const Napi::CallbackInfo& info, std::size_t index, std::size_t batch, std::size_t inputs,
                     const char* what) {
  if (index >= info.Length() || IsNullish(info[index])) return nullptr;
  auto g = OutputArg<float>(info[index], what, "gradInput");
  ExpectLength(info.Env(), g.ElementLength(), batch, inputs, what, "gradInput", "batch * inputs");
  return g.Data();
}

TrainArgs ReadTrainArgs(const Napi::CallbackInfo& info, std::size_t inputs, std::size_t outputs, const char* what) {
  ExpectArgs(info, 8, what);
  Napi::Env env = info.Env();
  TrainArgs a;
  a.x = TypedArg<float>(info[0], what, "x");
  a.batch = BatchArg(info[1], what);
  a.loss = static_cast<Loss>(CodeArg(info[2], what, "loss", "a loss", kLossCount));
  a.loss_param = NumberArg(info[3], what, "lossParam");
  ExpectLength(env, a.x.ElementLength(), a.batch, inputs, what, "x", "batch * inputs");
  ReadTarget(info[4], a.loss, a.batch, outputs, what, &a.target_length, &a.target_data);
  a.optimizer = static_cast<Optimizer>(CodeArg(info[5], what, "optimizer", "an optimizer", kOptimizerCount));
  a.hyper = ReadHyper(info[6], what);
  a.clip_norm = NumberArg(info[7], what, "clipNorm");
  return a;
}

}  // namespace mlpkit::addon
