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

// A layer's arrays, copied out of JS as each is read: reading a later field may run JS (a getter,
// a Proxy trap) that detaches or resizes an array read before, so no pointer into JS memory
// outlives the next Get. Source() points into the copies.
struct LayerCopy {
  std::vector<std::uint8_t> weights;
  std::vector<float> scales;
  std::vector<std::uint8_t> zeros;
  std::vector<float> bias;
  std::vector<float> input_scales;
  bool has_zeros = false, has_bias = false, has_input_scales = false;
  quant::QuantLayerSource source;  // pointers unset until Source()

  quant::QuantLayerSource Source() const {
    quant::QuantLayerSource s = source;
    s.weights = weights.data();
    s.scales = scales.data();
    s.zeros = has_zeros ? zeros.data() : nullptr;
    s.bias = has_bias ? bias.data() : nullptr;
    s.input_scales = has_input_scales ? input_scales.data() : nullptr;
    return s;
  }
};

template <class T, class U>
void CopyArray(const Napi::Value& v, const std::string& where, const char* name, std::size_t a, std::size_t b,
               const char* formula, std::vector<U>* out) {
  const auto arr = TypedArg<T>(v, where.c_str(), name);
  ExpectLength(v.Env(), arr.ElementLength(), a, b, where.c_str(), name, formula);
  const auto* bytes = reinterpret_cast<const U*>(arr.Data());
  out->assign(bytes, bytes + arr.ElementLength());
}

void ReadLayer(const Napi::Value& value, std::size_t index, LayerCopy* copy) {
  const std::string where = "QuantModel: layers[" + std::to_string(index) + "]";
  if (!value.IsObject()) throw TypeError(value.Env(), where + " must be an object, got " + Describe(value));
  const Napi::Object o = value.As<Napi::Object>();
  quant::QuantLayerSource& s = copy->source;
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
  const std::size_t kq = (s.inputs + s.group - 1) / s.group * s.group;
  const std::size_t groups = kq / s.group;
  if (s.format == quant::Format::Int8) {
    CopyArray<std::int8_t>(o.Get("weights"), where, "weights", s.outputs, s.inputs, "outputs * inputs", &copy->weights);
  } else {
    CopyArray<std::uint8_t>(o.Get("weights"), where, "weights", s.outputs, kq / 2, "outputs * paddedInputs / 2", &copy->weights);
  }
  CopyArray<float>(o.Get("scales"), where, "scales", s.outputs, groups, "outputs * groups", &copy->scales);
  copy->has_zeros = s.format == quant::Format::Int4 && !s.symmetric;
  if (copy->has_zeros) {
    CopyArray<std::uint8_t>(o.Get("zeros"), where, "zeros", s.outputs, groups, "outputs * groups", &copy->zeros);
  }
  const Napi::Value bias = o.Get("bias");
  copy->has_bias = !IsNullish(bias);
  if (copy->has_bias) CopyArray<float>(bias, where, "bias", s.outputs, 1, "outputs", &copy->bias);
  const Napi::Value input_scales = o.Get("inputScales");
  copy->has_input_scales = !IsNullish(input_scales);
  if (copy->has_input_scales) {
    CopyArray<float>(input_scales, where, "inputScales", s.inputs, 1, "inputs", &copy->input_scales);
    for (std::size_t p = 0; p < copy->input_scales.size(); ++p) {
      const float v = copy->input_scales[p];
      if (!(v > 0) || !std::isfinite(v)) {
        throw RangeError(o.Env(), where + ".inputScales[" + std::to_string(p) + "] must be finite and > 0, got " + std::to_string(v));
      }
    }
  }
  s.activation = static_cast<Activation>(CodeArg(o.Get("activation"), where.c_str(), "activation", "an activation", kActivationCount));
  s.alpha = static_cast<float>(NumberArg(o.Get("alpha"), where.c_str(), "alpha"));
}

}  // namespace

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
    if (!info[0].IsObject()) throw TypeError(env, "QuantModel: config must be an object, got " + Describe(info[0]));
    const Napi::Object c = info[0].As<Napi::Object>();
    const EncodingSpec enc = ReadEncodingSpec(c, "QuantModel: config");
    const int mode = CodeArg(c.Get("activations"), "QuantModel", "config.activations", "an activations-mode", 2);
    if (!info[1].IsArray()) throw TypeError(env, "QuantModel: layers must be an array, got " + Describe(info[1]));
    const Napi::Array layers = info[1].As<Napi::Array>();
    // The length is read once: a getter may change the array while its layers are read.
    const std::uint32_t count = layers.Length();
    if (count == 0 || count > kMaxQuantLayers) {
      throw RangeError(env, "QuantModel: layers must hold 1 to " + std::to_string(kMaxQuantLayers) + " layers, got " + std::to_string(count));
    }
    std::vector<LayerCopy> copies;
    for (std::uint32_t i = 0; i < count; ++i) {
      copies.emplace_back();
      ReadLayer(layers.Get(i), i, &copies.back());
    }
    std::vector<quant::QuantLayerSource> sources;
    for (const LayerCopy& c : copies) sources.push_back(c.Source());
    model = std::make_shared<quant::QuantModel>(enc, sources, static_cast<quant::ActMode>(mode));
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
