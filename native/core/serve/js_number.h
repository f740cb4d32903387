// Numbers written as JavaScript writes them (Number.prototype.toString), for answers the native
// socket path builds: they must match, byte for byte, what the TypeScript path writes with
// `text += v` (lib/server/codec.ts).
#pragma once

#include <cstddef>

namespace mlpkit::serve {

// The longest text write_js_number makes: "-1.2345678901234567e-308".
constexpr std::size_t kMaxJsNumberChars = 25;

// Writes finite v at out (room for kMaxJsNumberChars) as String(v) in JavaScript: the shortest
// digits that read back as v, in fixed notation from 1e-7 up to 1e21 and exponent notation
// outside, and -0 as "0". Returns the end of what was written.
char* write_js_number(char* out, double v);

}  // namespace mlpkit::serve
