// Reads the ModelConfig object of lib/backend/types.ts into the core's config.
#pragma once

#include <napi.h>

#include <cstddef>
#include <string>

#include "core/config.h"
#include "core/encoding.h"

namespace mlpkit::addon {

// Checks every field's type (TypeError naming it); the core checks ranges afterwards.
ModelConfig ReadModelConfig(const Napi::Value& value, const char* what);

// o[field] as a positive integer below 2^31 (RangeError "<where>.<field> must be ...").
std::size_t SizeField(const Napi::Object& o, const char* field, const std::string& where);

// The input encoding of a quantised or sparse model's config: inputs, encoding (a code),
// octaves and includeInput for the frequency encoding.
EncodingSpec ReadEncodingSpec(const Napi::Object& c, const std::string& where);

}  // namespace mlpkit::addon
