// Module entry: one Addon instance per environment (main thread or worker_thread), holding that
// environment's Model class. Nothing per-environment lives in a static.
#include <napi.h>

#include "addon/errors.h"
#include "addon/model_wrap.h"
#include "core/info.h"

namespace mlpkit::addon {

class MlpkitAddon final : public Napi::Addon<MlpkitAddon> {
 public:
  MlpkitAddon(Napi::Env env, Napi::Object exports) {
    Napi::Function model = ModelWrap::DefineClass(env);
    model_class_ = Napi::Persistent(model);
    DefineAddon(exports, {
                             InstanceMethod<&MlpkitAddon::Info>("info", napi_enumerable),
                             InstanceValue("Model", model, napi_enumerable),
                         });
  }

 private:
  // info() -> { version, isa, threads, cuda, compiler }
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
      return out;
    });
  }

  Napi::FunctionReference model_class_;
};

}  // namespace mlpkit::addon

// The registration macro pastes the class name into identifiers, so it needs an unqualified one.
using MlpkitAddon = mlpkit::addon::MlpkitAddon;
NODE_API_ADDON(MlpkitAddon)
