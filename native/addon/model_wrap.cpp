#include "addon/model_wrap.h"

#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "addon/async_work.h"
#include "addon/checks.h"
#include "addon/config_reader.h"
#include "addon/errors.h"
#include "addon/model_args.h"

namespace mlpkit::addon {
namespace {

// dL/dx is written tile by tile while later tiles still read x (and the target): when the
// caller's gradInput overlaps either, the pass writes into scratch, copied over at the end.
class GradInputScratch {
 public:
  struct Span {
    const void* data;
    std::size_t bytes;
  };
  GradInputScratch(float* grad_input, std::size_t length, std::initializer_list<Span> inputs) : out_(grad_input) {
    if (!grad_input) return;
    for (const Span& in : inputs) {
      if (Overlaps(grad_input, length * sizeof(float), in.data, in.bytes)) {
        scratch_.resize(length);
        return;
      }
    }
  }
  float* Data() { return scratch_.empty() ? out_ : scratch_.data(); }
  void Finish() {
    if (!scratch_.empty()) std::memcpy(out_, scratch_.data(), scratch_.size() * sizeof(float));
  }

 private:
  float* out_;
  std::vector<float> scratch_;
};

}  // namespace

Napi::Function ModelWrap::DefineClass(Napi::Env env) {
  return ObjectWrap<ModelWrap>::DefineClass(
      env, "Model",
      {
          InstanceMethod<&ModelWrap::Predict>("predict"),
          InstanceMethod<&ModelWrap::PredictAsync>("predictAsync"),
          InstanceMethod<&ModelWrap::GetParams>("getParams"),
          InstanceMethod<&ModelWrap::SetParams>("setParams"),
          InstanceMethod<&ModelWrap::GetGrads>("getGrads"),
          InstanceMethod<&ModelWrap::SetGrads>("setGrads"),
          InstanceMethod<&ModelWrap::LossGrad>("lossGrad"),
          InstanceMethod<&ModelWrap::Backward>("backward"),
          InstanceMethod<&ModelWrap::OptimizerStep>("optimizerStep"),
          InstanceMethod<&ModelWrap::ResetOptimizer>("resetOptimizer"),
          InstanceMethod<&ModelWrap::TrainStep>("trainStep"),
          InstanceMethod<&ModelWrap::TrainStepAsync>("trainStepAsync"),
          InstanceMethod<&ModelWrap::Dispose>("dispose"),
      });
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Model> model;
  Guard(env, "Model", [&] {
    ExpectArgs(info, 2, "Model");
    const ModelConfig config = ReadModelConfig(info[0], "Model");
    const auto params = TypedArg<float>(info[1], "Model", "params");
    model = std::make_shared<Model>(config, params.Data(), params.ElementLength());
  });
  param_count_ = model->param_count();
  inputs_ = model->inputs();
  outputs_ = model->outputs();
  // The bound predict refers back to this object (owner), so the object, and with it `this`,
  // outlives every reference to the function; the two are collected together.
  Napi::Function bound = Napi::Function::New(env, &ModelWrap::PredictBound, "predict", this);
  bound.DefineProperty(Napi::PropertyDescriptor::Value("owner", info.This(), napi_default));
  // paramCount and outputs are read-only data properties rather than prototype getters: they
  // never change, and a getter called on a foreign object could only fail.
  info.This().As<Napi::Object>().DefineProperties({
      Napi::PropertyDescriptor::Value("predict", bound, napi_default),
      Napi::PropertyDescriptor::Value("paramCount", Napi::Number::New(env, static_cast<double>(param_count_)), napi_enumerable),
      Napi::PropertyDescriptor::Value("outputs", Napi::Number::New(env, static_cast<double>(outputs_)), napi_enumerable),
  });
  // Tell V8 what this small JS object really holds, so GC pressure reflects it.
  const std::size_t bytes = model->memory_bytes();
  handle_.Adopt(env, std::move(model), bytes);
}

ModelWrap::~ModelWrap() { handle_.Release(Env()); }

Napi::Value ModelWrap::PredictBound(const Napi::CallbackInfo& info) {
  return static_cast<ModelWrap*>(info.Data())->Predict(info);
}

Napi::Value ModelWrap::PredictAsync(const Napi::CallbackInfo& info) {
  return handle_.PredictAsync(info, "mlpkit:predictAsync");
}

Napi::Value ModelWrap::GetParams(const Napi::CallbackInfo& info) {
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

Napi::Value ModelWrap::SetParams(const Napi::CallbackInfo& info) {
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

Napi::Value ModelWrap::GetGrads(const Napi::CallbackInfo& info) {
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

Napi::Value ModelWrap::SetGrads(const Napi::CallbackInfo& info) {
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

Napi::Value ModelWrap::LossGrad(const Napi::CallbackInfo& info) {
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
    const void* target_data = target.labels ? static_cast<const void*>(target.labels) : target.values;
    GradInputScratch scratch(grad_input, batch * inputs_, {{x.Data(), x.ElementLength() * 4}, {target_data, target_length * 4}});
    const double value = model->loss_grad(x.Data(), batch, loss, loss_param, target, scratch.Data());
    scratch.Finish();
    return Napi::Number::New(env, value);
  });
}

Napi::Value ModelWrap::Backward(const Napi::CallbackInfo& info) {
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
    GradInputScratch scratch(grad_input, batch * inputs_,
                             {{x.Data(), x.ElementLength() * 4}, {grad_output.Data(), grad_output.ElementLength() * 4}});
    model->backward(x.Data(), batch, grad_output.Data(), scratch.Data());
    scratch.Finish();
    return env.Undefined();
  });
}

Napi::Value ModelWrap::OptimizerStep(const Napi::CallbackInfo& info) {
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

Napi::Value ModelWrap::ResetOptimizer(const Napi::CallbackInfo& info) {
  constexpr const char* what = "resetOptimizer";
  Napi::Env env = info.Env();
  return Guard(env, what, [&]() -> Napi::Value {
    Live(env, what)->reset_optimizer();
    return env.Undefined();
  });
}

Napi::Value ModelWrap::TrainStep(const Napi::CallbackInfo& info) {
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

Napi::Value ModelWrap::TrainStepAsync(const Napi::CallbackInfo& info) {
  constexpr const char* what = "trainStepAsync";
  Napi::Env env = info.Env();
  return GuardAsync(env, what, [&]() -> Napi::Value {
    const auto& model = Live(env, what);
    const TrainArgs a = ReadTrainArgs(info, inputs_, outputs_, what);
    return Job::Queue(env, std::make_unique<TrainJob>(model, a), "mlpkit:trainStepAsync");
  });
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  handle_.Release(info.Env());
  return info.Env().Undefined();
}

}  // namespace mlpkit::addon
