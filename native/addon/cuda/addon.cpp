// Entry of mlpkit_cuda.node, the optional CUDA addon (built by `npm run build:cuda`, loaded by
// lib/backend/cuda.ts by path; the CPU addon never links it). Loading it never needs a GPU or a
// driver: the CUDA runtime is linked statically and opens libcuda.so.1 on first use, so info()
// can always answer, with the reason when no device can be used.
#include <napi.h>

#include <string>

#include "addon/checks.h"
#include "addon/cuda/model_wrap.h"
#include "addon/errors.h"
#include "core/cuda/device.h"
#include "core/info.h"

namespace mlpkit::addon {

class MlpkitCudaAddon final : public Napi::Addon<MlpkitCudaAddon> {
 public:
  MlpkitCudaAddon(Napi::Env env, Napi::Object exports) {
    Napi::Function model = CudaModelWrap::DefineClass(env);
    model_class_ = Napi::Persistent(model);
    DefineAddon(exports, {
                             InstanceMethod<&MlpkitCudaAddon::Info>("info", napi_enumerable),
                             InstanceValue("Model", model, napi_enumerable),
                         });
  }

 private:
  static std::string VersionText(int v) {
    return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
  }

  // info() -> { version, runtime, driver, architectures, available, devices: [...], error? }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Guard(env, "info", [&]() -> Napi::Value {
      const cuda::Status s = cuda::query_status();
      Napi::Object out = Napi::Object::New(env);
      out.Set("version", build_info().version);
      out.Set("runtime", VersionText(s.runtime_version));
      out.Set("driver", s.driver_version > 0 ? Napi::Value(Napi::String::New(env, VersionText(s.driver_version)))
                                             : env.Null());
      out.Set("architectures", cuda::compiled_architectures());
      out.Set("available", Napi::Boolean::New(env, s.error.empty()));
      Napi::Array devices = Napi::Array::New(env, s.devices.size());
      for (std::size_t i = 0; i < s.devices.size(); ++i) {
        const cuda::DeviceInfo& d = s.devices[i];
        Napi::Object o = Napi::Object::New(env);
        o.Set("index", Napi::Number::New(env, d.index));
        o.Set("name", d.name);
        o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
        o.Set("memoryBytes", Napi::Number::New(env, static_cast<double>(d.memory_bytes)));
        o.Set("multiprocessors", Napi::Number::New(env, d.multiprocessors));
        o.Set("supported", Napi::Boolean::New(env, d.supported));
        devices.Set(static_cast<uint32_t>(i), o);
      }
      out.Set("devices", devices);
      if (!s.error.empty()) out.Set("error", s.error);
      return out;
    });
  }

  Napi::FunctionReference model_class_;
};

}  // namespace mlpkit::addon

using MlpkitCudaAddon = mlpkit::addon::MlpkitCudaAddon;
NODE_API_ADDON(MlpkitCudaAddon)
