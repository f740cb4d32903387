// quantizeInt8 / quantizeInt4 / columnAbsMax / gptq*: the addon's entry to core/quant/quantize.h and gptq.h, which lib/quant/
// quantize.ts calls in place of its own loops when the addon is loaded.
#pragma once

#include <napi.h>

namespace mlpkit::addon {

// quantizeInt8(weight: Float32Array, inputs, outputs, codes: Int8Array, scales: Float32Array)
Napi::Value QuantizeInt8(const Napi::CallbackInfo& info);
// quantizeInt4(weight: Float32Array, inputs, outputs, groupSize, packed: Uint8Array,
//              scales: Float32Array, zeros: Uint8Array | null), zeros null for a symmetric layer
Napi::Value QuantizeInt4(const Napi::CallbackInfo& info);
// columnAbsMax(weight: Float32Array, inputs, outputs, out: Float32Array): out[p], the largest
// |weight| of input column p over the rows (NaN passed over; no finite-ness required)
Napi::Value ColumnAbsMax(const Napi::CallbackInfo& info);
// gptqFactor(x: Float32Array, inputs, u: Float64Array): core/quant/gptq.h gptq_inverse_factor into
// u [inputs x inputs]; false where lib/quant/hessian.ts gives null
Napi::Value GptqFactor(const Napi::CallbackInfo& info);
// gptqRound(weight: Float32Array, inputs, outputs, groupSize (0: int8), u: Float64Array,
//           codes: Int8Array (int8) | Uint8Array (int4, packed), scales: Float32Array,
//           zeros: Uint8Array | null): gptq_round; false where lib/quant/gptq.ts gives null
Napi::Value GptqRound(const Napi::CallbackInfo& info);

}  // namespace mlpkit::addon
