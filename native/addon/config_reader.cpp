#include "addon/config_reader.h"

#include <cmath>
#include <string>
#include <vector>

#include "addon/checks.h"

namespace mlpkit::addon {
namespace {

// Integers in config are JS numbers; anything that is not a whole number fits no field.
std::int64_t IntegerField(const Napi::Object& config, const char* field, const char* what) {
  const std::string name = std::string("config.") + field;
  const double v = NumberArg(config.Get(field), what, name.c_str());
  if (!(std::floor(v) == v && std::abs(v) <= 2147483647.0)) {
    throw RangeError(config.Env(), Where(what, name.c_str()) + " must be an integer, got " + FormatNumber(v));
  }
  return static_cast<std::int64_t>(v);
}

// Copied at once: reading a later field may run JS (a getter, a Proxy trap) that detaches or
// resizes this array, so no pointer into JS memory outlives the next Get.
template <class T, class U>
void CopyArrayField(const Napi::Object& config, const char* field, const char* what, std::vector<U>* out) {
  const std::string name = std::string("config.") + field;
  const ArrayArg<T> a = TypedArg<T>(config.Get(field), what, name.c_str());
  out->assign(a.Data(), a.Data() + a.ElementLength());
}

}  // namespace

ModelConfig ReadModelConfig(const Napi::Value& value, const char* what) {
  if (!value.IsObject() || value.IsArray() || value.IsTypedArray() || value.IsFunction()) {
    throw TypeError(value.Env(), std::string(what) + ": config must be an object, got " + Describe(value));
  }
  const Napi::Object config = value.As<Napi::Object>();
  ModelConfig c;
  c.inputs = IntegerField(config, "inputs", what);
  c.encoding = static_cast<int>(IntegerField(config, "encoding", what));
  c.octaves = IntegerField(config, "octaves", what);
  const Napi::Value include = config.Get("includeInput");
  if (!include.IsBoolean()) {
    throw TypeError(value.Env(), std::string(what) + ": config.includeInput must be a boolean, got " + Describe(include));
  }
  c.include_input = include.As<Napi::Boolean>().Value();

  CopyArrayField<std::int32_t>(config, "units", what, &c.units);
  CopyArrayField<std::int32_t>(config, "activations", what, &c.activations);
  CopyArrayField<float>(config, "alphas", what, &c.alphas);
  CopyArrayField<std::uint8_t>(config, "bias", what, &c.bias);
  CopyArrayField<std::uint8_t>(config, "gated", what, &c.gated);
  CopyArrayField<std::uint8_t>(config, "residual", what, &c.residual);
  return c;
}

std::size_t SizeField(const Napi::Object& o, const char* field, const std::string& where) {
  const double v = NumberArg(o.Get(field), where.c_str(), field);
  if (!(v >= 1 && v <= 2147483647.0 && std::floor(v) == v)) {
    throw RangeError(o.Env(), where + "." + field + " must be a positive integer, got " + FormatNumber(v));
  }
  return static_cast<std::size_t>(v);
}

EncodingSpec ReadEncodingSpec(const Napi::Object& c, const std::string& where) {
  EncodingSpec enc;
  enc.inputs = SizeField(c, "inputs", where);
  enc.type = static_cast<Encoding>(CodeArg(c.Get("encoding"), where.c_str(), "encoding", "an encoding", kEncodingCount));
  if (enc.type == Encoding::Frequency) {
    enc.octaves = SizeField(c, "octaves", where);
    const Napi::Value include = c.Get("includeInput");
    if (!include.IsBoolean()) throw TypeError(c.Env(), where + ".includeInput must be a boolean, got " + Describe(include));
    enc.include_input = include.As<Napi::Boolean>().Value();
  }
  return enc;
}

}  // namespace mlpkit::addon
