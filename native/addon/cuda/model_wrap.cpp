#include "addon/cuda/model_wrap.h"

#include <memory>
#include <string>
#include <utility>

#include "addon/async_work.h"
#include "addon/checks.h"
#include "addon/config_reader.h"
#include "addon/errors.h"
#include "addon/model_args.h"

namespace mlpkit::addon {

Napi::Function CudaModelWrap::DefineClass(Napi::Env env) {
  return ObjectWrap<CudaModelWrap>::DefineClass(
      env, "Model",
      {
          InstanceMethod<&CudaModelWrap::Predict>("predict"),
          InstanceMethod<&CudaModelWrap::PredictAsync>("predictAsync"),
          InstanceMethod<&CudaModelWrap::GetParams>("getParams"),
          InstanceMethod<&CudaModelWrap::SetParams>("setParams"),
          InstanceMethod<&CudaModelWrap::GetGrads>("getGrads"),
          InstanceMethod<&CudaModelWrap::SetGrads>("setGrads"),
          InstanceMethod<&CudaModelWrap::LossGrad>("lossGrad"),
          InstanceMethod<&CudaModelWrap::Backward>("backward"),
          InstanceMethod<&CudaModelWrap::OptimizerStep>("optimizerStep"),
          InstanceMethod<&CudaModelWrap::ResetOptimizer>("resetOptimizer"),
          InstanceMethod<&CudaModelWrap::TrainStep>("trainStep"),
          InstanceMethod<&CudaModelWrap::TrainStepAsync>("trainStepAsync"),
          InstanceMethod<&CudaModelWrap::Dispose>("dispose"),
      });
}

CudaModelWrap::CudaModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaModelWrap>(info) {
  Napi::Env env = info.Env();
  std::shared_ptr<cuda::CudaModel> model;
  Guard(env, "Model", [&] {
    ExpectArgs(info, 4, "Model");
    const ModelConfig config = ReadModelConfig(info[0], "Model");
    const auto params = TypedArg<float>(info[1], "Model", "params");
    const int precision = CodeArg(info[2], "Model", "precision", "a precision", cuda::kPrecisionCount);
    const double device = NumberArg(info[3], "Model", "device");
    if (!(device >= 0 && device <= 1024 && static_cast<double>(static_cast<int>(device)) == device)) {
      throw RangeError(env, "Model: device must be a device index (an integer >= 0), got " + FormatNumber(device));
    }
    model = std::make_shared<cuda::CudaModel>(config, params.Data(), params.ElementLength(),
                                              static_cast<cuda::Precision>(precision), static_cast<int>(device));
  });
  param_count_ = model->param_count();
  inputs_ = model->inputs();
  outputs_ = model->outputs();
  precision_ = cuda::precision_name(model->precision());
  kernel_ = model->kernel();
  // Read-only data properties, not prototype getters: V8 does not check a getter's receiver, so
  // a getter called on a foreign object would read a wrapper of another class.
  info.This().As<Napi::Object>().DefineProperties({
      Napi::PropertyDescriptor::Value("paramCount", Napi::Number::New(env, static_cast<double>(param_count_)), napi_enumerable),
      Napi::PropertyDescriptor::Value("outputs", Napi::Number::New(env, static_cast<double>(outputs_)), napi_enumerable),
      Napi::PropertyDescriptor::Value("precision", Napi::String::New(env, precision_), napi_enumerable),
      Napi::PropertyDescriptor::Value("kernel", Napi::String::New(env, kernel_), napi_enumerable),
  });
  // Parameters, gradients and moments live on the device; the GC is told about an equivalent
  // amount so that dropped models (and their GPU memory) are collected at a similar pace.
  handle_.Adopt(env, std::move(model), 4 * sizeof(float) * param_count_);
}

CudaModelWrap::~CudaModelWrap() { handle_.Release(Env()); }

Napi::Value CudaModelWrap::GetParams(const Napi::CallbackInfo& info) {
  constexpr const char* what = "getParams";
  Napi::Env env = info.Env();
  return Guard(env, what, [&]() -> Napi::Value {
    const auto& model = Live(env, what);
    ExpectArgs(info, 1, what);
    auto out = OutputArg<float>(info[0], what, "out");
    ExpectLength(env, out.ElementLength(), param_count_, 1, what, "out", "paramCount");
    model->get_params(out.Data());
    return env.Undefined();
  });
}

Napi::Value CudaModelWrap::SetParams(const Napi::CallbackInfo& info) {
  constexpr const char* what = "setParams";
  Napi::Env env = info.Env();
  return Guard(env, what, [&]() -> Napi::Value {
    const auto& model = Live(env, what);
    ExpectArgs(info, 1, what);
    const auto params = TypedArg<float>(info[0], what, "params");
    ExpectLength(env, params.ElementLength(), param_count_, 1, what, "params", "paramCount");
    model->set_params(params.Data());
    return env.Undefined();
  });
}

Napi::Value CudaModelWrap::GetGrads(const Napi::CallbackInfo& info) {
  constexpr const char* what = "getGrads";
  Napi::Env env = info.Env();
  return Guard(env, what, [&]() -> Napi::Value {
    const auto& model = Live(env, what);
    ExpectArgs(info, 1, what);
    auto out = OutputArg<float>(info[0], what, "out");
    ExpectLength(env, out.ElementLength(), param_count_, 1, what, "out", "paramCount");
    model->get_grads(out.Data());
    return env.Undefined();
  });
}

Napi::Value CudaModelWrap::SetGrads(const Napi::CallbackInfo& info) {
  constexpr const char* what = "setGrads";
  Napi::Env env = info.Env();
  return Guard(env, what, [&]() -> Napi::Value {
    const auto& model = Live(env, what);
    ExpectArgs(info, 1, what);
    const auto grads = TypedArg<float>(info[0], what, "grads");
    ExpectLength(env, grads.ElementLength(), param_count_, 1, what, "grads", "paramCount");
    model->set_grads(grads.Data());
    return env.Undefined();
  });
}

Napi::Value CudaModelWrap::LossGrad(const Napi::CallbackInfo& info) {
  constexpr const char* what = "lossGrad";
  Napi::Env env = info.Env();
  return Guard(env, what, [&]() -> Napi::Value {
    const auto& model = Live(env, what);
    ExpectArgs(info, 5, what);
    const auto x = TypedArg<float>(info[0], what, "x");
    const std::size_t batch = BatchArg(info[1], what);
    const auto loss = static_cast<Loss>(CodeArg(info[2], what, "loss", "a loss", kLossCount));
    const double loss_param = NumberArg(info[3], what, "lossParam");
    ExpectLength(env, x.ElementLength(), batch, inputs_, what, "x", "batch * inputs");
    std::size_t target_length = 0;
    LossTarget target;
    ReadTarget(info[4], loss, batch, outputs_, what, &target_length, &target);
    float* grad_input = ReadGradInput(info, 5, batch, inputs_, what);
    return Napi::Number::New(env, model->loss_grad(x.Data(), batch, loss, loss_param, target, grad_input));
  });
}

Napi::Value CudaModelWrap::Backward(const Napi::CallbackInfo& info) {
  constexpr const char* what = "backward";
  Napi::Env env = info.Env();
  return Guard(env, what, [&]() -> Napi::Value {
    const auto& model = Live(env, what);
    ExpectArgs(info, 3, what);
    const auto x = TypedArg<float>(info[0], what, "x");
    const std::size_t batch = BatchArg(info[1], what);
    const auto grad_output = TypedArg<float>(info[2], what, "gradOutput");
    ExpectLength(env, x.ElementLength(), batch, inputs_, what, "x", "batch * inputs");
    ExpectLength(env, grad_output.ElementLength(), batch, outputs_, what, "gradOutput", "batch * outputs");
    float* grad_input = ReadGradInput(info, 3, batch, inputs_, what);
    model->backward(x.Data(), batch, grad_output.Data(), grad_input);
    return env.Undefined();
  });
}

Napi::Value CudaModelWrap::OptimizerStep(const Napi::CallbackInfo& info) {
  constexpr const char* what = "optimizerStep";
  Napi::Env env = info.Env();
  return Guard(env, what, [&]() -> Napi::Value {
    const auto& model = Live(env, what);
    ExpectArgs(info, 3, what);
    const auto optimizer = static_cast<Optimizer>(CodeArg(info[0], what, "optimizer", "an optimizer", kOptimizerCount));
    const Hyper hyper = ReadHyper(info[1], what);
    const double clip_norm = NumberArg(info[2], what, "clipNorm");
    return Napi::Number::New(env, model->optimizer_step(optimizer, hyper, clip_norm));
  });
}

Napi::Value CudaModelWrap::ResetOptimizer(const Napi::CallbackInfo& info) {
  constexpr const char* what = "resetOptimizer";
  Napi::Env env = info.Env();
  return Guard(env, what, [&]() -> Napi::Value {
    Live(env, what)->reset_optimizer();
    return env.Undefined();
  });
}

Napi::Value CudaModelWrap::TrainStep(const Napi::CallbackInfo& info) {
  constexpr const char* what = "trainStep";
  Napi::Env env = info.Env();
  return Guard(env, what, [&]() -> Napi::Value {
    const auto& model = Live(env, what);
    const TrainArgs a = ReadTrainArgs(info, inputs_, outputs_, what);
    const double value =
        model->train_step(a.x.Data(), a.batch, a.loss, a.loss_param, a.target_data, a.optimizer, a.hyper, a.clip_norm);
    return Napi::Number::New(env, value);
  });
}

Napi::Value CudaModelWrap::TrainStepAsync(const Napi::CallbackInfo& info) {
  constexpr const char* what = "trainStepAsync";
  Napi::Env env = info.Env();
  return GuardAsync(env, what, [&]() -> Napi::Value {
    const auto& model = Live(env, what);
    const TrainArgs a = ReadTrainArgs(info, inputs_, outputs_, what);
    return Job::Queue(env, std::make_unique<TrainJobT<cuda::CudaModel>>(model, a), "mlpkit:cuda:trainStepAsync");
  });
}

Napi::Value CudaModelWrap::Dispose(const Napi::CallbackInfo& info) {
  handle_.Release(info.Env());
  return info.Env().Undefined();
}

}  // namespace mlpkit::addon
