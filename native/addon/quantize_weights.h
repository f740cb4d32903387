// quantizeInt8 / quantizeInt4 / columnAbsMax: the addon's entry to core/quant/quantize.h, which lib/quant/
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

}  // namespace mlpkit::addon
