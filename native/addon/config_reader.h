// Reads the ModelConfig object of lib/backend/types.ts into the core's config.
#pragma once

#include <napi.h>

#include "core/config.h"

namespace mlpkit::addon {

// Checks every field's type (TypeError naming it); the core checks ranges afterwards.
ModelConfig ReadModelConfig(const Napi::Value& value, const char* what);

}  // namespace mlpkit::addon
