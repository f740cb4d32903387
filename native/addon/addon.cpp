// Module entry: one Addon instance per environment (main thread or worker_thread), holding that
// environment's Model class. Nothing per-environment lives in a static.
#include <napi.h>

#include "addon/errors.h"
#include "addon/model_wrap.h"
#include "addon/quant_model_wrap.h"
#include "addon/quantize_weights.h"
#include "addon/socket_path.h"
#include "addon/sparse_model_wrap.h"
#include "addon/checks.h"
#include "core/cpu/kernels.h"
#include "core/finite.h"
#include "core/info.h"
#include "core/parallel.h"

namespace mlpkit::addon {

class MlpkitAddon final : public Napi::Addon<MlpkitAddon> {
 public:
  MlpkitAddon(Napi::Env env, Napi::Object exports) {
    Napi::Function model = ModelWrap::DefineClass(env);
    model_class_ = Napi::Persistent(model);
    Napi::Function quant_model = QuantModelWrap::DefineClass(env);
    quant_model_class_ = Napi::Persistent(quant_model);
    Napi::Function sparse_model = SparseModelWrap::DefineClass(env);
    sparse_model_class_ = Napi::Persistent(sparse_model);
    socket_path_class_ = Napi::Persistent(SocketPathWrap::DefineClass(env));
    DefineAddon(exports, {
                             InstanceMethod<&MlpkitAddon::Info>("info", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::SetThreads>("setThreads", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::FirstNonFinite>("firstNonFinite", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::OfferHugePages>("offerHugePages", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::QuantizeInt8>("quantizeInt8", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::QuantizeInt4>("quantizeInt4", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::ColumnAbsMax>("columnAbsMax", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::GptqFactor>("gptqFactor", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::GptqRound>("gptqRound", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::CreateSocketPath>("createSocketPath", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::ServeParseHead>("serveParseHead", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::ServeReadRows>("serveReadRows", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::ServeAnswer>("serveAnswer", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::ServeHttpDate>("serveHttpDate", napi_enumerable),
                             InstanceMethod<&MlpkitAddon::QuantMatmul>("quantMatmul", napi_enumerable),
                             InstanceValue("Model", model, napi_enumerable),
                             InstanceValue("QuantModel", quant_model, napi_enumerable),
                             InstanceValue("SparseModel", sparse_model, napi_enumerable),
                         });
  }

 private:
  // info() -> { version, isa, threads, cuda, compiler, isas, liveModels, liveQuantModels, liveSparseModels }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, "info", [&]() -> Napi::Value {
      const BuildInfo b = build_info();
      Napi::Object out = Napi::Object::New(env);
      out.Set("version", b.version);
      out.Set("isa", b.isa);
      out.Set("threads", Napi::Number::New(env, b.threads));
      out.Set("cuda", Napi::Boolean::New(env, false));
      out.Set("compiler", b.compiler);
      std::size_t count = 0;
      const char* const* names = cpu::supported_isas(&count);
      Napi::Array isas = Napi::Array::New(env, count);
      for (std::size_t i = 0; i < count; ++i) isas.Set(static_cast<uint32_t>(i), names[i]);
      out.Set("isas", isas);
      // Core models alive in the process (every environment): leak tests watch these.
      out.Set("liveModels", Napi::Number::New(env, static_cast<double>(Model::live_count())));
      out.Set("liveQuantModels", Napi::Number::New(env, static_cast<double>(quant::QuantModel::live_count())));
      out.Set("liveSparseModels", Napi::Number::New(env, static_cast<double>(sparse::SparseModel::live_count())));
      return out;
    });
  }

  // setThreads(n): threads per call for the whole process, n an integer in [1, 256].
  Napi::Value SetThreads(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, "setThreads", [&]() -> Napi::Value {
      ExpectArgs(info, 1, "setThreads");
      const double n = NumberArg(info[0], "setThreads", "n");
      if (!(n >= 1 && n <= 256) || n != static_cast<double>(static_cast<int>(n))) {
        throw RangeError(env, "setThreads: expected n to be an integer in [1, 256] but received " + FormatNumber(n));
      }
      set_thread_count(static_cast<int>(n));
      return env.Undefined();
    });
  }

  // firstNonFinite(Float32Array) -> index of the first NaN / Infinity, or -1. The training
  // input check: a vectorised scan instead of a JS loop over every element.
  Napi::Value FirstNonFinite(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, "firstNonFinite", [&]() -> Napi::Value {
      ExpectArgs(info, 1, "firstNonFinite");
      const ArrayArg<float> data = TypedArg<float>(info[0], "firstNonFinite", "data");
      return Napi::Number::New(env, static_cast<double>(first_non_finite(data.Data(), data.ElementLength())));
    });
  }

  // offerHugePages(TypedArray): lib/huge-pages.ts's offer of a fresh array, before JavaScript
  // writes it whole (a file read into it, a model's parameters), as OutputArg offers the arrays
  // the kernels fill. Any element type; arrays under two huge pages are left alone.
  Napi::Value OfferHugePages(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, "offerHugePages", [&]() -> Napi::Value {
      ExpectArgs(info, 1, "offerHugePages");
      const ByteView view = AnyTypedArg(info[0], "offerHugePages", "array");
      if (view.bytes >= 2 * kHugePage) offer_huge_pages(view.data, view.bytes);
      return env.Undefined();
    });
  }

  // lib/quant/quantize.ts's weight quantisers (quantize_weights.h).
  Napi::Value QuantizeInt8(const Napi::CallbackInfo& info) { return addon::QuantizeInt8(info); }
  Napi::Value QuantizeInt4(const Napi::CallbackInfo& info) { return addon::QuantizeInt4(info); }
  Napi::Value ColumnAbsMax(const Napi::CallbackInfo& info) { return addon::ColumnAbsMax(info); }
  Napi::Value GptqFactor(const Napi::CallbackInfo& info) { return addon::GptqFactor(info); }
  Napi::Value GptqRound(const Napi::CallbackInfo& info) { return addon::GptqRound(info); }

  // The native socket path of the server (socket_path.h) and its parts, for lib/server.
  Napi::Value CreateSocketPath(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, "createSocketPath", [&]() -> Napi::Value {
      auto resolve = [&](const Napi::Value& v) -> std::shared_ptr<Predictor> {
        if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(model_class_.Value())) {
          throw TypeError(env, "createSocketPath: a served model must be a native Model, got " + Describe(v));
        }
        return ModelWrap::Unwrap(v.As<Napi::Object>())->Core(env, "createSocketPath");
      };
      return addon::CreateSocketPath(info, resolve, socket_path_class_);
    });
  }
  Napi::Value ServeParseHead(const Napi::CallbackInfo& info) { return addon::ServeParseHead(info); }
  Napi::Value ServeReadRows(const Napi::CallbackInfo& info) { return addon::ServeReadRows(info); }
  Napi::Value ServeAnswer(const Napi::CallbackInfo& info) { return addon::ServeAnswer(info); }
  Napi::Value ServeHttpDate(const Napi::CallbackInfo& info) { return addon::ServeHttpDate(info); }
  Napi::Value QuantMatmul(const Napi::CallbackInfo& info) { return addon::QuantMatmul(info); }

  Napi::FunctionReference model_class_;
  Napi::FunctionReference socket_path_class_;
  Napi::FunctionReference quant_model_class_;
  Napi::FunctionReference sparse_model_class_;
};

}  // namespace mlpkit::addon

// The registration macro pastes the class name into identifiers, so it needs an unqualified one.
using MlpkitAddon = mlpkit::addon::MlpkitAddon;
NODE_API_ADDON(MlpkitAddon)
