#include "addon/quant_model_wrap.h"

#include <cmath>
#include <string>
#include <vector>

#include "addon/async_work.h"
#include "addon/checks.h"
#include "addon/config_reader.h"
#include "addon/errors.h"

namespace mlpkit::addon {
namespace {

// More layers than any model file or spec may hold (lib/spec.ts allows 1024).
constexpr std::uint32_t kMaxQuantLayers = 1 << 16;

// A layer as read from JS, in two passes. Read() takes every field, which may run JS (a getter, a
// Proxy trap) that detaches or resizes an array read before; it checks each array's type and
// length as it comes, so errors keep the order of the fields. Source() runs after every layer is
// read: no JS runs from there until the model has repacked the arrays into its own layout, so
// the pointers it takes into JS memory stay valid, and the weights are read in place rather
// than copied first (a 4096 x 16384 int8 layer: 67 MB and its page faults per model). An array
// on a SharedArrayBuffer that another thread writes meanwhile can change the model's numbers,
// never which memory is read: every size is fixed before the repack starts.
struct LayerRead {
  std::string where;
  quant::QuantLayerSource source;  // pointers unset until Source()
  std::size_t groups = 0;
  Napi::Value weights, scales, zeros, bias, input_scales;  // the last three may be empty

  void Read(const Napi::Value& value, std::size_t index);
  quant::QuantLayerSource Source() const;

 private:
  std::size_t WeightBytes() const {
    const std::size_t kq = groups * source.group;
    return source.format == quant::Format::Int8 ? source.inputs : kq / 2;
  }
  const char* WeightFormula() const {
    return source.format == quant::Format::Int8 ? "outputs * inputs" : "outputs * paddedInputs / 2";
  }
};

// The array's elements, after its type and length are checked.
template <class T>
const T* ArrayIn(const Napi::Value& v, const std::string& where, const char* name, std::size_t a, std::size_t b,
                 const char* formula) {
  const auto arr = TypedArg<T>(v, where.c_str(), name);
  ExpectLength(v.Env(), arr.ElementLength(), a, b, where.c_str(), name, formula);
  return arr.Data();
}

void LayerRead::Read(const Napi::Value& value, std::size_t index) {
  where = "QuantModel: layers[" + std::to_string(index) + "]";
  if (!value.IsObject()) throw TypeError(value.Env(), where + " must be an object, got " + Describe(value));
  const Napi::Object o = value.As<Napi::Object>();
  quant::QuantLayerSource& s = source;
  s.inputs = SizeField(o, "inputs", where);
  s.outputs = SizeField(o, "outputs", where);
  s.group = SizeField(o, "groupSize", where);
  const Napi::Value format = o.Get("format");
  const std::string f = format.IsString() ? format.As<Napi::String>().Utf8Value() : "";
  if (f == "int8") {
    s.format = quant::Format::Int8;
  } else if (f == "int4") {
    s.format = quant::Format::Int4;
  } else {
    throw RangeError(o.Env(), where + ".format must be 'int8' or 'int4', got " + Describe(format));
  }
  const Napi::Value symmetric = o.Get("symmetric");
  if (!symmetric.IsBoolean()) throw TypeError(o.Env(), where + ".symmetric must be a boolean, got " + Describe(symmetric));
  s.symmetric = symmetric.As<Napi::Boolean>().Value();
  if (s.format == quant::Format::Int8 && (!s.symmetric || s.group != s.inputs)) {
    throw RangeError(o.Env(), where + ": int8 layers are symmetric with groupSize == inputs");
  }
  if (s.format == quant::Format::Int4 && s.group != 32 && s.group != 64 && s.group != 128) {
    throw RangeError(o.Env(), where + ".groupSize must be 32, 64 or 128 for int4 layers, got " + std::to_string(s.group));
  }
  groups = (s.inputs + s.group - 1) / s.group;
  weights = o.Get("weights");
  if (s.format == quant::Format::Int8) {
    ArrayIn<std::int8_t>(weights, where, "weights", s.outputs, WeightBytes(), WeightFormula());
  } else {
    ArrayIn<std::uint8_t>(weights, where, "weights", s.outputs, WeightBytes(), WeightFormula());
  }
  scales = o.Get("scales");
  ArrayIn<float>(scales, where, "scales", s.outputs, groups, "outputs * groups");
  if (s.format == quant::Format::Int4 && !s.symmetric) {
    zeros = o.Get("zeros");
    ArrayIn<std::uint8_t>(zeros, where, "zeros", s.outputs, groups, "outputs * groups");
  }
  const Napi::Value b = o.Get("bias");
  if (!IsNullish(b)) {
    bias = b;
    ArrayIn<float>(bias, where, "bias", s.outputs, 1, "outputs");
  }
  const Napi::Value in = o.Get("inputScales");
  if (!IsNullish(in)) {
    input_scales = in;
    ArrayIn<float>(input_scales, where, "inputScales", s.inputs, 1, "inputs");
  }
  s.activation = static_cast<Activation>(CodeArg(o.Get("activation"), where.c_str(), "activation", "an activation", kActivationCount));
  s.alpha = static_cast<float>(NumberArg(o.Get("alpha"), where.c_str(), "alpha"));
}

// Checked again: a getter of a later field or layer may have detached an array (length 0 now).
quant::QuantLayerSource LayerRead::Source() const {
  quant::QuantLayerSource s = source;
  s.weights = s.format == quant::Format::Int8
                  ? reinterpret_cast<const std::uint8_t*>(ArrayIn<std::int8_t>(weights, where, "weights", s.outputs, WeightBytes(), WeightFormula()))
                  : ArrayIn<std::uint8_t>(weights, where, "weights", s.outputs, WeightBytes(), WeightFormula());
  s.scales = ArrayIn<float>(scales, where, "scales", s.outputs, groups, "outputs * groups");
  s.zeros = zeros.IsEmpty() ? nullptr : ArrayIn<std::uint8_t>(zeros, where, "zeros", s.outputs, groups, "outputs * groups");
  s.bias = bias.IsEmpty() ? nullptr : ArrayIn<float>(bias, where, "bias", s.outputs, 1, "outputs");
  s.input_scales = nullptr;
  if (!input_scales.IsEmpty()) {
    s.input_scales = ArrayIn<float>(input_scales, where, "inputScales", s.inputs, 1, "inputs");
    for (std::size_t p = 0; p < s.inputs; ++p) {
      const float v = s.input_scales[p];
      if (!(v > 0) || !std::isfinite(v)) {
        throw RangeError(weights.Env(), where + ".inputScales[" + std::to_string(p) + "] must be finite and > 0, got " + std::to_string(v));
      }
    }
  }
  return s;
}

// The model of new QuantModel(config, layers) and quantMatmul(config, layers, ...): every field
// read and checked (errors name QuantModel, as the TypeScript side checks first), then repacked.
std::shared_ptr<quant::QuantModel> BuildQuantModel(Napi::Env env, const Napi::Value& config, const Napi::Value& layers_value) {
  if (!config.IsObject()) throw TypeError(env, "QuantModel: config must be an object, got " + Describe(config));
  const Napi::Object c = config.As<Napi::Object>();
  const EncodingSpec enc = ReadEncodingSpec(c, "QuantModel: config");
  const int mode = CodeArg(c.Get("activations"), "QuantModel", "config.activations", "an activations-mode", 2);
  if (!layers_value.IsArray()) throw TypeError(env, "QuantModel: layers must be an array, got " + Describe(layers_value));
  const Napi::Array layers = layers_value.As<Napi::Array>();
  // The length is read once: a getter may change the array while its layers are read.
  const std::uint32_t count = layers.Length();
  if (count == 0 || count > kMaxQuantLayers) {
    throw RangeError(env, "QuantModel: layers must hold 1 to " + std::to_string(kMaxQuantLayers) + " layers, got " + std::to_string(count));
  }
  std::vector<LayerRead> reads(count);
  for (std::uint32_t i = 0; i < count; ++i) reads[i].Read(layers.Get(i), i);
  std::vector<quant::QuantLayerSource> sources;
  for (const LayerRead& r : reads) sources.push_back(r.Source());
  return std::make_shared<quant::QuantModel>(enc, sources, static_cast<quant::ActMode>(mode));
}

}  // namespace

Napi::Value QuantMatmul(const Napi::CallbackInfo& info) {
  constexpr const char* what = "quantMatmul";
  Napi::Env env = info.Env();
  return Guard(env, what, [&]() -> Napi::Value {
    ExpectArgs(info, 5, what);
    // Repacked before x and out are read: reading them runs no JS, so the layer arrays the
    // repack reads in place cannot change under it.
    const std::shared_ptr<quant::QuantModel> model = BuildQuantModel(env, info[0], info[1]);
    const PredictArgs a = ReadPredictArgs(info, model->inputs(), model->outputs(), what, 2);
    PredictInto(*model, a);
    return env.Undefined();
  });
}

Napi::Function QuantModelWrap::DefineClass(Napi::Env env) {
  return ObjectWrap<QuantModelWrap>::DefineClass(env, "QuantModel",
                                                 {
                                                     InstanceMethod<&QuantModelWrap::Predict>("predict"),
                                                     InstanceMethod<&QuantModelWrap::PredictAsync>("predictAsync"),
                                                     InstanceMethod<&QuantModelWrap::Dispose>("dispose"),
                                                 });
}

QuantModelWrap::QuantModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<QuantModelWrap>(info) {
  Napi::Env env = info.Env();
  std::shared_ptr<quant::QuantModel> model;
  Guard(env, "QuantModel", [&] {
    ExpectArgs(info, 2, "QuantModel");
    model = BuildQuantModel(env, info[0], info[1]);
  });
  // The repacked size, as a read-only data property (see ModelWrap).
  info.This().As<Napi::Object>().DefineProperty(
      Napi::PropertyDescriptor::Value("bytes", Napi::Number::New(env, static_cast<double>(model->bytes())), napi_enumerable));
  const std::size_t bytes = model->bytes();
  handle_.Adopt(env, std::move(model), bytes);
}

QuantModelWrap::~QuantModelWrap() { handle_.Release(Env()); }

Napi::Value QuantModelWrap::Dispose(const Napi::CallbackInfo& info) {
  handle_.Release(info.Env());
  return info.Env().Undefined();
}

}  // namespace mlpkit::addon
