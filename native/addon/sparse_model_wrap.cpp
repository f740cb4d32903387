#include "addon/sparse_model_wrap.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "addon/async_work.h"
#include "addon/checks.h"
#include "addon/config_reader.h"
#include "addon/errors.h"

namespace mlpkit::addon {
namespace {

// More layers than any spec may hold (lib/spec.ts allows 1024).
constexpr std::uint32_t kMaxSparseLayers = 1 << 16;

// Each array is copied out of JS as it is read: reading a later field may run JS (a getter, a
// Proxy trap) that detaches or resizes an array read before, so no pointer into JS memory
// outlives the next Get. The source points into the copies (a std::vector's data does not move
// when the vector object does).
struct LayerCopy {
  std::vector<std::vector<float>> arrays;
  sparse::SparseLayerSource source;
};

const float* FloatsField(const Napi::Object& o, const char* field, std::size_t a, std::size_t b, const std::string& where,
                         const char* formula, LayerCopy* copy) {
  const auto v = TypedArg<float>(o.Get(field), where.c_str(), field);
  ExpectLength(o.Env(), v.ElementLength(), a, b, where.c_str(), field, formula);
  copy->arrays.emplace_back(v.Data(), v.Data() + v.ElementLength());
  return copy->arrays.back().data();
}

const float* OptionalFloatsField(const Napi::Object& o, const char* field, std::size_t n, const std::string& where,
                                 const char* formula, LayerCopy* copy) {
  if (IsNullish(o.Get(field))) return nullptr;
  return FloatsField(o, field, n, 1, where, formula, copy);
}

void ReadLayer(const Napi::Value& value, std::size_t index, LayerCopy* copy) {
  const std::string where = "SparseModel: layers[" + std::to_string(index) + "]";
  if (!value.IsObject()) throw TypeError(value.Env(), where + " must be an object, got " + Describe(value));
  const Napi::Object o = value.As<Napi::Object>();
  copy->arrays.reserve(7);  // every array of a layer: no reallocation moves the vectors
  sparse::SparseLayerSource& s = copy->source;
  s.inputs = SizeField(o, "inputs", where);
  s.outputs = SizeField(o, "outputs", where);
  s.activation = static_cast<Activation>(CodeArg(o.Get("activation"), where.c_str(), "activation", "an activation", kActivationCount));
  s.alpha = static_cast<float>(NumberArg(o.Get("alpha"), where.c_str(), "alpha"));
  const Napi::Value gated = o.Get("gated");
  const Napi::Value residual = o.Get("residual");
  if (!gated.IsBoolean()) throw TypeError(o.Env(), where + ".gated must be a boolean, got " + Describe(gated));
  if (!residual.IsBoolean()) throw TypeError(o.Env(), where + ".residual must be a boolean, got " + Describe(residual));
  s.gated = gated.As<Napi::Boolean>().Value();
  s.residual = residual.As<Napi::Boolean>().Value();
  const std::size_t rows = s.gated ? 2 * s.outputs : s.outputs;
  s.weight = FloatsField(o, "weight", rows, s.inputs, where, "rows * inputs (rows = 2 * outputs when gated)", copy);
  s.bias = OptionalFloatsField(o, "bias", rows, where, "rows", copy);
  s.scales = OptionalFloatsField(o, "scales", rows, where, "rows", copy);
  s.mode = static_cast<sparse::Mode>(CodeArg(o.Get("mode"), where.c_str(), "mode", "a sparsity mode", sparse::kModeCount));
  if (s.mode == sparse::Mode::Threshold) {
    const double t = NumberArg(o.Get("threshold"), where.c_str(), "threshold");
    if (!(t >= 0 && t <= std::numeric_limits<float>::max())) throw RangeError(o.Env(), where + ".threshold must be a finite number >= 0, got " + FormatNumber(t));
    s.threshold = static_cast<float>(t);
  }
  if (s.mode == sparse::Mode::TopK || s.mode == sparse::Mode::Predictor) {
    s.k = SizeField(o, "k", where);
    if (s.k > s.outputs) {
      throw RangeError(o.Env(), where + ".k must be at most outputs = " + std::to_string(s.outputs) + ", got " + std::to_string(s.k));
    }
  }
  if (s.mode == sparse::Mode::Predictor) {
    s.rank = SizeField(o, "rank", where);
    s.pa = FloatsField(o, "predictorA", s.rank, s.inputs, where, "rank * inputs", copy);
    s.pa_bias = OptionalFloatsField(o, "predictorABias", s.rank, where, "rank", copy);
    s.pb = FloatsField(o, "predictorB", s.outputs, s.rank, where, "outputs * rank", copy);
    s.pb_bias = OptionalFloatsField(o, "predictorBBias", s.outputs, where, "outputs", copy);
    const double from = NumberArg(o.Get("denseFromRows"), where.c_str(), "denseFromRows");
    if (!(from >= 0 && from <= 2147483647.0 && std::floor(from) == from)) {
      throw RangeError(o.Env(), where + ".denseFromRows must be an integer >= 0 (0: never), got " + FormatNumber(from));
    }
    s.dense_from_rows = static_cast<std::size_t>(from);
  }
}

}  // namespace

Napi::Function SparseModelWrap::DefineClass(Napi::Env env) {
  return ObjectWrap<SparseModelWrap>::DefineClass(env, "SparseModel",
                                                  {
                                                      InstanceMethod<&SparseModelWrap::Predict>("predict"),
                                                      InstanceMethod<&SparseModelWrap::PredictAsync>("predictAsync"),
                                                      InstanceMethod<&SparseModelWrap::Dispose>("dispose"),
                                                  });
}

SparseModelWrap::SparseModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SparseModelWrap>(info) {
  Napi::Env env = info.Env();
  std::shared_ptr<sparse::SparseModel> model;
  Guard(env, "SparseModel", [&] {
    ExpectArgs(info, 2, "SparseModel");
    if (!info[0].IsObject()) throw TypeError(env, "SparseModel: config must be an object, got " + Describe(info[0]));
    const EncodingSpec enc = ReadEncodingSpec(info[0].As<Napi::Object>(), "SparseModel: config");
    if (!info[1].IsArray()) throw TypeError(env, "SparseModel: layers must be an array, got " + Describe(info[1]));
    const Napi::Array layers = info[1].As<Napi::Array>();
    // The length is read once: a getter may change the array while its layers are read.
    const std::uint32_t count = layers.Length();
    if (count == 0 || count > kMaxSparseLayers) {
      throw RangeError(env, "SparseModel: layers must hold 1 to " + std::to_string(kMaxSparseLayers) + " layers, got " +
                                std::to_string(count));
    }
    std::vector<LayerCopy> copies(count);
    for (std::uint32_t i = 0; i < count; ++i) ReadLayer(layers.Get(i), i, &copies[i]);
    std::vector<sparse::SparseLayerSource> sources;
    for (const LayerCopy& c : copies) sources.push_back(c.source);
    model = std::make_shared<sparse::SparseModel>(enc, sources);
  });
  // The size as a read-only data property (see ModelWrap): a prototype getter can be called on
  // any object, and V8 does not check that its receiver is a SparseModel.
  const std::size_t bytes = model->bytes();
  info.This().As<Napi::Object>().DefineProperty(
      Napi::PropertyDescriptor::Value("bytes", Napi::Number::New(env, static_cast<double>(bytes)), napi_enumerable));
  handle_.Adopt(env, std::move(model), bytes);
}

SparseModelWrap::~SparseModelWrap() { handle_.Release(Env()); }

Napi::Value SparseModelWrap::Dispose(const Napi::CallbackInfo& info) {
  handle_.Release(info.Env());
  return info.Env().Undefined();
}

}  // namespace mlpkit::addon
