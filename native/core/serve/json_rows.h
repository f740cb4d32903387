// The predict request's usual JSON body, {"inputs": [[x, ...], ...]} or {"inputs": [x, ...]},
// read from its bytes into float32 rows: the native socket path's decoder.
//
// It accepts exactly the shapes lib/server/json-rows.ts reads (the same key, the same blanks),
// and converts every number exactly (std::from_chars rounds correctly, then one rounding to
// float32: the value JSON.parse and Math.fround give). Anything else, or any number it does not
// take as is (past float32's range, below its normal range, not JSON's grammar), is refused,
// and the caller leaves the request to the TypeScript path, which reads or refuses it there.
#pragma once

#include <cstddef>
#include <vector>

namespace mlpkit::serve {

struct JsonRows {
  std::size_t rows = 0;
  // {"inputs": [x, ...]}: one row written flat (the answer is flat too).
  bool flat = false;
};

// Appends the rows of b[0, n) (each `width` values) to `out` and returns true; on false, `out`
// is as it was.
bool read_json_rows(const unsigned char* b, std::size_t n, std::size_t width, std::vector<float>& out, JsonRows& got);

}  // namespace mlpkit::serve
